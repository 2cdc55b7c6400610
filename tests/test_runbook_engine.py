"""The runbook engine against the real local AWS stage (moto server): runs, four-eyes, rollback, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from boto3.dynamodb.types import TypeSerializer

from tests.support.terminal import Terminal
from tradeops.runbooks import engine, registry
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.changes import Changes, plain, step_key
from tradeops.runbooks.identity import Identity
from tradeops.runbooks.registry import Operation
from tradeops.runbooks.runner import LIVE_CHECK_EVERY
from tradeops.runbooks.states import IllegalTransition
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.testing import ScriptedApprover, install_roster, isolated_flags, write_operators
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws, RequestCounter
from tradeops.runtime.platform.errors import BadInput, NotFound, OperationFailed, Refused

REPO = Path(__file__).resolve().parent.parent

ALICE = Identity("alice", "test")  # the executor in these tests
BOB = Identity("bob", "test")
CAROL = Identity("carol", "test")
DAVE = Identity("dave", "test")  # holds no approving role
ERIN = Identity("erin", "test")

DRILL = """\
name: drill
title: Pause, switch the active broker under four-eyes, resume
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
parameters:
  target: {type: string, enum: [primary, secondary], default: secondary}
steps:
  - id: manual-mode
    title: Routing is manual
    check: {probe: routing_mode, expect: manual}
  - id: quiesce
    title: Pause processing
    action: {name: set_processing, args: {state: paused}}
    verify: {probe: processing, expect: paused, timeout: 5, every: 0.05}
    rollback: restore
  - id: toggle
    title: Switch the active broker
    approval: {count: 2, roles: [ops-manager, risk, duty-engineer]}
    action: {name: set_active_broker, args: {provider: "${target}"}}
    verify: {probe: active_broker, expect: "${target}", timeout: 5, every: 0.05}
    rollback: restore
  - id: resume
    title: Resume processing
    action: {name: set_processing, args: {state: running}}
    verify: {probe: processing, expect: running, timeout: 5, every: 0.05}
    rollback: restore
"""

TWO_APPROVALS = """\
name: two-approvals
title: Two steps that each need approval
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: toggle
    title: Switch to the secondary
    approval: {count: 1, roles: [ops-manager, risk]}
    action: {name: set_active_broker, args: {provider: secondary}}
  - id: mode
    title: Switch to auto
    approval: {count: 1, roles: [ops-manager, risk]}
    action: {name: set_routing_mode, args: {mode: auto}}
"""


@pytest.fixture(scope="module")
def env(aws_settings, tmp_path_factory):
    """Settings with flags of their own (param prefix), an operators file, and a runbook folder."""
    base = tmp_path_factory.mktemp("runbook-engine")
    operators = write_operators(base / "operators.yaml", {
        "alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"], "dave": ["customer-service"],
        "erin": ["ops-manager"]})
    prefix = f"/rbe{uuid.uuid4().hex[:8]}"
    settings = isolated_flags(aws_settings, prefix).model_copy(
        update={"operators_file": Path(operators.source), "operator": "alice"})
    # The shared roster of this environment (the CLI reads it; the engine calls below pass the same one).
    roster = install_roster(Aws(settings), operators)
    return {"settings": settings, "aws": Aws(settings), "operators": roster, "dir": base, "prefix": prefix,
            "file": Path(operators.source)}


@pytest.fixture
def flags(env):
    """The isolated flags, reset to running / manual / primary before each test."""
    f = Flags(env["aws"])
    f.set("processing", "running")
    f.set("mode", "manual")
    f.set("active", "primary")
    return f


@pytest.fixture
def runbook_file(env):
    def write(text: str, name: str | None = None) -> Path:
        path = env["dir"] / f"{name or uuid.uuid4().hex[:8]}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _run(env, path, **kwargs):
    kwargs.setdefault("identity", ALICE)
    kwargs.setdefault("operators", env["operators"])
    kwargs.setdefault("poll_seconds", 0.05)
    kwargs.setdefault("assume_yes", True)
    return engine.run_execution(env["settings"], str(path), aws=env["aws"], **kwargs)


def _decide(env, eid, step, who, decision="approve", reason=""):
    return engine.decide(env["settings"], eid, step, decision, aws=env["aws"], identity=who,
                         operators=env["operators"], reason=reason)


def _approver(env, *who):
    return ScriptedApprover(env["settings"], aws=env["aws"], operators=env["operators"], identities=list(who))


def _timeline(env, eid, chain="audit"):
    return AuditLog(env["aws"], chain=chain).entries(eid)


def _step(env, eid, step_id):
    return next(r for r in ExecutionStore(env["aws"]).steps(eid).values() if r["step_id"] == step_id)


def _plant(env, eid, index, record, *, status):
    """Write what a kill leaves behind straight into the table: the store itself refuses such a move (a finished
    step back to acting), and no run makes it; only a crash's leftovers look like this."""
    table = ExecutionStore(env["aws"]).table
    ser = TypeSerializer()
    env["aws"].dynamodb.update_item(
        TableName=table, Key={"execution_id": {"S": eid}, "item": {"S": "meta"}},
        UpdateExpression="SET #r = :r, #st = :st", ExpressionAttributeNames={"#r": step_key(index), "#st": "status"},
        ExpressionAttributeValues={":r": ser.serialize(plain(record)), ":st": {"S": status}})


