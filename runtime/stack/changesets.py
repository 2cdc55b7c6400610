"""Releases to AWS as CloudFormation change sets: the base template, then the runtime template.

``tradeops deploy`` (commands/deploy.py) is a thin shell over this module, the way ``sam deploy``
and ``cdk deploy`` are over CloudFormation: it validates what it was given before anything is sent
(:func:`validate`), makes one change set per stack (:func:`plan`), shows it, asks, and executes it
(:func:`execute`), following the stack's events until it settles.

Stateful resources are the ones a change set must not replace or remove without a person saying so
by name: every resource a template keeps when the stack goes (``DeletionPolicy: Retain``, in the
template being deployed or the one deployed now) and every table, bucket and key whatever its policy.
A plan that would replace or remove one is refused before anything changes, and its change sets are
deleted, unless each such resource is named in ``allow_replace``.

On a first release the base stack does not exist yet, so the runtime template's imports cannot be
resolved and its change set can only be made once the base is deployed: the plan then lists the
runtime template's resources as additions, and :func:`execute` makes and runs its change set after
the base (a new stack's change set can only add).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tradeops.runtime.platform.aws import aws_errors, error_code
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import AwsError, BadInput, OperationFailed, Refused
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.deploy import (
    BASE_OUTPUTS_FOR_RUNTIME,
    load_template,
    parse_template,
    runtime_parameters,
    runtime_stack_name,
    runtime_template,
    stack_outputs,
    template_parameters,
)

__all__ = ["CERTIFICATE_ARN", "IMAGE_URI", "STATEFUL_TYPES", "Change", "Release", "StackPlan", "discard",
           "execute", "plan", "refuse_unsafe", "validate", "with_brokers"]

# What AWS itself accepts, checked here first so a bad value stops before anything is sent. The image and
# certificate patterns are the runtime template's own AllowedPattern (tests keep them equal).
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,119}$")  # 128 with the runtime stack's "-runtime"
IMAGE_URI = r"^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]{1,128}|@sha256:[a-f0-9]{64})$"
CERTIFICATE_ARN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$"
_IDS = {"vpc": re.compile(r"^vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?$"),
        "subnet": re.compile(r"^subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?$"),
        "security group": re.compile(r"^sg-[0-9a-f]{8}(?:[0-9a-f]{9})?$")}

STATEFUL_TYPES = frozenset({"AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::KMS::Key"})
# CloudFormation's answers for a change set that would change nothing.
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_CAPABILITIES = ["CAPABILITY_NAMED_IAM"]  # the base names its operator role; the runtime creates roles

Action = Literal["Add", "Modify", "Remove", "Import", "Dynamic"]


@dataclass(frozen=True)
class Release:
    """What one ``tradeops deploy`` was asked to release (validated by :func:`validate`)."""

    stack_name: str
    image: str | None
    vpc: str
    subnets: tuple[str, ...]
    service_groups: tuple[str, ...]
    balancer_groups: tuple[str, ...]
    certificate: str
    max_workers: int | None = None
    brokers: tuple[tuple[str, str], ...] = ()  # the runtime template's broker parameters (deploy.broker_parameters)


@dataclass(frozen=True)
class Change:
    """One resource change of a change set, as CloudFormation describes it."""

    logical_id: str
    resource_type: str
    action: str
    replacement: str | None  # "True", "False", "Conditional"; None for additions and removals
    stateful: bool

    @property
    def unsafe(self) -> bool:
        """It would replace or remove a stateful resource (a conditional replacement counts)."""
        return self.stateful and (self.action == "Remove" or self.replacement in ("True", "Conditional"))

    def as_dict(self) -> dict[str, Any]:
        return {"logical_id": self.logical_id, "type": self.resource_type, "action": self.action,
                "replacement": self.replacement, "stateful": self.stateful, "unsafe": self.unsafe}


@dataclass
class StackPlan:
    """One stack's part of a release: its change set and what it would change."""

    template: Literal["base", "runtime"]
    stack: str
    kind: Literal["CREATE", "UPDATE"]
    body: str
    parameters: list[dict[str, Any]]
    change_set: str | None = None
    changes: list[Change] = field(default_factory=list)
    status: Literal["ready", "no changes", "after the base"] = "ready"
    outputs: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"template": self.template, "stack": self.stack, "kind": self.kind, "change_set": self.change_set,
                "status": self.status, "changes": [c.as_dict() for c in self.changes], "outputs": self.outputs}


