"""Deploy ``deploy/template.yaml`` and ``deploy/runtime.yaml`` into an AWS endpoint (the local stack's emulator).

The emulator's CloudFormation creates most resource types and silently skips a few (it
leaves them without a physical id): those are created here from the template's own
properties. A few more it creates with properties left out (Object Lock on a bucket,
point-in-time recovery on a table, the roles, network and load balancer of an ECS task
definition and service): those are applied here after the stack is created. Either way the
template stays the single list of resources. Real AWS needs none of this: ``tradeops deploy``
sends the same templates to CloudFormation as change sets (:mod:`.changesets`).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import BadInput, ConfigError, StackError
from tradeops.runtime.platform.settings import Settings

__all__ = ["BASE_OUTPUTS_FOR_RUNTIME", "BROKER_URL", "broker_parameters", "deploy_runtime_stack", "deploy_stack",
           "fis_template_request", "load_template", "parse_template", "runtime_parameters", "runtime_stack_name",
           "runtime_template", "stack_outputs", "template_conditions", "template_parameters"]


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML loader that keeps CloudFormation's short-form tags as {"Fn::X": value}. It parses with libyaml when PyYAML
    has it (each template takes about 75 ms through the pure-Python parser and 8 ms through libyaml, and every
    `up`, deploy and the test suite's collection read them); the constructors, and so the result, are the same."""


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
    return text, parse_template(text, str(path))


