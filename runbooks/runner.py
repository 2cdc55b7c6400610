"""Walking one execution's steps while holding its lease: the phases of a step, its checks and its action.

Each step goes through phases (:mod:`.states` draws them)::

    when → precondition → approval → check | manual | action → verification → done

and its record is always ``{status, start, end, duration, output, error}`` plus its phase, how
many times its action ran and its rollback. Because "acting" is written before an action runs
and "acted" after, a resume never repeats a completed action and never skips an unfinished one:
an action interrupted mid-flight is re-run only if it is idempotent, otherwise the operator is
asked (and ``--yes`` stops rather than guess).

**Checkpoints.** Reading a probe changes nothing, so the runner does not write as it reads: it keeps
its status, step records (:class:`~tradeops.runbooks.changes.Changes`) and audit events, and writes
them at each checkpoint, before anything someone could need on record first:

- before an action runs, in the same conditional write as the move to acting (then the events, as
  one audit record, before the action itself);
- right after an action, its outcome ("acted", or "action_failed");
- before it asks the operator, before it waits for approvers (with the approval request), before it
  sleeps between two readings of a probe, and when the execution ends or stops.

Every write is conditional on the lease and on nobody having aborted, so an abort or a lost lease
stops the run at its next checkpoint, and always before an action; a wait with nothing to write reads
the execution for one at most every :data:`LIVE_CHECK_EVERY` seconds. A driver killed between two
checkpoints loses only what it read since the last one, which a resume reads again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tradeops.runbooks import eventkinds as ev
from tradeops.runbooks import registry
from tradeops.runbooks.approvals import DRILL_SOURCE, GRANTED, REJECTED, ApprovalContext, ApprovalRule, evaluate
from tradeops.runbooks.audit import AuditObserver
from tradeops.runbooks.changes import Changes
from tradeops.runbooks.events import ApprovalHook, ApprovalWait, Confirm, Event, Observer, Outcome
from tradeops.runbooks.expectations import describe_expect, expectation_met
from tradeops.runbooks.gateclient import GateDown, ask_gate
from tradeops.runbooks.gateledger import GateLedger
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runbooks.loader import Runbook, resolve_path, sha256_text, step_kind
from tradeops.runbooks.notices import publish_approval_request
from tradeops.runbooks.params import render
from tradeops.runbooks.registry import OperationContext, Reading
from tradeops.runbooks.rollback import Undo, rollback
from tradeops.runbooks.states import (
    ABORTED,
    ACTED,
    ACTING,
    ACTION_FAILED,
    ACTION_INTERRUPTED,
    APPROVAL,
    APPROVAL_TIMED_OUT,
    BEFORE_ACTION,
    COMPLETED,
    DONE,
    FAILED,
    FINAL,
    PENDING,
    RUNNING,
    SKIPPED,
    STEP_DONE,
    STOPPED,
    SUCCEEDED,
    WAITING_APPROVAL,
)
from tradeops.runbooks.states import REJECTED as STEP_REJECTED
from tradeops.runbooks.store import DecisionsChanged, ExecutionAborted, ExecutionStore, Lease, LeaseLost
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, Interrupted, TradeopsError, reason_of
from tradeops.runtime.platform.logs import bound
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.text import human

__all__ = ["DEFAULT_EVERY", "LIVE_CHECK_EVERY", "Runner", "StepFailed", "Stopped"]

DEFAULT_EVERY = 0.5
LIVE_CHECK_EVERY = 1.0
"""Seconds a waiting run goes between looks for an abort or a lost lease when it has nothing to write (each of its
writes is conditional on both, so a write is a look too): an abort stops a wait within about this long."""
PROGRESS_EVERY = 30.0
"""Seconds between reminders of how long a step has waited for its approvers."""


class StepFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stopped(Exception):
    """The step cannot go on without a person (declined, rejected, approval timed out)."""

    def __init__(self, reason: str, *, status: str = STOPPED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Runner:
    """Drives one execution while holding its lease.

    ``records`` are the step records stored when it takes over (none for a new execution); ``audit``
    holds the run's events until a checkpoint writes them, ahead of the other ``observers``.
    """

    def __init__(self, *, settings: Settings, aws: Aws, store: ExecutionStore, runbook: Runbook, meta: dict[str, Any],
                 records: Mapping[int, dict[str, Any]], identity: Identity, operators: Operators | None,
                 audit: AuditObserver, observers: Sequence[Observer], assume_yes: bool, confirm: Confirm | None,
                 on_approval_wait: ApprovalHook | None, poll_seconds: float, approval_timeout: float | None,
                 lease: Lease) -> None:
        self.settings, self.aws, self.store, self.runbook, self.meta = settings, aws, store, runbook, meta
        self.identity, self.operators, self.audit, self.observers = identity, operators, audit, list(observers)
        self.assume_yes, self.confirm, self.on_approval_wait = assume_yes, confirm, on_approval_wait
        self.poll_seconds, self.approval_timeout, self.lease = poll_seconds, approval_timeout, lease
        self.eid = meta["execution_id"]
        self.params = dict(meta.get("params") or {})
        self.records = dict(records)
        self.changes = Changes(self.eid, str(meta.get("status")), records, int(meta.get("lease_epoch") or 0))
        self._live_at = time.monotonic()  # when a write or a read last showed the run live (pause)

    # -- plumbing --

    @property
    def gated(self) -> bool:
        """Whether an approval gate holds this run's four-eyes and makes its guarded changes."""
        return bool(self.settings.gate_url)

    @property
    def token(self) -> str:
        return self.lease.token

    def publish(self, kind: str, step_id: str | None = None, /, **data: Any) -> None:
        event = Event(kind, self.eid, step_id, self.identity.name, self.identity.source, data)
        self.audit.notify(event)
        for observer in self.observers:
            observer.notify(event)

    def save(self, index: int, rec: dict[str, Any]) -> None:
        """Keep a step's record for the next write (its move checked now)."""
        self.changes.step(index, rec)

    def set_meta(self, **changes: Any) -> None:
        changes["updated_at"] = iso()
        self.changes.set(**changes)
        self.meta.update(changes)

    def write(self) -> None:
        """Write what the run keeps (one conditional write), e.g. an action's outcome the moment it is known."""
        if self.changes:
            self.store.write(self.changes, lease_token=self.token)
            self._live_at = time.monotonic()

    def checkpoint(self) -> None:
        """Before the run acts, asks or waits: its records, then its events (one audit record)."""
        self.write()
        self.audit.flush()

    def pause(self) -> None:
        """Before the run sleeps: a checkpoint, and a look for an abort or a lost lease (the guard)."""
        self.guard()
        if self.changes:
            self.checkpoint()  # the write itself is refused after an abort
        else:
            self.audit.flush()
            if time.monotonic() - self._live_at >= LIVE_CHECK_EVERY:
                self.store.check_live(self.eid, self.token)
                self._live_at = time.monotonic()

    def guard(self) -> None:
        """Stop if the lease was lost or the runbook file changed (an abort stops the next write)."""
        if self.lease.lost:
            raise LeaseLost(f"execution {self.eid} was taken over by another process; this one stopped")
        try:
            text = resolve_path(self.meta["runbook_ref"]).read_text(encoding="utf-8")
        except (OSError, TradeopsError):
            text = ""
        if sha256_text(text) != self.meta["runbook_sha256"]:
            raise BadInput(f"runbook {self.meta['runbook']} was edited after execution {self.eid} started "
                           f"(SHA-256 {self.meta['runbook_sha256'][:12]}… no longer matches); refused. Restore it, "
                           "or abort and start a new run")

    def ctx(self, step_id: str | None, approvers: Iterable[str] = ()) -> OperationContext:
        return OperationContext(settings=self.settings, aws=self.aws, execution_id=self.eid, step_id=step_id,
                                actor=self.identity.name, approvers=tuple(approvers))

    def ask(self, prompt: str) -> bool:
        if self.assume_yes:
            return True
        if self.confirm is None:
            return False  # nobody to ask: fail closed
        self.checkpoint()  # whatever the person is about to decide on is on record first
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
            self.pause()
            time.sleep(max(min(every, deadline - time.monotonic()), 0))
        reading.update(what=what, polls=polls, waited=round(time.monotonic() - start, 3), timeout=timeout)
        self.publish(ev.CHECK_EVALUATED, step_id, **reading)
        return reading

    # -- the run --

    def run(self) -> Outcome:
        with bound(execution_id=self.eid):  # every line logged while it runs names the execution
            try:
                return self._run()
            except BaseException:
                with contextlib.suppress(Exception):  # what it did is recorded if AWS still lets it
                    self.audit.flush()
                raise

    def _run(self) -> Outcome:
        acting = self.meta.get("acting") or {}
        steps = self.runbook.steps
        index = 0
        try:
            for index, step in enumerate(steps):
                rec = self.records.get(index) or {"step_id": step["id"], "status": PENDING, "phase": PENDING,
                                                  "action_runs": 0, "attempts": 0}
                if rec.get("status") in STEP_DONE:
                    continue
                started = acting.get(step["id"]) or {}
                if int(started.get("run") or 0) > int(rec.get("action_runs") or 0):
                    # The move to acting landed, its step record did not (a crash in between): it was acting.
                    rec.update(phase=ACTING, action_runs=int(started["run"]))
                self.guard()
                self.set_meta(status=RUNNING, current_step=step["id"])
                self.run_step(index, step, rec)
        except StepFailed as failure:
            step = steps[index]
            policy = step.get("on_failure", "abort")
            if policy == "stop":
                return self.finish(STOPPED, f"step {step['id']} failed: {failure.reason}; fix the cause, then "
                                            f"`tradeops runbook resume {self.eid}` or `abort`")
            self.write()  # the rollback goes by the records stored
            self.rollback(index, f"step {step['id']} failed: {failure.reason}")
            return self.finish(FAILED, f"step {step['id']} failed: {failure.reason}; completed steps rolled back")
        except Stopped as stop:
            # A rejected step stops the execution; only `abort` (or a new run) gets past it.
            return self.finish(STOPPED if stop.status == STEP_REJECTED else stop.status, stop.reason)
        except KeyboardInterrupt:
            sid = steps[index]["id"] if steps else None
            reason = (f"interrupted at step {index + 1} ({sid}); nothing is running it now. "
                      f"`tradeops runbook resume {self.eid}` continues from there")
            self.publish(ev.EXECUTION_INTERRUPTED, sid, reason=reason)
            # Recorded as stopped (not left "running"), and the lease is released on the way out.
            self.finish(STOPPED, reason)
            raise Interrupted(reason) from None
        except ExecutionAborted as aborted:
            fresh = self.store.meta(self.eid)
            if fresh.get("rollback_requested") and not fresh.get("rolled_back"):
                self.rollback(len(steps) - 1, f"aborted by {fresh.get('aborted_by')}")
            self.publish(ev.EXECUTION_STOPPED, status=ABORTED, reason=str(aborted))
            return Outcome(self.eid, ABORTED, str(aborted), self.sorted(self.store.steps(self.eid)))
        except BadInput as exc:
            # The runbook changed under us: stop, keep the execution resumable once it is restored.
            self.finish(STOPPED, str(exc))
            raise
        except LeaseLost:
            raise  # another process drives it now: this one writes nothing more
        except TradeopsError as exc:
            # AWS or the stack failed under us (e.g. the approvers' topic cannot be reached): never leave the
            # execution looking "running"; record why, and how to go on, if AWS lets us.
            with contextlib.suppress(Exception):
                self.finish(STOPPED, f"{exc}; fix that, then `tradeops runbook resume {self.eid}`")
            raise
        return self.finish(COMPLETED, None)

    def finish(self, status: str, reason: str | None) -> Outcome:
        self.set_meta(status=status, reason=reason, **({"finished_at": iso()} if status in FINAL else {}))
        stored = self.store.write(self.changes, lease_token=self.token, release=True, return_steps=True) or {}
        self.lease.released = True
        self.publish(ev.EXECUTION_FINISHED if status in FINAL else ev.EXECUTION_STOPPED, status=status, reason=reason)
        return Outcome(self.eid, status, reason, self.sorted({**self.records, **stored}))

    @staticmethod
    def sorted(records: Mapping[int, dict[str, Any]]) -> list[dict[str, Any]]:
        return [records[i] for i in sorted(records)]

    def run_step(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> None:
        sid = step["id"]
        started = time.monotonic()
        rec.update(step_id=sid, title=step["title"], kind=step_kind(step), status=RUNNING,
                   start=rec.get("start") or iso(), attempts=int(rec.get("attempts", 0)) + 1, error=None)
        rec.setdefault("output", {})
        self.save(index, rec)
        self.publish(ev.STEP_STARTED, sid, index=index, title=step["title"], kind=rec["kind"],
                     description=step.get("description"), attempt=rec["attempts"], phase=rec.get("phase"))
        try:
            self.step_body(index, step, rec)
        except StepFailed as failure:
            self.end_step(index, rec, FAILED, started, error=failure.reason)
            raise
        except Stopped as stop:
            self.end_step(index, rec, stop.status if stop.status in (STEP_REJECTED, APPROVAL_TIMED_OUT) else STOPPED,
                          started, error=stop.reason)
            raise
        if rec.get("status") != SKIPPED:
            self.end_step(index, rec, SUCCEEDED, started)

    def end_step(self, index: int, rec: dict[str, Any], status: str, started: float, *,
                 error: str | None = None) -> None:
        rec.update(status=status, end=iso(), duration=round(time.monotonic() - started, 3), error=error)
        if status in STEP_DONE:
            rec["phase"] = DONE
        self.save(index, rec)
        self.records[index] = rec
        self.publish(ev.STEP_FINISHED, rec["step_id"],
                     **{k: rec.get(k) for k in ("status", "start", "end", "duration", "output", "error", "phase",
                                                "action_runs")})

    def skip(self, index: int, rec: dict[str, Any], reason: str) -> None:
        rec.update(status=SKIPPED, phase=DONE, end=iso(), duration=0.0, error=None)
        rec["output"]["skipped"] = reason
        self.save(index, rec)
        self.records[index] = rec
        self.publish(ev.STEP_FINISHED, rec["step_id"], status=SKIPPED, reason=reason, output=rec["output"],
                     start=rec.get("start"), end=rec["end"], duration=0.0, error=None)

    def step_body(self, index: int, step: dict[str, Any], rec: dict[str, Any]) -> None:
        sid = step["id"]
        phase = rec.get("phase") or PENDING
        when = step.get("when")
        if when is not None and not render(when, self.params):
            return self.skip(index, rec, f"when {when} is false")
        approvers: tuple[str, ...] = ()
        seen: int | None = None
        if phase in BEFORE_ACTION:
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
                self.publish(ev.MANUAL_INSTRUCTION, sid, instruction=step["manual"])
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
        elif phase in ACTION_INTERRUPTED:
            op = registry.get(step["action"]["name"])
            assert op is not None
            why = "interrupted while its action ran" if phase == ACTING else "its action failed"
            if not op.idempotent and not (not self.assume_yes and self.ask(
                    f"Step {sid} was {why}; {op.name} may have taken effect. Run it again?")):
                raise Stopped(f"step {sid} was {why} and {op.name} is not safe to repeat blindly; check its "
                               f"effect, then resume without --yes to decide")
            if "approval" in step:
                approvers, seen = self.await_approval(index, step, rec)
            self.publish(ev.ACTION_RETRY, sid, reason=why, idempotent=op.idempotent)
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
        # once it lands, decisions are refused). It carries the step's record as acting and whatever else the
        # run keeps, so a crash from here on leaves "acting", never a silent gap.
        while True:
            was = {k: rec.get(k) for k in ("phase", "action_runs", "status")}
            rec.update(phase=ACTING, action_runs=run, status=RUNNING)
            self.save(index, rec)
            try:
                # Under the gate the decisions are the gate's: it counts them again in its own move to acted.
                self.store.start_action(self.eid, sid, {"run": run, "at": iso(), "by": self.identity.name,
                                                        "approvers": list(approvers), "decision_seq": seen},
                                        lease_token=self.token, decision_seq=None if self.gated else seen,
                                        changes=self.changes)
                break
            except DecisionsChanged:
                rec.update(was)  # the move to acting did not land: the step is back where it was
                self.save(index, rec)
                approvers, seen = self.await_approval(index, step, rec)
        self.publish(ev.ACTION_STARTED, sid, action=op.name, args=args, run=rec["action_runs"],
                     approvers=list(approvers))
        self.audit.flush()
        started_at, t0 = iso(), time.monotonic()
        try:
            output = op(self.ctx(sid, approvers), **args)
        except GateDown:
            raise  # nothing was asked of anyone: the execution stops, resumable (the step stays "acting")
        except Exception as exc:
            result = {"status": FAILED, "action": op.name, "args": args, "start": started_at, "end": iso(),
                      "duration": round(time.monotonic() - t0, 3), "output": None, "error": reason_of(exc)}
            rec["output"]["action"] = result
            rec["phase"] = ACTION_FAILED
            self.save(index, rec)
            self.write()
            self.publish(ev.ACTION_FINISHED, sid, **result)
            raise StepFailed(f"{op.name} failed: {result['error']}") from None
        result = {"status": SUCCEEDED, "action": op.name, "args": args, "start": started_at, "end": iso(),
                  "duration": round(time.monotonic() - t0, 3), "output": output, "error": None}
        rec["output"]["action"] = result
        rec["phase"] = ACTED
        self.save(index, rec)
        self.write()
        self.publish(ev.ACTION_FINISHED, sid, **result)

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

    def request_approval(self, index: int, step: dict[str, Any], rec: dict[str, Any], rule: ApprovalRule,
                         timeout: float) -> dict[str, Any]:
        """Tell the approvers (the approvers' topic), then record the request with the step now waiting:
        decisions count from then on."""
        sid = step["id"]
        spec = step.get("action") or {}
        now = utcnow()
        request = {"execution_id": self.eid, "step_id": sid, "title": step["title"], "runbook": self.runbook.name,
                   "version": self.runbook.version, "runbook_sha256": self.meta["runbook_sha256"],
                   "action": spec.get("name"), "args": render(spec.get("args") or {}, self.params),
                   "executor": self.identity.name, "count": rule.count, "roles": list(rule.roles),
                   "command": f"tradeops runbook approve {self.eid} {sid}", "timeout": timeout,
                   "at": iso(now), "deadline": iso(datetime.fromtimestamp(now.timestamp() + timeout, UTC))}
        if self.gated:
            # The gate opens the step's ledger first: decisions are the gate's to record, not this table's.
            ask_gate(self.aws, "request", self.eid, sid)
        # Published first: a step counts as requested only once its approvers have been told.
        request["message_id"] = publish_approval_request(self.aws, request)
        rec.update(status=WAITING_APPROVAL, phase=APPROVAL, waiting_since=request["at"])
        self.save(index, rec)
        self.set_meta(status=WAITING_APPROVAL, current_step=sid, waiting_since=request["at"])
        self.store.request_approval(self.eid, sid, request, lease_token=self.token, changes=self.changes)
        self.meta.setdefault("requests", {})[sid] = request
        self.publish(ev.APPROVAL_REQUESTED, sid, **{k: v for k, v in request.items() if k != "execution_id"},
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
        counted = 0
        while True:
            if self.gated:
                ledger = GateLedger(self.aws).read(self.eid, sid)
                approvals, seen = list(ledger.decisions), ledger.decision_seq
            elif sid in (self.meta.get("requests") or {}):
                approvals, seen = self.store.approvals(self.eid, sid)
            else:
                # Never requested: no decision can have been recorded (the store refuses one before the request).
                approvals, seen = [], 0
            if seen != counted:  # each decision was audited by whoever made it: the chain has moved on
                self.audit.log.others_appended()
                counted = seen
            decision = evaluate(rule, ctx, approvals)
            if decision.state == GRANTED:
                rec["approvals"] = {"approved_by": list(decision.approved_by), "needed": rule.count,
                                    "refused": [list(r) for r in decision.refused]}
                self.publish(ev.APPROVAL_GRANTED, sid, approved_by=list(decision.approved_by),
                             refused=[list(r) for r in decision.refused], count=rule.count, roles=list(rule.roles))
                rec["phase"] = APPROVAL
                if requested is not None:
                    rec["status"] = RUNNING
                    self.set_meta(status=RUNNING)
                self.save(index, rec)
                return decision.approved_by, seen
            if decision.state == REJECTED:
                who = "; ".join(f"{i} ({r or 'no reason'})" for i, r in decision.rejected_by)
                rec["approvals"] = {"rejected_by": [list(r) for r in decision.rejected_by]}
                self.publish(ev.APPROVAL_STOPPED, sid, rejected_by=[list(r) for r in decision.rejected_by])
                raise Stopped(f"step {sid} was rejected by {who}; its action was not run. "
                              f"`tradeops runbook abort {self.eid}` ends the execution", status=STEP_REJECTED)
            if requested is None:
                requested = self.request_approval(index, step, rec, rule, timeout)
            elapsed = max((utcnow() - parse_iso(requested["at"])).total_seconds(), 0.0)
            state = (decision.approved_by, decision.refused)
            if state != shown or time.monotonic() - last_shown >= PROGRESS_EVERY:
                self.publish(ev.APPROVAL_PROGRESS, sid, approved_by=list(decision.approved_by), needed=rule.count,
                             refused=[list(r) for r in decision.refused], command=command,
                             elapsed=round(elapsed, 1), timeout=timeout)
                shown, last_shown = state, time.monotonic()
            if self.on_approval_wait is not None and not hooked:
                self.checkpoint()  # the request is on record before anyone acts on it
                self.on_approval_wait(ApprovalWait(self.eid, sid, rule, decision, command))
                hooked = True
                continue  # look again at once: the hook may have approved
            hooked = False
            self.pause()
            if elapsed >= timeout:
                raise Stopped(f"step {sid} still needs {decision.missing} approval(s) after waiting {timeout:g} s; "
                              f"`tradeops runbook resume {self.eid}` asks again and waits", status=APPROVAL_TIMED_OUT)
            time.sleep(max(min(self.poll_seconds, timeout - elapsed), 0.0))

    # -- rollback --

    def rollback(self, upto: int, reason: str) -> None:
        """Undo the completed actions of steps 0..upto, newest first, each recorded."""
        rollback(self.store, Undo(self.eid, self.runbook.steps, self.params, self.ctx, self.publish), upto, reason)


def _args_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={human(v)}" for k, v in args.items())
