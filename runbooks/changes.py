"""What the driver of an execution changed since its last write, each move checked against the tables. Pure.

The runner does not write every change as it happens: it keeps its status and step records in
:class:`Changes` and the store writes them in one conditional write at the next checkpoint
(:mod:`.runner` says where). A move the tables of :mod:`.states` do not allow is refused here, as it
is made, so it is never written: each step's status and phase are checked one move at a time, not
only between the writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradeops.runbooks.states import PENDING, check_execution_move, check_phase_move, check_step_move

__all__ = ["STEP_PREFIX", "Changes", "is_step", "plain", "python", "step_key", "stored"]

STEP_PREFIX = "step#"


def step_key(index: int) -> str:
    """The name of step ``index``'s record (an attribute of the meta item, or an older item of its own)."""
    return f"{STEP_PREFIX}{index:04d}"


def is_step(name: str) -> bool:
    return name.startswith(STEP_PREFIX)


def plain(value: Any) -> Any:
    """JSON-able Python → DynamoDB-able (floats as Decimal)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def python(value: Any) -> Any:
    """A value read from the table as plain Python (its numbers, Decimal there, as int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [python(v) for v in value]
    return value


def stored(value: Any) -> Any:
    """``value`` as it reads back from the table (numbers as int or float, tuples as lists, the rest as text)."""
    return python(plain(value))


def _state(record: Mapping[str, Any] | None) -> tuple[str, str]:
    record = record or {}
    return str(record.get("status") or PENDING), str(record.get("phase") or PENDING)


class Changes:
    """Meta fields and step records changed since the last write, checked move by move.

    ``status`` and ``records`` are the execution's as the last write (or read) left them.
    """

    def __init__(self, execution_id: str, status: str, records: Mapping[int, Mapping[str, Any]], epoch: int) -> None:
        self.execution_id = execution_id
        self.status = status
        self.epoch = epoch
        self._states = {i: _state(r) for i, r in records.items()}
        self.fields: dict[str, Any] = {}
        self.records: dict[int, dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self.fields or self.records)

    def set(self, **fields: Any) -> None:
        """Change meta fields; a new ``status`` must be a move its table allows (IllegalTransition)."""
        if "status" in fields:
            check_execution_move(self.status, fields["status"])
            self.status = fields["status"]
        self.fields.update(fields)

    def step(self, index: int, record: Mapping[str, Any]) -> None:
        """Keep step ``index``'s record as it is now (a copy); its status and phase must be moves the tables
        allow from the ones kept or written last (IllegalTransition, and nothing is kept)."""
        state = _state(record)
        before = self._states.get(index, (PENDING, PENDING))
        check_step_move(before[0], state[0])
        check_phase_move(before[1], state[1])
        self._states[index] = state
        self.records[index] = stored({**record, "execution_id": self.execution_id, "item": step_key(index),
                                      "index": index, "lease_epoch": self.epoch})

    def attributes(self) -> dict[str, Any]:
        """The meta attributes to set: the fields, and each step record under its :func:`step_key`."""
        return {**self.fields, **{step_key(i): r for i, r in self.records.items()}}

    def clear(self) -> None:
        """Everything kept is written."""
        self.fields, self.records = {}, {}