def _cli_env(env, **extra):
    s = env["settings"]
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    out.update({"TRADEOPS_AWS_ENDPOINT_URL": s.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": s.name_prefix,
                "TRADEOPS_PARAM_PREFIX": s.param_prefix, "TRADEOPS_STACK_NAME": s.stack_name,
                "TRADEOPS_STATE_DIR": str(env["dir"] / "state"), "TRADEOPS_OPERATOR": "alice",
                "TRADEOPS_OPERATORS_FILE": str(env["file"]), "PYTHONUNBUFFERED": "1"})
    out.update(extra)
    return out


def _cli(env, *args, input=None, timeout=60, **extra):
    return subprocess.run(["tradeops", *args], env=_cli_env(env, **extra),
                          capture_output=True, text=True, timeout=timeout, input=input, cwd=str(env["dir"]))


def _waiting(env, eid, path, **kwargs):
    """Start an execution and leave it stopped at its first approval step (requested, timed out, resumable)."""
    outcome = _run(env, path, execution_id=eid, approval_timeout=0.1, **kwargs)
    assert outcome.status == "approval-timed-out", outcome
    return outcome


# ---- a whole run ----------------------------------------------------------------------------

def test_run_with_two_approvers_switches_and_records_every_step(env, flags, runbook_file):
    """A run with two approvers pauses, switches the active broker, resumes, and records each step alike."""
    path = runbook_file(DRILL)
    outcome = _run(env, path, on_approval_wait=_approver(env, BOB, CAROL))
    assert outcome.status == "completed", outcome.reason
    values = flags.read()
    assert (values.processing, values.active) == ("running", "secondary")
    for rec in outcome.steps:
        assert rec["status"] == "succeeded"
        assert {"status", "start", "end", "duration", "output", "error"} <= set(rec)
    toggle = _step(env, outcome.execution_id, "toggle")
    assert sorted(toggle["approvals"]["approved_by"]) == ["bob", "carol"]
    assert toggle["output"]["action"]["output"] == {"flag": "active", "previous": "primary", "value": "secondary"}
    kinds = [e["kind"] for e in _timeline(env, outcome.execution_id)]
    assert kinds[0] == "execution.started" and kinds[-1] == "execution.finished"
    assert kinds.count("approval.approved") == 2 and "approval.granted" in kinds


def test_parameters_reach_the_actions(env, flags, runbook_file):
    """--param values are typed and substituted into action arguments and expectations."""
    outcome = _run(env, runbook_file(DRILL), params={"target": "primary"},
                   on_approval_wait=_approver(env, BOB, CAROL))
    assert outcome.status == "completed"
    assert _step(env, outcome.execution_id, "toggle")["output"]["action"]["args"] == {"provider": "primary"}
    with pytest.raises(BadInput, match="must be one of primary, secondary"):
        _run(env, runbook_file(DRILL), params={"target": "tertiary"})
    with pytest.raises(BadInput, match="has no parameter 'colour'"):
        _run(env, runbook_file(DRILL), params={"colour": "blue"})


# ---- four-eyes, each rule failing closed ----------------------------------------------------

