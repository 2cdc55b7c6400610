"""The runbook engine: run, resume, abort, approve, plan and the history of executions.

A run is validated whole before anything is touched (runbook, parameters, operators file,
identity); then the engine creates the execution in the executions table holding a *lease* (one
process drives an execution at a time; a killed process's lease is taken over by `resume`) and
walks the steps. Each step goes through phases, each recorded before the next starts::

    when → precondition → approval → check | manual | action → verification → done

and its record is always ``{status, start, end, duration, output, error}`` plus its phase, how
many times its action ran and its rollback. Because "acting" is written before an action runs
and "acted" after, `resume` never repeats a completed action and never skips an unfinished one:
an action interrupted mid-flight is re-run only if it is idempotent, otherwise the operator is
asked (and ``--yes`` stops rather than guess).

The engine publishes every event to observers (``Observer.notify``): the audit log is one, the
terminal display another; neither is called from inside step logic.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from runbooks import registry
from runbooks.approvals import Approval, ApprovalContext, ApprovalRule, Decision, check_new_decision, evaluate
from runbooks.audit import AuditLog, AuditObserver
from runbooks.identity import Identity, Operators, current_identity, load_operators, operators_path
from runbooks.model import (
    Runbook,
    RunbookInvalid,
    check_runbook,
    load_runbook,
    render,
    resolve_params,
    resolve_path,
    runbook_dir,
)
from runbooks.model import sha256_text as _sha256_text
from runbooks.registry import OperationContext, Reading
from runbooks.store import FINAL_STATUSES, ExecutionAborted, ExecutionStore, LeaseLost
from runtime.aws import Aws
from runtime.errors import BadInput, NotFound, TradeopsError

__all__ = [
    "ApprovalWait",
    "Event",
    "Observer",
    "Outcome",
    "abort_execution",
    "decide",
    "execution_history",
    "expectation_met",
    "list_executions",
    "plan_runbook",
    "resume_execution",
    "run_execution",
]

LEASE_SECONDS = 30.0
RENEW_SECONDS = 5.0
DEFAULT_EVERY = 0.5
_EXECUTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- events and observers -----------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    kind: str
    execution_id: str
    step_id: str | None
    actor: str
    identity_source: str
    data: dict[str, Any]
    at: str = field(default_factory=_now)


class Observer(Protocol):
    def notify(self, event: Event) -> None: ...


@dataclass(frozen=True)
class ApprovalWait:
    """Handed to ``on_approval_wait`` at every poll while a step waits for approvers."""

    execution_id: str
    step_id: str
    rule: ApprovalRule
    decision: Decision
    command: str


@dataclass(frozen=True)
class Outcome:
    execution_id: str
    status: str  # completed | failed | stopped | aborted | waiting_approval
    reason: str | None
    steps: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.status == "completed"


Confirm = Callable[[str], bool]
ApprovalHook = Callable[[ApprovalWait], None]


# ---- expectations (pure) ------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def expectation_met(expect: Any, value: Any) -> bool:
    """Whether a probe's value meets an ``expect`` (a value, or one of equals/lt/le/gt/ge/in)."""
    if not isinstance(expect, dict):
        return value == expect
    (cmp, bound), = expect.items()
    if cmp == "equals":
        return value == bound
    if cmp == "in":
        return value in bound
    got, limit = _number(value), _number(bound)
    if got is None or limit is None:
        return False
    return {"lt": got < limit, "le": got <= limit, "gt": got > limit, "ge": got >= limit}[cmp]