def _ids(kind: str, values: Iterable[str], *, least: int = 1) -> tuple[str, ...]:
    found = tuple(dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip()))
    if len(found) < least:
        raise BadInput(f"give at least {least} {kind} id{'s' if least > 1 else ''}"
                       + (" (in at least two Availability Zones)" if kind == "subnet" else ""))
    for value in found:
        if not _IDS[kind].match(value):
            raise BadInput(f"{value!r} is not a {kind} id ({_IDS[kind].pattern})")
    return found


def validate(*, stack_name: str, image: str | None, vpc: str | None, subnets: Iterable[str],
             service_groups: Iterable[str], balancer_groups: Iterable[str], certificate: str | None,
             max_workers: int | None = None) -> Release:
    """The release, or BadInput (exit 2) with one line naming the first bad value. Sends nothing."""
    if not STACK_NAME.match(stack_name):
        raise BadInput(f"stack name {stack_name!r} is not one CloudFormation accepts: a letter, then letters, "
                       "digits and hyphens, at most 120 characters")
    if image is not None and not re.match(IMAGE_URI, image):
        raise BadInput(f"{image!r} is not an image URI: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST")
    if not vpc:
        raise BadInput("give the VPC the services run in (--vpc)")
    (vpc,) = _ids("vpc", [vpc])
    if not certificate:
        raise BadInput("give the ACM certificate of the intake's HTTPS listener (--certificate)")
    if not re.match(CERTIFICATE_ARN, certificate):
        raise BadInput(f"{certificate!r} is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)")
    return Release(stack_name=stack_name, image=image, vpc=vpc, subnets=_ids("subnet", subnets, least=2),
                   service_groups=_ids("security group", service_groups),
                   balancer_groups=_ids("security group", balancer_groups), certificate=certificate,
                   max_workers=max_workers)


def with_brokers(release: Release, brokers: dict[str, str]) -> Release:
    """``release`` with the runtime template's broker parameters (:func:`.deploy.broker_parameters`)."""
    return replace(release, brokers=tuple(sorted(brokers.items())))


def _parameters(values: dict[str, str | None]) -> list[dict[str, Any]]:
    """CloudFormation's parameter list; a value of None keeps the deployed one (UsePreviousValue)."""
    return [{"ParameterKey": k, "UsePreviousValue": True} if v is None else {"ParameterKey": k, "ParameterValue": v}
            for k, v in values.items()]


