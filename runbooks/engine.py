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

Walking the steps is :mod:`.runner`'s; undoing them :mod:`.rollback`'s; the statuses and phases
and the moves between them are :mod:`.states`'. The engine publishes every event
(:mod:`.eventkinds`) to observers (:mod:`.events`): the audit log is one, the terminal display
another; neither is called from inside step logic.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tradeops.runbooks import eventkinds as ev
from tradeops.runbooks import registry
from tradeops.runbooks.approvals import (
    DRILL_SOURCE,
    Approval,
    ApprovalContext,
    ApprovalRule,
    Choice,
    check_new_decision,
    evaluate,
)
from tradeops.runbooks.audit import AuditLog, AuditObserver
from tradeops.runbooks.events import ApprovalHook, ApprovalWait, Confirm, Event, Observer, Outcome
from tradeops.runbooks.expectations import describe_expect, expectation_met
from tradeops.runbooks.gateclient import ask_gate
from tradeops.runbooks.gateledger import GateLedger
from tradeops.runbooks.identity import Identity, Operators, current_identity
from tradeops.runbooks.loader import (
    Runbook,
    RunbookInvalid,
    read_runbook_text,
    resolve_path,
    runbook_dir,
    sha256_text,
    step_kind,
)
from tradeops.runbooks.params import render, resolve_params
from tradeops.runbooks.planning import check_roles, plan_verdict
from tradeops.runbooks.registry import OperationContext, Reading
from tradeops.runbooks.rollback import Undo
from tradeops.runbooks.rollback import rollback as steps_rollback
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.runner import Runner
from tradeops.runbooks.states import ABORTED, COMPLETED, FINAL, RUNNING
from tradeops.runbooks.store import LEASE_SECONDS, ExecutionStore, Lease, decisions_of
from tradeops.runbooks.validation import check_runbook, load_runbook
from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, NotFound, Refused, reason_of
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import pid_alive

__all__ = [
    "ApprovalWait",
    "Event",
    "Observer",
    "Outcome",
    "abort_execution",
    "approval_view",
    "decide",
    "execution_history",
    "expectation_met",
    "list_executions",
    "plan_runbook",
    "resume_execution",
    "run_execution",
    "withdraw",
]

_EXECUTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: Any) -> bool:
    try:
        return pid_alive(int(pid))
    except (TypeError, ValueError):
        return False


def _runbook_ref(runbook: Runbook) -> str:
    """How to find the runbook again: its name when shipped (any machine), else its path."""
    if runbook.path.resolve().parent == runbook_dir() and runbook.path.stem == runbook.name:
        return runbook.name
    return str(runbook.path.resolve())


# ---- entry points -------------------------------------------------------------------------

def _aws(settings: Settings, aws: Aws | None) -> Aws:
    return aws or Aws(settings)


def _observers(aws: Aws, audit_chain: str, extra: Iterable[Observer]) -> list[Observer]:
    # The audit goes first: if it cannot record, nothing else happens (fail closed).
    return [AuditObserver(AuditLog(aws, chain=audit_chain)), *extra]


def _tell(observers: Iterable[Observer], event: Event) -> None:
    for observer in observers:
        observer.notify(event)


def _run_audit(aws: Aws, audit_chain: str) -> AuditObserver:
    """A run's audit: it holds the run's events and writes them at each checkpoint (:mod:`.runner`)."""
    return AuditObserver(AuditLog(aws, chain=audit_chain), hold=True)


def _roster(aws: Aws, operators: Operators | None) -> Operators:
    """The roster decisions are taken under: the shared one (a caller's own copy only in tests and drills,
    and then its digest must still be the execution's)."""
    return operators if operators is not None else Roster(aws).require()


def _same_roster(meta: Mapping[str, Any], operators: Operators, what: str) -> None:
    recorded = meta.get("roster_digest")
    if recorded != operators.digest:
        started = f"v{meta.get('roster_version')} ({str(recorded)[:12]}…)" if recorded else "no recorded roster"
        raise Refused(f"execution {meta['execution_id']} started under roster {started}; {what} under "
                      f"{operators.source or 'another roster'} ({operators.digest[:12]}…) is refused. Abort it and "
                      "start a new run under the roster in force")


