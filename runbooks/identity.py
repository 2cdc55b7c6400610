"""Who is executing or approving, and which roles they hold.

Against real AWS an identity is the caller's ARN from STS: it is what the credentials prove,
not what a person types. On the local stack (an endpoint override) STS answers for a fixed
test account, so the identity is ``TRADEOPS_OPERATOR`` or, failing that, the OS user; every
record says which source it came from so a report never passes a typed name off as proven.

Roles come from the operators file (``TRADEOPS_OPERATORS_FILE``, default ``operators.yaml`` in
the working directory)::

    operators:
      alice: [duty-engineer]
      bob: [ops-manager]
      "arn:aws:sts::123456789012:assumed-role/Risk/carol": [risk]
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.settings import Settings

__all__ = ["Identity", "Operators", "current_identity", "load_operators", "operators_path"]

SOURCES = ("sts", "TRADEOPS_OPERATOR", "os-user")


@dataclass(frozen=True)
class Identity:
    name: str
    source: str  # one of SOURCES (tests may use their own label)

    def __str__(self) -> str:
        return self.name


def current_identity(settings: Settings, aws: Aws | None = None) -> Identity:
    """The identity of whoever runs this process (see the module docstring)."""
    if settings.aws_endpoint_url is None:
        aws = aws or Aws(settings)
        with aws_errors("find the caller identity (STS)"):
            arn = aws.client("sts").get_caller_identity()["Arn"]
        return Identity(arn, "sts")
    if settings.operator:
        return Identity(settings.operator.strip(), "TRADEOPS_OPERATOR")
    return Identity(getpass.getuser(), "os-user")


@dataclass(frozen=True)
class Operators:
    """The operators file: identity → roles."""

    path: Path
    roles: Mapping[str, frozenset[str]]

    def roles_of(self, identity: str) -> frozenset[str]:
        return self.roles.get(identity, frozenset())

    def holders(self, roles: Iterable[str]) -> list[str]:
        """Identities holding at least one of ``roles``."""
        wanted = set(roles)
        return sorted(name for name, held in self.roles.items() if held & wanted)


def operators_path(settings: Settings) -> Path:
    return Path(settings.operators_file) if settings.operators_file else Path("operators.yaml")


def _line_of(node: yaml.Node | None, key: str) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(v, yaml.MappingNode):
                for k2, _ in v.value:
                    if k2.value == key:
                        return k2.start_mark.line + 1
            if k.value == key:
                return k.start_mark.line + 1
    return None


def load_operators(path: Path) -> Operators:
    """Read and check the operators file; a bad file is a ConfigError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"operators file {path} does not exist (set TRADEOPS_OPERATORS_FILE; "
                          "see runbooks/operators.example.yaml)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read operators file {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"operators file {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("operators"), dict):
        raise ConfigError(f"{path}:1: the operators file needs a mapping 'operators: {{identity: [roles]}}'")
    roles: dict[str, frozenset[str]] = {}
    for name, held in doc["operators"].items():
        if isinstance(held, dict):
            held = held.get("roles")
        if not isinstance(held, list) or not held or not all(isinstance(r, str) and r for r in held):
            line = _line_of(node, str(name)) or 1
            raise ConfigError(f"{path}:{line}: operator {name!r} needs a non-empty list of roles")
        roles[str(name)] = frozenset(held)
    return Operators(path=path, roles=roles)
