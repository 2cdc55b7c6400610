"""Four-eyes without side doors (issues 15 and 24): decisions final at the action, approvals only after the request,
one roster per execution, identities nobody can choose, and decisions that stay right under concurrent writers.

Proven through the approval gate (the people and the gate as IAM users holding the deployed policies, on the
emulator with IAM access control on: tests/support/gateworld.py), and again without a gate, where the executions
table holds the decisions and the `tradeops` CLI answers (the local stack runs no gate)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from tests.support.gateworld import ACCOUNT, GateWorld, arn, authed_emulator, gate_world
from tradeops.runbooks import engine
from tradeops.runbooks.approvals import Approval, ApprovalContext
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.gateledger import GateLedger
from tradeops.runbooks.identity import (
    SSO_ROLE_PATH,
    Identity,
    Operators,
    bound_roles,
    current_identity,
    identity_from_arn,
    parse_operators,
    sso_role,
)
from tradeops.runbooks.loader import read_runbook_text, resolve_path, sha256_text
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.store import DecisionsChanged, ExecutionStore, LeaseLost
from tradeops.runbooks.testing import install_roster, isolated_flags, write_operators
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import ConfigError, Refused
from tradeops.runtime.platform.names import names_for

ALICE, BOB, CAROL, ERIN = (Identity(n, "test") for n in ("alice", "bob", "carol", "erin"))

SWITCH = """\
name: switch
title: Switch the active broker under four-eyes, then switch to auto
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: toggle
    title: Switch the active broker
    approval: {count: 2, roles: [ops-manager, risk]}
    action: {name: set_active_broker, args: {provider: secondary}}
    rollback: restore
  - id: mode
    title: Switch to auto
    approval: {count: 1, roles: [ops-manager, risk], timeout: 0.3}
    action: {name: set_routing_mode, args: {mode: auto}}
    rollback: restore
"""

ROLES = {"alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"], "erin": ["ops-manager"]}


@pytest.fixture(scope="module")
def env(aws_settings, tmp_path_factory):
    """Flags, a roster and a runbook of this module's own (a private parameter prefix)."""
    base = tmp_path_factory.mktemp("four-eyes")
    prefix = f"/fe{uuid.uuid4().hex[:8]}"
    settings = isolated_flags(aws_settings, prefix).model_copy(update={"operator": "alice"})
    aws = Aws(settings)
    roster = install_roster(aws, write_operators(base / "operators.yaml", ROLES))
    path = base / "switch.yaml"
    path.write_text(SWITCH, encoding="utf-8")
    return {"settings": settings, "aws": aws, "roster": roster, "dir": base, "prefix": prefix, "runbook": path}


@pytest.fixture
def flags(env):
    f = Flags(env["aws"])
    f.set("mode", "manual")
    f.set("active", "primary")
    return f


def _run(env, **kwargs):
    kwargs.setdefault("identity", ALICE)
    kwargs.setdefault("poll_seconds", 0.05)
    kwargs.setdefault("assume_yes", True)
    return engine.run_execution(env["settings"], str(env["runbook"]), aws=env["aws"], **kwargs)


def _decide(env, eid, step, who, decision="approve", reason="looked at it", **kw):
    return engine.decide(env["settings"], eid, step, decision, aws=env["aws"], identity=who, reason=reason, **kw)


def _timeline(env, eid):
    return [e["kind"] for e in AuditLog(env["aws"]).entries(eid)]


def _cli(env, *args, stdin=subprocess.DEVNULL, **extra):
    s = env["settings"]
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    cli_env.update({"TRADEOPS_AWS_ENDPOINT_URL": s.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": s.name_prefix,
                    "TRADEOPS_PARAM_PREFIX": s.param_prefix, "TRADEOPS_STATE_DIR": str(env["dir"] / "state"),
                    "TRADEOPS_OPERATOR": "alice", **extra})
    return subprocess.run(["tradeops", *args], env=cli_env, capture_output=True, text=True, timeout=60,
                          stdin=stdin, cwd=str(env["dir"]))


# ==== through the approval gate ==================================================================
# The people are IAM users holding the deployed operator policy; the gate holds GateRole's policy; every decision
# and every guarded action goes through the gate, which runs only the runbooks it ships: change-operators (one
# step, two approvals of ops-manager or risk), enable-auto (one approval) and failover (two four-eyes steps).

GATE_ROLES = {"alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"], "erin": ["ops-manager"],
              "frank": ["risk"]}
ME = Identity(arn("alice"), "iam-user")


@pytest.fixture(scope="module")
def authed_moto(processes) -> Iterator[str]:
    """A moto server of this module's own with IAM access control on (tests/support/gateworld.py)."""
    with authed_emulator() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def gw(authed_moto, tmp_path_factory) -> Iterator[GateWorld]:
    """The deployed template, the people and a gate as IAM users with the deployed policies, the roster in force."""
    with gate_world(authed_moto, tmp_path_factory.mktemp("fe-gate"), prefix="fg", roles=GATE_ROLES) as world:
        yield world


@pytest.fixture
def roster_back(gw) -> Iterator[None]:
    """The test may change the roster (a run that applies a proposal, or a test's own install): it is put back."""
    yield
    gw.restore_roster()


def _proposal(gw: GateWorld) -> str:
    """A proposed roster adding one more risk approver (as `tradeops operators apply` stores it); its short digest."""
    extra = f"arn:aws:iam::{ACCOUNT}:user/new-{uuid.uuid4().hex[:6]}"
    new = Operators(roles={**{arn(n): frozenset(r) for n, r in GATE_ROLES.items()}, extra: frozenset({"risk"})},
                    source="the proposal")
    return str(Roster(gw.admin).propose(new, actor=Identity("admin", "test"))["digest"])[:16]


