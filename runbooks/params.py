"""A runbook's parameters: declared with a type and maybe a default, given as ``--param NAME=VALUE``,
and referenced in steps as ``${NAME}`` (a whole-string reference keeps the parameter's type)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from tradeops.runbooks.loader import Runbook
from tradeops.runtime.platform.errors import BadInput

__all__ = ["BUILTIN_PARAMS", "FULL_REF", "coerce", "parse_param_overrides", "refs", "render", "resolve_params"]

BUILTIN_PARAMS: Final = ("execution_id", "runbook", "executor")
"""Parameters every runbook can use without declaring them."""
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
FULL_REF: Final = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def refs(value: Any) -> Iterator[str]:
    """The names of the parameters ``value`` (a string, or a mapping or list of them) refers to."""
    if isinstance(value, str):
        yield from _REF.findall(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs(v)


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """Substitute ``${name}``: a whole-string reference keeps the parameter's type."""
    if isinstance(value, str):
        full = FULL_REF.match(value)
        if full:
            return params[full.group(1)]
        return _REF.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: render(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, params) for v in value]
    return value


def coerce(name: str, spec: Mapping[str, Any], raw: Any) -> Any:
    """``raw`` as the type the parameter declares (from the command line every value is a string)."""
    kind = spec.get("type", "string")
    try:
        if kind == "boolean":
            if isinstance(raw, bool):
                value: Any = raw
            elif str(raw).strip().lower() in _TRUE | _FALSE:
                value = str(raw).strip().lower() in _TRUE
            else:
                raise ValueError
        elif kind == "integer":
            if isinstance(raw, bool):
                raise ValueError
            value = int(str(raw).strip())
        elif kind == "number":
            if isinstance(raw, bool):
                raise ValueError
            value = float(str(raw).strip())
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        else:
            value = str(raw)
    except ValueError:
        raise BadInput(f"parameter {name} must be a {kind}, not {raw!r}") from None
    if "enum" in spec and value not in spec["enum"]:
        raise BadInput(f"parameter {name} must be one of {', '.join(map(str, spec['enum']))}, not {raw!r}")
    return value


def parse_param_overrides(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` from the command line into a mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"--param expects NAME=VALUE, not {item!r}")
        out[name.strip()] = value
    return out


def resolve_params(runbook: Runbook, overrides: Mapping[str, Any] | None = None,
                   builtins: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Typed parameter values: declared defaults, then overrides, plus the built-ins."""
    declared = runbook.parameters
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        takes = ", ".join(sorted(declared)) or "no parameters"
        raise BadInput(f"runbook {runbook.name} has no parameter {unknown[0]!r} (it takes: {takes})")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = coerce(name, spec, overrides[name])
        elif "default" in spec:
            values[name] = coerce(name, spec, spec["default"])
        else:
            raise BadInput(f"runbook {runbook.name} needs --param {name}=VALUE ({spec.get('description', '')})"
                           .rstrip(" ()"))
    values.update({k: v for k, v in (builtins or {}).items() if k in BUILTIN_PARAMS})
    return values
