"""The template's IAM policies as data, and a small evaluator of their statements against one request.

Why an evaluator of our own: moto's ``IAMPolicy`` (what tests/test_aws_permissions.py uses for actions and
resources) evaluates only ``StringEquals`` and lets a statement match when the request lacks the condition's
key, so it would pass a trust policy that requires MFA for a caller without MFA. The one maintained simulator
that evaluates every condition operator against a request context is a Node library
(``@cloud-copilot/iam-simulate``); the Python packages on the index that read IAM policies (policyuniverse,
parliament, iam-ape, policy-sentry) expand, lint or summarise them and take no request context. So this module
evaluates what the template uses, the AWS way (https://docs.aws.amazon.com/IAM/latest/UserGuide/
reference_policies_evaluation-logic.html): an explicit Deny wins, then an Allow, else implicitly denied; every
operator of a Condition must hold, a key absent from the request fails it (``...IfExists`` and ``Null``
excepted); ``${aws:username}``-style variables are read from the request. Operators it does not know raise,
so a template that starts using one cannot pass silently.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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

Request = Mapping[str, Any]  # condition key → value (a str, or a list for a multivalued key)


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


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _variables(text: str, request: Request) -> str:
    return re.sub(r"\$\{([\w:/-]+)\}", lambda m: str(request.get(m.group(1), "\x00absent")), text)


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _arn_like(pattern: str, value: str) -> bool:
    # ARN operators compare each of the six colon-separated parts, with wildcards within a part.
    want, got = pattern.split(":", 5), value.split(":", 5)
    return len(want) == len(got) == 6 and all(_like(w, g) for w, g in zip(want, got, strict=True))


_COMPARE = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": _like,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
    "Bool": lambda want, got: want.lower() == got.lower(),
}


def _condition_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    if operator == "Null":
        return (key not in request) == (str(wanted).lower() == "true")
    base, if_exists = (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
    if base not in _COMPARE:
        raise NotImplementedError(f"condition operator {operator} is not evaluated here")
    if key not in request:
        return if_exists
    compare = _COMPARE[base]
    values = [_variables(str(w), request) for w in _listed(wanted)]
    return any(compare(w, str(got)) for got in _listed(request[key]) for w in values)


def _matches(statement: dict[str, Any], action: str, resource: str | None, request: Request) -> bool:
    if not any(_like(a.lower(), action.lower()) for a in _listed(statement["Action"])):
        return False
    if resource is not None and not any(_like(_variables(str(r), request), resource)
                                        for r in _listed(statement.get("Resource", "*"))):
        return False
    return all(_condition_holds(op, key, wanted, request)
               for op, keys in statement.get("Condition", {}).items() for key, wanted in keys.items())


def decide(statements: list[dict[str, Any]], action: str, resource: str | None = None,
           request: Request | None = None) -> str:
    """``"allow"``, ``"deny"`` (an explicit Deny matched) or ``"implicit"`` (nothing allowed it).

    ``resource`` None evaluates a trust policy (its statements name a principal, not a resource)."""
    request = request or {}
    hits = [s["Effect"] for s in statements if _matches(s, action, resource, request)]
    return "deny" if "Deny" in hits else "allow" if "Allow" in hits else "implicit"


def allowed(statements: list[dict[str, Any]], action: str, resource: str | None = None,
            request: Request | None = None) -> bool:
    return decide(statements, action, resource, request) == "allow"