def _gated_run(gw: GateWorld, eid: str, **kwargs):
    """change-operators run by alice with her own credentials, through the gate."""
    alice = gw.people["alice"]
    kwargs.setdefault("identity", ME)
    kwargs.setdefault("poll_seconds", 0.05)
    kwargs.setdefault("assume_yes", True)
    return engine.run_execution(alice.settings, "change-operators", aws=alice, execution_id=eid,
                                params={"proposal": kwargs.pop("proposal", None) or _proposal(gw)}, **kwargs)


def _gdecide(gw: GateWorld, eid: str, who: str, decision: str = "approve", reason: str = "looked at it",
             step: str = "apply"):
    return engine.decide(gw.people[who].settings, eid, step, decision, aws=gw.people[who], reason=reason)


def _roster_now(gw: GateWorld) -> str:
    return Roster(gw.admin).require().digest


def _refused(gw: GateWorld, eid: str, op: str) -> list[str]:
    """The reasons of the gate's refusals of ``op`` on execution ``eid`` (its gate.refused audit records)."""
    return [e["data"]["reason"] for e in gw.refusals(eid) if e["data"]["op"] == op]


def test_a_reject_between_the_grant_and_the_action_stops_the_action(gw, roster_back):
    """Granted while the executor sits at the confirmation prompt, then rejected: answering yes gets the action
    refused by the gate with the rejection as its reason, audited as refused, and the roster does not change."""
    eid = f"fe-late-{uuid.uuid4().hex[:6]}"

    def approve(wait):
        for who in ("bob", "erin"):
            _gdecide(gw, wait.execution_id, who)

    def yes_after_a_late_rejection(prompt):
        if "apply_roster" in prompt:
            _gdecide(gw, eid, "carol", "reject", reason="the proposal was not reviewed")
        return True

    outcome = _gated_run(gw, eid, assume_yes=False, confirm=yes_after_a_late_rejection, on_approval_wait=approve)
    late = f"rejected by {arn('carol')} (the proposal was not reviewed)"
    assert outcome.status == "failed" and late in outcome.reason, outcome
    assert _roster_now(gw) == gw.roster.digest
    assert not gw.acts(eid) and GateLedger(gw.admin).read(eid, "apply").acted is None
    (why,) = _refused(gw, eid, "act")
    assert late in why
    kinds = [(e["kind"], (e.get("data") or {}).get("decision")) for e in AuditLog(gw.admin).entries(eid)]
    assert kinds.index(("approval.granted", None)) < kinds.index(("gate.decided", "reject"))


def test_once_the_action_started_decisions_are_refused(gw, roster_back):
    """Once the gate has acted on a step, an approval, a rejection and a withdrawal are each refused with one line,
    audited as refused, and the step's decisions stay as they were counted."""
    eid = f"fe-acting-{uuid.uuid4().hex[:6]}"

    def approve(wait):
        for who in ("bob", "carol"):
            _gdecide(gw, wait.execution_id, who)

    outcome = _gated_run(gw, eid, on_approval_wait=approve)
    assert outcome.status == "completed", outcome.reason
    applied = _roster_now(gw)
    assert applied != gw.roster.digest and len(gw.acts(eid)) == 1
    before = GateLedger(gw.admin).read(eid, "apply")
    for attempt in (lambda: _gdecide(gw, eid, "erin"),
                    lambda: _gdecide(gw, eid, "carol", "reject", reason="too late"),
                    lambda: engine.withdraw(gw.people["bob"].settings, eid, "apply", aws=gw.people["bob"])):
        with pytest.raises(Refused, match=r"step apply of .* was already acted on") as refused:
            attempt()
        assert "\n" not in str(refused.value)
    after = GateLedger(gw.admin).read(eid, "apply")
    assert (after.decisions, after.decision_seq) == (before.decisions, before.decision_seq)
    reasons = _refused(gw, eid, "decide") + _refused(gw, eid, "withdraw")
    assert len(reasons) == 3 and all("already acted on" in r for r in reasons)
    assert _roster_now(gw) == applied and len(gw.acts(eid)) == 1