def test_same_identity_cannot_approve_twice(env, flags, runbook_file):
    """A second approval by the same identity is refused and the step still needs another approver."""
    eid = f"t-twice-{uuid.uuid4().hex[:6]}"
    _waiting(env, eid, runbook_file(DRILL))
    _decide(env, eid, "toggle", BOB)
    with pytest.raises(Refused, match="already approved"):
        _decide(env, eid, "toggle", BOB)
    outcome = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                      operators=env["operators"], assume_yes=True, poll_seconds=0.05,
                                      approval_timeout=0.2)
    assert outcome.status == "approval-timed-out"
    assert _step(env, eid, "toggle")["action_runs"] == 0
    assert flags.read().active == "primary"


def test_executor_cannot_approve_own_step(env, flags, runbook_file):
    """The identity executing the run is refused as an approver, whatever its roles."""
    eid = f"t-own-{uuid.uuid4().hex[:6]}"
    _waiting(env, eid, runbook_file(DRILL))
    with pytest.raises(Refused, match="alice is executing this run and cannot approve its own step"):
        _decide(env, eid, "toggle", ALICE)
    assert ExecutionStore(env["aws"]).approvals(eid, "toggle") == ([], 0)


def test_identity_without_allowed_role_cannot_approve(env, flags, runbook_file):
    """An identity whose roles are not among the step's approving roles is refused."""
    eid = f"t-role-{uuid.uuid4().hex[:6]}"
    _waiting(env, eid, runbook_file(DRILL))
    with pytest.raises(Refused, match="dave has customer-service; approving needs one of"):
        _decide(env, eid, "toggle", DAVE)
    with pytest.raises(Refused, match="has no role"):
        _decide(env, eid, "toggle", Identity("mallory", "test"))


def test_approval_copied_to_another_execution_or_step_does_not_count(env, flags, runbook_file):
    """An approval record is bound to its execution, step and runbook text: copied elsewhere it is refused."""
    path = runbook_file(TWO_APPROVALS)
    first, second = f"t-bind-a-{uuid.uuid4().hex[:6]}", f"t-bind-b-{uuid.uuid4().hex[:6]}"
    _waiting(env, first, path)
    _waiting(env, second, path)
    _decide(env, first, "toggle", BOB)
    table = ExecutionStore(env["aws"]).table
    ddb = env["aws"].dynamodb
    meta = ddb.get_item(TableName=table, Key={"execution_id": {"S": first}, "item": {"S": "meta"}})["Item"]
    bobs = meta["decisions"]["M"]["toggle"]["M"]["bob"]
    # Replay it on the other execution, and on the other step of the first, as a table writer would.
    for eid, step in ((second, "toggle"), (first, "mode")):
        ddb.update_item(TableName=table, Key={"execution_id": {"S": eid}, "item": {"S": "meta"}},
                        UpdateExpression="SET decisions.#s = :d", ExpressionAttributeNames={"#s": step},
                        ExpressionAttributeValues={":d": {"M": {"bob": bobs}}})
    resumed = engine.resume_execution(env["settings"], second, aws=env["aws"], identity=ALICE,
                                      operators=env["operators"], assume_yes=True, poll_seconds=0.05,
                                      approval_timeout=0.2)
    assert resumed.status == "approval-timed-out"
    assert _step(env, second, "toggle")["action_runs"] == 0
    progress = [e for e in _timeline(env, second) if e["kind"] == "execution.stopped"]
    assert progress and "still needs 1 approval" in progress[-1]["data"]["reason"]
    # The first execution's toggle is approved for real; its copy on step "mode" is not counted.
    outcome = engine.resume_execution(env["settings"], first, aws=env["aws"], identity=ALICE,
                                      operators=env["operators"], assume_yes=True, poll_seconds=0.05,
                                      approval_timeout=0.2)
    assert outcome.status == "approval-timed-out"
    assert _step(env, first, "toggle")["status"] == "succeeded"
    assert _step(env, first, "mode")["action_runs"] == 0
    assert flags.read().mode == "manual"