def parse_template(text: str, where: str = "the template") -> dict[str, Any]:
    """A template's parsed form (YAML or JSON, short-form tags kept as {"Fn::X": value})."""
    try:
        doc = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with tag constructors
    except yaml.YAMLError as exc:
        raise ConfigError(f"template {where} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise ConfigError(f"template {where} has no Resources section")
    return doc


def template_parameters(settings: Settings) -> dict[str, str]:
    """The base template's parameters from the settings (code and template name resources alike)."""
    return {
        "NamePrefix": settings.name_prefix,
        "ParamPrefix": settings.param_prefix,
        "MaxReceiveCount": str(settings.max_receive_count),
        "VisibilityTimeout": str(settings.queue_visibility_seconds),
        "OldestOrderAgeAlarmSeconds": str(int(settings.threshold_oldest_age_seconds)),
        "TotalExposureAlarmGbp": str(settings.threshold_total_amount),
    }


def runtime_template() -> Path:
    """``deploy/runtime.yaml`` as shipped in the package (beside the base template)."""
    return Path(str(files("tradeops").joinpath("deploy", "runtime.yaml")))


def runtime_stack_name(base_stack: str) -> str:
    """The runtime stack beside base stack ``base_stack``: one name derived from the other, never two to keep."""
    return f"{base_stack}-runtime"


# The base stack's outputs the runtime template takes as parameters of the same names.
BASE_OUTPUTS_FOR_RUNTIME = ("WorkerRoleArn", "MonitorRoleArn", "GateRoleArn", "OrderQueueName")


def broker_parameters(settings: Settings) -> dict[str, str]:
    """The runtime template's broker parameters (each broker's order API and wire) from the settings, or
    BadInput (exit 2) naming the setting that is missing or malformed. The services on AWS talk to the real
    brokers: a release without their addresses would start workers that cannot place an order."""
    from tradeops.runtime.orderpath.providers import ADAPTERS

    values: dict[str, str] = {}
    for provider in ("primary", "secondary"):
        env, name = f"TRADEOPS_{provider.upper()}", provider.capitalize()
        url, wire = settings.broker_url(provider), settings.broker_wire(provider)
        if not url:
            raise BadInput(f"the release needs the {provider} broker's order API: set {env}_URL (and {env}_WIRE)")
        if not re.match(BROKER_URL, url):
            raise BadInput(f"{env}_URL {url!r} is not an http(s) URL")
        if wire not in ADAPTERS:
            raise BadInput(f"{env}_WIRE {wire!r} is not a wire tradeops has an adapter for ({', '.join(ADAPTERS)})")
        values.update({f"{name}BrokerUrl": url, f"{name}BrokerWire": wire})
    return values


BROKER_URL = r"^https?://[^\s]+$"
"""A broker's order API as the runtime template's AllowedPattern accepts it."""


def runtime_parameters(settings: Settings, base_outputs: dict[str, str]) -> dict[str, str]:
    """The runtime template's parameters that follow from the settings and the base stack's outputs (the rest
    are the image, the network and the certificate)."""
    missing = [k for k in BASE_OUTPUTS_FOR_RUNTIME if not base_outputs.get(k)]
    if missing:
        raise StackError(f"the base stack has no output {', '.join(missing)}: deploy the base template first")
    return {"NamePrefix": settings.name_prefix, "ParamPrefix": settings.param_prefix,
            **{k: base_outputs[k] for k in BASE_OUTPUTS_FOR_RUNTIME}}


# What `!GetAtt X.Attr` (or `${X.Attr}` in a Sub) gives, by resource type, for the resources this module
# creates or completes: from the physical id (and the account).
_ATTRIBUTES: dict[tuple[str, str], Any] = {
    ("AWS::SQS::Queue", "QueueName"): lambda physical, account, region: physical.rstrip("/").rsplit("/", 1)[-1],
    ("AWS::ECS::Service", "Name"): lambda physical, account, region: physical.rsplit("/", 1)[-1],
    ("AWS::IAM::Role", "Arn"): lambda physical, account, region: f"arn:aws:iam::{account}:role/{physical}",
    ("AWS::S3::Bucket", "Arn"): lambda physical, account, region: f"arn:aws:s3:::{physical}",
    ("AWS::DynamoDB::Table", "Arn"):
        lambda physical, account, region: f"arn:aws:dynamodb:{region}:{account}:table/{physical}",
    ("AWS::Events::Rule", "Arn"): lambda physical, account, region: (
        physical if physical.startswith("arn:") else f"arn:aws:events:{region}:{account}:rule/{physical}"),
}


_NO_VALUE = object()
"""What ``!Ref AWS::NoValue`` resolves to: the property, or the list item, is left out."""


def template_conditions(doc: dict[str, Any], params: dict[str, Any]) -> dict[str, bool]:
    """Each of the template's conditions, evaluated with ``params`` (what ``!Ref`` of each parameter gives)."""
    specs = doc.get("Conditions") or {}
    known: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return params.get(node["Ref"])
        if isinstance(node, dict) and len(node) == 1:
            return truth(node)
        return node

    def truth(node: Any) -> bool:
        (name, arg), = node.items()
        if name == "Fn::Equals":
            return bool(str(value(arg[0])) == str(value(arg[1])))
        if name == "Fn::Not":
            return not truth(arg[0])
        if name == "Fn::And":
            return all(truth(a) for a in arg)
        if name == "Fn::Or":
            return any(truth(a) for a in arg)
        if name == "Condition":
            return condition(arg)
        raise StackError(f"template: condition function {name} is not one the local stack evaluates")

    def condition(name: str) -> bool:
        if name not in known:
            known[name] = truth(specs[name])
        return known[name]

    return {name: condition(name) for name in specs}


class _Resolver:
    """Resolves the intrinsic functions the skipped and completed resources use (Ref, Sub, GetAtt, If, Select,
    Split)."""

    def __init__(self, params: dict[str, Any], physical: dict[str, str], region: str, account: str, *,
                 types: dict[str, str], conditions: dict[str, bool] | None = None) -> None:
        self.values = {**params, "AWS::Region": region, "AWS::AccountId": account,
                       "AWS::Partition": "aws", **physical}
        self.account = account
        self.types = types
        self.conditions = conditions or {}

    def attribute(self, logical: str, attr: str) -> str:
        if f"{logical}.{attr}" in self.values:  # read from the emulator (_read_attributes)
            return str(self.values[f"{logical}.{attr}"])
        convert = _ATTRIBUTES.get((self.types.get(logical, ""), attr))
        if convert is None or logical not in self.values:
            raise StackError(f"template: GetAtt {logical}.{attr} cannot be resolved for a resource"
                             " the emulator skipped")
        return str(convert(self.values[logical], self.account, self.values["AWS::Region"]))

    def _sub(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self.values:
                return str(self.values[name])
            if "." in name:
                return self.attribute(*name.split(".", 1))
            raise StackError(f"template: ${{{name}}} names no parameter or resource")
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return _NO_VALUE if value["Ref"] == "AWS::NoValue" else self.values[value["Ref"]]
        if set(value) == {"Fn::Sub"}:
            return self._sub(value["Fn::Sub"])
        if set(value) == {"Fn::GetAtt"}:
            return self.attribute(*value["Fn::GetAtt"])
        if set(value) == {"Fn::If"}:
            name, then, otherwise = value["Fn::If"]
            return self(then if self.conditions[name] else otherwise)
        if set(value) == {"Fn::Select"}:
            index, items = value["Fn::Select"]
            return self(items)[int(index)]
        if set(value) == {"Fn::Split"}:
            separator, text = value["Fn::Split"]
            return str(self(text)).split(separator)
        return {k: resolved for k, v in value.items() if (resolved := self(v)) is not _NO_VALUE}


def _read_attributes(aws: Aws, doc: dict[str, Any], created: dict[str, str]) -> dict[str, str]:
    """Attributes of resources the emulator created that no physical id gives, read back from its API as
    ``LOGICAL.ATTRIBUTE``: a load balancer's DNS name (the runtime stack's drill task reaches the gate by it)."""
    found: dict[str, str] = {}
    for logical, physical in created.items():
        if doc["Resources"].get(logical, {}).get("Type") == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            with aws_errors(f"read load balancer {logical}"):
                (balancer,) = aws.client("elbv2").describe_load_balancers(LoadBalancerArns=[physical])["LoadBalancers"]
            found[f"{logical}.DNSName"] = str(balancer["DNSName"])
    return found


def _typed(aws: Aws, service: str, operation: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with each value of the type the API's model says: a template's numbers arrive as strings
    (`!Ref` of a Number parameter is a string), and botocore refuses a string where it wants a number."""
    shape = aws.client(service).meta.service_model.operation_model(operation).input_shape
    return _coerce(shape, args)


def _coerce(shape: Any, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: _coerce(shape.members[k], v) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_coerce(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _coerce(shape.value, v) for k, v in value.items()}
    if kind in ("integer", "long") and isinstance(value, str):
        return int(value)
    if kind in ("double", "float") and isinstance(value, str):
        return float(value)
    if kind == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    return value


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
    args = _typed(aws, "cloudwatch", "PutMetricAlarm", {k: props[k] for k in keys if k in props})
    aws.cloudwatch.put_metric_alarm(**args)
    return args["AlarmName"]


def _create_scalable_target(aws: Aws, props: dict[str, Any]) -> str:
    keys = ("ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity", "RoleARN")
    args = _typed(aws, "application-autoscaling", "RegisterScalableTarget",
                  {k: props[k] for k in keys if k in props})
    aws.client("application-autoscaling").register_scalable_target(**args)
    # CloudFormation's physical id of a scalable target, which `!Ref` gives its policies' ScalingTargetId.
    return f"{args['ResourceId']}|{args['ScalableDimension']}|{args['ServiceNamespace']}"


def _create_scaling_policy(aws: Aws, props: dict[str, Any]) -> str:
    resource_id, dimension, namespace = props["ScalingTargetId"].split("|")
    keys = ("PolicyName", "PolicyType", "TargetTrackingScalingPolicyConfiguration",
            "StepScalingPolicyConfiguration")
    args = _typed(aws, "application-autoscaling", "PutScalingPolicy",
                  {"ServiceNamespace": namespace, "ResourceId": resource_id, "ScalableDimension": dimension,
                   **{k: props[k] for k in keys if k in props}})
    return aws.client("application-autoscaling").put_scaling_policy(**args)["PolicyARN"]


def _create_bucket_policy(aws: Aws, props: dict[str, Any]) -> str:
    aws.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
    return str(props["Bucket"])


def _create_trail(aws: Aws, props: dict[str, Any]) -> str:
    trail = aws.client("cloudtrail")
    keys = ("S3BucketName", "IncludeGlobalServiceEvents", "EnableLogFileValidation", "IsMultiRegionTrail")
    trail.create_trail(**_typed(aws, "cloudtrail", "CreateTrail",
                                      {"Name": props["TrailName"], **{k: props[k] for k in keys if k in props}}))
    if props.get("AdvancedEventSelectors"):
        trail.put_event_selectors(TrailName=props["TrailName"], AdvancedEventSelectors=props["AdvancedEventSelectors"])
    if str(props.get("IsLogging")).lower() == "true":
        trail.start_logging(Name=props["TrailName"])
    return str(props["TrailName"])  # what `!Ref` of a trail gives


def _create_topic_policy(aws: Aws, props: dict[str, Any]) -> str:
    for topic in props["Topics"]:
        aws.client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy",
                                               AttributeValue=json.dumps(props["PolicyDocument"]))
    return ",".join(props["Topics"])


def fis_template_request(props: dict[str, Any]) -> dict[str, Any]:
    """An ``AWS::FIS::ExperimentTemplate``'s resolved properties as FIS's CreateExperimentTemplate request.

    The keys of its maps (targets, actions, parameters, tags) are names of the template's own and stay
    as written; only the properties' names change case."""
    def target(spec: dict[str, Any]) -> dict[str, Any]:
        out = {"resourceType": spec["ResourceType"], "selectionMode": spec["SelectionMode"]}
        for key, name in (("Parameters", "parameters"), ("ResourceArns", "resourceArns"),
                          ("ResourceTags", "resourceTags")):
            if key in spec:
                out[name] = spec[key]
        return out

    def action(spec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"actionId": spec["ActionId"]}
        if "Parameters" in spec:
            out["parameters"] = {k: str(v) for k, v in spec["Parameters"].items()}
        if "Targets" in spec:
            out["targets"] = dict(spec["Targets"])
        return out

    request: dict[str, Any] = {
        "description": props["Description"], "roleArn": props["RoleArn"],
        "targets": {name: target(spec) for name, spec in (props.get("Targets") or {}).items()},
        "actions": {name: action(spec) for name, spec in props["Actions"].items()},
        "stopConditions": [{"source": c["Source"], **({"value": c["Value"]} if "Value" in c else {})}
                           for c in props["StopConditions"]],
        "tags": {k: str(v) for k, v in (props.get("Tags") or {}).items()},
    }
    options = props.get("ExperimentOptions") or {}
    if options:
        request["experimentOptions"] = {k[:1].lower() + k[1:]: v for k, v in options.items()}
    return request


def _create_experiment_template(aws: Aws, props: dict[str, Any]) -> str:
    return str(aws.client("fis").create_experiment_template(**fis_template_request(props))["experimentTemplate"]["id"])


# Resource types the emulator's CloudFormation skips, and how to create them instead. Each returns the
# physical id CloudFormation would give (what `!Ref` of it resolves to).
_FALLBACK_CREATORS = {
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::S3::BucketPolicy": _create_bucket_policy,
    "AWS::CloudTrail::Trail": _create_trail,
    "AWS::SNS::TopicPolicy": _create_topic_policy,
    "AWS::CloudWatch::Alarm": _create_alarm,
    "AWS::ApplicationAutoScaling::ScalableTarget": _create_scalable_target,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _create_scaling_policy,
    "AWS::FIS::ExperimentTemplate": _create_experiment_template,
}


def _complete_bucket(aws: Aws, name: str, props: dict[str, Any]) -> str:
    """Object Lock on a bucket the emulator created without it (its CloudFormation ignores the property).
    PutObjectLockConfiguration on a new, versioned bucket is how AWS itself enables it after creation."""
    lock = props.get("ObjectLockConfiguration") or {}
    if not props.get("ObjectLockEnabled"):
        return name
    s3 = aws.client("s3")
    try:
        if s3.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {}).get("ObjectLockEnabled"):
            return name
    except s3.exceptions.ClientError:
        pass  # not configured yet
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    config: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
    if lock.get("Rule"):
        config["Rule"] = {"DefaultRetention": lock["Rule"]["DefaultRetention"]}
    s3.put_object_lock_configuration(
        Bucket=name, **_typed(aws, "s3", "PutObjectLockConfiguration", {"ObjectLockConfiguration": config}))
    return name


def _complete_table(aws: Aws, name: str, props: dict[str, Any]) -> str:
    """Point-in-time recovery and the TTL on a table the emulator created without them."""
    if (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled"):
        aws.dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    ttl = props.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled") and aws.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"].get(
            "TimeToLiveStatus") != "ENABLED":
        aws.dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]})
    return name