def test_the_move_to_acting_and_a_rejection_never_both_land(gw):
    """Racing a rejection against the gate's move to acted, many times: exactly one of the two ever lands, and the
    routing mode changed exactly when the act landed."""
    flags = Flags(gw.admin)
    flags.set("mode", "manual")
    wins = {"acting": 0, "reject": 0}
    for _ in range(12):
        eid = gw.execution("enable-auto")
        gw.ask("alice", "request", eid, "switch-to-auto")
        gw.ask("bob", "decide", eid, "switch-to-auto", decision="approve")
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def act(eid: str = eid) -> None:
            barrier.wait()
            try:
                gw.ask("alice", "act", eid, "switch-to-auto")
                results["acting"] = True
            except Refused:
                results["acting"] = False

        def reject(eid: str = eid) -> None:
            barrier.wait()
            try:
                gw.ask("carol", "decide", eid, "switch-to-auto", decision="reject", reason="race")
                results["reject"] = True
            except Refused:
                results["reject"] = False

        threads = [threading.Thread(target=act), threading.Thread(target=reject)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results["acting"] != results["reject"], results  # one, never both, never neither
        ledger = GateLedger(gw.admin).read(eid, "switch-to-auto")
        assert (ledger.acted is not None) == results["acting"]
        assert any(a.decision == "reject" for a in ledger.decisions) == results["reject"]
        assert flags.read().mode == ("auto" if results["acting"] else "manual")
        kinds = [e["kind"] for e in gw.audit(eid)]
        assert (kinds.count("gate.acted"), kinds.count("gate.refused")) == (int(results["acting"]), 1)
        wins["acting" if results["acting"] else "reject"] += 1
        flags.set("mode", "manual")
    assert sum(wins.values()) == 12


def test_a_withdrawn_approval_stops_counting(gw, roster_back):
    """An approver who withdraws through the gate before it acts is no longer counted: the run waits again, the gate
    refuses to act with one approval, and the same approver cannot approve again."""
    eid = f"fe-withdraw-{uuid.uuid4().hex[:6]}"
    _gated_run(gw, eid, approval_timeout=0.05)
    _gdecide(gw, eid, "bob")
    engine.withdraw(gw.people["bob"].settings, eid, "apply", aws=gw.people["bob"], reason="wrong execution")
    _gdecide(gw, eid, "carol")
    outcome = engine.resume_execution(gw.people["alice"].settings, eid, aws=gw.people["alice"], identity=ME,
                                      assume_yes=True, poll_seconds=0.05, approval_timeout=0.2)
    assert outcome.status == "approval-timed-out"
    with pytest.raises(Refused, match="still needs 1 approval"):
        gw.ask("alice", "act", eid, "apply")
    with pytest.raises(Refused, match="one identity counts once"):
        _gdecide(gw, eid, "bob")
    assert _roster_now(gw) == gw.roster.digest and not gw.acts(eid)
    decided = [e["data"]["decision"] for e in gw.audit(eid) if e["kind"] == "gate.decided"]
    assert decided == ["approve", "withdraw", "approve"]
    assert len(_refused(gw, eid, "act")) == 1 and len(_refused(gw, eid, "decide")) == 1


def test_an_approval_before_the_request_is_refused(gw):
    """Approving a step the run has not reached (the gate holds no request for it) is refused with one line,
    audited as refused, and nothing is recorded for the step."""
    eid = f"fe-early-{uuid.uuid4().hex[:6]}"
    outcome = _gated_run(gw, eid, assume_yes=False, confirm=lambda prompt: False)  # stops at notify, before apply
    assert outcome.status == "stopped", outcome
    with pytest.raises(Refused, match="not yet requested") as refused:
        _gdecide(gw, eid, "bob")
    assert "\n" not in str(refused.value)
    ledger = GateLedger(gw.admin).read(eid, "apply")
    assert (ledger.requested, ledger.decisions, ledger.decision_seq) == (False, (), 0)
    assert ExecutionStore(gw.admin).approvals(eid, "apply") == ([], 0)
    (why,) = _refused(gw, eid, "decide")
    assert "not yet requested" in why


def test_the_request_carries_the_step_its_action_and_the_runbook_hash(gw):
    """What the gate records as the request (its ledger and its gate.requested record): who asked, the step's
    action and arguments fixed then, the runbook's SHA-256 (the shipped text's) and the roster; the run's own
    record of the request says the same."""
    eid = f"fe-req-{uuid.uuid4().hex[:6]}"
    proposal = _proposal(gw)
    _gated_run(gw, eid, approval_timeout=0.05, proposal=proposal)
    shipped = sha256_text(read_runbook_text(resolve_path("change-operators")))
    ledger = GateLedger(gw.admin).read(eid, "apply")
    assert (ledger.requested_by, ledger.action, dict(ledger.args)) == (arn("alice"), "apply_roster",
                                                                        {"proposal": proposal})
    assert (ledger.runbook_sha256, ledger.roster_digest) == (shipped, gw.roster.digest)
    (requested,) = [e for e in gw.audit(eid) if e["kind"] == "gate.requested"]
    assert requested["actor"] == arn("alice") and requested["data"]["runbook_sha256"] == shipped
    assert (requested["data"]["action"], requested["data"]["args"]) == ("apply_roster", {"proposal": proposal})
    meta = ExecutionStore(gw.admin).meta(eid)
    request = meta["requests"]["apply"]
    assert meta["runbook_sha256"] == request["runbook_sha256"] == shipped and request["message_id"]
    assert (request["step_id"], request["action"], request["args"]) == ("apply", "apply_roster",
                                                                        {"proposal": proposal})
    assert request["command"] == f"tradeops runbook approve {eid} apply"


def test_an_approval_timeout_bounds_the_wait(gw):
    """A step the gate holds too few approvals for stops as approval-timed-out after the wait, nothing changed; a
    resume asks the gate again, which keeps the request as first made (one gate.requested, the decisions kept)."""
    eid = f"fe-timeout-{uuid.uuid4().hex[:6]}"

    decided: list[str] = []

    def one_approver(wait):  # the run calls it on every other look while it waits: bob decides once
        if not decided:
            decided.append(_gdecide(gw, wait.execution_id, "bob").identity)

    outcome = _gated_run(gw, eid, on_approval_wait=one_approver, approval_timeout=0.3)
    assert outcome.status == "approval-timed-out" and "after waiting 0.3 s" in outcome.reason
    store = ExecutionStore(gw.admin)
    first = store.meta(eid)["requests"]["apply"]["at"]
    again = engine.resume_execution(gw.people["alice"].settings, eid, aws=gw.people["alice"], identity=ME,
                                    assume_yes=True, poll_seconds=0.05, approval_timeout=0.05)
    assert again.status == "approval-timed-out"
    assert store.meta(eid)["requests"]["apply"]["at"] != first  # asked again
    assert [e["kind"] for e in gw.audit(eid)].count("gate.requested") == 1
    assert [a.identity for a in GateLedger(gw.admin).read(eid, "apply").decisions] == [arn("bob")]
    assert _roster_now(gw) == gw.roster.digest and not gw.acts(eid)


def test_a_resume_under_a_different_roster_is_refused(gw, roster_back):
    """carol rejects through the gate; once the roster in force changes (leaving her out), the gate refuses
    decisions and the act on the step requested under the old one, each audited as refused, and the run's resume
    is refused too: nothing changes."""
    eid = f"fe-roster-{uuid.uuid4().hex[:6]}"
    _gated_run(gw, eid, approval_timeout=0.05)
    _gdecide(gw, eid, "carol", "reject", reason="not today")
    without_carol = Operators(roles={arn(k): frozenset(v) for k, v in GATE_ROLES.items() if k != "carol"},
                              source="a roster without carol")
    install_roster(gw.admin, without_carol)
    with pytest.raises(Refused, match="requested under another roster"):
        _gdecide(gw, eid, "erin")
    with pytest.raises(Refused, match="requested under roster"):
        gw.ask("alice", "act", eid, "apply")
    with pytest.raises(Refused, match="started under roster"):
        engine.resume_execution(gw.people["alice"].settings, eid, aws=gw.people["alice"], identity=ME,
                                assume_yes=True, poll_seconds=0.05)
    assert _roster_now(gw) == without_carol.digest and not gw.acts(eid)
    ledger = GateLedger(gw.admin).read(eid, "apply")
    assert [a.identity for a in ledger.decisions] == [arn("carol")] and ledger.acted is None
    assert len(_refused(gw, eid, "decide")) == 1 and len(_refused(gw, eid, "act")) == 1


def test_each_execution_records_its_roster(gw):
    """The execution's meta, its first audit record and the gate's request carry the roster it started under."""
    eid = f"fe-digest-{uuid.uuid4().hex[:6]}"
    _gated_run(gw, eid, approval_timeout=0.05)
    meta = ExecutionStore(gw.admin).meta(eid)
    current = Roster(gw.admin).require()
    assert meta["roster_digest"] == current.digest == gw.roster.digest
    assert meta["roster_version"] == current.version
    started = AuditLog(gw.admin).entries(eid)[0]
    assert started["kind"] == "execution.started" and started["data"]["roster_digest"] == gw.roster.digest
    assert GateLedger(gw.admin).read(eid, "apply").roster_digest == gw.roster.digest
    (requested,) = [e for e in gw.audit(eid) if e["kind"] == "gate.requested"]
    assert requested["data"]["roster_digest"] == gw.roster.digest


def _role_session(gw: GateWorld, role: str, session: str) -> boto3.Session:
    """``session`` as the name of a session of ``role`` (a role holding the operator policy), assumed by the admin."""
    iam = gw.admin.client("iam")
    try:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": arn("admin")}, "Action": "sts:AssumeRole"}]}))
        iam.put_role_policy(RoleName=role, PolicyName="operate", PolicyDocument=json.dumps(gw.operate_policy))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    creds = gw.admin.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                                               RoleSessionName=session)["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name="eu-west-2")


def test_one_person_under_two_session_names_is_not_two_approvers(gw, roster_back):
    """The gate refuses as approvers the sessions of roles that let the caller pick the session name; a gate that
    binds the two roles' sessions to the user counts erin under both once."""
    eid = f"fe-sessions-{uuid.uuid4().hex[:6]}"
    _gated_run(gw, eid, approval_timeout=0.05)
    manager, risk = _role_session(gw, "TradeopsOpsManager", "erin"), _role_session(gw, "TradeopsRisk", "erin")
    for session in (manager, risk):
        aws = gw.person(session)
        with pytest.raises(Refused, match="lets whoever assumes it choose the session name"):
            engine.decide(aws.settings, eid, "apply", "approve", aws=aws)
    assert GateLedger(gw.admin).read(eid, "apply").decisions == ()
    reasons = _refused(gw, eid, "decide")
    assert len(reasons) == 2 and all("choose the session name" in r for r in reasons)
    bound = gw.serve_gate(operator_roles="TradeopsOpsManager,TradeopsRisk")
    install_roster(gw.admin, Operators(roles={**{arn(n): frozenset(r) for n, r in GATE_ROLES.items()},
                                              arn("erin"): frozenset({"ops-manager", "risk"})}))
    eid = f"fe-sessions-{uuid.uuid4().hex[:6]}"
    _gated_run(gw, eid, approval_timeout=0.05)
    as_manager, as_risk = gw.person(manager, gate_url=bound), gw.person(risk, gate_url=bound)
    approval = engine.decide(as_manager.settings, eid, "apply", "approve", aws=as_manager)
    assert approval.identity == arn("erin")
    with pytest.raises(Refused, match="one identity counts once"):
        engine.decide(as_risk.settings, eid, "apply", "approve", aws=as_risk)
    assert [a.identity for a in GateLedger(gw.admin).read(eid, "apply").decisions] == [arn("erin")]
    assert len(_refused(gw, eid, "decide")) == 1


def test_concurrent_approvers_at_the_gate_lose_nothing(gw):
    """4 approvers deciding through the gate at once on 6 requested steps (3 failovers, two four-eyes steps each):
    all 24 decisions are recorded in the gate's ledger and each step's sequence counts them."""
    steps = ("declare-void", "toggle-to-secondary")
    eids = [gw.execution("failover") for _ in range(3)]
    for eid in eids:
        for step in steps:
            gw.ask("alice", "request", eid, step)
    approvers = ("bob", "carol", "erin", "frank")
    errors: list[BaseException] = []

    def approver(who: str) -> None:
        try:
            for eid in eids:
                for step in steps:
                    gw.ask(who, "decide", eid, step, decision="approve")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approver, args=(who,)) for who in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    for eid in eids:
        for step in steps:
            ledger = GateLedger(gw.admin).read(eid, step)
            assert sorted(a.identity for a in ledger.decisions) == sorted(arn(w) for w in approvers)
            assert ledger.decision_seq == 4 and ledger.acted is None