def describe_expect(expect: Any) -> str:
    if not isinstance(expect, dict):
        return f"= {expect!r}"
    (cmp, bound), = expect.items()
    return {"equals": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in"}[cmp] + f" {bound!r}"


# ---- internal control flow ----------------------------------------------------------------

class _StepFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Stopped(Exception):
    """The step cannot go on without a person (declined, rejected, approval timed out)."""

    def __init__(self, reason: str, *, status: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Lease:
    """Keeps this process's lease on an execution alive from a background thread."""

    def __init__(self, store: ExecutionStore, execution_id: str, token: str) -> None:
        self.store, self.execution_id, self.token = store, execution_id, token
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{execution_id}", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            if not self.store.renew(self.execution_id, self.token, LEASE_SECONDS):
                self.lost = True
                return

    def start(self) -> _Lease:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.store.release(self.execution_id, self.token)


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: Any) -> bool:
    from runtime.stack import pid_alive

    try:
        return pid_alive(int(pid))
    except (TypeError, ValueError):
        return False


def _runbook_ref(runbook: Runbook) -> str:
    """How to find the runbook again: its name when shipped (any machine), else its path."""
    if runbook.path.resolve().parent == runbook_dir() and runbook.path.stem == runbook.name:
        return runbook.name
    return str(runbook.path.resolve())


class _Runner:
    """Drives one execution while holding its lease."""

    def __init__(self, *, settings: Any, aws: Aws, store: ExecutionStore, runbook: Runbook, meta: dict[str, Any],
                 identity: Identity, operators: Operators | None, observers: Sequence[Observer],
                 assume_yes: bool, confirm: Confirm | None, on_approval_wait: ApprovalHook | None,
                 poll_seconds: float, approval_timeout: float | None, lease: _Lease | None) -> None:
        self.settings, self.aws, self.store, self.runbook, self.meta = settings, aws, store, runbook, meta
        self.identity, self.operators, self.observers = identity, operators, list(observers)
        self.assume_yes, self.confirm, self.on_approval_wait = assume_yes, confirm, on_approval_wait
        self.poll_seconds, self.approval_timeout, self.lease = poll_seconds, approval_timeout, lease
        self.eid = meta["execution_id"]
        self.params = dict(meta.get("params") or {})

    # -- plumbing --

    @property
    def token(self) -> str | None:
        return self.lease.token if self.lease else None

    def publish(self, kind: str, step_id: str | None = None, /, **data: Any) -> None:
        event = Event(kind, self.eid, step_id, self.identity.name, self.identity.source, data)
        for observer in self.observers:
            observer.notify(event)

    def save(self, index: int, rec: dict[str, Any]) -> None:
        self.store.put_step(self.eid, index, rec, lease_token=self.token)

    def set_meta(self, **changes: Any) -> None:
        changes["updated_at"] = _now()
        if self.token:
            self.store.update_meta(self.eid, changes, lease_token=self.token)
        self.meta.update(changes)

    def guard(self) -> None:
        """Stop if the runbook file changed, the execution was aborted or the lease was lost."""
        if self.lease and self.lease.lost:
            raise LeaseLost(f"execution {self.eid} was taken over by another process; this one stopped")
        try:
            text = resolve_path(self.meta["runbook_ref"]).read_text(encoding="utf-8")
        except (OSError, TradeopsError):
            text = ""
        if _sha256_text(text) != self.meta["runbook_sha256"]:
            raise BadInput(f"runbook {self.meta['runbook']} was edited after execution {self.eid} started "
                           f"(SHA-256 {self.meta['runbook_sha256'][:12]}… no longer matches); refused. Restore it, "
                           "or abort and start a new run")
        fresh = self.store.meta(self.eid)
        if fresh.get("status") == "aborted":
            raise ExecutionAborted(f"execution {self.eid} was aborted by {fresh.get('aborted_by')}: "
                                   f"{fresh.get('reason') or 'no reason given'}")

    def ctx(self, step_id: str | None, approvers: Iterable[str] = ()) -> OperationContext:
        return OperationContext(settings=self.settings, aws=self.aws, execution_id=self.eid, step_id=step_id,
                                actor=self.identity.name, approvers=tuple(approvers))

    def ask(self, prompt: str) -> bool:
        if self.assume_yes:
            return True
        if self.confirm is None:
            return False  # nobody to ask: fail closed
        return bool(self.confirm(prompt))

    # -- probes --

    def read(self, spec: Mapping[str, Any], step_id: str | None) -> dict[str, Any]:
        op = registry.get(spec["probe"])
        assert op is not None  # validated
        args = render(spec.get("args") or {}, self.params)
        try:
            got = op(self.ctx(step_id), **args)
        except Exception as exc:  # a probe that cannot answer has not met its expectation
            return {"probe": op.name, "args": args, "value": None, "expect": render(spec["expect"], self.params),
                    "error": _reason(exc), "met": False}
        reading = got if isinstance(got, Reading) else Reading(got)
        expect = render(spec["expect"], self.params)
        met = expectation_met(expect, reading.value)
        out = {"probe": op.name, "args": args, "value": reading.value, "expect": expect, "met": met}
        if reading.detail:
            out["detail"] = reading.detail
        return out

    def poll(self, spec: Mapping[str, Any], step_id: str, what: str, timeout: float) -> dict[str, Any]:
        """Read a probe until it meets its expectation or ``timeout`` seconds pass (polled, not slept)."""
        every = float(spec.get("every") or DEFAULT_EVERY)
        start = time.monotonic()
        deadline = start + timeout
        polls = 0
        while True:
            reading = self.read(spec, step_id)
            polls += 1
            if reading["met"] or time.monotonic() >= deadline:
                break
            self.guard()
            time.sleep(max(min(every, deadline - time.monotonic()), 0))
        reading.update(what=what, polls=polls, waited=round(time.monotonic() - start, 3), timeout=timeout)
        self.publish("check.evaluated", step_id, **reading)
        return reading

    # -- the run --

    def run(self) -> Outcome:
        records = self.store.steps(self.eid)
        steps = self.runbook.steps
        index = 0
        try:
            for index, step in enumerate(steps):
                rec = records.get(index) or {"step_id": step["id"], "status": "pending", "phase": "pending",
                                             "action_runs": 0, "attempts": 0}
                if rec.get("status") in ("succeeded", "skipped"):
                    continue
                self.guard()
                self.set_meta(status="running", current_step=step["id"])
                self.run_step(index, step, rec)
        except _StepFailed as failure:
            step = steps[index]
            policy = step.get("on_failure", "abort")
            if policy == "stop":
                return self.finish("stopped", f"step {step['id']} failed: {failure.reason}; fix the cause, then "
                                              f"`tradeops runbook resume {self.eid}` or `abort`")
            self.rollback(index, f"step {step['id']} failed: {failure.reason}")
            return self.finish("failed", f"step {step['id']} failed: {failure.reason}; completed steps rolled back")
        except _Stopped as stop:
            # A rejected step stops the execution; only `abort` (or a new run) gets past it.
            return self.finish("stopped" if stop.status == "rejected" else stop.status, stop.reason)
        except KeyboardInterrupt:
            self.publish("execution.interrupted", steps[index]["id"] if steps else None,
                         reason="interrupted at the terminal; `resume` continues from this step")
            raise
        except ExecutionAborted as aborted:
            fresh = self.store.meta(self.eid)
            if fresh.get("rollback_requested") and not fresh.get("rolled_back"):
                self.rollback(len(steps) - 1, f"aborted by {fresh.get('aborted_by')}")
            self.publish("execution.stopped", status="aborted", reason=str(aborted))
            return self.outcome("aborted", str(aborted))
        except BadInput as exc:
            # The runbook changed under us: stop, keep the execution resumable once it is restored.
            self.finish("stopped", str(exc))
            raise
        return self.finish("completed", None)

    def finish(self, status: str, reason: str | None) -> Outcome:
        self.set_meta(status=status, reason=reason, **({"finished_at": _now()} if status in FINAL_STATUSES else {}))
        self.publish("execution.finished" if status in FINAL_STATUSES else "execution.stopped",
                     status=status, reason=reason)
        return self.outcome(status, reason)

    def outcome(self, status: str, reason: str | None) -> Outcome:
        records = self.store.steps(self.eid)
        return Outcome(self.eid, status, reason, [records[i] for i in sorted(records)])

    def run_step(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> None:
        sid = step["id"]
        started = time.monotonic()
        rec.update(step_id=sid, title=step["title"], kind=next(k for k in ("check", "action", "manual") if k in step),
                   status="running", start=rec.get("start") or _now(), attempts=int(rec.get("attempts", 0)) + 1,
                   error=None)
        rec.setdefault("output", {})
        self.save(index, rec)
        self.publish("step.started", sid, index=index, title=step["title"], kind=rec["kind"],
                     description=step.get("description"), attempt=rec["attempts"], phase=rec.get("phase"))
        try:
            self.step_body(index, step, rec)
        except _StepFailed as failure:
            self.end_step(index, rec, "failed", started, error=failure.reason)
            raise
        except _Stopped as stop:
            self.end_step(index, rec, {"rejected": "rejected", "waiting_approval": "waiting_approval"}.get(
                stop.status, "stopped"), started, error=stop.reason)
            raise
        if rec.get("status") != "skipped":
            self.end_step(index, rec, "succeeded", started)

    def end_step(self, index: int, rec: dict[str, Any], status: str, started: float, *,
                 error: str | None = None) -> None:
        rec.update(status=status, end=_now(), duration=round(time.monotonic() - started, 3), error=error)
        if status in ("succeeded", "skipped"):
            rec["phase"] = "done"
        self.save(index, rec)
        self.publish("step.finished", rec["step_id"],
                     **{k: rec.get(k) for k in ("status", "start", "end", "duration", "output", "error", "phase",
                                                "action_runs")})

    def skip(self, index: int, rec: dict[str, Any], reason: str) -> None:
        rec.update(status="skipped", phase="done", end=_now(), duration=0.0, error=None)
        rec["output"]["skipped"] = reason
        self.save(index, rec)
        self.publish("step.finished", rec["step_id"], status="skipped", reason=reason, output=rec["output"],
                     start=rec.get("start"), end=rec["end"], duration=0.0, error=None)

    def step_body(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> None:
        sid = step["id"]
        phase = rec.get("phase") or "pending"
        when = step.get("when")
        if when is not None and not render(when, self.params):
            return self.skip(index, rec, f"when {when} is false")
        approvers: tuple[str, ...] = ()
        if phase in ("pending", "approval"):
            if "precondition" in step:
                pre = step["precondition"]
                reading = self.poll(pre, sid, "precondition", 0)
                rec["output"]["precondition"] = reading
                if not reading["met"]:
                    why = f"precondition {pre['probe']} {describe_expect(reading['expect'])} not met " \
                          f"(value {reading['value']!r}{', ' + reading['error'] if reading.get('error') else ''})"
                    if pre.get("if_not_met") == "skip":
                        return self.skip(index, rec, why)
                    raise _StepFailed(why)
            if "approval" in step:
                approvers = self.await_approval(index, step, rec)
            if "check" in step:
                spec = step["check"]
                reading = self.poll(spec, sid, "check", float(render(spec.get("timeout", 0), self.params)))
                rec["output"]["check"] = reading
                if not reading["met"]:
                    raise _StepFailed(f"{spec['probe']} is {reading['value']!r}, expected "
                                      f"{describe_expect(reading['expect'])}"
                                      + (f" ({reading['error']})" if reading.get("error") else ""))
            if "manual" in step:
                self.publish("manual.instruction", sid, instruction=step["manual"])
                if not self.ask(f"{step['manual'].strip()}\nDone?"):
                    raise _Stopped(f"step {sid}: the operator has not confirmed the manual step; "
                                   f"`tradeops runbook resume {self.eid}` when it is done")
                rec["output"]["manual"] = {"confirmed_by": self.identity.name,
                                           "how": "--yes" if self.assume_yes else "prompt"}
            if "action" in step:
                spec = step["action"]
                args = render(spec.get("args") or {}, self.params)
                if not self.ask(f"Run {spec['name']}({_args_text(args)})?"):
                    raise _Stopped(f"step {sid}: the operator declined the action; "
                                   f"`tradeops runbook resume {self.eid}` to be asked again")
                self.act(index, step, rec, approvers)
        elif phase in ("acting", "action_failed"):
            op = registry.get(step["action"]["name"])
            assert op is not None
            why = "interrupted while its action ran" if phase == "acting" else "its action failed"
            if not op.idempotent and not (not self.assume_yes and self.ask(
                    f"Step {sid} was {why}; {op.name} may have taken effect. Run it again?")):
                raise _Stopped(f"step {sid} was {why} and {op.name} is not safe to repeat blindly; check its "
                               f"effect, then resume without --yes to decide")
            if "approval" in step:
                approvers = self.await_approval(index, step, rec)
            self.publish("action.retry", sid, reason=why, idempotent=op.idempotent)
            self.act(index, step, rec, approvers)
        if "verify" in step:
            spec = step["verify"]
            reading = self.poll(spec, sid, "verification", float(render(spec["timeout"], self.params)))
            rec["output"]["verify"] = reading
            if not reading["met"]:
                raise _StepFailed(f"verification {spec['probe']} {describe_expect(reading['expect'])} did not hold "
                                  f"within {reading['timeout']} s (last value {reading['value']!r})")
        return None

    def act(self, index: int, step: dict[str, Any], rec: dict[str, Any], approvers: tuple[str, ...]) -> None:
        sid = step["id"]
        spec = step["action"]
        op = registry.get(spec["name"])
        assert op is not None
        args = render(spec.get("args") or {}, self.params)
        self.guard()
        # Recorded before the call: a crash from here on leaves "acting", never a silent gap.
        rec.update(phase="acting", action_runs=int(rec.get("action_runs", 0)) + 1)
        self.save(index, rec)
        self.publish("action.started", sid, action=op.name, args=args, run=rec["action_runs"],
                     approvers=list(approvers))
        started_at, t0 = _now(), time.monotonic()
        try:
            output = op(self.ctx(sid, approvers), **args)
        except Exception as exc:
            result = {"status": "failed", "action": op.name, "args": args, "start": started_at, "end": _now(),
                      "duration": round(time.monotonic() - t0, 3), "output": None, "error": _reason(exc)}
            rec["output"]["action"] = result
            rec["phase"] = "action_failed"
            self.save(index, rec)
            self.publish("action.finished", sid, **result)
            raise _StepFailed(f"{op.name} failed: {result['error']}") from None
        result = {"status": "succeeded", "action": op.name, "args": args, "start": started_at, "end": _now(),
                  "duration": round(time.monotonic() - t0, 3), "output": output, "error": None}
        rec["output"]["action"] = result
        rec["phase"] = "acted"
        self.save(index, rec)
        self.publish("action.finished", sid, **result)

    # -- approvals --

    def approval_context(self, step_id: str) -> ApprovalContext:
        return ApprovalContext(execution_id=self.eid, step_id=step_id, runbook_sha256=self.meta["runbook_sha256"],
                               executors=frozenset(self.meta.get("executors") or ()),
                               roles_of=dict(self.operators.roles) if self.operators else {})

    def await_approval(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> tuple[str, ...]:
        sid = step["id"]
        rule = ApprovalRule.from_spec(step["approval"])
        ctx = self.approval_context(sid)
        command = f"tradeops runbook approve {self.eid} {sid}"
        deadline = time.monotonic() + self.approval_timeout if self.approval_timeout is not None else None
        announced, hooked = False, False
        shown: tuple[Any, ...] | None = None
        while True:
            decision = evaluate(rule, ctx, self.store.approvals(self.eid, sid))
            if decision.state == "granted":
                rec["approvals"] = {"approved_by": list(decision.approved_by), "needed": rule.count,
                                    "refused": [list(r) for r in decision.refused]}
                self.publish("approval.granted", sid, approved_by=list(decision.approved_by),
                             refused=[list(r) for r in decision.refused], count=rule.count, roles=list(rule.roles))
                rec["phase"] = "approval"
                if announced:
                    rec["status"] = "running"
                    self.set_meta(status="running")
                self.save(index, rec)
                return decision.approved_by
            if decision.state == "rejected":
                who = "; ".join(f"{i} ({r or 'no reason'})" for i, r in decision.rejected_by)
                rec["approvals"] = {"rejected_by": [list(r) for r in decision.rejected_by]}
                self.publish("approval.stopped", sid, rejected_by=[list(r) for r in decision.rejected_by])
                raise _Stopped(f"step {sid} was rejected by {who}; its action was not run. "
                               f"`tradeops runbook abort {self.eid}` ends the execution", status="rejected")
            if not announced:
                # Announce first (audit, terminal), then record the wait others poll for.
                self.publish("approval.requested", sid, count=rule.count, roles=list(rule.roles), command=command,
                             executors=sorted(ctx.executors))
                rec.update(status="waiting_approval", phase="approval")
                self.save(index, rec)
                self.set_meta(status="waiting_approval", current_step=sid)
                announced = True
            state = (decision.approved_by, decision.refused)
            if state != shown:
                self.publish("approval.progress", sid, approved_by=list(decision.approved_by), needed=rule.count,
                             refused=[list(r) for r in decision.refused], command=command)
                shown = state
            if self.on_approval_wait is not None and not hooked:
                self.on_approval_wait(ApprovalWait(self.eid, sid, rule, decision, command))
                hooked = True
                continue  # look again at once: the hook may have approved
            hooked = False
            self.guard()
            if deadline is not None and time.monotonic() >= deadline:
                raise _Stopped(f"step {sid} still needs {decision.missing} approval(s) after "
                               f"{self.approval_timeout:g} s; `tradeops runbook resume {self.eid}` waits again",
                               status="waiting_approval")
            time.sleep(self.poll_seconds)

    # -- rollback --

    def rollback(self, upto: int, reason: str) -> None:
        """Undo the completed actions of steps 0..upto, newest first, each recorded."""
        records = self.store.steps(self.eid)
        todo = [i for i in sorted(records, reverse=True)
                if i <= upto and "action" in self.runbook.steps[i] and records[i].get("phase") in ("acted", "done")
                and int(records[i].get("action_runs", 0)) > 0 and not records[i].get("rollback")]
        self.publish("rollback.started", None, reason=reason, steps=[self.runbook.steps[i]["id"] for i in todo])
        done, failed = [], []
        for i in todo:
            step, rec = self.runbook.steps[i], records[i]
            op = registry.get(step["action"]["name"])
            assert op is not None
            spec = step.get("rollback", "restore" if op.restore_arg else "none")
            if spec == "none":
                rec["rollback"] = {"status": "none", "start": _now(), "end": _now(), "duration": 0.0,
                                   "output": None, "error": None}
                self.store.put_step(self.eid, i, rec, lease_token=None)
                self.publish("rollback.step", step["id"], status="none", action=None, args=None)
                continue
            if spec == "restore":
                previous = ((rec.get("output") or {}).get("action") or {}).get("output") or {}
                rb_op, args = op, {op.restore_arg: previous.get("previous")}
            else:
                rb_op = registry.get(spec["name"])
                assert rb_op is not None
                args = render(spec.get("args") or {}, self.params)
            started_at, t0 = _now(), time.monotonic()
            try:
                output = rb_op(self.ctx(step["id"]), **args)
                result = {"status": "succeeded", "output": output, "error": None}
                done.append(step["id"])
            except Exception as exc:
                result = {"status": "failed", "output": None, "error": _reason(exc)}
                failed.append(step["id"])
            rec["rollback"] = {**result, "action": rb_op.name, "args": args, "start": started_at, "end": _now(),
                               "duration": round(time.monotonic() - t0, 3)}
            # Unconditional write: a rollback also runs after an abort, which the lease check refuses.
            # Only the lease holder gets here, so no other process writes this step meanwhile.
            self.store.put_step(self.eid, i, rec, lease_token=None)
            self.publish("rollback.step", step["id"], **rec["rollback"])
        self.publish("rollback.finished", None, rolled_back=done, failed=failed)
        self.store.set_fields(self.eid, {"rolled_back": True, "rollback_failed": failed, "updated_at": _now()})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TradeopsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _args_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


# ---- entry points -------------------------------------------------------------------------

def _aws(settings: Any, aws: Aws | None) -> Aws:
    return aws or Aws(settings)


def _observers(aws: Aws, audit_chain: str, extra: Iterable[Observer]) -> list[Observer]:
    # The audit goes first: if it cannot record, nothing else happens (fail closed).
    return [AuditObserver(AuditLog(aws, chain=audit_chain)), *extra]


def _operators_for(settings: Any, runbook_doc: Mapping[str, Any], operators: Operators | None) -> Operators | None:
    if operators is not None:
        return operators
    path = operators_path(settings)
    needs = any(isinstance(s, dict) and "approval" in s for s in runbook_doc.get("steps") or [])
    if needs or path.exists():
        return load_operators(path)  # a missing file is a ConfigError when approvals need it
    return None


def run_execution(settings: Any, ref: str, *, aws: Aws | None = None, params: Mapping[str, Any] | None = None,
                  identity: Identity | None = None, operators: Operators | None = None, assume_yes: bool = False,
                  confirm: Confirm | None = None, on_approval_wait: ApprovalHook | None = None,
                  observers: Iterable[Observer] = (), audit_chain: str = "audit", poll_seconds: float = 1.0,
                  approval_timeout: float | None = None, execution_id: str | None = None) -> Outcome:
    """Validate a runbook with its parameters, create an execution, and drive it as far as it goes.

    ``confirm(prompt) -> bool`` is asked before each action and manual step (unless
    ``assume_yes``; with neither, the run stops at the first one). ``on_approval_wait`` is called
    while a step waits for approvers (a scripted approver for drills and tests); approvals are
    never skipped. Raises BadInput for an invalid runbook or parameters before touching anything.
    """
    path = resolve_path(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read runbook {path}: {exc.strerror}") from None
    # Validate the shape first (without operators), so a broken file is reported as such.
    runbook = load_runbook(path)
    operators = _operators_for(settings, runbook.doc, operators)
    aws = _aws(settings, aws)
    identity = identity or current_identity(settings, aws)
    if execution_id is not None and not _EXECUTION_ID.match(execution_id):
        raise BadInput(f"execution id {execution_id!r}: use letters, digits and _.:- (at most 128)")
    eid = execution_id or f"{runbook.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    values = resolve_params(runbook, params, {"execution_id": eid, "runbook": runbook.name,
                                              "executor": identity.name})
    checked, issues = check_runbook(path, text, operators=operators, params=values, executor=identity.name)
    if issues:
        raise RunbookInvalid(issues)
    assert checked is not None
    store = ExecutionStore(aws)
    token = secrets.token_hex(16)
    now = _now()
    meta = {
        "execution_id": eid, "runbook": checked.name, "runbook_ref": _runbook_ref(checked),
        "runbook_sha256": checked.sha256, "runbook_text": checked.text, "title": checked.title,
        "version": checked.version, "service": checked.service, "impact_tolerance": checked.impact_tolerance,
        "params": values, "status": "running", "executor": identity.name, "executor_source": identity.source,
        "executors": [identity.name], "created_at": now, "updated_at": now, "current_step": None,
        "audit_chain": audit_chain, "lease_token": token, "lease_until": time.time() + LEASE_SECONDS,
        "lease_owner": _owner(),
    }
    store.create(meta)
    lease = _Lease(store, eid, token).start()
    runner = _Runner(settings=settings, aws=aws, store=store, runbook=checked, meta=meta, identity=identity,
                     operators=operators, observers=_observers(aws, audit_chain, observers), assume_yes=assume_yes,
                     confirm=confirm, on_approval_wait=on_approval_wait, poll_seconds=poll_seconds,
                     approval_timeout=approval_timeout, lease=lease)
    try:
        runner.publish("execution.started", runbook=checked.name, title=checked.title, version=checked.version,
                       runbook_sha256=checked.sha256, service=checked.service,
                       impact_tolerance=checked.impact_tolerance, params=values, executor_source=identity.source,
                       assume_yes=assume_yes)
        return runner.run()
    finally:
        lease.stop()


def _load_execution_runbook(meta: Mapping[str, Any], operators: Operators | None) -> Runbook:
    """The runbook file of an execution, refused unless it is the exact text the execution started with."""
    path = resolve_path(meta["runbook_ref"])
    text = path.read_text(encoding="utf-8")
    if _sha256_text(text) != meta["runbook_sha256"]:
        raise BadInput(f"runbook {meta['runbook']} ({path}) was edited after execution {meta['execution_id']} "
                       f"started (SHA-256 differs); refused. Restore it, or abort and start a new run")
    runbook, issues = check_runbook(path, text, operators=operators, params=meta.get("params"))
    if issues:
        raise RunbookInvalid(issues)
    assert runbook is not None
    return runbook


def _take_over(store: ExecutionStore, meta: Mapping[str, Any], token: str) -> None:
    owner = meta.get("lease_owner") or {}
    dead = None
    if meta.get("lease_token") and owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid")):
        dead = meta["lease_token"]  # its process is gone from this host: no need to wait out the lease
    store.acquire(meta["execution_id"], token, _owner(), LEASE_SECONDS, steal_from=dead)


def resume_execution(settings: Any, execution_id: str, *, aws: Aws | None = None, identity: Identity | None = None,
                     operators: Operators | None = None, assume_yes: bool = False, confirm: Confirm | None = None,
                     on_approval_wait: ApprovalHook | None = None, observers: Iterable[Observer] = (),
                     poll_seconds: float = 1.0, approval_timeout: float | None = None) -> Outcome:
    """Continue an interrupted or stopped execution from the step it stopped at."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    status = meta.get("status")
    if status == "aborted":
        raise BadInput(f"execution {execution_id} was aborted by {meta.get('aborted_by')}; it cannot be resumed "
                       f"(start a new run)")
    if status in ("completed", "failed"):
        raise BadInput(f"execution {execution_id} is already {status}; nothing to resume")
    doc = yaml.safe_load(meta["runbook_text"])
    operators = _operators_for(settings, doc if isinstance(doc, dict) else {}, operators)
    runbook = _load_execution_runbook(meta, operators)
    identity = identity or current_identity(settings, aws)
    token = secrets.token_hex(16)
    _take_over(store, meta, token)
    lease = _Lease(store, execution_id, token).start()
    try:
        meta = store.meta(execution_id)
        executors = list(meta.get("executors") or [])
        if identity.name not in executors:
            executors.append(identity.name)
        runner = _Runner(settings=settings, aws=aws, store=store, runbook=runbook, meta=meta, identity=identity,
                         operators=operators, observers=_observers(aws, meta.get("audit_chain", "audit"), observers),
                         assume_yes=assume_yes, confirm=confirm, on_approval_wait=on_approval_wait,
                         poll_seconds=poll_seconds, approval_timeout=approval_timeout, lease=lease)
        runner.set_meta(executors=executors, status="running")
        runner.publish("execution.resumed", previous_status=status, at_step=meta.get("current_step"),
                       executor_source=identity.source, assume_yes=assume_yes)
        return runner.run()
    finally:
        lease.stop()


def abort_execution(settings: Any, execution_id: str, *, aws: Aws | None = None, identity: Identity | None = None,
                    reason: str = "", rollback: bool = False, observers: Iterable[Observer] = (),
                    operators: Operators | None = None) -> dict[str, Any]:
    """Abort an execution. With ``rollback``, undo its completed actions (here, or by its driver)."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    identity = identity or current_identity(settings, aws)
    before = store.mark_aborted(execution_id, {"aborted_by": identity.name, "aborted_at": _now(),
                                               "reason": reason or None, "rollback_requested": rollback,
                                               "updated_at": _now()})
    chain = before.get("audit_chain", "audit")
    obs = _observers(aws, chain, observers)
    event = Event("execution.aborted", execution_id, before.get("current_step"), identity.name, identity.source,
                  {"reason": reason, "rollback": rollback, "previous_status": before.get("status")})
    for o in obs:
        o.notify(event)
    result = {"execution_id": execution_id, "status": "aborted", "previous_status": before.get("status"),
              "rolled_back": False}
    if not rollback:
        return result
    token = secrets.token_hex(16)
    try:
        _take_over(store, before, token)
    except BadInput:
        # A live process drives it: it sees the abort at its next check and rolls back itself.
        result["rollback"] = "requested from the process driving the execution"
        return result
    lease = _Lease(store, execution_id, token).start()
    try:
        doc = yaml.safe_load(before["runbook_text"])
        # The stored text, not the file: rolling back must work even if the file is gone or changed.
        runbook = Runbook(path=Path(str(before["runbook_ref"])), text=before["runbook_text"],
                          sha256=before["runbook_sha256"], doc=doc, lines={})
        runner = _Runner(settings=settings, aws=aws, store=store, runbook=runbook, meta=dict(before),
                         identity=identity, operators=operators, observers=obs, assume_yes=True, confirm=None,
                         on_approval_wait=None, poll_seconds=1.0, approval_timeout=None, lease=None)
        runner.rollback(len(runbook.steps) - 1, f"aborted by {identity.name}: {reason or 'no reason given'}")
    finally:
        lease.stop()
    result["rolled_back"] = True
    return result


def decide(settings: Any, execution_id: str, step_id: str, decision: str, *, aws: Aws | None = None,
           identity: Identity | None = None, operators: Operators | None = None, reason: str = "",
           observers: Iterable[Observer] = ()) -> Approval:
    """Record one approver's decision ("approve" or "reject") on a step, refusing what the rules refuse."""
    if decision not in ("approve", "reject"):
        raise BadInput(f"a decision is approve or reject, not {decision!r}")
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    text = meta.get("runbook_text", "")
    if _sha256_text(text) != meta.get("runbook_sha256"):
        raise BadInput(f"execution {execution_id}: the runbook text it stores does not match its SHA-256; refused")
    doc = yaml.safe_load(text)
    steps = {s["id"]: (i, s) for i, s in enumerate(doc.get("steps", []))}
    if step_id not in steps:
        raise NotFound(f"execution {execution_id} ({meta.get('runbook')}) has no step {step_id!r} "
                       f"(steps: {', '.join(steps)})")
    index, step = steps[step_id]
    status = meta.get("status")
    if status in FINAL_STATUSES:
        raise BadInput(f"execution {execution_id} is {status}; there is nothing left to {decision}")
    if "approval" not in step:
        raise BadInput(f"step {step_id} of {meta.get('runbook')} needs no approval")
    rec = store.steps(execution_id).get(index) or {}
    if rec.get("status") in ("succeeded", "skipped", "rejected") or rec.get("phase") in ("acting", "acted", "done"):
        raise BadInput(f"step {step_id} of {execution_id} is already {rec.get('status')}; a decision now "
                       "would change nothing")
    identity = identity or current_identity(settings, aws)
    operators = operators or load_operators(operators_path(settings))
    rule = ApprovalRule.from_spec(step["approval"])
    ctx = ApprovalContext(execution_id=execution_id, step_id=step_id, runbook_sha256=meta["runbook_sha256"],
                          executors=frozenset(meta.get("executors") or ()), roles_of=dict(operators.roles))
    check_new_decision(rule, ctx, identity.name, store.approvals(execution_id, step_id))
    approval = Approval.make(ctx, identity.name, identity.source, "reject" if decision == "reject" else "approve",
                             reason=reason, at=_now())
    store.put_approval(approval)
    event = Event("approval.approved" if decision == "approve" else "approval.rejected", execution_id, step_id,
                  identity.name, identity.source,
                  {"roles": list(approval.roles), "reason": reason, "binding": approval.binding,
                   "runbook_sha256": approval.runbook_sha256})
    for o in _observers(aws, meta.get("audit_chain", "audit"), observers):
        o.notify(event)
    return approval


def plan_runbook(settings: Any, ref: str, *, aws: Aws | None = None, params: Mapping[str, Any] | None = None,
                 operators: Operators | None = None) -> dict[str, Any]:
    """What a run would do, with the live value of every check; changes nothing."""
    runbook = load_runbook(ref)
    path = runbook.path
    operators = operators if operators is not None else (
        load_operators(operators_path(settings)) if operators_path(settings).exists() else None)
    values = resolve_params(runbook, params, {"execution_id": "(plan)", "runbook": runbook.name,
                                              "executor": "(you)"})
    checked, issues = check_runbook(path, runbook.text, operators=operators, params=values)
    if issues:
        raise RunbookInvalid(issues)
    assert checked is not None
    aws = _aws(settings, aws)
    ctx = OperationContext(settings=settings, aws=aws, execution_id=None, instant=True)
    steps = []
    for step in checked.steps:
        entry: dict[str, Any] = {"id": step["id"], "title": step["title"],
                                 "kind": next(k for k in ("check", "action", "manual") if k in step),
                                 "runs": bool(render(step.get("when", True), values)), "checks": []}
        for what in ("precondition", "check", "verify"):
            if what not in step:
                continue
            spec = step[what]
            op = registry.get(spec["probe"])
            assert op is not None
            args = render(spec.get("args") or {}, values)
            expect = render(spec["expect"], values)
            check: dict[str, Any] = {"what": what, "probe": op.name, "args": args, "expect": expect,
                                     "expect_text": describe_expect(expect)}
            try:
                got = op(ctx, **args)
                reading = got if isinstance(got, Reading) else Reading(got)
                check.update(value=reading.value, met=expectation_met(expect, reading.value),
                             detail=reading.detail, sampled_once=op.sampling or None)
            except Exception as exc:
                check.update(value=None, met=False, error=_reason(exc))
            entry["checks"].append(check)
        if "action" in step:
            entry["action"] = {"name": step["action"]["name"], "args": render(step["action"].get("args") or {},
                                                                              values)}
            entry["rollback"] = step.get("rollback", "restore" if registry.get(step["action"]["name"]).restore_arg
                                         else "none")
        if "manual" in step:
            entry["manual"] = step["manual"]
        if "approval" in step:
            entry["approval"] = step["approval"]
        entry["on_failure"] = step.get("on_failure", "abort")
        steps.append(entry)
    return {"runbook": checked.name, "title": checked.title, "version": checked.version,
            "service": checked.service, "impact_tolerance": checked.impact_tolerance,
            "runbook_sha256": checked.sha256, "params": {k: v for k, v in values.items() if k in checked.parameters},
            "steps": steps}


_PRIVATE_META = ("runbook_text", "lease_token", "item")


def execution_history(settings: Any, execution_id: str, *, aws: Aws | None = None) -> dict[str, Any]:
    """One execution: its meta, its step records and its audit timeline (what reports are built from)."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    records = store.steps(execution_id)
    timeline = AuditLog(aws, chain=meta.get("audit_chain", "audit")).entries(execution_id)
    return {"execution": {k: v for k, v in meta.items() if k not in _PRIVATE_META},
            "steps": [{k: v for k, v in records[i].items() if k not in ("item",)} for i in sorted(records)],
            "timeline": timeline}


def list_executions(settings: Any, *, aws: Aws | None = None) -> list[dict[str, Any]]:
    return ExecutionStore(_aws(settings, aws)).list_executions()
