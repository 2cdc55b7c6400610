"""Rolling an execution back: undo its completed actions, newest first, each one recorded.

A step's ``rollback`` says how: ``restore`` (the same action called with the value it replaced),
``none`` (recorded, nothing run), or another action with its own arguments. A rollback runs for the
process driving the execution (a step failed) or for `runbook abort --rollback`; either hands it
what it needs as plain data (:class:`Undo`). It also runs after an abort, so its writes are not
conditional on the lease; only the process holding the execution gets here.

Under an approval gate a ``restore`` of a guarded step is asked of the gate as a change of its own
(the operation's context says ``restoring``): the gate puts back the value its act replaced, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tradeops.runbooks import registry
from tradeops.runbooks.eventkinds import ROLLBACK_FINISHED, ROLLBACK_STARTED, ROLLBACK_STEP
from tradeops.runbooks.params import render
from tradeops.runbooks.registry import OperationContext
from tradeops.runbooks.states import ACTED, DONE, FAILED, NOT_RUN, SUCCEEDED
from tradeops.runbooks.store import ExecutionStore
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import reason_of

__all__ = ["Publish", "Undo", "rollback"]

Publish = Callable[..., None]
"""``publish(kind, step_id, /, **data)``: tell the execution's observers."""


@dataclass(frozen=True)
class Undo:
    """What rolling an execution back needs: its steps and parameters, how to call an operation, whom to tell."""

    execution_id: str
    steps: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any]
    context: Callable[[str], OperationContext]
    publish: Publish


def rollback(store: ExecutionStore, undo: Undo, upto: int, reason: str) -> None:
    """Undo the completed actions of steps 0..upto, newest first, each recorded."""
    eid, steps = undo.execution_id, undo.steps
    records = store.steps(eid)
    todo = [i for i in sorted(records, reverse=True)
            if i <= upto and "action" in steps[i] and records[i].get("phase") in (ACTED, DONE)
            and int(records[i].get("action_runs", 0)) > 0 and not records[i].get("rollback")]
    undo.publish(ROLLBACK_STARTED, None, reason=reason, steps=[steps[i]["id"] for i in todo])
    done, failed = [], []
    for i in todo:
        step, rec = steps[i], records[i]
        op = registry.get(step["action"]["name"])
        assert op is not None
        spec = step.get("rollback", "restore" if op.restore_arg else "none")
        if spec == "none":
            rec["rollback"] = {"status": NOT_RUN, "start": iso(), "end": iso(), "duration": 0.0,
                               "output": None, "error": None}
            store.put_step(eid, i, rec, lease_token=None)
            undo.publish(ROLLBACK_STEP, step["id"], status=NOT_RUN, action=None, args=None)
            continue
        context = undo.context(step["id"])
        if spec == "restore":
            previous = ((rec.get("output") or {}).get("action") or {}).get("output") or {}
            rb_op, args = op, {str(op.restore_arg): previous.get("previous")}
            # Under a gate, a guarded step's restore is asked of it as a change of its own (runbooks/gate.py).
            context = replace(context, restoring=True)
        else:
            found = registry.get(spec["name"])
            assert found is not None  # validated with the runbook
            rb_op, args = found, render(spec.get("args") or {}, undo.params)
        started_at, t0 = iso(), time.monotonic()
        try:
            output = rb_op(context, **args)
            result = {"status": SUCCEEDED, "output": output, "error": None}
            done.append(step["id"])
        except Exception as exc:
            result = {"status": FAILED, "output": None, "error": reason_of(exc)}
            failed.append(step["id"])
        rec["rollback"] = {**result, "action": rb_op.name, "args": args, "start": started_at, "end": iso(),
                           "duration": round(time.monotonic() - t0, 3)}
        # Unconditional write: a rollback also runs after an abort, which the lease check refuses.
        # Only the lease holder gets here, so no other process writes this step meanwhile.
        store.put_step(eid, i, rec, lease_token=None)
        undo.publish(ROLLBACK_STEP, step["id"], **rec["rollback"])
    undo.publish(ROLLBACK_FINISHED, None, rolled_back=done, failed=failed)
    store.set_fields(eid, {"rolled_back": True, "rollback_failed": failed, "updated_at": iso()})