def test_history_reports_a_record_hidden_from_it(gw):
    """Removing the execution_id attribute of the gate's record of a rejection does not hide it: the execution's
    history (what `runbook history` shows) still holds it, chosen by the hashed body, and reports the tampering."""
    eid = f"fe-hide-{uuid.uuid4().hex[:6]}"
    _gated_run(gw, eid, approval_timeout=0.05)
    _gdecide(gw, eid, "carol", "reject", reason="not today")
    log = AuditLog(gw.admin)
    rejected = next(e for e in log.entries(eid) if e["kind"] == "gate.decided" and e["data"]["decision"] == "reject")
    gw.admin.dynamodb.update_item(TableName=log.table, UpdateExpression="REMOVE execution_id",
                                  Key={"chain": {"S": log.chain}, "seq": {"N": str(rejected["seq"])}})
    history = engine.execution_history(gw.people["alice"].settings, eid, aws=gw.people["alice"])
    assert any(e["seq"] == rejected["seq"] for e in history["timeline"])
    assert any(str(rejected["seq"]) in str(t) for t in history["tampering"])
    assert not log.verify().ok


# ==== without a gate (the local stack runs none: the executions table holds the decisions) =======

# ---- decisions are final only when the action starts ------------------------------------------

def test_without_a_gate_a_reject_between_the_grant_and_the_action_stops_the_action(env, flags):
    """No gate: granted while the executor sits at the confirmation prompt, then rejected: answering yes runs
    nothing."""
    eid = f"fe-late-{uuid.uuid4().hex[:6]}"

    def approve(wait):
        for who in (BOB, ERIN):
            _decide(env, wait.execution_id, wait.step_id, who)

    def yes_after_a_late_rejection(prompt):
        if "set_active_broker" in prompt:
            _decide(env, eid, "toggle", CAROL, "reject", reason="secondary not confirmed with the provider")
        return True

    outcome = _run(env, execution_id=eid, assume_yes=False, confirm=yes_after_a_late_rejection,
                   on_approval_wait=approve)
    assert outcome.status == "stopped", outcome
    assert "rejected by carol (secondary not confirmed with the provider)" in outcome.reason
    toggle = next(r for r in outcome.steps if r["step_id"] == "toggle")
    assert (toggle["status"], toggle["action_runs"]) == ("rejected", 0)
    assert flags.read().active == "primary"
    kinds = _timeline(env, eid)
    assert kinds.index("approval.granted") < kinds.index("approval.rejected")
    assert "action.started" not in kinds
    assert "toggle" not in (ExecutionStore(env["aws"]).meta(eid).get("acting") or {})


