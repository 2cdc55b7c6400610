"""Deploy ``deploy/template.yaml`` into an AWS endpoint (the local stack's emulator).

The emulator's CloudFormation creates most resource types and silently skips a few (it
leaves them without a physical id). Those are created here from the template's own
properties, so the template stays the single list of resources.
"""

from __future__ import annotations

import secrets
import string
import time
from pathlib import Path
from typing import Any

import yaml

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import ConfigError, StackError
from tradeops.runtime.platform.settings import Settings

__all__ = ["deploy_stack", "load_template", "template_parameters"]


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form tags as {"Fn::X": value}."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> tuple[str, dict[str, Any]]:
    """Read the template: its text (sent to CloudFormation) and its parsed form."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read template {path}: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with tag constructors
    except yaml.YAMLError as exc:
        raise ConfigError(f"template {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise ConfigError(f"template {path} has no Resources section")
    return text, doc


def template_parameters(settings: Settings) -> dict[str, str]:
    return {
        "NamePrefix": settings.name_prefix,
        "ParamPrefix": settings.param_prefix,
        "MaxReceiveCount": str(settings.max_receive_count),
        "VisibilityTimeout": str(settings.queue_visibility_seconds),
        "OldestOrderAgeAlarmSeconds": str(int(settings.threshold_oldest_age_seconds)),
        "TotalExposureAlarmGbp": str(settings.threshold_total_amount),
    }


class _Resolver:
    """Resolves the intrinsic functions the skipped resources use (Ref, Sub, GetAtt)."""

    def __init__(self, params: dict[str, str], physical: dict[str, str], region: str, account: str) -> None:
        self.values = {**params, "AWS::Region": region, "AWS::AccountId": account,
                       "AWS::Partition": "aws", **physical}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self.values[value["Ref"]]
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for key, val in self.values.items():
                text = text.replace("${" + key + "}", str(val))
            return text
        if set(value) == {"Fn::GetAtt"}:
            logical, attr = value["Fn::GetAtt"]
            if attr == "QueueName":
                return self.values[logical].rstrip("/").rsplit("/", 1)[-1]
            raise StackError(f"template: GetAtt {logical}.{attr} cannot be resolved for a resource"
                             " the emulator skipped")
        return {k: self(v) for k, v in value.items()}


def _create_secret(aws: Aws, props: dict[str, Any]) -> str:
    gen = props.get("GenerateSecretString", {})
    alphabet = string.ascii_letters + string.digits
    if not gen.get("ExcludePunctuation"):
        alphabet += "!#%+-.:=@^_~"
    value = "".join(secrets.choice(alphabet) for _ in range(int(gen.get("PasswordLength", 32))))
    client = aws.secrets
    try:
        return client.create_secret(Name=props["Name"], Description=props.get("Description", ""),
                                    SecretString=value)["ARN"]
    except client.exceptions.ResourceExistsException:
        return client.describe_secret(SecretId=props["Name"])["ARN"]


def _create_alarm(aws: Aws, props: dict[str, Any]) -> str:
    keys = ("AlarmName", "AlarmDescription", "Namespace", "MetricName", "Statistic", "Period",
            "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData",
            "AlarmActions", "OKActions", "Dimensions")
    args = {k: props[k] for k in keys if k in props}
    for k in ("Period", "EvaluationPeriods"):
        args[k] = int(args[k])
    args["Threshold"] = float(args["Threshold"])
    aws.cloudwatch.put_metric_alarm(**args)
    return args["AlarmName"]


# Resource types the emulator's CloudFormation skips, and how to create them instead.
_FALLBACK_CREATORS = {
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::CloudWatch::Alarm": _create_alarm,
}


def _complete_bucket(aws: Aws, name: str, props: dict[str, Any]) -> None:
    """Object Lock on a bucket the emulator created without it (its CloudFormation ignores the property).
    PutObjectLockConfiguration on a new, versioned bucket is how AWS itself enables it after creation."""
    lock = props.get("ObjectLockConfiguration") or {}
    if not props.get("ObjectLockEnabled"):
        return
    s3 = aws.client("s3")
    try:
        if s3.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {}).get("ObjectLockEnabled"):
            return
    except s3.exceptions.ClientError:
        pass  # not configured yet
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    config: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
    if lock.get("Rule"):
        retention = dict(lock["Rule"]["DefaultRetention"])
        for key in ("Days", "Years"):
            if key in retention:
                retention[key] = int(retention[key])
        config["Rule"] = {"DefaultRetention": retention}
    s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=config)


# Resource types the emulator's CloudFormation creates with some properties left out, and how to apply them.
_COMPLETERS = {"AWS::S3::Bucket": _complete_bucket}


def deploy_stack(aws: Aws, settings: Settings, *, timeout: float = 60.0) -> dict[str, str]:
    """Create the stack from the template and wait for it; return its outputs."""
    text, doc = load_template(settings.template)
    params = template_parameters(settings)
    cfn = aws.client("cloudformation")
    with aws_errors("deploy template"):
        cfn.create_stack(
            StackName=settings.stack_name,
            TemplateBody=text,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_NAMED_IAM"],  # the operator role is named (runbooks/identity.py)
        )
        deadline = time.monotonic() + timeout
        while True:
            stack = cfn.describe_stacks(StackName=settings.stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                break
            if status.endswith("FAILED") or "ROLLBACK" in status:
                reason = stack.get("StackStatusReason", "no reason given")
                raise StackError(f"template failed to deploy: {status}: {reason}")
            if time.monotonic() > deadline:
                raise StackError(f"template did not deploy within {timeout:.0f}s (status {status})")
            time.sleep(0.2)
        summaries = cfn.list_stack_resources(StackName=settings.stack_name)["StackResourceSummaries"]
        physical = {s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries
                    if s.get("LogicalResourceId")}
        created = {k: v for k, v in physical.items() if v}
        account = aws.client("sts").get_caller_identity()["Account"]
        defaults = {k: str(v["Default"]) for k, v in doc.get("Parameters", {}).items() if "Default" in v}
        resolve = _Resolver({**defaults, **params}, created, settings.region, account)
        for logical, resource in doc["Resources"].items():
            if created.get(logical):
                completer = _COMPLETERS.get(resource["Type"])
                if completer is not None:
                    completer(aws, created[logical], resolve(resource.get("Properties", {})))
                continue
            creator = _FALLBACK_CREATORS.get(resource["Type"])
            if creator is None:
                raise StackError(f"template resource {logical} ({resource['Type']}) was not created by the"
                                 " emulator and tradeops has no fallback for that type")
            created[logical] = creator(aws, resolve(resource.get("Properties", {})))
            resolve.values[logical] = created[logical]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