def _camel(value: Any, *, verbatim: bool = False) -> Any:
    """A CloudFormation property (PascalCase keys) as the ECS API spells it (camelCase); the keys of an
    ``Options`` map (awslogs-group, ...) are the log driver's own and stay as they are."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if not isinstance(value, dict):
        return value
    if verbatim:
        return dict(value)
    return {k[:1].lower() + k[1:]: _camel(v, verbatim=k == "Options") for k, v in value.items()}


def _complete_task_definition(aws: Aws, arn: str, props: dict[str, Any]) -> str:
    """The emulator registers a task definition with its containers only: roles, network mode, Fargate
    and size dropped. Registered again here with all of them; the incomplete revision is retired."""
    ecs = aws.client("ecs")
    keys = ("Family", "ContainerDefinitions", "RequiresCompatibilities", "NetworkMode", "Cpu", "Memory",
            "TaskRoleArn", "ExecutionRoleArn", "RuntimePlatform", "PidMode", "EnableFaultInjection")
    args = _typed(aws, "ecs", "RegisterTaskDefinition", _camel({k: props[k] for k in keys if k in props}))
    registered = ecs.register_task_definition(**args)["taskDefinition"]["taskDefinitionArn"]
    ecs.deregister_task_definition(taskDefinition=arn)
    return registered


def _complete_service(aws: Aws, arn: str, props: dict[str, Any]) -> str:
    """The emulator creates a service with its name, task definition and count only (EC2, no network, no
    load balancer). Created again here with the template's properties, under the same name and ARN."""
    ecs = aws.client("ecs")
    cluster = props["Cluster"]
    keys = ("ServiceName", "TaskDefinition", "LaunchType", "DesiredCount", "NetworkConfiguration",
            "LoadBalancers", "PropagateTags", "DeploymentConfiguration", "HealthCheckGracePeriodSeconds")
    args = _typed(aws, "ecs", "CreateService", _camel({k: props[k] for k in keys if k in props}))
    args["serviceName"] = arn.rsplit("/", 1)[-1]
    ecs.delete_service(cluster=cluster, service=args["serviceName"], force=True)
    return ecs.create_service(cluster=cluster, **args)["service"]["serviceArn"]