def test_without_a_gate_once_the_action_started_decisions_are_refused(env, flags):
    """No gate: after the move to acting, approve and reject answer one line: the step is already executing."""
    eid = f"fe-acting-{uuid.uuid4().hex[:6]}"
    approve = _approver_for(env, "toggle")
    outcome = _run(env, execution_id=eid, on_approval_wait=approve, approval_timeout=0.3)
    assert outcome.status == "approval-timed-out" and "mode" in outcome.reason  # toggle ran, mode waits
    assert flags.read().active == "secondary"
    with pytest.raises(Refused, match=r"step toggle of .* is already executing"):
        _decide(env, eid, "toggle", CAROL, "reject", reason="too late")
    result = _cli(env, "runbook", "reject", eid, "toggle", "--reason", "too late", "--yes", TRADEOPS_OPERATOR="carol")
    assert result.returncode == 1 and "already executing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _approver_for(env, step_id):
    def approve(wait):
        if wait.step_id == step_id:
            for who in (BOB, CAROL):
                _decide(env, wait.execution_id, wait.step_id, who)
    return approve


def test_without_a_gate_the_move_to_acting_and_a_rejection_never_both_land(env, flags):
    """No gate: racing a rejection against the acting write, many times: exactly one of the two is ever recorded."""
    store = ExecutionStore(env["aws"])
    eid = f"fe-race-{uuid.uuid4().hex[:6]}"
    outcome = _run(env, execution_id=eid, approval_timeout=0.05)
    assert outcome.status == "approval-timed-out"
    meta = store.meta(eid)
    token = "race-token"
    store.set_fields(eid, {"lease_token": token, "lease_until": time.time() + 300})
    ctx = ApprovalContext(execution_id=eid, step_id="mode", runbook_sha256=meta["runbook_sha256"],
                          executors=frozenset({"alice"}), roles_of=dict(env["roster"].roles))
    # Step "mode" is not requested yet: request it as the run would, then race.
    store.request_approval(eid, "mode", {"at": "now", "timeout": 1}, lease_token=token)
    wins = {"acting": 0, "reject": 0}
    for n in range(12):
        who = f"racer{n}"
        seq = store.approvals(eid, "mode")[1]
        barrier = threading.Barrier(2)
        results: dict[str, object] = {}

        def act(seq: int = seq, n: int = n) -> None:
            barrier.wait()
            try:
                store.start_action(eid, "mode", {"run": n + 1}, lease_token=token, decision_seq=seq)
                results["acting"] = True
            except DecisionsChanged:
                results["acting"] = False

        def reject(who: str = who) -> None:
            barrier.wait()
            try:
                store.record_decision(Approval.make(ctx, who, "test", "reject", reason="race", at="t"),
                                      roster_digest=meta["roster_digest"])
                results["reject"] = True
            except Refused:
                results["reject"] = False

        threads = [threading.Thread(target=act), threading.Thread(target=reject)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results["acting"] != results["reject"], results  # one, never both, never neither
        wins["acting" if results["acting"] else "reject"] += 1
        # Reset for the next round: clear the acting mark (a test's own write).
        env["aws"].dynamodb.update_item(
            TableName=store.table, Key={"execution_id": {"S": eid}, "item": {"S": "meta"}},
            UpdateExpression="REMOVE acting.#s", ExpressionAttributeNames={"#s": "mode"})
    assert sum(wins.values()) == 12


def test_without_a_gate_a_withdrawn_approval_stops_counting(env, flags):
    """No gate: an approver who withdraws before the action starts is no longer counted; the step waits again."""
    eid = f"fe-withdraw-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)
    _decide(env, eid, "toggle", BOB)
    engine.withdraw(env["settings"], eid, "toggle", aws=env["aws"], identity=BOB, reason="wrong execution")
    _decide(env, eid, "toggle", CAROL)
    outcome = engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE, assume_yes=True,
                                      poll_seconds=0.05, approval_timeout=0.2)
    assert outcome.status == "approval-timed-out" and flags.read().active == "primary"
    with pytest.raises(Refused, match="one identity counts once"):
        _decide(env, eid, "toggle", BOB)
    assert "approval.withdrawn" in _timeline(env, eid)