def run_execution(settings: Settings, ref: str, *, aws: Aws | None = None, params: Mapping[str, Any] | None = None,
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
    text = read_runbook_text(path)
    # Validate the shape first (without operators), so a broken file is reported as such.
    runbook = load_runbook(path)
    aws = _aws(settings, aws)
    operators = _roster(aws, operators)
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
    now = iso()
    meta = {
        "execution_id": eid, "runbook": checked.name, "runbook_ref": _runbook_ref(checked),
        "runbook_sha256": checked.sha256, "runbook_text": checked.text, "title": checked.title,
        "version": checked.version, "service": checked.service, "impact_tolerance": checked.impact_tolerance,
        "params": values, "status": RUNNING, "executor": identity.name, "executor_source": identity.source,
        "executors": [identity.name], "created_at": now, "updated_at": now, "current_step": None,
        "roster_digest": operators.digest, "roster_version": operators.version,
        "audit_chain": audit_chain, "lease_token": token, "lease_until": time.time() + LEASE_SECONDS,
        "lease_owner": _owner(), "lease_epoch": 1,
    }
    store.create(meta)
    lease = Lease(store, eid, token).start()
    runner = Runner(settings=settings, aws=aws, store=store, runbook=checked, meta=meta, records={},
                    identity=identity, operators=operators, audit=_run_audit(aws, audit_chain),
                    observers=list(observers), assume_yes=assume_yes, confirm=confirm,
                    on_approval_wait=on_approval_wait, poll_seconds=poll_seconds, approval_timeout=approval_timeout,
                    lease=lease)
    try:
        runner.publish(ev.EXECUTION_STARTED, runbook=checked.name, title=checked.title, version=checked.version,
                       runbook_sha256=checked.sha256, service=checked.service,
                       impact_tolerance=checked.impact_tolerance, params=values, executor_source=identity.source,
                       assume_yes=assume_yes, roster_digest=operators.digest, roster_version=operators.version)
        return runner.run()
    finally:
        lease.stop()


def _load_execution_runbook(meta: Mapping[str, Any], operators: Operators | None) -> Runbook:
    """The runbook file of an execution, refused unless it is the exact text the execution started with."""
    path = resolve_path(meta["runbook_ref"])
    text = read_runbook_text(path)
    if sha256_text(text) != meta["runbook_sha256"]:
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


def resume_execution(settings: Settings, execution_id: str, *, aws: Aws | None = None, identity: Identity | None = None,
                     operators: Operators | None = None, assume_yes: bool = False, confirm: Confirm | None = None,
                     on_approval_wait: ApprovalHook | None = None, observers: Iterable[Observer] = (),
                     poll_seconds: float = 1.0, approval_timeout: float | None = None) -> Outcome:
    """Continue an interrupted or stopped execution from the step it stopped at."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    status = meta.get("status")
    if status == ABORTED:
        raise Refused(f"execution {execution_id} was aborted by {meta.get('aborted_by')}; it cannot be resumed "
                      f"(start a new run)")
    if status in FINAL:
        raise Refused(f"execution {execution_id} is already {status}; nothing to resume")
    operators = _roster(aws, operators)
    _same_roster(meta, operators, "resuming it")
    runbook = _load_execution_runbook(meta, operators)
    identity = identity or current_identity(settings, aws)
    token = secrets.token_hex(16)
    _take_over(store, meta, token)
    lease = Lease(store, execution_id, token).start()
    try:
        meta, records = store.load(execution_id)
        executors = list(meta.get("executors") or [])
        if identity.name not in executors:
            executors.append(identity.name)
        runner = Runner(settings=settings, aws=aws, store=store, runbook=runbook, meta=meta, records=records,
                        identity=identity, operators=operators, audit=_run_audit(aws, meta.get("audit_chain", "audit")),
                        observers=list(observers), assume_yes=assume_yes, confirm=confirm,
                        on_approval_wait=on_approval_wait, poll_seconds=poll_seconds,
                        approval_timeout=approval_timeout, lease=lease)
        runner.set_meta(executors=executors, status=RUNNING)
        runner.publish(ev.EXECUTION_RESUMED, previous_status=status, at_step=meta.get("current_step"),
                       executor_source=identity.source, assume_yes=assume_yes)
        return runner.run()
    finally:
        lease.stop()


def abort_execution(settings: Settings, execution_id: str, *, aws: Aws | None = None, identity: Identity | None = None,
                    reason: str = "", rollback: bool = False, observers: Iterable[Observer] = (),
                    operators: Operators | None = None) -> dict[str, Any]:
    """Abort an execution. With ``rollback``, undo its completed actions (here, or by its driver)."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    identity = identity or current_identity(settings, aws)
    before = store.mark_aborted(execution_id, {"aborted_by": identity.name, "aborted_at": iso(),
                                               "reason": reason or None, "rollback_requested": rollback,
                                               "updated_at": iso()})
    chain = before.get("audit_chain", "audit")
    obs = _observers(aws, chain, observers)
    _tell(obs, Event(ev.EXECUTION_ABORTED, execution_id, before.get("current_step"), identity.name, identity.source,
                     {"reason": reason, "rollback": rollback, "previous_status": before.get("status")}))
    result = {"execution_id": execution_id, "status": ABORTED, "previous_status": before.get("status"),
              "rolled_back": False}
    if not rollback:
        return result
    token = secrets.token_hex(16)
    try:
        _take_over(store, before, token)
    except Refused:
        # A live process drives it: it sees the abort at its next check and rolls back itself.
        result["rollback"] = "requested from the process driving the execution"
        return result
    lease = Lease(store, execution_id, token).start()
    try:
        # The stored text, not the file: rolling back must work even if the file is gone or changed.
        doc = yamlfiles.load(before["runbook_text"], f"runbook of execution {execution_id}")

        def publish(kind: str, step_id: str | None = None, /, **data: Any) -> None:
            _tell(obs, Event(kind, execution_id, step_id, identity.name, identity.source, data))

        def context(step_id: str) -> OperationContext:
            return OperationContext(settings=settings, aws=aws, execution_id=execution_id, step_id=step_id,
                                    actor=identity.name)

        undo = Undo(execution_id, list(doc["steps"]), dict(before.get("params") or {}), context, publish)
        steps_rollback(store, undo, len(undo.steps) - 1, f"aborted by {identity.name}: {reason or 'no reason given'}")
    finally:
        lease.stop()
    result["rolled_back"] = True
    return result


def _execution_step(meta: Mapping[str, Any], step_id: str) -> tuple[int, dict[str, Any]]:
    """The stored runbook of an execution (checked against its digest), and one of its steps by id."""
    execution_id = meta["execution_id"]
    text = meta.get("runbook_text", "")
    if sha256_text(text) != meta.get("runbook_sha256"):
        raise Refused(f"execution {execution_id}: the runbook text it stores does not match its SHA-256; refused")
    doc = yamlfiles.load(text, f"runbook of execution {execution_id}")
    steps = {s["id"]: (i, s) for i, s in enumerate(doc.get("steps", []))}
    if step_id not in steps:
        raise NotFound(f"execution {execution_id} ({meta.get('runbook')}) has no step {step_id!r} "
                       f"(steps: {', '.join(steps)})")
    return steps[step_id]


def _decision_context(meta: Mapping[str, Any], step_id: str, operators: Operators) -> ApprovalContext:
    return ApprovalContext(execution_id=meta["execution_id"], step_id=step_id,
                           runbook_sha256=meta["runbook_sha256"], executors=frozenset(meta.get("executors") or ()),
                           roles_of=dict(operators.roles), drill=meta.get("executor_source") == DRILL_SOURCE)


def _decidable(meta: Mapping[str, Any], step_id: str, step: Mapping[str, Any], decision: str) -> None:
    """Refuse a decision on a finished execution, a step without approval, before the request or once acting."""
    execution_id, status = meta["execution_id"], meta.get("status")
    if status in FINAL:
        raise Refused(f"execution {execution_id} is {status}; there is nothing left to {decision}")
    if "approval" not in step:
        raise BadInput(f"step {step_id} of {meta.get('runbook')} needs no approval")
    acting = (meta.get("acting") or {}).get(step_id)
    if acting:
        done = (meta.get("current_step") != step_id) or status == COMPLETED
        raise Refused(f"step {step_id} of {execution_id} is already executing (its action started at "
                      f"{acting.get('at')}{'; it has run since' if done else ''}); a decision now would change "
                      "nothing")
    if step_id not in (meta.get("requests") or {}):
        raise Refused(f"step {step_id} of {execution_id} is not yet requested: the run has not reached it and asked "
                      "for approval, so there is nothing to approve yet (approvers are told when it asks)")


def decide(settings: Settings, execution_id: str, step_id: str, decision: str, *, aws: Aws | None = None,
           identity: Identity | None = None, operators: Operators | None = None, reason: str = "",
           observers: Iterable[Observer] = ()) -> Approval:
    """Record one approver's decision ("approve" or "reject") on a step, refusing what the rules refuse.

    Accepted only once the run has requested the step's approval and until its action starts (the
    store re-checks both in the same write that records the decision), under the execution's roster.
    """
    if decision not in ("approve", "reject"):
        raise BadInput(f"a decision is approve or reject, not {decision!r}")
    if decision == "reject" and len(reason.strip()) < 3:
        raise BadInput("a rejection needs --reason (it is recorded and shown to the executor)")
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    _, step = _execution_step(meta, step_id)
    if settings.gate_url:
        return _decide_at_gate(aws, meta, step_id, step, decision, reason, observers)
    _decidable(meta, step_id, step, decision)
    operators = _roster(aws, operators)
    _same_roster(meta, operators, "a decision")
    identity = identity or current_identity(settings, aws)
    rule = ApprovalRule.from_spec(step["approval"])
    ctx = _decision_context(meta, step_id, operators)
    check_new_decision(rule, ctx, identity.name, identity.source, decisions_of(dict(meta), step_id))
    approval = Approval.make(ctx, identity.name, identity.source, "reject" if decision == "reject" else "approve",
                             reason=reason, at=iso())
    store.record_decision(approval, roster_digest=operators.digest)
    event = Event(ev.APPROVAL_APPROVED if decision == "approve" else ev.APPROVAL_REJECTED, execution_id, step_id,
                  identity.name, identity.source,
                  {"roles": list(approval.roles), "reason": reason, "binding": approval.binding,
                   "runbook_sha256": approval.runbook_sha256, "roster_digest": operators.digest})
    _tell(_observers(aws, meta.get("audit_chain", "audit"), observers), event)
    return approval


def _decide_at_gate(aws: Aws, meta: Mapping[str, Any], step_id: str, step: Mapping[str, Any], decision: str,
                    reason: str, observers: Iterable[Observer]) -> Approval:
    """A decision asked of the approval gate: it records it under the identity STS proves, and audits it."""
    if "approval" not in step:
        raise BadInput(f"step {step_id} of {meta.get('runbook')} needs no approval")
    answer = ask_gate(aws, "decide", meta["execution_id"], step_id, decision=decision, reason=reason)
    choice: Choice = "reject" if decision == "reject" else "approve"
    approval = Approval(execution_id=meta["execution_id"], step_id=step_id, runbook_sha256=meta["runbook_sha256"],
                        identity=str(answer["identity"]), identity_source="gate", decision=choice,
                        binding=str(answer["binding"]), reason=reason, roles=tuple(answer.get("roles") or ()))
    # The gate wrote the audit record; the other observers (a display) still hear of it.
    _tell(observers, Event(ev.APPROVAL_APPROVED if choice == "approve" else ev.APPROVAL_REJECTED,
                           meta["execution_id"], step_id, approval.identity, "gate",
                           {"reason": reason, "binding": approval.binding, "via": "gate"}))
    return approval


def _step_decisions(settings: Settings, aws: Aws, meta: Mapping[str, Any], step_id: str) -> list[Approval]:
    """A step's decisions: the gate's ledger when a gate holds them, else the execution's own."""
    if settings.gate_url:
        return list(GateLedger(aws).read(meta["execution_id"], step_id).decisions)
    return decisions_of(dict(meta), step_id)


def withdraw(settings: Settings, execution_id: str, step_id: str, *, aws: Aws | None = None,
             identity: Identity | None = None, reason: str = "", observers: Iterable[Observer] = ()) -> None:
    """Take back one's own approval of a step whose action has not started (it stops counting at once)."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    _, step = _execution_step(meta, step_id)
    if settings.gate_url:
        ask_gate(aws, "withdraw", execution_id, step_id, reason=reason)  # the gate records and audits it
        return
    _decidable(meta, step_id, step, "withdraw")
    identity = identity or current_identity(settings, aws)
    store.withdraw(execution_id, step_id, identity.name, at=iso(), reason=reason)
    event = Event(ev.APPROVAL_WITHDRAWN, execution_id, step_id, identity.name, identity.source, {"reason": reason})
    _tell(_observers(aws, meta.get("audit_chain", "audit"), observers), event)


def approval_view(settings: Settings, execution_id: str, step_id: str, *, aws: Aws | None = None,
                  operators: Operators | None = None) -> dict[str, Any]:
    """What an approver sees before deciding: the step, its action and arguments, the executor, the runbook
    (name, version, SHA-256), the request and the decisions so far, counted under the execution's roster."""
    aws = _aws(settings, aws)
    meta = ExecutionStore(aws).meta(execution_id)
    index, step = _execution_step(meta, step_id)
    params = dict(meta.get("params") or {})
    request = (meta.get("requests") or {}).get(step_id)
    view: dict[str, Any] = {
        "execution_id": execution_id, "status": meta.get("status"), "runbook": meta.get("runbook"),
        "version": meta.get("version"), "runbook_sha256": meta.get("runbook_sha256"),
        "executor": meta.get("executor"), "executors": list(meta.get("executors") or []),
        "step_id": step_id, "step": index + 1, "title": step["title"], "description": step.get("description"),
        "approval": step.get("approval"), "request": request,
        "acting": (meta.get("acting") or {}).get(step_id), "roster_version": meta.get("roster_version"),
    }
    if "action" in step:
        view["action"] = {"name": step["action"]["name"], "args": render(step["action"].get("args") or {}, params)}
    if request:
        view["waited_seconds"] = round(max((utcnow() - parse_iso(request["at"])).total_seconds(), 0.0), 1)
    if "approval" in step:
        roster = _roster(aws, operators)
        decision = evaluate(ApprovalRule.from_spec(step["approval"]), _decision_context(meta, step_id, roster),
                            _step_decisions(settings, aws, meta, step_id))
        view["decisions"] = {"state": decision.state, "approved_by": list(decision.approved_by),
                             "rejected_by": [list(r) for r in decision.rejected_by],
                             "not_counted": [list(r) for r in decision.refused], "missing": decision.missing}
    return view


def plan_runbook(settings: Settings, ref: str, *, aws: Aws | None = None, params: Mapping[str, Any] | None = None,
                 operators: Operators | None = None) -> dict[str, Any]:
    """What a run would do, with the live value of every check, and its verdict; changes nothing."""
    runbook = load_runbook(ref)
    path = runbook.path
    aws = _aws(settings, aws)
    if operators is None:
        operators = Roster(aws).current()
    values = resolve_params(runbook, params, {"execution_id": "(plan)", "runbook": runbook.name,
                                              "executor": "(you)"})
    checked, issues = check_runbook(path, runbook.text, operators=operators, params=values)
    if issues:
        raise RunbookInvalid(issues)
    assert checked is not None
    ctx = OperationContext(settings=settings, aws=aws, execution_id=None, instant=True)
    steps = []
    for step in checked.steps:
        entry: dict[str, Any] = {"id": step["id"], "title": step["title"], "if_not_met":
                                 (step.get("precondition") or {}).get("if_not_met", "fail"),
                                 "kind": step_kind(step),
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
                                     "expect_text": describe_expect(expect),
                                     "timeout": render(spec.get("timeout"), values) if what == "check" else None}
            try:
                got = op(ctx, **args)
                reading = got if isinstance(got, Reading) else Reading(got)
                check.update(value=reading.value, met=expectation_met(expect, reading.value),
                             detail=reading.detail, sampled_once=op.sampling or None)
            except Exception as exc:
                check.update(value=None, met=False, error=reason_of(exc))
            entry["checks"].append(check)
        if "action" in step:
            entry["action"] = {"name": step["action"]["name"], "args": render(step["action"].get("args") or {},
                                                                              values)}
            action_op = registry.get(step["action"]["name"])
            entry["rollback"] = step.get("rollback", "restore" if action_op and action_op.restore_arg else "none")
        if "manual" in step:
            entry["manual"] = step["manual"]
        if "approval" in step:
            entry["approval"] = step["approval"]
        entry["on_failure"] = step.get("on_failure", "abort")
        steps.append(entry)
    for entry, roles in zip(steps, check_roles(steps), strict=True):
        for chk, role in zip(entry["checks"], roles, strict=True):
            chk["role"] = role
    verdict = plan_verdict(steps)
    return {"runbook": checked.name, "title": checked.title, "version": checked.version,
            "service": checked.service, "impact_tolerance": checked.impact_tolerance,
            "runbook_sha256": checked.sha256, "params": {k: v for k, v in values.items() if k in checked.parameters},
            "steps": steps, "verdict": verdict}


_PRIVATE_META = ("runbook_text", "lease_token", "item", "lease_epoch", "step_records_in_meta")


def execution_history(settings: Settings, execution_id: str, *, aws: Aws | None = None) -> dict[str, Any]:
    """One execution: its meta, its step records and its audit timeline (what reports are built from).

    The timeline is chosen by the records' hashed bodies; ``tampering`` lists every record whose query
    attributes disagree with its body (empty when the timeline can be trusted)."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta, records = store.load(execution_id)
    timeline, tampering = AuditLog(aws, chain=meta.get("audit_chain", "audit")).timeline(execution_id)
    return {"execution": {k: v for k, v in meta.items() if k not in _PRIVATE_META},
            "steps": [{k: v for k, v in records[i].items() if k not in ("item", "lease_epoch")}
                      for i in sorted(records)],
            "timeline": timeline, "tampering": tampering}


def list_executions(settings: Settings, *, aws: Aws | None = None) -> list[dict[str, Any]]:
    return ExecutionStore(_aws(settings, aws)).list_executions()