def test_runbook_edited_mid_run_is_refused(env, flags, runbook_file):
    """Approvals granted, then the runbook file changes: the action is refused and never runs."""
    path = runbook_file(DRILL)
    approve = _approver(env, BOB, CAROL)

    def approve_then_edit(wait):
        approve(wait)
        path.write_text(DRILL.replace("Switch the active broker", "Switch it"), encoding="utf-8")

    eid = f"t-edit-{uuid.uuid4().hex[:6]}"
    with pytest.raises(BadInput, match="was edited after execution"):
        _run(env, path, execution_id=eid, on_approval_wait=approve_then_edit)
    assert _step(env, eid, "toggle")["action_runs"] == 0
    assert flags.read().active == "primary"
    with pytest.raises(BadInput, match="was edited after execution"):
        engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE, operators=env["operators"],
                                assume_yes=True)
    # Put back exactly as it was, the execution continues.
    path.write_text(DRILL, encoding="utf-8")
    outcome = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                      operators=env["operators"], assume_yes=True, poll_seconds=0.05)
    assert outcome.status == "completed"


def test_rejection_stops_the_step(env, flags, runbook_file):
    """One rejection stops the step whatever the approvals: its action never runs, resume stops again."""
    eid = f"t-reject-{uuid.uuid4().hex[:6]}"
    _waiting(env, eid, runbook_file(DRILL))
    _decide(env, eid, "toggle", BOB)
    _decide(env, eid, "toggle", CAROL, "reject", reason="secondary not confirmed with the provider")
    _decide(env, eid, "toggle", ERIN)
    outcome = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                      operators=env["operators"], assume_yes=True, poll_seconds=0.05)
    assert outcome.status == "stopped"
    assert "rejected by carol (secondary not confirmed with the provider)" in outcome.reason
    toggle = _step(env, eid, "toggle")
    assert (toggle["status"], toggle["action_runs"]) == ("rejected", 0)
    assert flags.read().active == "primary"
    again = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                    operators=env["operators"], assume_yes=True, poll_seconds=0.05)
    assert again.status == "stopped" and _step(env, eid, "toggle")["action_runs"] == 0
    kinds = [e["kind"] for e in _timeline(env, eid)]
    assert "approval.rejected" in kinds and "approval.stopped" in kinds


# ---- rollback -------------------------------------------------------------------------------

def _refuse(ctx, reason):
    raise OperationFailed(f"broker refused: {reason}")


@pytest.fixture
def failing_action():
    """A registered action that always fails (registered like any plugin operation)."""
    registry.register(Operation(name="test_refuse", kind="action", func=_refuse, description="always fails",
                                schema={"type": "object", "properties": {"reason": {"type": "string"}},
                                        "required": ["reason"], "additionalProperties": False}))
    yield "test_refuse"
    registry.unregister("test_refuse")


ROLLBACK = """\
name: rollback-drill
title: Three changes, then an action that fails
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: quiesce
    title: Pause
    action: {name: set_processing, args: {state: paused}}
    rollback: restore
  - id: toggle
    title: Secondary
    action: {name: set_active_broker, args: {provider: secondary}}
  - id: mode
    title: Auto
    action: {name: set_routing_mode, args: {mode: auto}}
    rollback: restore
  - id: notify
    title: Fails
    action: {name: test_refuse, args: {reason: "no capacity"}}
    on_failure: abort
"""


def test_failing_action_rolls_back_completed_steps_in_reverse_order(env, flags, runbook_file, failing_action):
    """An action that fails undoes the completed steps newest first, each rollback in the audit log."""
    outcome = _run(env, runbook_file(ROLLBACK))
    assert outcome.status == "failed"
    assert "broker refused: no capacity" in outcome.reason
    values = flags.read()
    assert (values.processing, values.active, values.mode) == ("running", "primary", "manual")
    timeline = _timeline(env, outcome.execution_id)
    rollbacks = [(e["step_id"], e["data"]["status"]) for e in timeline if e["kind"] == "rollback.step"]
    assert rollbacks == [("mode", "succeeded"), ("toggle", "succeeded"), ("quiesce", "succeeded")]
    started = next(e for e in timeline if e["kind"] == "rollback.started")
    assert started["data"]["steps"] == ["mode", "toggle", "quiesce"]
    assert _step(env, outcome.execution_id, "mode")["rollback"]["args"] == {"mode": "manual"}
    with pytest.raises(Refused, match="already failed"):
        engine.resume_execution(env["settings"], outcome.execution_id, aws=env["aws"], identity=ALICE)


