"""The approval gate against the emulator with IAM access control on: who asks is proven by STS, a guarded change
is made by the gate's own principal (the deployed GateRole's policy) after re-reading four-eyes it alone writes,
audited, and everything else is refused with a reason, audited as refused, with nothing changed."""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import boto3
import botocore.exceptions
import httpx
import pytest

from tests.support.stack import running_emulator
from tradeops.runbooks import actions, breakglass, engine
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.gate import request_digest
from tradeops.runbooks.gateclient import GateDown, ask_gate
from tradeops.runbooks.gateproof import sign_proof
from tradeops.runbooks.gateservice import make_server
from tradeops.runbooks.identity import Identity, parse_operators
from tradeops.runbooks.loader import read_runbook_text, resolve_path, sha256_text
from tradeops.runbooks.registry import OperationContext
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.testing import install_roster
from tradeops.runbooks.unwind import unwind
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import BadInput, Refused
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.principals import deployed_policies
from tradeops.runtime.stack.supervisor import free_port

ACCOUNT = "123456789012"
PEOPLE = ("alice", "bob", "carol", "dave")
ROLES = {"alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"], "dave": ["auditor"]}


def _arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def _user(iam, name: str, policy: dict) -> boto3.Session:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                         region_name="eu-west-2")


@pytest.fixture(scope="module")
def authed_moto(processes) -> Iterator[str]:
    """A moto server of this module's own with IAM access control on after its first three requests."""
    with running_emulator({"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def world(authed_moto, tmp_path_factory):
    """The template deployed by an admin; the people and the gate as IAM users holding the deployed roles' own
    policies (the operator role's and GateRole's, read back from IAM); a roster naming the people; a gate."""
    settings = load_settings(aws_endpoint_url=authed_moto, name_prefix="gt", param_prefix="/gt", stack_name="gt",
                             state_dir=tmp_path_factory.mktemp("gt-state"))
    iam = boto3.client("iam", endpoint_url=authed_moto, region_name="eu-west-2", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    admin = _user(iam, "admin", {"Version": "2012-10-17",
                                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    admin_aws = Aws(settings, session=admin)
    deploy_stack(admin_aws, settings)
    iam = admin_aws.client("iam")
    # The operator policy (`gt-operate`) and GateRole's, as the deploy left them in IAM (what `tradeops up
    # --enforce` gives its people and its gate).
    policies = deployed_policies(admin_aws)
    operate, gate_policy = policies["operate"], policies["gate"]
    sessions = {n: _user(iam, n, operate) for n in (*PEOPLE, "drill-runner")}
    gate_session = _user(iam, "gate", gate_policy)
    roster = install_roster(admin_aws, parse_operators(
        json.dumps({"operators": {_arn(n): r for n, r in ROLES.items()}}), "the test's roster"))
    # The gate asks the brokers before releasing an order (none here is in flight: no broker answers).
    gate_settings = settings.model_copy(update={"primary_url": "http://127.0.0.1:9",
                                                "secondary_url": "http://127.0.0.1:9"})
    gate_aws = Aws(gate_settings, session=gate_session)
    server = make_server(gate_settings, "127.0.0.1", free_port(), aws=gate_aws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # A drill environment's gate: its own configuration lets drills set guarded flags.
    drills = make_server(gate_settings.model_copy(update={"gate_drill_flags": True}), "127.0.0.1", free_port(),
                         aws=gate_aws)
    threading.Thread(target=drills.serve_forever, daemon=True).start()
    with_gate = settings.model_copy(update={"gate_url": url})
    people = {n: Aws(with_gate, session=session) for n, session in sessions.items()}
    yield {"settings": settings, "admin": admin_aws, "people": people, "sessions": sessions, "gate_url": url,
           "roster": roster, "drill_gate_url": f"http://127.0.0.1:{drills.server_address[1]}"}
    for each in (server, drills):
        each.shutdown()
        each.server_close()


def _execution(world, runbook: str, *, executor: str = "alice") -> str:
    """An execution of a shipped runbook, as the runner writes it (as its executor)."""
    text = read_runbook_text(resolve_path(runbook))
    eid = f"{runbook}-{uuid.uuid4().hex[:10]}"
    ExecutionStore(world["people"][executor]).create({
        "execution_id": eid, "runbook": runbook, "runbook_sha256": sha256_text(text), "runbook_text": text,
        "params": {"void_reason": "the primary cannot answer", "active": "secondary", "drain_timeout": 5},
        "status": "running", "executor": _arn(executor), "executors": [_arn(executor)], "created_at": iso(),
        "roster_digest": world["roster"].digest})
    return eid


def _ask(world, who: str, op: str, eid: str, step: str, **kw):
    return ask_gate(world["people"][who], op, eid, step, **kw)


def _audit(world, eid: str) -> list[dict]:
    return [e for e in AuditLog(world["admin"]).entries(eid) if e["kind"].startswith("gate.")]


def _soon() -> str:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)).isoformat()


def _active(world) -> str:
    return Flags(world["admin"]).read().active


@pytest.fixture
def primary(world):
    Flags(world["admin"]).set("active", "primary")


def test_two_valid_approvals_let_the_gate_make_the_change_audited_once(world, primary):
    """With two approvals that count, the gate switches the active broker itself, and the audit holds one act."""
    eid = _execution(world, "failover")
    _ask(world, "alice", "request", eid, "toggle-to-secondary")
    _ask(world, "bob", "decide", eid, "toggle-to-secondary", decision="approve")
    _ask(world, "carol", "decide", eid, "toggle-to-secondary", decision="approve")
    answer = _ask(world, "alice", "act", eid, "toggle-to-secondary")
    assert answer["output"]["value"] == "secondary" and _active(world) == "secondary"
    acts = [e for e in _audit(world, eid) if e["kind"] == "gate.acted"]
    assert len(acts) == 1 and acts[0]["actor"] == _arn("alice")
    assert sorted(acts[0]["data"]["approved_by"]) == [_arn("bob"), _arn("carol")]


def test_the_deciding_identity_is_the_one_sts_proves(world, primary):
    """A decision is recorded under the identity STS answers for the signer, whatever the request says."""
    eid = _execution(world, "failover")
    _ask(world, "alice", "request", eid, "toggle-to-secondary")
    answer = _ask(world, "bob", "decide", eid, "toggle-to-secondary", decision="approve")
    assert answer["identity"] == _arn("bob")


def test_self_approval_a_roleless_approver_and_too_few_approvals_are_refused(world, primary):
    """The executor cannot approve, a person without the role does not count, and one approval is not two."""
    eid = _execution(world, "failover")
    _ask(world, "alice", "request", eid, "toggle-to-secondary")
    with pytest.raises(Refused, match="cannot approve its own step"):
        _ask(world, "alice", "decide", eid, "toggle-to-secondary", decision="approve")
    _ask(world, "bob", "decide", eid, "toggle-to-secondary", decision="approve")
    with pytest.raises(Refused, match="still needs 1 approval"):
        _ask(world, "alice", "act", eid, "toggle-to-secondary")
    with pytest.raises(Refused, match="approving needs one of"):
        _ask(world, "dave", "decide", eid, "toggle-to-secondary", decision="approve")
    assert _active(world) == "primary"
    refused = [e for e in _audit(world, eid) if e["kind"] == "gate.refused"]
    assert len(refused) == 3 and all(e["data"]["reason"] for e in refused)


def test_an_approver_cannot_then_act_and_a_rejection_after_the_grant_stops_it(world, primary):
    """An approver asking to act is refused (an executor's approval never counts); a rejection after a grant wins."""
    eid = _execution(world, "enable-auto")
    _ask(world, "alice", "request", eid, "switch-to-auto")
    _ask(world, "bob", "decide", eid, "switch-to-auto", decision="approve")
    with pytest.raises(Refused, match="still needs 1 approval"):
        _ask(world, "bob", "act", eid, "switch-to-auto")
    _ask(world, "carol", "decide", eid, "switch-to-auto", decision="reject", reason="not now")
    with pytest.raises(Refused, match="rejected by"):
        _ask(world, "alice", "act", eid, "switch-to-auto")
    assert Flags(world["admin"]).read().mode == "manual"


def test_a_step_already_acted_on_is_refused_and_nothing_changes_again(world, primary):
    """A second act on a step, or a decision after it, is refused and audited as refused."""
    eid = _execution(world, "enable-auto")
    _ask(world, "alice", "request", eid, "switch-to-auto")
    _ask(world, "bob", "decide", eid, "switch-to-auto", decision="approve")
    _ask(world, "alice", "act", eid, "switch-to-auto")
    Flags(world["admin"]).set("mode", "manual")
    with pytest.raises(Refused, match="already acted on"):
        _ask(world, "alice", "act", eid, "switch-to-auto")
    with pytest.raises(Refused, match="already acted on"):
        _ask(world, "carol", "decide", eid, "switch-to-auto", decision="approve")
    assert Flags(world["admin"]).read().mode == "manual"
    kinds = [e["kind"] for e in _audit(world, eid)]
    assert kinds.count("gate.acted") == 1 and kinds.count("gate.refused") == 2


def test_a_replayed_request_is_refused(world, primary):
    """The same signed request sent twice is refused the second time, and audited as refused."""
    eid = _execution(world, "failover")
    request = {"op": "request", "execution_id": eid, "step_id": "toggle-to-secondary",
               "nonce": uuid.uuid4().hex, "expires_at": _soon()}
    alice = world["people"]["alice"]
    request["expires_at"] = _soon()
    body = {"request": request, "proof": sign_proof(alice.credentials(), alice.settings, request_digest(request))}
    first = httpx.post(f"{world['gate_url']}/v1/gate", json=body)
    again = httpx.post(f"{world['gate_url']}/v1/gate", json=body)
    assert first.status_code == 200
    assert again.status_code == 403 and "replay" in again.json()["refused"]


def test_a_proof_for_another_request_or_a_forged_one_is_refused(world, primary):
    """A proof signed for one request does not carry another, and a proof with a wrong key is refused by STS."""
    eid = _execution(world, "failover")
    alice = world["people"]["alice"]
    request = {"op": "request", "execution_id": eid, "step_id": "toggle-to-secondary", "nonce": uuid.uuid4().hex,
               "expires_at": _soon()}
    proof = sign_proof(alice.credentials(), alice.settings, request_digest(request))
    other = {**request, "step_id": "declare-void"}
    answer = httpx.post(f"{world['gate_url']}/v1/gate", json={"request": other, "proof": proof})
    assert answer.status_code == 403 and "another request" in answer.json()["refused"]
    forged = alice.credentials()
    forged = type(forged)(forged.access_key, "not-the-secret")
    answer = httpx.post(f"{world['gate_url']}/v1/gate",
                        json={"request": request, "proof": sign_proof(forged, alice.settings, request_digest(request))})
    assert answer.status_code == 403 and "STS refused" in answer.json()["refused"]


def test_a_malformed_request_is_refused_with_a_reason(world):
    """A request with unknown fields is a 400 with its reason, audited as refused (BadInput at the client)."""
    answer = httpx.post(f"{world['gate_url']}/v1/gate", json={"request": {"op": "act", "who": "bob"}, "proof": {}})
    assert answer.status_code == 400 and "unknown field" in answer.json()["refused"]
    refused = [e for e in AuditLog(world["admin"]).entries() if e["kind"] == "gate.refused"]
    assert refused[-1]["actor"] == "unproven" and "unknown field" in refused[-1]["data"]["reason"]
    with pytest.raises(BadInput):
        _ask(world, "alice", "act", "no such id!", "x")


def test_a_forged_decision_written_directly_is_refused_by_aws(world):
    """An operator writing an approval into the gate's decisions table is refused by AWS (AccessDenied)."""
    eid = _execution(world, "failover")
    bob = world["people"]["bob"]
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        bob.dynamodb.update_item(TableName="gt-decisions", Key={"execution_id": {"S": eid},
                                                                  "item": {"S": "step#toggle-to-secondary"}},
                                 UpdateExpression="SET decision_seq = :n", ExpressionAttributeValues={":n": {"N": "9"}})


def test_a_step_without_approval_acts_with_the_shipped_arguments(world):
    """A shipped step with no approval (pause processing) is made by the gate with the runbook's own arguments."""
    eid = _execution(world, "failover")
    answer = _ask(world, "alice", "act", eid, "quiesce")
    assert answer["output"]["value"] == "paused" and Flags(world["admin"]).read().processing == "paused"
    Flags(world["admin"]).set("processing", "running")


def test_a_runbook_not_shipped_is_refused(world):
    """An execution whose runbook text is not one the gate ships gets nothing from it."""
    eid = _execution(world, "failover")
    world["admin"].dynamodb.update_item(
        TableName="gt-executions", Key={"execution_id": {"S": eid}, "item": {"S": "meta"}},
        UpdateExpression="SET runbook_sha256 = :s", ExpressionAttributeValues={":s": {"S": "0" * 64}})
    with pytest.raises(Refused, match="not of a shipped runbook"):
        _ask(world, "alice", "act", eid, "quiesce")


def test_with_the_gate_down_the_step_stops_with_one_line(world):
    """A gate that does not answer is GateDown, one line naming how to resume."""
    down = Aws(world["settings"].model_copy(update={"gate_url": f"http://127.0.0.1:{free_port()}"}),
               session=world["sessions"]["alice"])
    with pytest.raises(GateDown, match="resume") as raised:
        ask_gate(down, "act", "failover-x", "quiesce", timeout=2)
    assert "\n" not in str(raised.value)


def test_a_shipped_runbook_run_through_the_gate_changes_the_roster_with_two_approvals(world):
    """change-operators run by alice, approved by bob and carol through the gate: the gate applies the roster,
    audited once; alice's own approval is refused by the gate."""
    admin, alice = world["admin"], world["people"]["alice"]
    new = parse_operators(json.dumps({"operators": {**{_arn(n): r for n, r in ROLES.items()}, _arn("erin"): ["risk"]}}),
                          "the proposal")
    proposal = Roster(admin).propose(new, actor=Identity("admin", "test"))
    refused: list[str] = []

    def approvers(wait):
        for who in ("alice", "bob", "carol"):
            try:
                engine.decide(alice.settings, wait.execution_id, wait.step_id, "approve", aws=world["people"][who])
            except Refused as exc:
                refused.append(f"{who}: {exc}")

    try:
        outcome = engine.run_execution(alice.settings, "change-operators", aws=alice,
                                       params={"proposal": proposal["digest"][:16]},
                                       identity=Identity(_arn("alice"), "iam-user"), assume_yes=True,
                                       on_approval_wait=approvers, poll_seconds=0.05)
        assert outcome.status == "completed", outcome.reason
        assert Roster(admin).require().digest == new.digest
        acts = [e for e in _audit(world, outcome.execution_id) if e["kind"] == "gate.acted"]
        assert len(acts) == 1 and sorted(acts[0]["data"]["approved_by"]) == [_arn("bob"), _arn("carol")]
        assert len(refused) == 1 and refused[0].startswith("alice:") and "cannot approve" in refused[0]
    finally:
        install_roster(admin, world["roster"])


def _drill_flag(world, who: str, gate_url: str, value: str = "secondary") -> dict:
    aws = Aws(world["settings"].model_copy(update={"gate_url": gate_url}), session=world["sessions"][who])
    return breakglass.set_flag(aws, identity=Identity(who, "drill" if who.startswith("drill-") else "iam-user"),
                               roster=None, flag="active", value=value, reason="drill primary-outage, step toggle",
                               target="the test's emulator")


def test_a_drill_sets_a_guarded_flag_through_a_gate_configured_for_drills_audited(world, primary):
    """On a drill environment's gate a drill identity switches the active broker without four-eyes, audited as
    the drill's; a person asking the same is refused, and so is the drill on a gate not configured for drills."""
    with pytest.raises(Refused, match="does not take drills"):
        _drill_flag(world, "drill-runner", world["gate_url"])
    answer = _drill_flag(world, "drill-runner", world["drill_gate_url"])
    assert answer["via"] == "gate" and answer["before"] == "primary" and _active(world) == "secondary"
    acted = [e for e in AuditLog(world["admin"]).entries() if e["kind"] == "gate.acted" and e["data"].get("drill")]
    assert acted[-1]["actor"] == _arn("drill-runner") and acted[-1]["data"]["after"] == "secondary"
    aws = Aws(world["settings"].model_copy(update={"gate_url": world["drill_gate_url"]}),
              session=world["sessions"]["alice"])
    with pytest.raises(Refused, match="not a drill identity"):
        ask_gate(aws, "flag", "drill-x", "active", value="primary", reason="pretending to be a drill")
    assert _active(world) == "secondary"


def test_a_resumed_step_takes_the_gates_record_and_a_second_change_of_it_is_refused(world):
    """Run again after the gate acted (a resume), the action answers the gate's recorded outcome without a second
    change; the same step with other arguments (a rollback's restore) is refused by the gate."""
    eid = _execution(world, "failover")
    alice = world["people"]["alice"]
    ctx = OperationContext(settings=alice.settings, aws=alice, execution_id=eid, step_id="quiesce",
                           actor=_arn("alice"))
    first = actions.set_processing(ctx, "paused")
    again = actions.set_processing(ctx, "paused")
    assert first == again and first["value"] == "paused"
    with pytest.raises(Refused, match="already acted on"):
        actions.set_processing(ctx, "running")
    assert [e["kind"] for e in _audit(world, eid)].count("gate.acted") == 1
    Flags(world["admin"]).set("processing", "running")


def test_an_unwind_above_the_dual_approval_limit_is_decided_through_the_gate_by_two_proven_people(world):
    """Through the gate, a double execution above the limit needs two different people: one person's decision
    leaves it open, a second by the same person is refused, a second person decides it; the gate records each."""
    store = OrderStore(world["admin"])
    order, _ = store.create(new_order(OrderRequest(account_id="a", symbol="SYM1", side="BUY", quantity=1000,
                                                   quote_price=Decimal("100"))))
    order = store.transition(order, "SUBMITTING", actor="t", set_fields={"provider": "secondary"})
    order = store.transition(order, "FILLED", actor="t", set_fields={"fill_price": Decimal("100.5")})
    store.annotate(order, actor="t", note="executed twice", set_fields={"double_execution": {
        "state": "open", "notional": Decimal("100500"), "fills": [], "voided_at": "primary"}})
    people = world["people"]
    first = unwind(people["bob"], order["order_id"], identity="ignored", source="ignored", outcome="unwound",
                   reason="closed out on the desk", roles_of={})
    assert first["state"] == "open" and first["decisions"][0]["identity"] == _arn("bob")
    with pytest.raises(Refused, match="one identity counts once"):
        unwind(people["bob"], order["order_id"], identity="carol", source="x", outcome="unwound", reason="again",
               roles_of={})
    second = unwind(people["carol"], order["order_id"], identity="ignored", source="ignored", outcome="unwound",
                    reason="agreed", roles_of={})
    assert second["state"] == "unwound" and sorted(second["decided_by"]) == [_arn("bob"), _arn("carol")]
    decided = [e for e in _audit(world, order["order_id"]) if e["kind"] == "gate.decided"]
    assert [e["actor"] for e in decided] == [_arn("bob"), _arn("carol")]


def test_with_the_gate_down_a_run_stops_at_its_four_eyes_step_and_resumes_once_it_is_back(world):
    """A run whose gate does not answer stops (one line, nothing changed) and stays resumable; resumed with the gate
    back, it completes through it."""
    admin, alice = world["admin"], world["people"]["alice"]
    before = Roster(admin).require().digest
    new = parse_operators(json.dumps({"operators": {**{_arn(n): r for n, r in ROLES.items()}, _arn("fred"): ["risk"]}}),
                          "the proposal")
    proposal = Roster(admin).propose(new, actor=Identity("admin", "test"))
    down = Aws(alice.settings.model_copy(update={"gate_url": f"http://127.0.0.1:{free_port()}"}),
               session=world["sessions"]["alice"])
    me = Identity(_arn("alice"), "iam-user")
    try:
        with pytest.raises(GateDown) as stopped:
            engine.run_execution(down.settings, "change-operators", aws=down, identity=me, assume_yes=True,
                                 params={"proposal": proposal["digest"][:16]}, poll_seconds=0.05,
                                 execution_id=f"gate-down-{uuid.uuid4().hex[:8]}")
        assert "\n" not in str(stopped.value) and "resume" in str(stopped.value)
        eid = next(e["execution_id"] for e in engine.list_executions(alice.settings, aws=alice)
                   if e["execution_id"].startswith("gate-down-") and e["status"] == "stopped")
        assert Roster(admin).require().digest == before

        def approvers(wait):
            for who in ("bob", "carol"):
                engine.decide(alice.settings, wait.execution_id, wait.step_id, "approve", aws=world["people"][who])

        outcome = engine.resume_execution(alice.settings, eid, aws=alice, identity=me, assume_yes=True,
                                          on_approval_wait=approvers, poll_seconds=0.05)
        assert outcome.status == "completed", outcome.reason
        assert Roster(admin).require().digest == new.digest
    finally:
        install_roster(admin, world["roster"])


def test_declare_void_is_released_by_the_gate_with_its_own_broker_keys(world):
    """The failover's declare-void step, approved by two people, is made by the gate: it reads the broker's key
    and the queue with GateRole's policy (nothing was in flight, so nothing is released)."""
    eid = _execution(world, "failover")
    _ask(world, "alice", "request", eid, "declare-void")
    _ask(world, "bob", "decide", eid, "declare-void", decision="approve")
    _ask(world, "carol", "decide", eid, "declare-void", decision="approve")
    answer = _ask(world, "alice", "act", eid, "declare-void")
    assert answer["output"]["released"] == [] and answer["output"]["approvers"] == answer["approved_by"]
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        world["people"]["alice"].secrets.get_secret_value(SecretId="gt/broker/primary")
