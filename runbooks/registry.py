"""Operations a runbook may name: probes (read a value) and actions (change something).

Every operation is registered by name with a JSON Schema for its arguments, so validation can
refuse an unknown name or a bad argument before anything runs. The built-in operations live in
``tradeops.runbooks.operations`` and register themselves on import (``ensure_builtins``).

An operation is a plain function ``func(ctx, **args)``. A probe returns its value, or a
``Reading`` when it has detail worth showing next to the value. An action returns a JSON-able
output; a *restorable* action names the argument that sets its value (``restore_arg``) and
returns ``{"previous": ..., "value": ...}``, so its rollback is the same action called with the
value read before it ran.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings

__all__ = [
    "Operation",
    "OperationContext",
    "Reading",
    "action",
    "actions",
    "ensure_builtins",
    "get",
    "probe",
    "probes",
    "register",
    "unregister",
]

Kind = Literal["probe", "action"]


@dataclass(frozen=True)
class Reading:
    """A probe's value plus detail for the operator (latency, the fleet, ...)."""

    value: Any
    detail: dict[str, Any] | None = None


@dataclass
class OperationContext:
    """What an operation may know about the run that calls it."""

    settings: Settings
    aws: Aws
    execution_id: str | None = None
    step_id: str | None = None
    actor: str | None = None
    approvers: tuple[str, ...] = ()
    # True in `plan`: a probe that samples over time answers from one sample instead.
    instant: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    name: str
    kind: Kind
    func: Callable[..., Any]
    schema: dict[str, Any]
    description: str
    # Running it twice leaves the world as running it once (safe to re-run after an interruption).
    idempotent: bool = False
    # Argument that sets the value an action changes; its rollback sets the previous value back.
    restore_arg: str | None = None
    # A probe that watches over a period (plan reads it once instead).
    sampling: bool = False

    def __call__(self, ctx: OperationContext, **args: Any) -> Any:
        return self.func(ctx, **args)


_lock = threading.Lock()
_operations: dict[str, Operation] = {}
_builtins_loaded = False


def _args_schema(properties: dict[str, Any], required: list[str] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties) if required is None else required,
        "additionalProperties": False,
    }


def register(operation: Operation) -> Operation:
    """Add an operation; a second one with the same name is a programming error."""
    with _lock:
        if operation.name in _operations and _operations[operation.name].func is not operation.func:
            raise ValueError(f"operation {operation.name!r} is already registered")
        _operations[operation.name] = operation
    return operation


def unregister(name: str) -> None:
    with _lock:
        _operations.pop(name, None)


def probe(name: str, *, args: dict[str, Any] | None = None, required: list[str] | None = None,
          description: str, sampling: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a probe; ``args`` maps argument name to its JSON Schema (all required by default)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        register(Operation(name=name, kind="probe", func=func, schema=_args_schema(args or {}, required),
                           description=description, idempotent=True, sampling=sampling))
        return func

    return decorate


def action(name: str, *, args: dict[str, Any] | None = None, required: list[str] | None = None,
           description: str, idempotent: bool = False,
           restore_arg: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an action; see the module docstring for ``restore_arg``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        register(Operation(name=name, kind="action", func=func, schema=_args_schema(args or {}, required),
                           description=description, idempotent=idempotent, restore_arg=restore_arg))
        return func

    return decorate


def ensure_builtins() -> None:
    """Import the built-in operations once (they register themselves)."""
    global _builtins_loaded
    if not _builtins_loaded:
        importlib.import_module("tradeops.runbooks.operations")
        _builtins_loaded = True


def get(name: str) -> Operation | None:
    ensure_builtins()
    with _lock:
        return _operations.get(name)


def probes() -> list[Operation]:
    ensure_builtins()
    with _lock:
        return sorted((op for op in _operations.values() if op.kind == "probe"), key=lambda op: op.name)


def actions() -> list[Operation]:
    ensure_builtins()
    with _lock:
        return sorted((op for op in _operations.values() if op.kind == "action"), key=lambda op: op.name)
