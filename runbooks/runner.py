"""Walking one execution's steps while holding its lease: the phases of a step, its checks and its action.

Each step goes through phases, each recorded before the next starts::

    when → precondition → approval → check | manual | action → verification → done

and its record is always ``{status, start, end, duration, output, error}`` plus its phase, how
many times its action ran and its rollback. Because "acting" is written before an action runs
and "acted" after, a resume never repeats a completed action and never skips an unfinished one:
an action interrupted mid-flight is re-run only if it is idempotent, otherwise the operator is
asked (and ``--yes`` stops rather than guess).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tradeops.runbooks import registry
from tradeops.runbooks.approvals import DRILL_SOURCE, ApprovalContext, ApprovalRule, evaluate
from tradeops.runbooks.events import ApprovalHook, ApprovalWait, Confirm, Event, Observer, Outcome
from tradeops.runbooks.expectations import describe_expect, expectation_met
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runbooks.loader import Runbook, resolve_path, sha256_text, step_kind
from tradeops.runbooks.notices import publish_approval_request
from tradeops.runbooks.params import render
from tradeops.runbooks.registry import OperationContext, Reading
from tradeops.runbooks.rollback import Undo, rollback
from tradeops.runbooks.store import (
    FINAL_STATUSES,
    DecisionsChanged,
    ExecutionAborted,
    ExecutionStore,
    Lease,
    LeaseLost,
)
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, Interrupted, TradeopsError, reason_of
from tradeops.runtime.platform.logs import bound
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.text import human

__all__ = ["DEFAULT_EVERY", "TIMED_OUT", "Runner", "StepFailed", "Stopped"]

DEFAULT_EVERY = 0.5
TIMED_OUT = "approval-timed-out"
"""The status of a step (and its execution) whose approvers did not decide in time; `resume` waits again."""
PROGRESS_EVERY = 30.0
"""Seconds between reminders of how long a step has waited for its approvers."""


class StepFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stopped(Exception):
    """The step cannot go on without a person (declined, rejected, approval timed out)."""

    def __init__(self, reason: str, *, status: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Runner:
    """Drives one execution while holding its lease."""

    def __init__(self, *, settings: Settings, aws: Aws, store: ExecutionStore, runbook: Runbook, meta: dict[str, Any],
                 identity: Identity, operators: Operators | None, observers: Sequence[Observer],
                 assume_yes: bool, confirm: Confirm | None, on_approval_wait: ApprovalHook | None,
                 poll_seconds: float, approval_timeout: float | None, lease: Lease | None) -> None:
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
        changes["updated_at"] = iso()
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
        if sha256_text(text) != self.meta["runbook_sha256"]:
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
                    "error": reason_of(exc), "met": False}
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
        with bound(execution_id=self.eid):  # every line logged while it runs names the execution
            return self._run()

    def _run(self) -> Outcome:
        records = self.store.steps(self.eid)
        acting = self.store.meta(self.eid).get("acting") or {}
        steps = self.runbook.steps
        index = 0
        try:
            for index, step in enumerate(steps):
                rec = records.get(index) or {"step_id": step["id"], "status": "pending", "phase": "pending",
                                             "action_runs": 0, "attempts": 0}
                if rec.get("status") in ("succeeded", "skipped"):
                    continue
                started = acting.get(step["id"]) or {}
                if int(started.get("run") or 0) > int(rec.get("action_runs") or 0):
                    # The move to acting landed, its step record did not (a crash in between): it was acting.
                    rec.update(phase="acting", action_runs=int(started["run"]))
                self.guard()
                self.set_meta(status="running", current_step=step["id"])
                self.run_step(index, step, rec)
        except StepFailed as failure:
            step = steps[index]
            policy = step.get("on_failure", "abort")
            if policy == "stop":
                return self.finish("stopped", f"step {step['id']} failed: {failure.reason}; fix the cause, then "
                                              f"`tradeops runbook resume {self.eid}` or `abort`")
            self.rollback(index, f"step {step['id']} failed: {failure.reason}")
            return self.finish("failed", f"step {step['id']} failed: {failure.reason}; completed steps rolled back")
        except Stopped as stop:
            # A rejected step stops the execution; only `abort` (or a new run) gets past it.
            return self.finish("stopped" if stop.status == "rejected" else stop.status, stop.reason)
        except KeyboardInterrupt:
            sid = steps[index]["id"] if steps else None
            reason = (f"interrupted at step {index + 1} ({sid}); nothing is running it now. "
                      f"`tradeops runbook resume {self.eid}` continues from there")
            self.publish("execution.interrupted", sid, reason=reason)
            # Recorded as stopped (not left "running"), and the lease is released on the way out.
            self.finish("stopped", reason)
            raise Interrupted(reason) from None
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
        except LeaseLost:
            raise  # another process drives it now: this one writes nothing more
        except TradeopsError as exc:
            # AWS or the stack failed under us (e.g. the approvers' topic cannot be reached): never leave the
            # execution looking "running"; record why, and how to go on, if AWS lets us.
            with contextlib.suppress(Exception):
                self.finish("stopped", f"{exc}; fix that, then `tradeops runbook resume {self.eid}`")
            raise
        return self.finish("completed", None)

    def finish(self, status: str, reason: str | None) -> Outcome:
        self.set_meta(status=status, reason=reason, **({"finished_at": iso()} if status in FINAL_STATUSES else {}))
        self.publish("execution.finished" if status in FINAL_STATUSES else "execution.stopped",
                     status=status, reason=reason)
        return self.outcome(status, reason)

    def outcome(self, status: str, reason: str | None) -> Outcome:
        records = self.store.steps(self.eid)
        return Outcome(self.eid, status, reason, [records[i] for i in sorted(records)])

    def run_step(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> None:
        sid = step["id"]
        started = time.monotonic()
        rec.update(step_id=sid, title=step["title"], kind=step_kind(step),
                   status="running", start=rec.get("start") or iso(), attempts=int(rec.get("attempts", 0)) + 1,
                   error=None)
        rec.setdefault("output", {})
        self.save(index, rec)
        self.publish("step.started", sid, index=index, title=step["title"], kind=rec["kind"],
                     description=step.get("description"), attempt=rec["attempts"], phase=rec.get("phase"))
        try:
            self.step_body(index, step, rec)
        except StepFailed as failure:
            self.end_step(index, rec, "failed", started, error=failure.reason)
            raise
        except Stopped as stop:
            self.end_step(index, rec, stop.status if stop.status in ("rejected", TIMED_OUT) else "stopped",
                          started, error=stop.reason)
            raise
        if rec.get("status") != "skipped":
            self.end_step(index, rec, "succeeded", started)

    def end_step(self, index: int, rec: dict[str, Any], status: str, started: float, *,
                 error: str | None = None) -> None:
        rec.update(status=status, end=iso(), duration=round(time.monotonic() - started, 3), error=error)
        if status in ("succeeded", "skipped"):
            rec["phase"] = "done"
        self.save(index, rec)
        self.publish("step.finished", rec["step_id"],
                     **{k: rec.get(k) for k in ("status", "start", "end", "duration", "output", "error", "phase",
                                                "action_runs")})

    def skip(self, index: int, rec: dict[str, Any], reason: str) -> None:
        rec.update(status="skipped", phase="done", end=iso(), duration=0.0, error=None)
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
        seen: int | None = None
        if phase in ("pending", "approval", TIMED_OUT):
            if "precondition" in step:
                pre = step["precondition"]
                reading = self.poll(pre, sid, "precondition", 0)
                rec["output"]["precondition"] = reading
                if not reading["met"]:
                    why = f"precondition {pre['probe']} {describe_expect(reading['expect'])} not met " \
                          f"(value {human(reading['value'])}" \
                          f"{', ' + reading['error'] if reading.get('error') else ''})"
                    if pre.get("if_not_met") == "skip":
                        return self.skip(index, rec, why)
                    raise StepFailed(why)
            if "approval" in step:
                approvers, seen = self.await_approval(index, step, rec)
            if "check" in step:
                spec = step["check"]
                reading = self.poll(spec, sid, "check", float(render(spec.get("timeout", 0), self.params)))
                rec["output"]["check"] = reading
                if not reading["met"]:
                    raise StepFailed(f"{spec['probe']} is {human(reading['value'])}, expected "
                                      f"{describe_expect(reading['expect'])}"
                                      + (f" ({reading['error']})" if reading.get("error") else ""))
            if "manual" in step:
                self.publish("manual.instruction", sid, instruction=step["manual"])
                if not self.ask(f"{step['manual'].strip()}\nDone?"):
                    raise Stopped(f"step {sid}: the operator has not confirmed the manual step; "
                                   f"`tradeops runbook resume {self.eid}` when it is done")
                rec["output"]["manual"] = {"confirmed_by": self.identity.name,
                                           "how": "--yes" if self.assume_yes else "prompt"}
            if "action" in step:
                spec = step["action"]
                args = render(spec.get("args") or {}, self.params)
                if not self.ask(f"Run {spec['name']}({_args_text(args)})?"):
                    raise Stopped(f"step {sid}: the operator declined the action; "
                                   f"`tradeops runbook resume {self.eid}` to be asked again")
                self.act(index, step, rec, approvers, seen)
        elif phase in ("acting", "action_failed"):
            op = registry.get(step["action"]["name"])
            assert op is not None
            why = "interrupted while its action ran" if phase == "acting" else "its action failed"
            if not op.idempotent and not (not self.assume_yes and self.ask(
                    f"Step {sid} was {why}; {op.name} may have taken effect. Run it again?")):
                raise Stopped(f"step {sid} was {why} and {op.name} is not safe to repeat blindly; check its "
                               f"effect, then resume without --yes to decide")
            if "approval" in step:
                approvers, seen = self.await_approval(index, step, rec)
            self.publish("action.retry", sid, reason=why, idempotent=op.idempotent)
            self.act(index, step, rec, approvers, seen)
        if "verify" in step:
            spec = step["verify"]
            reading = self.poll(spec, sid, "verification", float(render(spec["timeout"], self.params)))
            rec["output"]["verify"] = reading
            if not reading["met"]:
                raise StepFailed(f"verification {spec['probe']} {describe_expect(reading['expect'])} did not hold "
                                  f"within {reading['timeout']} s (last value {human(reading['value'])})")
        return None

    def act(self, index: int, step: dict[str, Any], rec: dict[str, Any], approvers: tuple[str, ...],
            seen: int | None) -> None:
        sid = step["id"]
        spec = step["action"]
        op = registry.get(spec["name"])
        assert op is not None
        args = render(spec.get("args") or {}, self.params)
        self.guard()
        run = int(rec.get("action_runs", 0)) + 1
        # Decisions are final only here: the move to acting is one conditional write that holds only if the
        # step's decisions are still the ones counted (a rejection, withdrawal or abort since makes it fail;
        # once it lands, decisions are refused). A crash from here on leaves "acting", never a silent gap.
        while True:
            try:
                self.store.start_action(self.eid, sid, {"run": run, "at": iso(), "by": self.identity.name,
                                                        "approvers": list(approvers), "decision_seq": seen},
                                        lease_token=str(self.token), decision_seq=seen)
                break
            except DecisionsChanged:
                approvers, seen = self.await_approval(index, step, rec)
        rec.update(phase="acting", action_runs=run)
        self.save(index, rec)
        self.publish("action.started", sid, action=op.name, args=args, run=rec["action_runs"],
                     approvers=list(approvers))
        started_at, t0 = iso(), time.monotonic()
        try:
            output = op(self.ctx(sid, approvers), **args)
        except Exception as exc:
            result = {"status": "failed", "action": op.name, "args": args, "start": started_at, "end": iso(),
                      "duration": round(time.monotonic() - t0, 3), "output": None, "error": reason_of(exc)}
            rec["output"]["action"] = result
            rec["phase"] = "action_failed"
            self.save(index, rec)
            self.publish("action.finished", sid, **result)
            raise StepFailed(f"{op.name} failed: {result['error']}") from None
        result = {"status": "succeeded", "action": op.name, "args": args, "start": started_at, "end": iso(),
                  "duration": round(time.monotonic() - t0, 3), "output": output, "error": None}
        rec["output"]["action"] = result
        rec["phase"] = "acted"
        self.save(index, rec)
        self.publish("action.finished", sid, **result)

    # -- approvals --

    def approval_context(self, step_id: str) -> ApprovalContext:
        return ApprovalContext(execution_id=self.eid, step_id=step_id, runbook_sha256=self.meta["runbook_sha256"],
                               executors=frozenset(self.meta.get("executors") or ()),
                               roles_of=dict(self.operators.roles) if self.operators else {},
                               drill=self.meta.get("executor_source") == DRILL_SOURCE)

    def approval_timeout_for(self, step: dict[str, Any]) -> float:
        """How long a step waits: --approval-timeout, else the runbook's approval.timeout, else the setting."""
        if self.approval_timeout is not None:
            return float(self.approval_timeout)
        return float(render(step["approval"].get("timeout", self.settings.approval_timeout_seconds), self.params))

    def request_approval(self, step: dict[str, Any], rule: ApprovalRule, timeout: float) -> dict[str, Any]:
        """Tell the approvers (the approvers' topic), then record the request: decisions count from now on."""
        sid = step["id"]
        spec = step.get("action") or {}
        now = utcnow()
        request = {"execution_id": self.eid, "step_id": sid, "title": step["title"], "runbook": self.runbook.name,
                   "version": self.runbook.version, "runbook_sha256": self.meta["runbook_sha256"],
                   "action": spec.get("name"), "args": render(spec.get("args") or {}, self.params),
                   "executor": self.identity.name, "count": rule.count, "roles": list(rule.roles),
                   "command": f"tradeops runbook approve {self.eid} {sid}", "timeout": timeout,
                   "at": iso(now), "deadline": iso(datetime.fromtimestamp(now.timestamp() + timeout, UTC))}
        # Published first: a step counts as requested only once its approvers have been told.
        request["message_id"] = publish_approval_request(self.aws, request)
        self.store.request_approval(self.eid, sid, request, lease_token=str(self.token))
        self.publish("approval.requested", sid, **{k: v for k, v in request.items() if k != "execution_id"},
                     executors=sorted(self.meta.get("executors") or ()))
        return request

    def await_approval(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> tuple[tuple[str, ...], int]:
        """Wait until the step's approval is granted; its approvers and the decision sequence they were counted at.

        A step still pending is (re)requested each time a run reaches it; the wait is bounded by
        approval_timeout_for(), after which the step stops as approval-timed-out (resumable)."""
        sid = step["id"]
        rule = ApprovalRule.from_spec(step["approval"])
        ctx = self.approval_context(sid)
        command = f"tradeops runbook approve {self.eid} {sid}"
        timeout = self.approval_timeout_for(step)
        requested: dict[str, Any] | None = None
        hooked = False
        shown: tuple[Any, ...] | None = None
        last_shown = 0.0
        while True:
            approvals, seen = self.store.approvals(self.eid, sid)
            decision = evaluate(rule, ctx, approvals)
            if decision.state == "granted":
                rec["approvals"] = {"approved_by": list(decision.approved_by), "needed": rule.count,
                                    "refused": [list(r) for r in decision.refused]}
                self.publish("approval.granted", sid, approved_by=list(decision.approved_by),
                             refused=[list(r) for r in decision.refused], count=rule.count, roles=list(rule.roles))
                rec["phase"] = "approval"
                if requested is not None:
                    rec["status"] = "running"
                    self.set_meta(status="running")
                self.save(index, rec)
                return decision.approved_by, seen
            if decision.state == "rejected":
                who = "; ".join(f"{i} ({r or 'no reason'})" for i, r in decision.rejected_by)
                rec["approvals"] = {"rejected_by": [list(r) for r in decision.rejected_by]}
                self.publish("approval.stopped", sid, rejected_by=[list(r) for r in decision.rejected_by])
                raise Stopped(f"step {sid} was rejected by {who}; its action was not run. "
                              f"`tradeops runbook abort {self.eid}` ends the execution", status="rejected")
            if requested is None:
                requested = self.request_approval(step, rule, timeout)
                rec.update(status="waiting_approval", phase="approval", waiting_since=requested["at"])
                self.save(index, rec)
                self.set_meta(status="waiting_approval", current_step=sid, waiting_since=requested["at"])
            elapsed = max((utcnow() - parse_iso(requested["at"])).total_seconds(), 0.0)
            state = (decision.approved_by, decision.refused)
            if state != shown or time.monotonic() - last_shown >= PROGRESS_EVERY:
                self.publish("approval.progress", sid, approved_by=list(decision.approved_by), needed=rule.count,
                             refused=[list(r) for r in decision.refused], command=command,
                             elapsed=round(elapsed, 1), timeout=timeout)
                shown, last_shown = state, time.monotonic()
            if self.on_approval_wait is not None and not hooked:
                self.on_approval_wait(ApprovalWait(self.eid, sid, rule, decision, command))
                hooked = True
                continue  # look again at once: the hook may have approved
            hooked = False
            self.guard()
            if elapsed >= timeout:
                raise Stopped(f"step {sid} still needs {decision.missing} approval(s) after waiting {timeout:g} s; "
                              f"`tradeops runbook resume {self.eid}` asks again and waits", status=TIMED_OUT)
            time.sleep(max(min(self.poll_seconds, timeout - elapsed), 0.0))

    # -- rollback --

    def rollback(self, upto: int, reason: str) -> None:
        """Undo the completed actions of steps 0..upto, newest first, each recorded."""
        rollback(self.store, Undo(self.eid, self.runbook.steps, self.params, self.ctx, self.publish), upto, reason)


def _args_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={human(v)}" for k, v in args.items())
