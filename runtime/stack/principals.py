"""The enforcing local stack's principals: IAM users of the emulator holding the deployed template's own policies.

With ``tradeops up --enforce`` the emulator runs with IAM access control on (moto's
``INITIAL_NO_AUTH_ACTION_COUNT``; :func:`tradeops.runtime.stack.emulator.authorize_resources` names the
resources of DynamoDB, SSM, SNS and Secrets Manager requests so that the template's statements mean there
what they mean on AWS). Then every request must be signed by a known IAM user, and is allowed only what
that user's policies allow:

- **admin** (:func:`create_admin`): made by the emulator's first, unauthenticated requests, allowed
  everything; it deploys the template, makes the other principals and seeds the roster, as the person who
  deploys a firm's stack does. Its key stays with the supervisor and in the principals file.
- **the people**: one user per person of the operators file, holding the operator policy
  (``<prefix>-operate``) as the deploy left it in IAM, read back, never copied by hand
  (:func:`deployed_policies`). The CLI signs with the key of ``TRADEOPS_OPERATOR``.
- **the gate**: one user holding GateRole's policy, read back the same way; the stack's gate runs as it.
- **the runtime**: one user the components (workers, intake, monitor, canary, price feed, audit anchorer) run
  as, allowed everything, as on a stack without enforcement. Their own roles (WorkerRole, MonitorRole) are not
  used here: moto names the resource of a Kinesis, CloudWatch or KMS request ``*``, which no statement naming
  a stream or a key matches, so the components would be refused what AWS allows them. What the components
  call is checked against their roles by tests/test_aws_permissions.py instead.

The keys are written to one file under the state directory, readable only by the user (:func:`write_keys`).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import boto3

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import ConfigError, StackError
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings

__all__ = ["ALLOW_ALL", "NO_AUTH_REQUESTS", "as_admin", "check_people", "create_admin", "create_user",
           "deployed_policies", "make_principals", "signing_env", "write_keys"]

ALLOW_ALL: Final = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
NO_AUTH_REQUESTS: Final = 3
"""The emulator's unauthenticated requests (``INITIAL_NO_AUTH_ACTION_COUNT``): the three that make the admin."""

Key = dict[str, str]  # {"user", "arn", "access_key_id", "secret_access_key"}


def create_user(iam: Any, name: str, policy: Mapping[str, Any]) -> Key:
    """An IAM user ``name`` holding ``policy`` (inline), with an access key: three requests."""
    user = iam.create_user(UserName=name)["User"]
    iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"user": name, "arn": user["Arn"], "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"]}


