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

Walking the steps is :mod:`.runner`'s; undoing them :mod:`.rollback`'s. The engine publishes every
event to observers (:mod:`.events`): the audit log is one, the terminal display another; neither
is called from inside step logic.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tradeops.runbooks import registry
from tradeops.runbooks.approvals import Approval, ApprovalContext, ApprovalRule, check_new_decision
from tradeops.runbooks.audit import AuditLog, AuditObserver
from tradeops.runbooks.events import ApprovalHook, ApprovalWait, Confirm, Event, Observer, Outcome
from tradeops.runbooks.expectations import describe_expect, expectation_met
from tradeops.runbooks.identity import Identity, Operators, current_identity, load_operators, operators_path
from tradeops.runbooks.model import (
    Runbook,
    RunbookInvalid,
    check_runbook,
    load_runbook,
    render,
    resolve_params,
    resolve_path,
    runbook_dir,
)
from tradeops.runbooks.model import sha256_text as _sha256_text
from tradeops.runbooks.registry import OperationContext, Reading
from tradeops.runbooks.runner import Runner
from tradeops.runbooks.store import FINAL_STATUSES, LEASE_SECONDS, ExecutionStore, Lease
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import BadInput, NotFound, reason_of
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import pid_alive

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


def _operators_for(settings: Settings, runbook_doc: Mapping[str, Any], operators: Operators | None) -> Operators | None:
    if operators is not None:
        return operators
    path = operators_path(settings)
    needs = any(isinstance(s, dict) and "approval" in s for s in runbook_doc.get("steps") or [])
    if needs or path.exists():
        return load_operators(path)  # a missing file is a ConfigError when approvals need it
    return None


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
    now = iso()
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
    lease = Lease(store, eid, token).start()
    runner = Runner(settings=settings, aws=aws, store=store, runbook=checked, meta=meta, identity=identity,
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


def resume_execution(settings: Settings, execution_id: str, *, aws: Aws | None = None, identity: Identity | None = None,
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
    lease = Lease(store, execution_id, token).start()
    try:
        meta = store.meta(execution_id)
        executors = list(meta.get("executors") or [])
        if identity.name not in executors:
            executors.append(identity.name)
        runner = Runner(settings=settings, aws=aws, store=store, runbook=runbook, meta=meta, identity=identity,
                         operators=operators, observers=_observers(aws, meta.get("audit_chain", "audit"), observers),
                         assume_yes=assume_yes, confirm=confirm, on_approval_wait=on_approval_wait,
                         poll_seconds=poll_seconds, approval_timeout=approval_timeout, lease=lease)
        runner.set_meta(executors=executors, status="running")
        runner.publish("execution.resumed", previous_status=status, at_step=meta.get("current_step"),
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
    lease = Lease(store, execution_id, token).start()
    try:
        doc = yaml.safe_load(before["runbook_text"])
        # The stored text, not the file: rolling back must work even if the file is gone or changed.
        runbook = Runbook(path=Path(str(before["runbook_ref"])), text=before["runbook_text"],
                          sha256=before["runbook_sha256"], doc=doc, lines={})
        runner = Runner(settings=settings, aws=aws, store=store, runbook=runbook, meta=dict(before),
                         identity=identity, operators=operators, observers=obs, assume_yes=True, confirm=None,
                         on_approval_wait=None, poll_seconds=1.0, approval_timeout=None, lease=None)
        runner.rollback(len(runbook.steps) - 1, f"aborted by {identity.name}: {reason or 'no reason given'}")
    finally:
        lease.stop()
    result["rolled_back"] = True
    return result


def decide(settings: Settings, execution_id: str, step_id: str, decision: str, *, aws: Aws | None = None,
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
                             reason=reason, at=iso())
    store.put_approval(approval)
    event = Event("approval.approved" if decision == "approve" else "approval.rejected", execution_id, step_id,
                  identity.name, identity.source,
                  {"roles": list(approval.roles), "reason": reason, "binding": approval.binding,
                   "runbook_sha256": approval.runbook_sha256})
    for o in _observers(aws, meta.get("audit_chain", "audit"), observers):
        o.notify(event)
    return approval


def plan_runbook(settings: Settings, ref: str, *, aws: Aws | None = None, params: Mapping[str, Any] | None = None,
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
    return {"runbook": checked.name, "title": checked.title, "version": checked.version,
            "service": checked.service, "impact_tolerance": checked.impact_tolerance,
            "runbook_sha256": checked.sha256, "params": {k: v for k, v in values.items() if k in checked.parameters},
            "steps": steps}


_PRIVATE_META = ("runbook_text", "lease_token", "item")


def execution_history(settings: Settings, execution_id: str, *, aws: Aws | None = None) -> dict[str, Any]:
    """One execution: its meta, its step records and its audit timeline (what reports are built from)."""
    aws = _aws(settings, aws)
    store = ExecutionStore(aws)
    meta = store.meta(execution_id)
    records = store.steps(execution_id)
    timeline = AuditLog(aws, chain=meta.get("audit_chain", "audit")).entries(execution_id)
    return {"execution": {k: v for k, v in meta.items() if k not in _PRIVATE_META},
            "steps": [{k: v for k, v in records[i].items() if k not in ("item",)} for i in sorted(records)],
            "timeline": timeline}


def list_executions(settings: Settings, *, aws: Aws | None = None) -> list[dict[str, Any]]:
    return ExecutionStore(_aws(settings, aws)).list_executions()
