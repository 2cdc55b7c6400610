"""Who is executing or approving, and which roles they hold.

**Identities people cannot choose.** Against real AWS an identity is derived from the STS caller
ARN, and only from the parts of it the caller cannot pick:

- an IAM user (``arn:aws:iam::ACCOUNT:user/NAME``) is that user (its path dropped: a user name is
  unique in its account);
- an IAM Identity Center session (role ``AWSReservedSSO_*``) is the Identity Center user whose name
  AWS writes into the session (``identity-center:NAME``), but only for a role Identity Center made:
  one under the ``/aws-reserved/sso.amazonaws.com/`` path (anyone allowed to create roles can name
  one ``AWSReservedSSO_x``, not put it under that path), in the account tradeops runs in;
- a session of an *operator role* is the IAM user the role's trust policy binds it to: the template
  requires ``sts:RoleSessionName`` and ``sts:SourceIdentity`` to equal ``${aws:username}``, so the
  session name is the caller's own user name and the identity is ``arn:aws:iam::ACCOUNT:user/NAME``.
  When the source identity is known (the AssumeRole answer, a CloudTrail record), a session whose
  source identity differs from its name is refused. The template's roles (``<prefix>-operator``,
  ``<prefix>-break-glass``) are two; ``TRADEOPS_OPERATOR_ROLES`` names others with the same condition;
- a session of the runtime template's drill task role (``<prefix>-drill-task``, which only ECS tasks of the
  account can assume) is a scheduled drill's automation: the drill identity ``drill-task:ROLE/TASK``, whose
  approvals never count as four-eyes and which the approval gate lets set a guarded flag only where its own
  configuration allows drills;
- anything else (a session of another role, whose name whoever calls AssumeRole picks; a federated
  user; the root user) is refused: it cannot say which person acts.

On the local stack (an endpoint override) STS answers for a fixed test account, so the identity is
``TRADEOPS_OPERATOR`` or, failing that, the OS user; every record says which source it came from so a
report never passes a typed name off as proven. A local stack that enforces IAM (``tradeops up --enforce``)
is the exception: each person is an IAM user of the emulator, the command signs with the key of the
person ``TRADEOPS_OPERATOR`` names, and the identity is the user ARN STS answers for that key, as on AWS
(its roster lists the operators file's people as those ARNs: :func:`as_iam_users`).

**The operators file** maps those base identities to roles, and names the roles that may use
break-glass (a direct change that skips four-eyes, always audited and alerted)::

    operators:
      alice: [duty-engineer]                                  # local stack
      "arn:aws:iam::123456789012:user/bob": [ops-manager]     # IAM user, or operator-role session
      "identity-center:carol@example.com": [risk]             # IAM Identity Center user
    break_glass: [ops-manager]

An entry the rules above could never produce (a session ARN, whose name a caller chooses; a role
ARN) is refused as ambiguous, and so is the same identity listed twice. Identities compare ignoring
case and surrounding spaces (``Bob`` is ``bob``), in the file and in every role lookup. The file only *seeds* or
*proposes* the shared roster (:mod:`tradeops.runbooks.roster`); decisions use the shared one.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tradeops.runbooks.approvals import DRILL_PREFIX, identity_key, roles_held
from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import BadInput, ConfigError, Refused
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings

__all__ = [
    "SSO_ROLE_PATH",
    "Identity",
    "Operators",
    "as_iam_users",
    "as_target_identities",
    "bound_roles",
    "break_glass_users",
    "current_identity",
    "drill_roles",
    "iam_user_name",
    "identity_from_arn",
    "load_operators",
    "operators_path",
    "parse_operators",
    "sso_role",
]

_ARN = re.compile(r"^arn:(aws[a-z-]*):(iam|sts)::(\d{12}):(.+)$")
_LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_CENTER_NAME = re.compile(r"^identity-center:[^\s:/]{1,128}$")
_SSO_ROLE = "AWSReservedSSO_"
SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
"""Where IAM Identity Center puts the roles of its permission sets (a region may follow); nobody else can."""


@dataclass(frozen=True)
class Identity:
    name: str
    source: str  # where the name came from: iam-user, identity-center, operator-role, TRADEOPS_OPERATOR or os-user

    def __str__(self) -> str:
        return self.name


def bound_roles(settings: Settings) -> frozenset[str]:
    """Roles whose session name is bound to the caller's user name (the template's, plus TRADEOPS_OPERATOR_ROLES)."""
    extra = {r.strip() for r in settings.operator_roles.split(",") if r.strip()}
    names = names_for(settings)
    return frozenset({names.operator_role, names.break_glass_role, *extra})


def drill_roles(settings: Settings) -> frozenset[str]:
    """Roles whose sessions are a scheduled drill's task (the runtime template's ``DrillTaskRole``): its trust
    policy lets only ECS tasks of the account assume it."""
    return frozenset({names_for(settings).drill_task_role})


def sso_role(arn: str) -> str | None:
    """The role name of an IAM Identity Center session ARN (``AWSReservedSSO_*``), else None (pure)."""
    match = _ARN.match(arn)
    if not match or match.group(2) != "sts":
        return None
    kind, _, rest = match.group(4).partition("/")
    role = rest.partition("/")[0]
    return role if kind == "assumed-role" and role.startswith(_SSO_ROLE) else None


def identity_from_arn(arn: str, *, bound: Iterable[str], account: str | None = None, sso_role_path: str | None = None,
                      source_identity: str | None = None, drill_roles: Iterable[str] = ()) -> Identity:
    """The person behind an STS caller ARN (pure); Refused when the ARN cannot name one.

    ``account``: the account tradeops runs in (a principal of another is refused). ``sso_role_path``: the
    IAM path of the session's role when it is an ``AWSReservedSSO_*`` one (:func:`sso_role`; without it such a
    session is refused). ``source_identity``: the session's sts:SourceIdentity, when known. ``drill_roles``: roles
    only a scheduled drill's task assumes (:func:`drill_roles`): a session of one is that drill's automation, a
    drill identity (``drill-task:ROLE/SESSION``, the session being the ECS task's id), never a person."""
    match = _ARN.match(arn)
    if not match:
        raise Refused(f"cannot tell who {arn!r} is: not an AWS principal ARN")
    partition, service, arn_account, resource = match.groups()
    if account is not None and arn_account != account:
        raise Refused(f"cannot tell who {arn!r} is: a principal of account {arn_account}, not of {account}")
    kind, _, rest = resource.partition("/")
    if service == "iam" and kind == "user" and rest:
        return Identity(f"arn:{partition}:iam::{arn_account}:user/{rest.rsplit('/', 1)[-1]}", "iam-user")
    if service == "sts" and kind == "assumed-role":
        role, _, session = rest.partition("/")
        if not session:
            raise Refused(f"cannot tell who {arn!r} is: no session name")
        if role.startswith(_SSO_ROLE):
            if not (sso_role_path or "").startswith(SSO_ROLE_PATH):
                raise Refused(f"cannot tell who acts as {arn}: role {role} is not one IAM Identity Center made "
                              f"(its path is {sso_role_path or 'unknown'}, not {SSO_ROLE_PATH}...)")
            return Identity(f"identity-center:{session}", "identity-center")
        if role in set(drill_roles):
            return Identity(f"{DRILL_PREFIX}task:{role}/{session}", "drill-task-role")
        if role in set(bound):
            if source_identity is not None and source_identity != session:
                raise Refused(f"cannot tell who acts as {arn}: its source identity is {source_identity!r}, not its "
                              f"session name {session!r}")
            return Identity(f"arn:{partition}:iam::{arn_account}:user/{session}", "operator-role")
        raise Refused(f"cannot tell who acts as {arn}: role {role} lets whoever assumes it choose the session "
                      f"name. Use your IAM user, IAM Identity Center, or an operator role whose trust policy binds "
                      f"the session name to your user name (TRADEOPS_OPERATOR_ROLES)")
    raise Refused(f"cannot tell who {arn!r} is: use an IAM user, IAM Identity Center or an operator role")


def current_identity(settings: Settings, aws: Aws | None = None) -> Identity:
    """The identity of whoever runs this process (see the module docstring)."""
    if settings.aws_endpoint_url is None or settings.enforce:
        aws = aws or Aws(settings)
        caller = aws.caller()
        return identity_from_arn(caller["arn"], bound=bound_roles(settings), account=settings.aws_account,
                                 sso_role_path=_role_path(aws, sso_role(caller["arn"])),
                                 drill_roles=drill_roles(settings))
    if settings.operator:
        return Identity(settings.operator.strip(), "TRADEOPS_OPERATOR")
    return Identity(getpass.getuser(), "os-user")


def _role_path(aws: Aws, role: str | None) -> str | None:
    """The IAM path of ``role`` (None for None): whether Identity Center made it is in the path, not the name."""
    if role is None:
        return None
    with aws_errors(f"read role {role} (is it one IAM Identity Center made?)"):
        return str(aws.client("iam").get_role(RoleName=role)["Role"]["Path"])


def _canonical(roles: Mapping[str, frozenset[str]], break_glass: frozenset[str]) -> str:
    return json.dumps({"operators": {k: sorted(v) for k, v in sorted(roles.items())},
                       "break_glass": sorted(break_glass)}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Operators:
    """A roster: identity → roles, and the roles allowed break-glass. ``source`` says where it came from."""

    roles: Mapping[str, frozenset[str]]
    break_glass: frozenset[str] = frozenset()
    source: str = ""
    version: int | None = None  # the shared roster's version (None for a file)

    @property
    def digest(self) -> str:
        """SHA-256 over the canonical roster (identities, roles, break-glass roles): what executions record."""
        return hashlib.sha256(_canonical(self.roles, self.break_glass).encode("utf-8")).hexdigest()

    def roles_of(self, identity: str) -> frozenset[str]:
        """The roles ``identity`` holds; names compare case-insensitively (``approvals.identity_key``)."""
        return roles_held(self.roles, identity)

    def holders(self, roles: Iterable[str]) -> list[str]:
        """Identities holding at least one of ``roles``."""
        wanted = set(roles)
        return sorted(name for name, held in self.roles.items() if held & wanted)

    def as_document(self) -> dict[str, Any]:
        """The roster as the operators file writes it."""
        return {"operators": {k: sorted(v) for k, v in sorted(self.roles.items())},
                "break_glass": sorted(self.break_glass)}

    def canonical(self) -> str:
        return _canonical(self.roles, self.break_glass)


def break_glass_users(roster: Operators) -> list[str]:
    """User names of the roster's break-glass holders that are IAM users: the template's ``BreakGlassUsers``
    (the break-glass role's trust policy compares ``aws:username``, which, like an identity, has no IAM path)."""
    return sorted({name.rsplit("/", 1)[1] for name in roster.holders(roster.break_glass)
                   if (match := _ARN.match(name)) and match.group(4).startswith("user/")})


def iam_user_name(identity: str) -> str:
    """The IAM user name a roster identity is on the local stack when it enforces IAM: a local name is one, and so
    is an IAM user ARN's last part; ConfigError for an identity no IAM user can be (an Identity Center name)."""
    match = _ARN.match(identity)
    if match and match.group(4).startswith("user/"):
        return identity.rsplit("/", 1)[1]
    if _LOCAL_NAME.match(identity) and not identity.startswith("arn:"):
        return identity.strip()
    raise ConfigError(f"operator {identity!r} cannot be an IAM user of the local stack: list people by local name "
                      "or IAM user ARN when it enforces IAM")


def as_iam_users(operators: Operators, account: str) -> Operators:
    """``operators`` with each person as the IAM user of ``account`` STS names them (``arn:aws:iam::ACCOUNT:user/
    NAME``): the roster of a local stack that enforces IAM, where who acts is whose key signed, as on AWS."""
    roles = {f"arn:aws:iam::{account}:user/{iam_user_name(name)}": held for name, held in operators.roles.items()}
    return Operators(roles=roles, break_glass=operators.break_glass, source=operators.source)


def as_target_identities(operators: Operators, aws: Aws) -> Operators:
    """``operators`` as the roster of ``aws``'s target names them: as IAM users (:func:`as_iam_users`) on a local
    stack that enforces IAM, where the operators file lists people by local name; unchanged elsewhere."""
    if not (aws.settings.enforce and aws.settings.aws_endpoint_url):
        return operators
    return as_iam_users(operators, aws.caller()["account"])


def operators_path(settings: Settings) -> Path:
    return Path(settings.operators_file) if settings.operators_file else Path("operators.yaml")


def _why_ambiguous(name: str) -> str | None:
    """Why an operators-file identity could never be a base identity (None when it can)."""
    if _CENTER_NAME.match(name):
        return None
    match = _ARN.match(name)
    if match:
        _, service, _, resource = match.groups()
        kind, _, rest = resource.partition("/")
        if service == "iam" and kind == "user" and rest:
            return None
        if service == "sts" and kind == "assumed-role":
            return ("a role session ARN names whatever session name its caller chose; list the person instead "
                    "(arn:aws:iam::ACCOUNT:user/NAME, or identity-center:NAME)")
        return "not a person: list an IAM user (arn:aws:iam::ACCOUNT:user/NAME) or identity-center:NAME"
    if name.startswith("arn:"):
        return "not an AWS principal ARN this tool understands"
    if _LOCAL_NAME.match(name):
        return None
    return "an identity is a local name (letters, digits, ._@+-), an IAM user ARN or identity-center:NAME"


def _lines(node: yaml.Node | None) -> dict[str, int]:
    """Line of each identity under ``operators:`` (and of the top-level keys)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            lines[f"#{k.value}"] = k.start_mark.line + 1
            if k.value == "operators" and isinstance(v, yaml.MappingNode):
                for k2, _ in v.value:
                    lines.setdefault(str(k2.value), k2.start_mark.line + 1)
    return lines


def parse_operators(text: str, source: str) -> Operators:
    """Check an operators document; every problem is a ConfigError naming ``source`` and the line."""
    yamlfiles.check_size(text, f"operators file {source}")
    try:
        doc, node = yamlfiles.load_node(text)
    except yamlfiles.RefusedYaml as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError(f"{source}:{line}: refused: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{source}:{mark.line + 1 if mark else 1}: not valid YAML: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("operators"), dict):
        raise ConfigError(f"{source}:1: the operators file needs a mapping 'operators: {{identity: [roles]}}'")
    unknown = sorted(set(map(str, doc)) - {"operators", "break_glass"})
    lines = _lines(node)
    if unknown:
        raise ConfigError(f"{source}:{lines.get('#' + unknown[0], 1)}: unknown key {unknown[0]!r} "
                          "(an operators file has operators and break_glass)")
    roles: dict[str, frozenset[str]] = {}
    seen: dict[str, tuple[str, int]] = {}
    assert isinstance(node, yaml.MappingNode)
    entries = next(v for k, v in node.value if k.value == "operators")
    assert isinstance(entries, yaml.MappingNode)
    for key_node, _ in entries.value:
        name = str(key_node.value)
        line = key_node.start_mark.line + 1
        key = identity_key(name)
        if key in seen:
            first, first_line = seen[key]
            raise ConfigError(f"{source}:{line}: operator {name!r} is listed twice (first as {first!r} "
                              f"on line {first_line}; identities compare ignoring case and spaces)")
        seen[key] = (name, line)
        why = _why_ambiguous(name)
        if why:
            raise ConfigError(f"{source}:{line}: operator {name!r} refused: {why}")
    for name, held in doc["operators"].items():
        if isinstance(held, dict):
            held = held.get("roles")
        if not isinstance(held, list) or not held or not all(isinstance(r, str) and r for r in held):
            raise ConfigError(f"{source}:{lines.get(str(name), 1)}: operator {name!r} needs a non-empty list of roles")
        roles[str(name)] = frozenset(held)
    glass = doc.get("break_glass") or []
    if not isinstance(glass, list) or not all(isinstance(r, str) and r for r in glass):
        raise ConfigError(f"{source}:{lines.get('#break_glass', 1)}: break_glass must be a list of roles")
    return Operators(roles=roles, break_glass=frozenset(glass), source=source)


def load_operators(path: Path) -> Operators:
    """Read and check an operators file; a bad file is a ConfigError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"operators file {path} does not exist (set TRADEOPS_OPERATORS_FILE; "
                          "see runbooks/operators.example.yaml)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read operators file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"operators file {path} is not UTF-8 text") from None
    try:
        return parse_operators(text, str(path))
    except BadInput as exc:
        raise ConfigError(str(exc)) from None