def _stack_status(cfn: Any, name: str) -> str | None:
    """The stack's status, or None when there is none (a deleted stack is none)."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    status = stacks[0]["StackStatus"] if stacks else None
    return None if status in (None, "DELETE_COMPLETE") else status


def _kind(cfn: Any, name: str) -> Literal["CREATE", "UPDATE"]:
    status = _stack_status(cfn, name)
    if status == "REVIEW_IN_PROGRESS":
        raise Refused(f"stack {name} is waiting on another change set (REVIEW_IN_PROGRESS): delete it first")
    if status == "ROLLBACK_COMPLETE":
        raise Refused(f"stack {name} failed to create and was rolled back (ROLLBACK_COMPLETE): delete it, then deploy "
                      f"again (`aws cloudformation delete-stack --stack-name {name}`)")
    if status is not None and status.endswith("_IN_PROGRESS"):
        raise Refused(f"stack {name} is busy ({status}): wait for it to settle")
    return "CREATE" if status is None else "UPDATE"


def _stateful(*docs: dict[str, Any]) -> set[str]:
    return {logical for doc in docs for logical, resource in doc.get("Resources", {}).items()
            if resource.get("DeletionPolicy") == "Retain" or resource.get("Type") in STATEFUL_TYPES}


def _deployed_template(cfn: Any, name: str) -> dict[str, Any]:
    body = cfn.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
    return body if isinstance(body, dict) else parse_template(body, f"of stack {name}")


def plan(aws: Any, settings: Settings, release: Release) -> list[StackPlan]:
    """Make the change sets of a release (base, then runtime) and read what they would change."""
    cfn = aws.client("cloudformation")
    base_text, _ = load_template(settings.template)
    runtime_text, runtime_doc = load_template(runtime_template())
    base = StackPlan("base", release.stack_name, "CREATE", base_text,
                     _parameters(dict(template_parameters(settings))))
    runtime = StackPlan("runtime", runtime_stack_name(release.stack_name), "CREATE", runtime_text, [])
    plans = [base, runtime]
    try:
        with aws_errors("plan the release"):
            base.kind = _kind(cfn, base.stack)
            runtime.kind = _kind(cfn, runtime.stack)
            if runtime.kind == "CREATE" and release.image is None:
                raise BadInput("the first release of the runtime needs --image (the image the services run)")
            _make_change_set(cfn, base)
            if base.kind == "CREATE":
                runtime.status = "after the base"
                runtime.changes = [Change(k, r["Type"], "Add", None, k in _stateful(runtime_doc))
                                   for k, r in runtime_doc["Resources"].items()]
            else:
                runtime.parameters = _runtime_parameters(settings, release, stack_outputs(aws, base.stack))
                _make_change_set(cfn, runtime)
    except BaseException:
        discard(aws, plans)
        raise
    return plans


def _runtime_parameters(settings: Settings, release: Release, base_outputs: dict[str, str]) -> list[dict[str, Any]]:
    values: dict[str, str | None] = {
        **runtime_parameters(settings, base_outputs), "Image": release.image,
        "VpcId": release.vpc, "PrivateSubnetIds": ",".join(release.subnets),
        "ServiceSecurityGroupIds": ",".join(release.service_groups),
        "LoadBalancerSecurityGroupIds": ",".join(release.balancer_groups), "CertificateArn": release.certificate,
        **dict(release.brokers)}
    if release.max_workers is not None:
        values["WorkerMaxTasks"] = str(release.max_workers)
    return _parameters(values)


def _make_change_set(cfn: Any, stack: StackPlan, *, timeout: float = 300.0, poll: float = 1.0) -> None:
    """Create ``stack``'s change set and wait for CloudFormation to compute it; read its changes."""
    name = f"tradeops-{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}"
    created = cfn.create_change_set(StackName=stack.stack, ChangeSetName=name, ChangeSetType=stack.kind,
                                    TemplateBody=stack.body, Parameters=stack.parameters,
                                    Capabilities=_CAPABILITIES,
                                    Description="tradeops deploy")
    stack.change_set = created["Id"]
    deadline = time.monotonic() + timeout
    while True:
        described = cfn.describe_change_set(ChangeSetName=stack.change_set, StackName=stack.stack)
        status = described["Status"]
        if status == "CREATE_COMPLETE":
            break
        if status == "FAILED":
            reason = described.get("StatusReason") or "no reason given"
            if any(text in reason for text in _NO_CHANGES):
                cfn.delete_change_set(ChangeSetName=stack.change_set, StackName=stack.stack)
                stack.change_set, stack.status = None, "no changes"
                return
            raise OperationFailed(f"CloudFormation refused the change set of stack {stack.stack}: {reason} "
                                  "(nothing was changed)")
        if time.monotonic() > deadline:
            raise OperationFailed(f"the change set of stack {stack.stack} was not ready within {timeout:.0f}s")
        time.sleep(poll)
    stateful = _stateful(parse_template(stack.body))
    if stack.kind == "UPDATE":
        stateful |= _stateful(_deployed_template(cfn, stack.stack))
    changes: list[Change] = []
    while True:
        for entry in described.get("Changes", []):
            rc = entry.get("ResourceChange") or {}
            logical = rc.get("LogicalResourceId", "")
            changes.append(Change(logical, rc.get("ResourceType", ""), rc.get("Action", ""), rc.get("Replacement"),
                                  logical in stateful or rc.get("ResourceType") in STATEFUL_TYPES))
        token = described.get("NextToken")
        if not token:
            break
        described = cfn.describe_change_set(ChangeSetName=stack.change_set, StackName=stack.stack, NextToken=token)
    stack.changes = changes
    if not changes and stack.kind == "UPDATE":
        # Nothing to run (CloudFormation usually refuses such a change set itself, as "didn't contain changes").
        cfn.delete_change_set(ChangeSetName=stack.change_set, StackName=stack.stack)
        stack.change_set, stack.status = None, "no changes"


def refuse_unsafe(aws: Any, plans: list[StackPlan], allow_replace: Iterable[str]) -> None:
    """Refused (nothing changed, the change sets deleted) when a change would replace or remove a stateful
    resource not named in ``allow_replace``."""
    allowed = set(allow_replace)
    unsafe = [(p, c) for p in plans for c in p.changes if c.unsafe and c.logical_id not in allowed]
    if not unsafe:
        return
    discard(aws, plans)
    named = ", ".join(f"{c.logical_id} ({c.resource_type}, {'remove' if c.action == 'Remove' else 'replace'})"
                      for _, c in unsafe)
    flags = " ".join(f"--allow-replace {c.logical_id}" for _, c in unsafe)
    raise Refused(f"the release would replace or remove stateful resources: {named}; nothing was changed and the "
                  f"change sets are deleted ({flags} to allow it)")