# ---- approvals only after the request -----------------------------------------------------------

def test_without_a_gate_an_approval_before_the_request_exits_1(env, flags):
    """No gate: approving a step the run has not reached (no approval request yet) is refused: exit 1, not yet
    requested."""
    eid = f"fe-early-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)  # waits at toggle; mode is not requested
    result = _cli(env, "runbook", "approve", eid, "mode", "--yes", TRADEOPS_OPERATOR="bob")
    assert result.returncode == 1, result.stderr
    assert "not yet requested" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert ExecutionStore(env["aws"]).approvals(eid, "mode") == ([], 0)
    with pytest.raises(Refused, match="not yet requested"):
        _decide(env, eid, "mode", CAROL)


def test_without_a_gate_the_request_carries_the_step_its_action_and_the_runbook_hash(env, flags):
    """No gate: what the run records as the request: step, action and arguments, runbook SHA-256, wait, message id."""
    eid = f"fe-req-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)
    meta = ExecutionStore(env["aws"]).meta(eid)
    request = meta["requests"]["toggle"]
    assert (request["step_id"], request["action"], request["args"]) == ("toggle", "set_active_broker",
                                                                        {"provider": "secondary"})
    assert request["runbook_sha256"] == meta["runbook_sha256"] and request["message_id"]
    assert request["command"] == f"tradeops runbook approve {eid} toggle"


def test_without_a_gate_a_runbook_approval_timeout_bounds_the_wait(env, flags):
    """No gate: a step whose runbook says approval.timeout stops as approval-timed-out after it, and resume asks
    again."""
    eid = f"fe-timeout-{uuid.uuid4().hex[:6]}"
    outcome = _run(env, execution_id=eid, on_approval_wait=_approver_for(env, "toggle"))
    assert outcome.status == "approval-timed-out" and "after waiting 0.3 s" in outcome.reason
    store = ExecutionStore(env["aws"])
    assert store.meta(eid)["status"] == "approval-timed-out"
    first = store.meta(eid)["requests"]["mode"]["at"]
    engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE, assume_yes=True,
                            poll_seconds=0.05)
    assert store.meta(eid)["requests"]["mode"]["at"] != first  # asked again
    assert _timeline(env, eid).count("approval.requested") == 3  # toggle once, mode twice


# ---- one roster per execution -------------------------------------------------------------------

def test_without_a_gate_a_resume_under_a_different_roster_is_refused(env, flags):
    """No gate: carol rejects; a resume with a private roster that leaves her out is refused, and so is one after the
    shared roster changed; the private operators file of the CLI is never consulted."""
    eid = f"fe-roster-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)
    _decide(env, eid, "toggle", CAROL, "reject", reason="not today")
    without_carol = Operators(roles={k: frozenset(v) for k, v in ROLES.items() if k != "carol"},
                              source="a private copy")
    with pytest.raises(Refused, match="started under roster"):
        engine.resume_execution(env["settings"], eid, aws=env["aws"], identity=ALICE, operators=without_carol,
                                assume_yes=True)
    private = write_operators(env["dir"] / "private.yaml", {k: v for k, v in ROLES.items() if k != "carol"})
    resumed = _cli(env, "runbook", "resume", eid, "--yes", "--poll", "0.05",
                   TRADEOPS_OPERATORS_FILE=str(private.source))
    assert resumed.returncode == 1 and "rejected by carol" in resumed.stderr  # the shared roster still counts her
    with pytest.raises(Refused, match="started under roster"):
        _decide(env, eid, "toggle", ERIN, operators=without_carol)
    shared = env["roster"]
    try:
        install_roster(env["aws"], without_carol)
        result = _cli(env, "runbook", "resume", eid, "--yes")
        assert result.returncode == 1 and "started under roster" in result.stderr
    finally:
        install_roster(env["aws"], shared)
    assert flags.read().active == "primary"


def test_without_a_gate_each_execution_records_its_roster(env, flags):
    """No gate: the execution's meta and its first audit record carry the roster digest and version it started under."""
    eid = f"fe-digest-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)
    meta = ExecutionStore(env["aws"]).meta(eid)
    current = Roster(env["aws"]).require()
    assert meta["roster_digest"] == current.digest == env["roster"].digest
    assert meta["roster_version"] == current.version
    started = AuditLog(env["aws"]).entries(eid)[0]
    assert started["kind"] == "execution.started" and started["data"]["roster_digest"] == env["roster"].digest