def test_abort_with_rollback_restores_the_flags(env, flags, runbook_file):
    """Aborting a waiting execution with --rollback undoes its completed actions; it cannot be resumed."""
    eid = f"t-abort-{uuid.uuid4().hex[:6]}"
    _waiting(env, eid, runbook_file(DRILL))
    assert flags.read().processing == "paused"
    result = engine.abort_execution(env["settings"], eid, aws=env["aws"], identity=BOB, reason="drill over",
                                    rollback=True)
    assert result["rolled_back"] is True
    assert flags.read().processing == "running"
    kinds = [e["kind"] for e in _timeline(env, eid)]
    assert "execution.aborted" in kinds and "rollback.step" in kinds
    with pytest.raises(Refused, match="was aborted"):
        engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE)


# ---- nothing is touched by a bad runbook or by plan ----------------------------------------

def _footprint(env, flags):
    store = ExecutionStore(env["aws"])
    return (len(store.list_executions()), AuditLog(env["aws"]).verify().records, flags.read().as_dict())


def test_run_refuses_invalid_runbook_before_touching_anything(env, flags, runbook_file):
    """`run` of an invalid runbook exits 2 with file:line and creates, records and changes nothing."""
    path = runbook_file(DRILL.replace("name: set_active_broker", "name: set_active_brokr"))
    before = _footprint(env, flags)
    result = _cli(env, "runbook", "run", str(path), "--yes")
    assert result.returncode == 2, result.stderr
    assert f"{path}:20: step 3 (toggle) action.name: unknown action 'set_active_brokr'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert _footprint(env, flags) == before


def test_plan_shows_live_values_and_changes_nothing(env, flags, runbook_file):
    """`plan` reads every check live (flags as they are) and changes no flag, execution or audit record."""
    path = runbook_file(DRILL)
    flags.set("mode", "auto")
    before = _footprint(env, flags)
    result = _cli(env, "runbook", "plan", str(path), "--json")
    assert result.returncode == 1, result.stderr  # its first check fails: a run would stop there
    plan = json.loads(result.stdout)
    first = plan["steps"][0]["checks"][0]
    assert (first["probe"], first["value"], first["met"]) == ("routing_mode", "auto", False)
    assert plan["verdict"]["text"] == "a run would stop at step 1 (manual-mode): routing_mode now auto, expected manual"
    assert plan["steps"][2]["approval"]["count"] == 2
    assert plan["steps"][2]["action"] == {"name": "set_active_broker", "args": {"provider": "secondary"}}
    assert _footprint(env, flags) == before


# ---- the guided run at a terminal -----------------------------------------------------------

GUIDED = """\
name: guided
title: Pause and resume
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: manual-mode
    title: Routing is manual
    check: {probe: routing_mode, expect: manual}
  - id: quiesce
    title: Pause
    action: {name: set_processing, args: {state: paused}}
  - id: resume
    title: Resume
    action: {name: set_processing, args: {state: running}}
"""


def _at_terminal(env, *args, answers: str) -> subprocess.CompletedProcess:
    """tradeops at a terminal (a person there), typing ``answers``."""
    terminal = Terminal(["tradeops", *args], _cli_env(env), cwd=env["dir"])
    terminal.type(answers)
    code, shown, err = terminal.finish()
    return subprocess.CompletedProcess(args, code, shown, err)


def test_guided_run_asks_before_each_action(env, flags, runbook_file):
    """At a terminal, without --yes, run shows each check's live value and asks before each action; a 'no' stops it."""
    path = runbook_file(GUIDED)
    declined = _at_terminal(env, "runbook", "run", str(path), answers="n\n")
    assert declined.returncode == 1
    assert "routing_mode() = manual" in declined.stdout
    assert "Run set_processing(state=paused)?" in declined.stdout
    assert "declined the action" in declined.stderr and "Traceback" not in declined.stderr
    assert flags.read().processing == "running"
    accepted = _at_terminal(env, "runbook", "run", str(path), answers="y\ny\n")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.count("Run set_processing") == 2


# ---- kill and resume ------------------------------------------------------------------------