def discard(aws: Any, plans: list[StackPlan]) -> None:
    """Delete the plans' change sets, and a stack that exists only to hold one (a first release's)."""
    cfn = aws.client("cloudformation")
    for stack in plans:
        if stack.change_set is None:
            continue
        with aws_errors(f"delete the change set of stack {stack.stack}"):
            cfn.delete_change_set(ChangeSetName=stack.change_set, StackName=stack.stack)
            if stack.kind == "CREATE" and _stack_status(cfn, stack.stack) == "REVIEW_IN_PROGRESS":
                cfn.delete_stack(StackName=stack.stack)
        stack.change_set = None


_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
_SETTLED_BADLY = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED",
                  "CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED", "DELETE_COMPLETE")


def execute(aws: Any, settings: Settings, release: Release, plans: list[StackPlan], *,
            on_event: Callable[[str, dict[str, Any]], None], poll: float = 2.0, timeout: float = 3600.0) -> None:
    """Execute the plans' change sets in order, each once the one before has settled; a deferred runtime
    change set is made first, from the base's new outputs (a new stack's change set can only add).
    ``on_event(stack, event)`` sees each stack event as it comes.

    A stack that does not settle as complete raises OperationFailed with CloudFormation's own reason: an
    update has been rolled back, so that stack is as it was."""
    cfn = aws.client("cloudformation")
    base, runtime = plans
    with aws_errors(f"deploy stack {base.stack}"):
        before = stack_outputs(aws, base.stack) if base.kind == "UPDATE" else {}
        _run(cfn, base, on_event, poll=poll, timeout=timeout)
        base.outputs = stack_outputs(aws, base.stack)
    with aws_errors(f"deploy stack {runtime.stack}"):
        if runtime.status == "after the base":
            runtime.status = "ready"
            runtime.parameters = _runtime_parameters(settings, release, base.outputs)
            _make_change_set(cfn, runtime)
            refuse_unsafe(aws, [runtime], ())
        elif any(before.get(k) != base.outputs.get(k) for k in BASE_OUTPUTS_FOR_RUNTIME):
            # The runtime's change set was made from the outputs the base had: it is not what would run now.
            discard(aws, [runtime])
            raise OperationFailed(f"the base stack {base.stack} is deployed and its outputs for the runtime changed: "
                                  "run tradeops deploy again to see the runtime's change set")
        _run(cfn, runtime, on_event, poll=poll, timeout=timeout)
        runtime.outputs = stack_outputs(aws, runtime.stack)


def _run(cfn: Any, stack: StackPlan, on_event: Callable[[str, dict[str, Any]], None], *, poll: float,
         timeout: float) -> None:
    if stack.status != "ready" or stack.change_set is None:
        return
    seen = {e["EventId"] for e in _events(cfn, stack.stack)} if stack.kind == "UPDATE" else set()
    cfn.execute_change_set(ChangeSetName=stack.change_set, StackName=stack.stack)
    stack.change_set = None  # executed: nothing left to discard
    _follow(cfn, stack, seen, on_event, poll=poll, timeout=timeout)


def _events(cfn: Any, name: str) -> list[dict[str, Any]]:
    """The stack's newest events (one page: CloudFormation answers newest first), oldest first."""
    return list(reversed(cfn.describe_stack_events(StackName=name).get("StackEvents", [])))


def _follow(cfn: Any, stack: StackPlan, seen: set[str], on_event: Callable[[str, dict[str, Any]], None], *,
            poll: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    failures: list[dict[str, Any]] = []
    while True:
        for event in _events(cfn, stack.stack):
            if event["EventId"] in seen:
                continue
            seen.add(event["EventId"])
            on_event(stack.stack, event)
            if str(event.get("ResourceStatus", "")).endswith("_FAILED") and event.get("ResourceStatusReason"):
                failures.append(event)
        status = _stack_status(cfn, stack.stack) or "DELETE_COMPLETE"
        if status in _DONE:
            return
        if status in _SETTLED_BADLY:
            first = failures[0] if failures else {}
            reason = first.get("ResourceStatusReason") or "CloudFormation gave no reason"
            where = f"{first['LogicalResourceId']}: " if first.get("LogicalResourceId") else ""
            state = ("it is back as it was" if status == "UPDATE_ROLLBACK_COMPLETE"
                     else "delete it before deploying again" if status == "ROLLBACK_COMPLETE" else "")
            raise OperationFailed(f"stack {stack.stack} did not deploy ({status}{'; ' + state if state else ''}): "
                                  f"{where}{reason}")
        if time.monotonic() > deadline:
            raise AwsError(f"stack {stack.stack} did not settle within {timeout:.0f}s (status {status})")
        time.sleep(poll)