# ---- identities people cannot choose -------------------------------------------------------------

def _assume(aws_settings, role: str, session: str) -> boto3.session.Session:
    sts = Aws(aws_settings).client("sts")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::123456789012:role/{role}", RoleSessionName=session)["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"])


def test_without_a_gate_one_person_under_two_session_names_is_not_two_approvers(env, flags, aws_settings):
    """No gate: sessions of roles that let the caller pick the session name (…/erin, …/frank) are refused as
    approvers; sessions of a session-bound operator role map to the user, so one user under two roles counts once."""
    real = env["settings"].model_copy(update={"aws_endpoint_url": None})
    with pytest.raises(Refused, match="lets whoever assumes it choose the session name"):
        current_identity(real, Aws(aws_settings, session=_assume(aws_settings, "TradeopsOpsManager", "erin")))
    with pytest.raises(Refused, match="lets whoever assumes it choose the session name"):
        current_identity(real, Aws(aws_settings, session=_assume(aws_settings, "TradeopsRisk", "frank")))
    # The same two roles bound to the caller's user name (their trust policy requires it):
    bound = real.model_copy(update={"operator_roles": "TradeopsOpsManager,TradeopsRisk"})
    as_manager = current_identity(bound, Aws(aws_settings, session=_assume(aws_settings, "TradeopsOpsManager",
                                                                           "erin")))
    as_risk = current_identity(bound, Aws(aws_settings, session=_assume(aws_settings, "TradeopsRisk", "erin")))
    assert as_manager == as_risk == Identity("arn:aws:iam::123456789012:user/erin", "operator-role")
    roster = install_roster(env["aws"], Operators(roles={**{k: frozenset(v) for k, v in ROLES.items()},
                                                         as_manager.name: frozenset({"ops-manager", "risk"})}))
    try:
        eid = f"fe-sessions-{uuid.uuid4().hex[:6]}"
        _run(env, execution_id=eid, approval_timeout=0.05)
        _decide(env, eid, "toggle", as_manager, operators=roster)
        with pytest.raises(Refused, match="one identity counts once"):
            _decide(env, eid, "toggle", as_risk, operators=roster)
    finally:
        install_roster(env["aws"], env["roster"])


@pytest.mark.parametrize(("arn", "expected"), [
    ("arn:aws:iam::123456789012:user/ops/erin", ("arn:aws:iam::123456789012:user/erin", "iam-user")),
    ("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Ops_0123456789abcdef/frank@example.com",
     ("identity-center:frank@example.com", "identity-center")),
    ("arn:aws:sts::123456789012:assumed-role/tradeops-operator/gina",
     ("arn:aws:iam::123456789012:user/gina", "operator-role")),
])
def test_identities_come_from_what_the_caller_cannot_choose(arn, expected):
    """IAM users, Identity Center users (a role under Identity Center's own path) and session-bound operator-role
    sessions whose source identity is their session name name a person, in the expected account."""
    who = identity_from_arn(arn, bound={"tradeops-operator"}, account="123456789012",
                            sso_role_path=f"{SSO_ROLE_PATH}eu-west-2/" if sso_role(arn) else None,
                            source_identity=arn.rsplit("/", 1)[-1] if "tradeops-operator" in arn else None)
    assert (who.name, who.source) == expected


SSO = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Ops_0123456789abcdef/frank@example.com"


@pytest.mark.parametrize(("arn", "facts", "why"), [
    (SSO, {}, "not one IAM Identity Center made"),
    (SSO, {"sso_role_path": "/"}, "its path is /, not /aws-reserved/"),
    (SSO, {"sso_role_path": "/ops/aws-reserved/sso.amazonaws.com/"}, "not one IAM Identity Center made"),
    (SSO.replace("123456789012", "210987654321"), {"sso_role_path": SSO_ROLE_PATH},
     "a principal of account 210987654321, not of 123456789012"),
    ("arn:aws:iam::210987654321:user/erin", {}, "not of 123456789012"),
    ("arn:aws:sts::123456789012:assumed-role/tradeops-operator/gina", {"source_identity": "harry"},
     "its source identity is 'harry', not its session name 'gina'"),
], ids=["sso-role-path-unknown", "sso-role-at-root", "sso-role-under-another-path", "sso-role-of-another-account",
        "user-of-another-account", "source-identity-differs"])
def test_look_alike_identities_are_refused(arn, facts, why):
    """An AWSReservedSSO_* role not under Identity Center's /aws-reserved/ path, a principal of another account, and
    an operator-role session whose source identity is not its session name are refused, saying why."""
    with pytest.raises(Refused, match=re.escape(why)):
        identity_from_arn(arn, bound={"tradeops-operator"}, account="123456789012", **facts)


def test_the_break_glass_role_binds_its_session_to_a_person(aws_settings):
    """A break-glass session names the IAM user its session name is bound to (the template binds it as it binds the
    operator role's), so a break-glass change is recorded against a person."""
    arn = f"arn:aws:sts::123456789012:assumed-role/{names_for(aws_settings).break_glass_role}/gina"
    who = identity_from_arn(arn, bound=bound_roles(aws_settings), source_identity="gina")
    assert (who.name, who.source) == ("arn:aws:iam::123456789012:user/gina", "operator-role")


@pytest.mark.parametrize("arn", ["arn:aws:sts::123456789012:assumed-role/TradeopsRisk/frank",
                                 "arn:aws:sts::123456789012:federated-user/frank",
                                 "arn:aws:iam::123456789012:root"])
