"""Rolling an execution back: undo its completed actions, newest first, each one recorded.

A step's ``rollback`` says how: ``restore`` (the same action called with the value it replaced),
``none`` (recorded, nothing run), or another action with its own arguments. A rollback also runs
after an abort, so its step writes are not conditional on the lease; only the process holding the
execution gets here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tradeops.runbooks import registry
from tradeops.runbooks.params import render
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import reason_of

if TYPE_CHECKING:
    from tradeops.runbooks.runner import Runner

__all__ = ["rollback"]


def rollback(runner: Runner, upto: int, reason: str) -> None:
    """Undo the completed actions of steps 0..upto, newest first, each recorded."""
    records = runner.store.steps(runner.eid)
    todo = [i for i in sorted(records, reverse=True)
            if i <= upto and "action" in runner.runbook.steps[i] and records[i].get("phase") in ("acted", "done")
            and int(records[i].get("action_runs", 0)) > 0 and not records[i].get("rollback")]
    runner.publish("rollback.started", None, reason=reason, steps=[runner.runbook.steps[i]["id"] for i in todo])
    done, failed = [], []
    for i in todo:
        step, rec = runner.runbook.steps[i], records[i]
        op = registry.get(step["action"]["name"])
        assert op is not None
        spec = step.get("rollback", "restore" if op.restore_arg else "none")
        if spec == "none":
            rec["rollback"] = {"status": "none", "start": iso(), "end": iso(), "duration": 0.0,
                               "output": None, "error": None}
            runner.store.put_step(runner.eid, i, rec, lease_token=None)
            runner.publish("rollback.step", step["id"], status="none", action=None, args=None)
            continue
        if spec == "restore":
            previous = ((rec.get("output") or {}).get("action") or {}).get("output") or {}
            rb_op, args = op, {str(op.restore_arg): previous.get("previous")}
        else:
            found = registry.get(spec["name"])
            assert found is not None  # validated with the runbook
            rb_op, args = found, render(spec.get("args") or {}, runner.params)
        started_at, t0 = iso(), time.monotonic()
        try:
            output = rb_op(runner.ctx(step["id"]), **args)
            result = {"status": "succeeded", "output": output, "error": None}
            done.append(step["id"])
        except Exception as exc:
            result = {"status": "failed", "output": None, "error": reason_of(exc)}
            failed.append(step["id"])
        rec["rollback"] = {**result, "action": rb_op.name, "args": args, "start": started_at, "end": iso(),
                           "duration": round(time.monotonic() - t0, 3)}
        # Unconditional write: a rollback also runs after an abort, which the lease check refuses.
        # Only the lease holder gets here, so no other process writes this step meanwhile.
        runner.store.put_step(runner.eid, i, rec, lease_token=None)
        runner.publish("rollback.step", step["id"], **rec["rollback"])
    runner.publish("rollback.finished", None, rolled_back=done, failed=failed)
    runner.store.set_fields(runner.eid, {"rolled_back": True, "rollback_failed": failed, "updated_at": iso()})