def create_admin(settings: Settings) -> Key:
    """The admin user, made by the emulator's :data:`NO_AUTH_REQUESTS` unauthenticated requests."""
    iam = boto3.client("iam", endpoint_url=settings.aws_endpoint_url, region_name=settings.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 - no user yet
    with aws_errors("create the emulator's admin user"):
        return create_user(iam, "admin", ALLOW_ALL)


_EMULATOR_SERVICES: Final = {"cloudwatch": "monitoring"}
"""IAM's service prefixes the emulator names otherwise: it authorizes a request as ``<signing name>:<operation>``, and
CloudWatch's SigV4 signing name is ``monitoring``, so ``cloudwatch:PutMetricData`` (what AWS checks) never matched
there and every inline metric of the gate's and the people's (``FlagChanged``) was refused."""


def _emulator_actions(actions: Any) -> Any:
    """``actions`` (a statement's Action) with each action of :data:`_EMULATOR_SERVICES` also under the emulator's
    name for it: the same permission, not a wider one (moto checks no condition either way)."""
    listed = [actions] if isinstance(actions, str) else list(actions)
    extra = [f"{_EMULATOR_SERVICES[service]}:{name}" for service, _, name in (a.partition(":") for a in listed)
             if service in _EMULATOR_SERVICES]
    return listed + extra if extra else actions


def _resolved(document: Any, secrets: list[str]) -> dict[str, Any]:
    # The emulator answers a policy document as Python's repr of what the template resolved to.
    document = ast.literal_eval(document) if isinstance(document, str) else document
    for statement in document["Statement"]:
        if "Action" in statement:
            statement["Action"] = _emulator_actions(statement["Action"])
        # Its CloudFormation skips the broker secrets (the deploy creates them after), so a role's !Ref to them
        # resolves to nothing: they are the two secrets' ARNs, as on AWS.
        if statement.get("Resource") == [None, None]:
            statement["Resource"] = secrets
    return dict(document)


def deployed_policies(aws: Aws) -> dict[str, dict[str, Any]]:
    """The operator policy (``<prefix>-operate``) and GateRole's policy as the deploy left them in IAM."""
    names = names_for(aws.settings)
    iam = aws.client("iam")
    prefix = aws.settings.name_prefix
    with aws_errors("read the deployed policies back from IAM"):
        secrets = [aws.secrets.describe_secret(SecretId=names.broker_secret(p))["ARN"]
                   for p in ("primary", "secondary")]
        found = [p for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"] == f"{prefix}-operate"]
        if len(found) != 1:
            raise StackError(f"the deploy left no managed policy {prefix}-operate to give the people")
        operate = iam.get_policy_version(PolicyArn=found[0]["Arn"], VersionId=found[0]["DefaultVersionId"])
        gate = iam.get_role_policy(RoleName=f"{prefix}-gate", PolicyName="gate")
    return {"operate": _resolved(operate["PolicyVersion"]["Document"], secrets),
            "gate": _resolved(gate["PolicyDocument"], secrets)}


def as_admin(settings: Settings) -> tuple[Settings, Key]:
    """``settings`` signing as a new admin user made by the emulator's first, unauthenticated requests; its key."""
    admin = create_admin(settings)
    return settings.model_copy(update={"emulator_access_key_id": admin["access_key_id"],
                                       "emulator_secret_access_key": admin["secret_access_key"],
                                       "enforce": True}), admin


def make_principals(aws: Aws, people: Iterable[str], *, admin: Key, keys_file: Path) -> dict[str, Any]:
    """The gate, the runtime and one user per person, as ``admin`` (whose key ``aws`` signs with) makes them (see
    the module docstring); every key, the admin's included, written to ``keys_file`` (:func:`write_keys`)."""
    policies = deployed_policies(aws)
    iam = aws.client("iam")
    prefix = aws.settings.name_prefix
    with aws_errors("create the stack's principals"):
        made = {"gate": create_user(iam, f"{prefix}-gate", policies["gate"]),
                "runtime": create_user(iam, f"{prefix}-runtime", ALLOW_ALL),
                "people": {name: create_user(iam, name, policies["operate"]) for name in people}}
    write_keys(keys_file, {"admin": admin, **made})
    return made


def signing_env(key: Mapping[str, str]) -> dict[str, str]:
    """The environment a component signs with ``key`` under: our clients' setting, and boto3's own variables."""
    return {"TRADEOPS_EMULATOR_ACCESS_KEY_ID": key["access_key_id"],
            "TRADEOPS_EMULATOR_SECRET_ACCESS_KEY": key["secret_access_key"],
            "AWS_ACCESS_KEY_ID": key["access_key_id"], "AWS_SECRET_ACCESS_KEY": key["secret_access_key"]}


def check_people(settings: Settings, *, local: bool, people: tuple[str, ...]) -> None:
    """An emulator that enforces IAM needs its people (ConfigError, exit 2, before anything starts)."""
    if local and settings.enforce and not people:
        raise ConfigError("a stack that enforces IAM needs its people: name them in the operators file "
                          "(TRADEOPS_OPERATORS_FILE or ./operators.yaml)")


def write_keys(path: Path, keys: Mapping[str, Any]) -> None:
    """Write the principals' keys to ``path``, readable only by the user (created so: never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keys, fh, indent=2, sort_keys=True)
    os.chmod(path, 0o600)

