"""Four-eyes without side doors (issue 15): decisions final at the action, approvals only after the request,
one roster per execution, identities nobody can choose, and an executions table that stays right under
concurrent writers on the local stack's emulator."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid

import boto3
import pytest

from tradeops.runbooks import engine
from tradeops.runbooks.approvals import Approval, ApprovalContext
from tradeops.runbooks.audit import AuditLog
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


# ---- decisions are final only when the action starts ------------------------------------------

def test_a_reject_between_the_grant_and_the_action_stops_the_action(env, flags):
    """Granted while the executor sits at the confirmation prompt, then rejected: answering yes runs nothing."""
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


def test_once_the_action_started_decisions_are_refused(env, flags):
    """After the move to acting, approve and reject answer one line: the step is already executing."""
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


def test_the_move_to_acting_and_a_rejection_never_both_land(env, flags):
    """Racing a rejection against the acting write, many times: exactly one of the two is ever recorded."""
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


def test_a_withdrawn_approval_stops_counting(env, flags):
    """An approver who withdraws before the action starts is no longer counted; the step waits again."""
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

def test_an_approval_before_the_request_exits_1(env, flags):
    """Approving a step the run has not reached (no approval request yet) is refused: exit 1, not yet requested."""
    eid = f"fe-early-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)  # waits at toggle; mode is not requested
    result = _cli(env, "runbook", "approve", eid, "mode", "--yes", TRADEOPS_OPERATOR="bob")
    assert result.returncode == 1, result.stderr
    assert "not yet requested" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert ExecutionStore(env["aws"]).approvals(eid, "mode") == ([], 0)
    with pytest.raises(Refused, match="not yet requested"):
        _decide(env, eid, "mode", CAROL)


def test_the_request_carries_the_step_its_action_and_the_runbook_hash(env, flags):
    """What the run records as the request: step, action and arguments, runbook SHA-256, wait, message id."""
    eid = f"fe-req-{uuid.uuid4().hex[:6]}"
    _run(env, execution_id=eid, approval_timeout=0.05)
    meta = ExecutionStore(env["aws"]).meta(eid)
    request = meta["requests"]["toggle"]
    assert (request["step_id"], request["action"], request["args"]) == ("toggle", "set_active_broker",
                                                                        {"provider": "secondary"})
    assert request["runbook_sha256"] == meta["runbook_sha256"] and request["message_id"]
    assert request["command"] == f"tradeops runbook approve {eid} toggle"


def test_a_runbook_approval_timeout_bounds_the_wait(env, flags):
    """A step whose runbook says approval.timeout stops as approval-timed-out after it, and resume asks again."""
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

def test_a_resume_under_a_different_roster_is_refused(env, flags):
    """carol rejects; a resume with a private roster that leaves her out is refused, and so is one after the
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


def test_each_execution_records_its_roster(env, flags):
    """The execution's meta and its first audit record carry the roster digest and version it started under."""
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


def test_one_person_under_two_session_names_is_not_two_approvers(env, flags, aws_settings):
    """Sessions of roles that let the caller pick the session name (…/erin, …/frank) are refused as approvers;
    sessions of a session-bound operator role map to the user, so one user under two roles counts once."""
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

def test_concurrent_writers_on_the_executions_table_lose_nothing(env, flags):
    """8 approvers deciding on 15 requested steps at once, while a stale lease holder keeps failing its writes:
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


def test_history_reports_a_record_hidden_from_it(env, flags):
    """Removing the execution_id attribute of a rejection does not hide it: `runbook history` still shows it
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
