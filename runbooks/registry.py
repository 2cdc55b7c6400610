"""Operations a runbook may name, by name: probes (read a value) and actions (change something).

The built-in ones are the entries of :mod:`.catalogue`, each naming its function by module and
name; the module is imported the first time the operation runs, as Chaos Toolkit resolves an
activity, so nothing registers itself and validation never imports the runtime. A plugin (or a
test) may :func:`register` more at run time.

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
from typing import Any

from tradeops.runbooks.catalogue import ENTRIES, Entry, Kind
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings

__all__ = [
    "Operation",
    "OperationContext",
    "Reading",
    "actions",
    "get",
    "probes",
    "register",
    "unregister",
]


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
    # True in a rollback's restore (runbooks/rollback.py): a guarded action asks the gate to restore the value its
    # act on this step replaced, rather than to act on the step again.
    restoring: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """An operation: its function (``func``, or ``target``, "module:function", imported when it first runs)."""

    name: str
    kind: Kind
    schema: dict[str, Any]
    description: str
    func: Callable[..., Any] | None = None
    target: str | None = None
    # Running it twice leaves the world as running it once (safe to re-run after an interruption).
    idempotent: bool = False
    # Argument that sets the value an action changes; its rollback sets the previous value back.
    restore_arg: str | None = None
    # A probe that watches over a period (plan reads it once instead).
    sampling: bool = False

    @classmethod
    def of(cls, entry: Entry) -> Operation:
        return cls(name=entry.name, kind=entry.kind, schema=entry.schema(), description=entry.description,
                   target=entry.target, idempotent=entry.idempotent, restore_arg=entry.restore_arg,
                   sampling=entry.sampling)

    def function(self) -> Callable[..., Any]:
        if self.func is not None:
            return self.func
        module, _, name = str(self.target).partition(":")
        found: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return found

    def __call__(self, ctx: OperationContext, **args: Any) -> Any:
        return self.function()(ctx, **args)


_BUILTIN: dict[str, Operation] = {entry.name: Operation.of(entry) for entry in ENTRIES}
_lock = threading.Lock()
_added: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Add an operation; a second one with the same name is a programming error."""
    with _lock:
        known = _BUILTIN.get(operation.name) or _added.get(operation.name)
        if known is not None and known.func is not operation.func:
            raise ValueError(f"operation {operation.name!r} is already registered")
        _added[operation.name] = operation
    return operation


def unregister(name: str) -> None:
    with _lock:
        _added.pop(name, None)


def get(name: str) -> Operation | None:
    with _lock:
        return _BUILTIN.get(name) or _added.get(name)


def _all() -> list[Operation]:
    with _lock:
        return [*_BUILTIN.values(), *_added.values()]


def probes() -> list[Operation]:
    return sorted((op for op in _all() if op.kind == "probe"), key=lambda op: op.name)


def actions() -> list[Operation]:
    return sorted((op for op in _all() if op.kind == "action"), key=lambda op: op.name)