# Resource types the emulator's CloudFormation creates with some properties left out, and how to apply them.
# Each returns the resource's physical id afterwards (a task definition's new revision).
_COMPLETERS = {
    "AWS::S3::Bucket": _complete_bucket,
    "AWS::DynamoDB::Table": _complete_table,
    "AWS::ECS::TaskDefinition": _complete_task_definition,
    "AWS::ECS::Service": _complete_service,
}


def deploy_stack(aws: Aws, settings: Settings, *, timeout: float = 60.0) -> dict[str, str]:
    """Create the base stack from its template and wait for it; return its outputs."""
    return _deploy(aws, settings.template, settings.stack_name, template_parameters(settings), settings.region,
                   timeout=timeout)


def stack_outputs(aws: Aws, stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs."""
    with aws_errors(f"read the outputs of stack {stack_name}"):
        stack = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deploy_runtime_stack(aws: Aws, settings: Settings, parameters: dict[str, str], *,
                         timeout: float = 60.0) -> dict[str, str]:
    """Create the runtime stack (``parameters``: the image, network and certificate) after the base stack,
    whose outputs it takes; return its outputs."""
    base = stack_outputs(aws, settings.stack_name)
    return _deploy(aws, runtime_template(), runtime_stack_name(settings.stack_name),
                   {**runtime_parameters(settings, base), **parameters}, settings.region, timeout=timeout)


def _parameter_values(doc: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """What `!Ref` of each parameter gives: its value or default, a list for a list-typed parameter."""
    values: dict[str, Any] = {}
    for name, spec in doc.get("Parameters", {}).items():
        if name not in given and "Default" not in spec:
            continue
        value = str(given.get(name, spec.get("Default")))
        kind = str(spec.get("Type", "String"))
        values[name] = value.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else value
    return values


def _deploy(aws: Aws, template: Path, stack_name: str, params: dict[str, str], region: str, *,
            timeout: float) -> dict[str, str]:
    text, doc = load_template(template)
    cfn = aws.client("cloudformation")
    with aws_errors("deploy template"):
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=text,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            # The operator role is named (runbooks/identity.py); the runtime's execution role is not.
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        deadline = time.monotonic() + timeout
        while True:
            stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                break
            if status.endswith("FAILED") or "ROLLBACK" in status:
                reason = stack.get("StackStatusReason", "no reason given")
                raise StackError(f"template failed to deploy: {status}: {reason}")
            if time.monotonic() > deadline:
                raise StackError(f"template did not deploy within {timeout:.0f}s (status {status})")
            time.sleep(0.2)
        summaries = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        physical = {s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries
                    if s.get("LogicalResourceId")}
        created = {k: v for k, v in physical.items() if v}
        account = aws.client("sts").get_caller_identity()["Account"]
        values = _parameter_values(doc, params)
        conditions = template_conditions(doc, values)
        resolve = _Resolver({**values, **_read_attributes(aws, doc, created)}, created, region, account,
                            types={k: v["Type"] for k, v in doc["Resources"].items()}, conditions=conditions)
        for logical, resource in doc["Resources"].items():
            if not conditions.get(resource.get("Condition", ""), True):
                continue  # not part of this stack (its condition is false)
            if created.get(logical):
                completer = _COMPLETERS.get(resource["Type"])
                if completer is not None:
                    created[logical] = completer(aws, created[logical], resolve(resource.get("Properties", {})))
                    resolve.values[logical] = created[logical]
                continue
            creator = _FALLBACK_CREATORS.get(resource["Type"])
            if creator is None:
                raise StackError(f"template resource {logical} ({resource['Type']}) was not created by the"
                                 " emulator and tradeops has no fallback for that type")
            created[logical] = creator(aws, resolve(resource.get("Properties", {})))
            resolve.values[logical] = created[logical]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