def test_identities_a_caller_chooses_are_refused(arn):
    """A session name picked by the caller, a federated user or the root user names nobody: refused."""
    with pytest.raises(Refused, match="cannot tell who"):
        identity_from_arn(arn, bound={"tradeops-operator"})


@pytest.mark.parametrize(("entry", "why"), [
    ('"arn:aws:sts::123456789012:assumed-role/TradeopsRisk/frank"', "whatever session name its caller chose"),
    ('"arn:aws:iam::123456789012:role/TradeopsRisk"', "not a person"),
    ("Bob", "listed twice"),
])
def test_ambiguous_operators_file_entries_are_refused_with_their_line(entry, why):
    """The operators file lists people: session ARNs, role ARNs and repeated identities are refused by line."""
    text = f"operators:\n  bob: [ops-manager]\n  {entry}: [risk]\n"
    with pytest.raises(ConfigError, match=f"ops.yaml:3: .*{why}"):
        parse_operators(text, "ops.yaml")


def test_the_template_binds_operator_sessions_to_the_caller(aws_settings):
    """The operator role's trust policy requires the session name, and the source identity, to be the caller's user
    name."""
    from tradeops.runtime.stack.deploy import load_template

    _, doc = load_template(aws_settings.template)
    role = doc["Resources"]["OperatorRole"]["Properties"]
    condition = role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    assert condition["StringEquals"] == {"sts:RoleSessionName": "${aws:username}",
                                         "sts:SourceIdentity": "${aws:username}"}
    assert role["RoleName"] == {"Fn::Sub": "${NamePrefix}-operator"}


# ---- the executions table under concurrent writers ----------------------------------------------

def test_without_a_gate_concurrent_writers_on_the_executions_table_lose_nothing(env, flags):
    """No gate: 8 approvers deciding on 15 requested steps at once, while a stale lease holder keeps failing its writes:
    all 120 decisions are recorded, each step's sequence counts them, and nothing else was erased."""
    store = ExecutionStore(env["aws"])
    steps = "\n".join(f"  - id: s{n}\n    title: Step {n}\n    approval: {{count: 8, roles: [ops-manager]}}\n"
                      f"    action: {{name: set_processing, args: {{state: running}}}}" for n in range(15))
    path = env["dir"] / f"many-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(SWITCH.split("steps:")[0].replace("name: switch", "name: many") + "steps:\n" + steps + "\n")
    approvers = {f"ap{n}": ["ops-manager"] for n in range(8)}
    roster = Operators(roles={k: frozenset(v) for k, v in {**ROLES, **approvers}.items()})
    eid = f"fe-many-{uuid.uuid4().hex[:6]}"
    outcome = engine.run_execution(env["settings"], str(path), aws=env["aws"], identity=ALICE, operators=roster,
                                   assume_yes=True, poll_seconds=0.05, approval_timeout=0.05, execution_id=eid)
    assert outcome.status == "approval-timed-out"
    token = "holder"
    store.set_fields(eid, {"lease_token": token, "lease_until": time.time() + 300})
    for n in range(15):
        store.request_approval(eid, f"s{n}", {"at": "t", "timeout": 60}, lease_token=token)
    meta = store.meta(eid)
    errors: list[BaseException] = []
    stop = threading.Event()

    def approver(name: str) -> None:
        try:
            for n in range(15):
                ctx = ApprovalContext(execution_id=eid, step_id=f"s{n}", runbook_sha256=meta["runbook_sha256"],
                                      executors=frozenset({"alice"}), roles_of=dict(roster.roles))
                store.record_decision(Approval.make(ctx, name, "test", "approve", at="t"),
                                      roster_digest=roster.digest)
        except BaseException as exc:
            errors.append(exc)

    landed: list[str] = []

    def stale_holder() -> None:  # a process that lost the lease keeps trying to write: every write refused
        while not stop.is_set():
            for attempt in (lambda: store.put_step(eid, 0, {"step_id": "s0", "status": "running"}, lease_token="lost"),
                            lambda: store.start_action(eid, "s1", {"run": 1}, lease_token="lost", decision_seq=0)):
                try:
                    attempt()
                    landed.append("a write without the lease landed")
                except LeaseLost:
                    pass

    threads = [threading.Thread(target=approver, args=(name,)) for name in approvers]
    holder = threading.Thread(target=stale_holder)
    holder.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    holder.join(30)
    assert not errors, errors[:3]
    assert not landed
    final = store.meta(eid)
    for n in range(15):
        assert sorted(final["decisions"][f"s{n}"]) == sorted(approvers)
        assert final["decision_seq"][f"s{n}"] == 8
    assert not final.get("acting")
    assert final["lease_token"] == token


def test_without_a_gate_history_reports_a_record_hidden_from_it(env, flags):
    """No gate: removing the execution_id attribute of a rejection does not hide it: `runbook history` still shows it
    (chosen by the hashed body) and exits 1 reporting the tampering."""
    chain = f"fe-{uuid.uuid4().hex[:8]}"
    eid = f"fe-hide-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05, audit_chain=chain)
    _decide(env, eid, "toggle", CAROL, "reject", reason="not today")
    log = AuditLog(env["aws"], chain=chain)
    rejected = next(e for e in log.entries(eid) if e["kind"] == "approval.rejected")
    env["aws"].dynamodb.update_item(TableName=log.table, UpdateExpression="REMOVE execution_id",
                                    Key={"chain": {"S": chain}, "seq": {"N": str(rejected["seq"])}})
    result = _cli(env, "runbook", "history", eid)
    assert result.returncode == 1
    assert "approval.rejected" in result.stdout
    assert f"audit record {rejected['seq']}: tampered" in result.stderr
    assert not log.verify().ok
