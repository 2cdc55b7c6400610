"""The template's IAM policies as data, resolved in a fixed account and region, for
:mod:`tradeops.runbooks.iampolicy` (the evaluator, and why it is our own) to evaluate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradeops.runbooks.iampolicy import Request, allowed, decide
from tradeops.runtime.stack.deploy import load_template

__all__ = ["ACCOUNT", "REGION", "Request", "allowed", "decide", "resolve", "role_statements", "template",
           "trust_statements"]

REPO = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "eu-west-2"
PARAMS = {"NamePrefix": "tradeops", "ParamPrefix": "/tradeops", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION,
          "AWS::Partition": "aws"}
_NAME_PROPERTY = {"AWS::DynamoDB::Table": "TableName", "AWS::SQS::Queue": "QueueName", "AWS::SNS::Topic": "TopicName",
                  "AWS::S3::Bucket": "BucketName", "AWS::IAM::Role": "RoleName", "AWS::Events::Rule": "Name",
                  "AWS::SecretsManager::Secret": "Name", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
                  "AWS::CloudTrail::Trail": "TrailName"}

def template(name: str = "template.yaml") -> dict[str, Any]:
    """A template of deploy/, parsed (short-form tags as {"Fn::X": ...})."""
    return load_template(REPO / "deploy" / name)[1]


def _physical(doc: dict[str, Any], logical: str) -> str:
    resource = doc["Resources"][logical]
    kind = resource["Type"]
    name = resolve(doc, resource["Properties"].get(_NAME_PROPERTY.get(kind, ""), logical), params=PARAMS)
    return str(name)


def _arn(doc: dict[str, Any], logical: str) -> str:
    kind, name = doc["Resources"][logical]["Type"], _physical(doc, logical)
    return {"AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT}:policy/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical}",
            }.get(kind, f"arn:aws:unknown:{REGION}:{ACCOUNT}:{logical}")


def resolve(doc: dict[str, Any], value: Any, *, params: Mapping[str, Any] | None = None) -> Any:
    """``value`` with Ref / Sub / GetAtt replaced, in a fixed account and region (names from the template)."""
    params = {**PARAMS, **(params or {})}
    if isinstance(value, list):
        return [resolve(doc, v, params=params) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name in params:
            return params[name]
        kind = doc["Resources"][name]["Type"]
        return _arn(doc, name) if kind in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret",
                                             "AWS::IAM::ManagedPolicy") else _physical(doc, name)
    if set(value) == {"Fn::GetAtt"}:
        logical, attr = value["Fn::GetAtt"]
        return _arn(doc, logical) if attr == "Arn" else f"{_arn(doc, logical)}/stream/1"

    if set(value) == {"Fn::Sub"}:
        def one(match: re.Match[str]) -> str:
            name, _, attr = match.group(1).partition(".")
            if name in params:
                return str(params[name])
            return str(resolve(doc, {"Fn::GetAtt": [name, attr]} if attr else {"Ref": name}, params=params))
        return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", one, value["Fn::Sub"])
    return {k: resolve(doc, v, params=params) for k, v in value.items()}


def role_statements(doc: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """A role's permission statements: its inline policies and the template's managed policies it attaches."""
    props = doc["Resources"][role]["Properties"]
    statements = [s for policy in props.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    for ref in props.get("ManagedPolicyArns", []):
        statements += doc["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def trust_statements(doc: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return list(doc["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"])