def test_killed_run_resumes_without_repeating_the_quiesce(env, flags, runbook_file):
    """SIGKILL on `run` after the quiesce step; `resume` completes and the quiesce action ran exactly once."""
    path = runbook_file(DRILL)
    eid = f"t-kill-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(["tradeops", "runbook", "run", str(path), "--yes",
                             "--poll", "0.1", "--execution-id", eid], env=_cli_env(env), cwd=str(env["dir"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = ExecutionStore(env["aws"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            steps = {r["step_id"]: r for r in store.steps(eid).values()} if proc.poll() is None else {}
            if steps.get("toggle", {}).get("status") == "waiting_approval":
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("run never reached the approval step")
        os.kill(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert f"tradeops runbook approve {eid} toggle" in stdout
    assert store.meta(eid)["status"] == "waiting_approval"
    assert flags.read().processing == "paused"
    approved = _cli(env, "runbook", "approve", eid, "toggle", "--yes", TRADEOPS_OPERATOR="bob")  # bob's terminal
    assert approved.returncode == 0, approved.stderr
    assert f"approved step toggle of {eid} as bob (identity from TRADEOPS_OPERATOR; roles ops-manager)" in \
        approved.stdout
    assert "action:    set_active_broker(provider=secondary)" in approved.stdout
    _decide(env, eid, "toggle", CAROL)
    resumed = _cli(env, "runbook", "resume", eid, "--yes", "--poll", "0.1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert store.meta(eid)["status"] == "completed"
    values = flags.read()
    assert (values.processing, values.active) == ("running", "secondary")
    assert _step(env, eid, "quiesce")["action_runs"] == 1
    timeline = _timeline(env, eid)
    quiesce_runs = [e for e in timeline if e["kind"] == "action.started" and e["step_id"] == "quiesce"]
    assert len(quiesce_runs) == 1
    assert [e["kind"] for e in timeline].count("execution.resumed") == 1
    assert all(r["status"] == "succeeded" for r in store.steps(eid).values())


def test_interrupted_action_is_repeated_only_if_idempotent(env, flags, runbook_file, failing_action):
    """An action cut off mid-flight is re-run when idempotent; otherwise --yes stops rather than guess."""
    path = runbook_file(GUIDED)
    eid = f"t-mid-{uuid.uuid4().hex[:6]}"
    outcome = _run(env, path, execution_id=eid)
    assert outcome.status == "completed"
    # Put the execution back in the state a kill during the 'resume' action leaves behind.
    rec = _step(env, eid, "resume")
    _plant(env, eid, 2, dict(rec, status="running", phase="acting"), status="running")
    again = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                    operators=env["operators"], assume_yes=True)
    assert again.status == "completed"
    assert _step(env, eid, "resume")["action_runs"] == 2
    assert "action.retry" in [e["kind"] for e in _timeline(env, eid)]
    # The same for an action that is not idempotent: --yes refuses to repeat it blindly.
    registry.unregister("test_refuse")
    registry.register(Operation(name="test_refuse", kind="action", func=lambda ctx, reason: {"ok": reason},
                                description="not idempotent", schema={"type": "object"}))
    text = GUIDED + "  - id: once\n    title: Once\n    action: {name: test_refuse, args: {reason: x}}\n"
    path2 = runbook_file(text)
    eid2 = f"t-mid2-{uuid.uuid4().hex[:6]}"
    assert _run(env, path2, execution_id=eid2).status == "completed"
    rec = _step(env, eid2, "once")
    _plant(env, eid2, 3, dict(rec, status="running", phase="acting"), status="running")
    stopped = engine.resume_execution(env["settings"], eid2, aws=env["aws"], identity=ALICE,
                                      operators=env["operators"], assume_yes=True)
    assert stopped.status == "stopped" and "not safe to repeat blindly" in stopped.reason
    assert _step(env, eid2, "once")["action_runs"] == 1


def test_the_store_refuses_a_move_not_in_its_table_before_writing(env, flags, runbook_file):
    """A finished step written back to acting, or a completed execution back to running, is refused
    (IllegalTransition) before anything is written: the execution reads back exactly as it was."""
    eid = f"t-table-{uuid.uuid4().hex[:6]}"
    assert _run(env, runbook_file(GUIDED), execution_id=eid).status == "completed"
    store = ExecutionStore(env["aws"])
    before = store.load(eid)
    done = _step(env, eid, "quiesce")
    with pytest.raises(IllegalTransition, match="succeeded is final"):
        store.put_step(eid, 1, dict(done, status="running", phase="acting"), lease_token=None)
    changes = Changes(eid, before[0]["status"], before[1], epoch=1)
    with pytest.raises(IllegalTransition, match="completed is final"):
        changes.set(status="running")
    with pytest.raises(ValueError, match="status"):
        store.set_fields(eid, {"status": "running"})
    assert store.load(eid) == before


def test_step_records_of_an_execution_written_before_they_moved_into_its_meta_item_still_read(env):
    """An execution stored the older way (no marker, each step record an item of its own) reads back with its
    records, and a record written now lands in its meta item and is the one read."""
    store = ExecutionStore(env["aws"])
    eid = f"t-older-{uuid.uuid4().hex[:6]}"
    ser = TypeSerializer()
    meta = {"execution_id": eid, "item": "meta", "status": "stopped", "runbook": "guided"}
    old = {"execution_id": eid, "item": step_key(0), "index": 0, "step_id": "manual-mode", "status": "failed",
           "phase": "pending", "lease_epoch": 1}
    for item in (meta, old):
        env["aws"].dynamodb.put_item(TableName=store.table, Item={k: ser.serialize(v) for k, v in item.items()})
    assert store.steps(eid) == {0: old}
    store.put_step(eid, 0, dict(old, status="running"), lease_token=None)
    assert store.steps(eid)[0]["status"] == "running"
    raw = env["aws"].dynamodb.get_item(TableName=store.table, Key={"execution_id": {"S": eid}, "item": {"S": "meta"}})
    assert raw["Item"][step_key(0)]["M"]["status"] == {"S": "running"}


FLAKY = """\
name: flaky
title: An action that fails once, then a step whose verification waits on a flag
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: flaky
    title: Fails the first time
    action: {name: test_flaky, args: {reason: x}}
    on_failure: stop
  - id: pause
    title: Pause, verified
    action: {name: set_processing, args: {state: paused}}
    verify: {probe: routing_mode, expect: auto, timeout: 0.2, every: 0.05}
    on_failure: stop
"""


def test_resume_after_a_failed_action_runs_it_again_and_after_a_done_one_only_verifies(env, flags, runbook_file):
    """The two resume paths with an action behind them: a step stopped at action_failed runs its (idempotent)
    action again; a step stopped at acted (its verification failed) only verifies again, never acting twice."""
    calls: list[str] = []

    def flaky(ctx, reason):
        calls.append(reason)
        if len(calls) == 1:
            raise OperationFailed("not this time")
        return {"ok": reason}

    registry.register(Operation(name="test_flaky", kind="action", func=flaky, description="fails once",
                                idempotent=True, schema={"type": "object", "properties": {"reason": {"type": "string"}},
                                                         "required": ["reason"], "additionalProperties": False}))
    try:
        eid = f"t-flaky-{uuid.uuid4().hex[:6]}"
        path = runbook_file(FLAKY)
        first = _run(env, path, execution_id=eid)
        assert first.status == "stopped" and _step(env, eid, "flaky")["phase"] == "action_failed"
        second = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                         operators=env["operators"], assume_yes=True, poll_seconds=0.05)
        assert second.status == "stopped" and len(calls) == 2
        assert (_step(env, eid, "flaky")["phase"], _step(env, eid, "pause")["phase"]) == ("done", "acted")
        flags.set("mode", "auto")
        third = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE,
                                        operators=env["operators"], assume_yes=True, poll_seconds=0.05)
        assert third.status == "completed"
        assert (_step(env, eid, "pause")["phase"], _step(env, eid, "pause")["action_runs"]) == ("done", 1)
        kinds = [(e["kind"], e["step_id"]) for e in _timeline(env, eid)]
        assert kinds.count(("action.started", "flaky")) == 2 and kinds.count(("action.started", "pause")) == 1
    finally:
        registry.unregister("test_flaky")


# ---- one-line errors, exit codes -----------------------------------------------------------

def test_unknown_ids_finished_steps_and_aborted_executions_are_one_line_errors(env, flags, runbook_file):
    """Unknown execution or step (not found: exit 1), approving a finished step or resuming an aborted run
    (refused: exit 1), a step that needs no approval (bad input: exit 2): one line each, no traceback."""
    path = runbook_file(TWO_APPROVALS)
    eid = f"t-ids-{uuid.uuid4().hex[:6]}"
    _waiting(env, eid, path)
    _decide(env, eid, "toggle", BOB)
    engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE, operators=env["operators"],
                            assume_yes=True, poll_seconds=0.05, approval_timeout=0.1)
    assert _step(env, eid, "toggle")["status"] == "succeeded"
    cases = [
        (("runbook", "approve", "no-such-execution", "toggle", "--yes"), 1, "no execution 'no-such-execution'"),
        (("runbook", "approve", eid, "no-such-step", "--yes"), 1, "has no step 'no-such-step'"),
        (("runbook", "approve", eid, "toggle", "--yes"), 1, "is already executing"),
        (("runbook", "resume", "no-such-execution", "--yes"), 1, "no execution 'no-such-execution'"),
        (("runbook", "history", "--json", "no-such-execution"), 1, "no execution 'no-such-execution'"),
    ]
    abort = (("abort",), 0, "")
    for args, code, message in [*cases, abort, (("runbook", "resume", eid, "--yes"), 1, "was aborted by bob")]:
        if args == ("abort",):
            engine.abort_execution(env["settings"], eid, aws=env["aws"], identity=BOB, reason="test")
            continue
        result = _cli(env, *args, TRADEOPS_OPERATOR="bob")
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    with pytest.raises(NotFound):
        engine.decide(env["settings"], "no-such-execution", "toggle", "approve", aws=env["aws"], identity=BOB,
                      operators=env["operators"])


def test_history_json_is_the_execution_timeline(env, flags, runbook_file):
    """`history --json EXECUTION` prints the execution, its step records and its audit timeline in order."""
    outcome = _run(env, runbook_file(DRILL), on_approval_wait=_approver(env, BOB, CAROL))
    result = _cli(env, "runbook", "history", "--json", outcome.execution_id)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["execution"]["status"] == "completed" and "lease_token" not in data["execution"]
    assert [s["step_id"] for s in data["steps"]] == ["manual-mode", "quiesce", "toggle", "resume"]
    seqs = [e["seq"] for e in data["timeline"]]
    assert seqs == sorted(seqs)
    assert data["timeline"][0]["kind"] == "execution.started"
    assert {e["actor"] for e in data["timeline"]} == {"alice", "bob", "carol"}
    listing = _cli(env, "runbook", "history", "--json")
    assert outcome.execution_id in {r["execution_id"] for r in json.loads(listing.stdout)}


WAIT = """\
name: wait
title: Wait on a check that is not met
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: paused
    title: Processing is paused
    check: {probe: processing, expect: paused, timeout: 6, every: 0.05}
"""


def test_a_wait_looks_for_an_abort_about_once_a_second_and_stops_on_one(env, flags, runbook_file):
    """A run polling a check every 50 ms with nothing to write reads its execution for an abort at most once a
    LIVE_CHECK_EVERY (not at every poll), and an abort still stops it within about that long, not at the check's
    timeout."""
    counter = RequestCounter()
    aws = Aws(env["settings"], counter=counter)
    eid = f"t-wait-{uuid.uuid4().hex[:6]}"
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["outcome"] = engine.run_execution(env["settings"], str(runbook_file(WAIT)), aws=aws, identity=ALICE,
                                                   operators=env["operators"], assume_yes=True, execution_id=eid)
        except Exception as exc:  # what the abort raises in the driver, if it raises
            done["error"] = exc

    driver = threading.Thread(target=run, daemon=True)
    driver.start()
    time.sleep(2.0)
    assert not done, done  # still waiting on its check
    reads = counter.snapshot().get("dynamodb.GetItem", 0)
    assert reads <= 4, reads  # ~40 polls, about two reads of the execution (a read per poll: 20 and more)
    engine.abort_execution(env["settings"], eid, aws=env["aws"], identity=BOB, reason="enough")
    aborted = time.monotonic()
    driver.join(timeout=6)
    assert not driver.is_alive()
    assert time.monotonic() - aborted < LIVE_CHECK_EVERY + 1.5  # the check's own timeout is 4 s further on
    result = done.get("outcome") or done.get("error")
    assert "abort" in str(getattr(result, "status", "")) + str(getattr(result, "reason", "")) + str(result), result
