"""The approval gate against the emulator with IAM access control on: who asks is proven by STS, a guarded change
is made by the gate's own principal (the deployed GateRole's policy) after re-reading four-eyes it alone writes,
audited, and everything else is refused with a reason, audited as refused, with nothing changed."""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import botocore.exceptions
import httpx
import pytest

from tests.support.brokers import API_KEY, start_broker, stop_broker, wait_healthy
from tests.support.gateworld import GateWorld, arn, authed_emulator, gate_world
from tradeops.runbooks import actions, breakglass, engine
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.gate import MAX_LIFETIME, NONCE_KEPT, request_digest
from tradeops.runbooks.gateclient import GateDown, ask_gate
from tradeops.runbooks.gateledger import EXPIRES_AT, GateLedger
from tradeops.runbooks.gateproof import sign_proof
from tradeops.runbooks.identity import Identity, parse_operators
from tradeops.runbooks.registry import OperationContext
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.testing import install_roster
from tradeops.runbooks.unwind import unwind
from tradeops.runtime.orderpath import inflight
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.orderpath.providers import BrokerOrder, make_provider
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, Refused
from tradeops.runtime.stack.supervisor import free_port

ROLES = {"alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"], "dave": ["auditor"]}


@pytest.fixture(scope="module")
def authed_moto(processes) -> Iterator[str]:
    """A moto server of this module's own with IAM access control on (tests/support/gateworld.py)."""
    with authed_emulator() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def world(authed_moto, tmp_path_factory) -> Iterator[GateWorld]:
    """The template deployed by an admin; the people and the gate as IAM users holding the deployed roles' own
    policies (the operator role's and GateRole's, read back from IAM); a roster naming the people; a gate."""
    with gate_world(authed_moto, tmp_path_factory.mktemp("gt-state"), prefix="gt", roles=ROLES) as built:
        yield built


def _execution(world: GateWorld, runbook: str, *, executor: str = "alice") -> str:
    return world.execution(runbook, executor=executor)


def _ask(world: GateWorld, who: str, op: str, eid: str, step: str, **kw):
    return world.ask(who, op, eid, step, **kw)


def _audit(world: GateWorld, eid: str) -> list[dict]:
    return world.audit(eid)


def _soon() -> str:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)).isoformat()


def _active(world) -> str:
    return Flags(world.admin).read().active


@pytest.fixture
def primary(world):
    Flags(world.admin).set("active", "primary")


def test_two_valid_approvals_let_the_gate_make_the_change_audited_once(world, primary):
    """With two approvals that count, the gate switches the active broker itself, and the audit holds one act."""
    eid = _execution(world, "failover")
    _ask(world, "alice", "request", eid, "toggle-to-secondary")
    _ask(world, "bob", "decide", eid, "toggle-to-secondary", decision="approve")
    _ask(world, "carol", "decide", eid, "toggle-to-secondary", decision="approve")
    answer = _ask(world, "alice", "act", eid, "toggle-to-secondary")
    assert answer["output"]["value"] == "secondary" and _active(world) == "secondary"
    acts = [e for e in _audit(world, eid) if e["kind"] == "gate.acted"]
    assert len(acts) == 1 and acts[0]["actor"] == arn("alice")
    assert sorted(acts[0]["data"]["approved_by"]) == [arn("bob"), arn("carol")]


def test_the_deciding_identity_is_the_one_sts_proves(world, primary):
    """A decision is recorded under the identity STS answers for the signer, whatever the request says."""
    eid = _execution(world, "failover")
    _ask(world, "alice", "request", eid, "toggle-to-secondary")
    answer = _ask(world, "bob", "decide", eid, "toggle-to-secondary", decision="approve")
    assert answer["identity"] == arn("bob")


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
    assert Flags(world.admin).read().mode == "manual"


def test_a_step_already_acted_on_is_refused_and_nothing_changes_again(world, primary):
    """A second act on a step, or a decision after it, is refused and audited as refused."""
    eid = _execution(world, "enable-auto")
    _ask(world, "alice", "request", eid, "switch-to-auto")
    _ask(world, "bob", "decide", eid, "switch-to-auto", decision="approve")
    _ask(world, "alice", "act", eid, "switch-to-auto")
    Flags(world.admin).set("mode", "manual")
    with pytest.raises(Refused, match="already acted on"):
        _ask(world, "alice", "act", eid, "switch-to-auto")
    with pytest.raises(Refused, match="already acted on"):
        _ask(world, "carol", "decide", eid, "switch-to-auto", decision="approve")
    assert Flags(world.admin).read().mode == "manual"
    kinds = [e["kind"] for e in _audit(world, eid)]
    assert kinds.count("gate.acted") == 1 and kinds.count("gate.refused") == 2


def test_a_replayed_request_is_refused(world, primary):
    """The same signed request sent twice is refused the second time, and audited as refused."""
    eid = _execution(world, "failover")
    request = {"op": "request", "execution_id": eid, "step_id": "toggle-to-secondary",
               "nonce": uuid.uuid4().hex, "expires_at": _soon()}
    alice = world.people["alice"]
    request["expires_at"] = _soon()
    body = {"request": request, "proof": sign_proof(alice.credentials(), alice.settings, request_digest(request))}
    first = httpx.post(f"{world.gate_url}/v1/gate", json=body)
    again = httpx.post(f"{world.gate_url}/v1/gate", json=body)
    assert first.status_code == 200
    assert again.status_code == 403 and "replay" in again.json()["refused"]
    refused = world.refusals(eid)
    assert len(refused) == 1 and "replay" in refused[0]["data"]["reason"]
    assert len([e for e in world.audit(eid) if e["kind"] == "gate.requested"]) == 1


def test_a_nonce_carries_an_expiry_a_day_past_the_window_and_a_step_none(world):
    """The gate records a nonce with the decisions table's TTL attribute a day past the longest its request can be
    valid (a replay within the window is still refused: above), and a step's ledger without one. (The emulator's
    CloudFormation does not apply a table's TTL; tests/test_aws_templates.py checks the template's.)"""
    eid = _execution(world, "failover")
    request = {"op": "request", "execution_id": eid, "step_id": "toggle-to-secondary",
               "nonce": uuid.uuid4().hex, "expires_at": _soon()}
    alice = world.people["alice"]
    body = {"request": request, "proof": sign_proof(alice.credentials(), alice.settings, request_digest(request))}
    sent = datetime.datetime.now(datetime.UTC)
    assert httpx.post(f"{world.gate_url}/v1/gate", json=body).status_code == 200
    item = world.admin.dynamodb.get_item(TableName="gt-decisions", Key={
        "execution_id": {"S": eid}, "item": {"S": f"nonce#{request['nonce']}"}})["Item"]
    kept_until = datetime.datetime.fromtimestamp(int(item[EXPIRES_AT]["N"]), datetime.UTC)
    assert item["request_expires_at"]["S"] == request["expires_at"]
    assert kept_until >= sent + MAX_LIFETIME + NONCE_KEPT - datetime.timedelta(seconds=1)
    assert kept_until > datetime.datetime.fromisoformat(request["expires_at"]) + NONCE_KEPT
    step = world.admin.dynamodb.get_item(TableName="gt-decisions", Key={
        "execution_id": {"S": eid}, "item": {"S": "step#toggle-to-secondary"}})["Item"]
    assert EXPIRES_AT not in step  # a step's ledger is kept


def test_a_proof_for_another_request_or_a_forged_one_is_refused(world, primary):
    """A proof signed for one request does not carry another, and a proof with a wrong key is refused by STS."""
    eid = _execution(world, "failover")
    alice = world.people["alice"]
    request = {"op": "request", "execution_id": eid, "step_id": "toggle-to-secondary", "nonce": uuid.uuid4().hex,
               "expires_at": _soon()}
    proof = sign_proof(alice.credentials(), alice.settings, request_digest(request))
    other = {**request, "step_id": "declare-void"}
    answer = httpx.post(f"{world.gate_url}/v1/gate", json={"request": other, "proof": proof})
    assert answer.status_code == 403 and "another request" in answer.json()["refused"]
    forged = alice.credentials()
    forged = type(forged)(forged.access_key, "not-the-secret")
    answer = httpx.post(f"{world.gate_url}/v1/gate",
                        json={"request": request, "proof": sign_proof(forged, alice.settings, request_digest(request))})
    assert answer.status_code == 403 and "STS refused" in answer.json()["refused"]


def test_a_malformed_request_is_refused_with_a_reason(world):
    """A request with unknown fields is a 400 with its reason, audited as refused (BadInput at the client)."""
    answer = httpx.post(f"{world.gate_url}/v1/gate", json={"request": {"op": "act", "who": "bob"}, "proof": {}})
    assert answer.status_code == 400 and "unknown field" in answer.json()["refused"]
    refused = [e for e in AuditLog(world.admin).entries() if e["kind"] == "gate.refused"]
    assert refused[-1]["actor"] == "unproven" and "unknown field" in refused[-1]["data"]["reason"]
    with pytest.raises(BadInput):
        _ask(world, "alice", "act", "no such id!", "x")


def test_a_forged_decision_written_directly_is_refused_by_aws(world):
    """An operator writing an approval into the gate's decisions table is refused by AWS (AccessDenied)."""
    eid = _execution(world, "failover")
    bob = world.people["bob"]
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        bob.dynamodb.update_item(TableName="gt-decisions", Key={"execution_id": {"S": eid},
                                                                  "item": {"S": "step#toggle-to-secondary"}},
                                 UpdateExpression="SET decision_seq = :n", ExpressionAttributeValues={":n": {"N": "9"}})


def test_a_step_without_approval_acts_with_the_shipped_arguments(world):
    """A shipped step with no approval (pause processing) is made by the gate with the runbook's own arguments."""
    eid = _execution(world, "failover")
    answer = _ask(world, "alice", "act", eid, "quiesce")
    assert answer["output"]["value"] == "paused" and Flags(world.admin).read().processing == "paused"
    Flags(world.admin).set("processing", "running")


def test_the_gates_inline_metric_is_allowed_by_its_deployed_policy(world):
    """A gate flag change's FlagChanged metric goes out under GateRole's policy as the deploy left it (the emulator
    authorizes CloudWatch as monitoring:*, which the template's cloudwatch:PutMetricData must cover there too)."""
    world.gate_aws.cloudwatch.put_metric_data(Namespace="Tradeops", MetricData=[
        {"MetricName": "FlagChanged", "Value": 1.0, "Dimensions": [{"Name": "Flag", "Value": "processing"}]}])


def test_a_runbook_not_shipped_is_refused(world):
    """An execution whose runbook text is not one the gate ships gets nothing from it."""
    eid = _execution(world, "failover")
    world.admin.dynamodb.update_item(
        TableName="gt-executions", Key={"execution_id": {"S": eid}, "item": {"S": "meta"}},
        UpdateExpression="SET runbook_sha256 = :s", ExpressionAttributeValues={":s": {"S": "0" * 64}})
    with pytest.raises(Refused, match="not of a shipped runbook"):
        _ask(world, "alice", "act", eid, "quiesce")


def test_with_the_gate_down_the_step_stops_with_one_line(world):
    """A gate that does not answer is GateDown, one line naming how to resume."""
    down = Aws(world.settings.model_copy(update={"gate_url": f"http://127.0.0.1:{free_port()}"}),
               session=world.sessions["alice"])
    with pytest.raises(GateDown, match="resume") as raised:
        ask_gate(down, "act", "failover-x", "quiesce", timeout=2)
    assert "\n" not in str(raised.value)


def test_a_shipped_runbook_run_through_the_gate_changes_the_roster_with_two_approvals(world):
    """change-operators run by alice, approved by bob and carol through the gate: the gate applies the roster,
    audited once; alice's own approval is refused by the gate."""
    admin, alice = world.admin, world.people["alice"]
    new = parse_operators(json.dumps({"operators": {**{arn(n): r for n, r in ROLES.items()}, arn("erin"): ["risk"]}}),
                          "the proposal")
    proposal = Roster(admin).propose(new, actor=Identity("admin", "test"))
    refused: list[str] = []

    def approvers(wait):
        for who in ("alice", "bob", "carol"):
            try:
                engine.decide(alice.settings, wait.execution_id, wait.step_id, "approve", aws=world.people[who])
            except Refused as exc:
                refused.append(f"{who}: {exc}")

    try:
        outcome = engine.run_execution(alice.settings, "change-operators", aws=alice,
                                       params={"proposal": proposal["digest"][:16]},
                                       identity=Identity(arn("alice"), "iam-user"), assume_yes=True,
                                       on_approval_wait=approvers, poll_seconds=0.05)
        assert outcome.status == "completed", outcome.reason
        assert Roster(admin).require().digest == new.digest
        acts = [e for e in _audit(world, outcome.execution_id) if e["kind"] == "gate.acted"]
        assert len(acts) == 1 and sorted(acts[0]["data"]["approved_by"]) == [arn("bob"), arn("carol")]
        assert len(refused) == 1 and refused[0].startswith("alice:") and "cannot approve" in refused[0]
    finally:
        install_roster(admin, world.roster)


def _drill_flag(world, who: str, gate_url: str, value: str = "secondary") -> dict:
    aws = Aws(world.settings.model_copy(update={"gate_url": gate_url}), session=world.sessions[who])
    return breakglass.set_flag(aws, identity=Identity(who, "drill" if who.startswith("drill-") else "iam-user"),
                               roster=None, flag="active", value=value, reason="drill primary-outage, step toggle",
                               target="the test's emulator")


def test_a_drill_sets_a_guarded_flag_through_a_gate_configured_for_drills_audited(world, primary):
    """On a drill environment's gate a drill identity switches the active broker without four-eyes, audited as
    the drill's; a person asking the same is refused, and so is the drill on a gate not configured for drills."""
    with pytest.raises(Refused, match="does not take drills"):
        _drill_flag(world, "drill-runner", world.gate_url)
    answer = _drill_flag(world, "drill-runner", world.drill_gate_url)
    assert answer["via"] == "gate" and answer["before"] == "primary" and _active(world) == "secondary"
    acted = [e for e in AuditLog(world.admin).entries() if e["kind"] == "gate.acted" and e["data"].get("drill")]
    assert acted[-1]["actor"] == arn("drill-runner") and acted[-1]["data"]["after"] == "secondary"
    aws = Aws(world.settings.model_copy(update={"gate_url": world.drill_gate_url}),
              session=world.sessions["alice"])
    with pytest.raises(Refused, match="not a drill identity"):
        ask_gate(aws, "flag", "drill-x", "active", value="primary", reason="pretending to be a drill")
    assert _active(world) == "secondary"


def test_a_resumed_step_takes_the_gates_record_and_a_second_change_of_it_is_refused(world):
    """Run again after the gate acted (a resume), the action answers the gate's recorded outcome without a second
    change; the same step with other arguments is refused by the gate (a rollback's restore is a change of its own,
    asked as one: below)."""
    eid = _execution(world, "failover")
    alice = world.people["alice"]
    ctx = OperationContext(settings=alice.settings, aws=alice, execution_id=eid, step_id="quiesce",
                           actor=arn("alice"))
    first = actions.set_processing(ctx, "paused")
    again = actions.set_processing(ctx, "paused")
    assert first == again and first["value"] == "paused"
    with pytest.raises(Refused, match="already acted on"):
        actions.set_processing(ctx, "running")
    assert [e["kind"] for e in _audit(world, eid)].count("gate.acted") == 1
    Flags(world.admin).set("processing", "running")


def test_an_unwind_above_the_dual_approval_limit_is_decided_through_the_gate_by_two_proven_people(world):
    """Through the gate, a double execution above the limit needs two different people: one person's decision
    leaves it open, a second by the same person is refused, a second person decides it; the gate records each."""
    store = OrderStore(world.admin)
    order, _ = store.create(new_order(OrderRequest(account_id="a", symbol="SYM1", side="BUY", quantity=1000,
                                                   quote_price=Decimal("100"))))
    order = store.transition(order, "SUBMITTING", actor="t", set_fields={"provider": "secondary"})
    order = store.transition(order, "FILLED", actor="t", set_fields={"fill_price": Decimal("100.5")})
    store.annotate(order, actor="t", note="executed twice", set_fields={"double_execution": {
        "state": "open", "notional": Decimal("100500"), "fills": [], "voided_at": "primary"}})
    people = world.people
    first = unwind(people["bob"], order["order_id"], identity="ignored", source="ignored", outcome="unwound",
                   reason="closed out on the desk", roles_of={})
    assert first["state"] == "open" and first["decisions"][0]["identity"] == arn("bob")
    with pytest.raises(Refused, match="one identity counts once"):
        unwind(people["bob"], order["order_id"], identity="carol", source="x", outcome="unwound", reason="again",
               roles_of={})
    second = unwind(people["carol"], order["order_id"], identity="ignored", source="ignored", outcome="unwound",
                    reason="agreed", roles_of={})
    assert second["state"] == "unwound" and sorted(second["decided_by"]) == [arn("bob"), arn("carol")]
    decided = [e for e in _audit(world, order["order_id"]) if e["kind"] == "gate.decided"]
    assert [e["actor"] for e in decided] == [arn("bob"), arn("carol")]


def test_with_the_gate_down_a_run_stops_at_its_four_eyes_step_and_resumes_once_it_is_back(world):
    """A run whose gate does not answer stops (one line, nothing changed) and stays resumable; resumed with the gate
    back, it completes through it."""
    admin, alice = world.admin, world.people["alice"]
    before = Roster(admin).require().digest
    new = parse_operators(json.dumps({"operators": {**{arn(n): r for n, r in ROLES.items()}, arn("fred"): ["risk"]}}),
                          "the proposal")
    proposal = Roster(admin).propose(new, actor=Identity("admin", "test"))
    down = Aws(alice.settings.model_copy(update={"gate_url": f"http://127.0.0.1:{free_port()}"}),
               session=world.sessions["alice"])
    me = Identity(arn("alice"), "iam-user")
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
                engine.decide(alice.settings, wait.execution_id, wait.step_id, "approve", aws=world.people[who])

        outcome = engine.resume_execution(alice.settings, eid, aws=alice, identity=me, assume_yes=True,
                                          on_approval_wait=approvers, poll_seconds=0.05)
        assert outcome.status == "completed", outcome.reason
        assert Roster(admin).require().digest == new.digest
    finally:
        install_roster(admin, world.roster)


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
        world.people["alice"].secrets.get_secret_value(SecretId="gt/broker/primary")


# ---- a rollback's restore of a step the gate changed ---------------------------------------------

@pytest.fixture(scope="module")
def primary_broker(world, tmp_path_factory) -> Iterator[str]:
    """A simulated primary broker (disable-auto checks it is healthy before choosing it); its order API's URL."""
    broker = start_broker("primary", "alpha", 1, tmp_path_factory.mktemp("gt-broker"))
    try:
        wait_healthy(broker)
        yield broker.url
    finally:
        stop_broker(broker)


def _restores(world: GateWorld, eid: str) -> list[dict]:
    return [e for e in _audit(world, eid) if e["kind"] == "gate.acted" and e["data"]["op"] == "restore"]


def test_a_rollback_restores_a_step_the_gate_changed_through_the_gate_audited_once(world, primary_broker):
    """disable-auto, run by alice: the gate sets the active broker (a step without approval); bob approves the next
    step, she declines to run it and aborts with rollback, and the gate restores the broker it replaced, as a change
    of its own, audited once beside the act; a second restore is refused."""
    flags = Flags(world.admin)
    flags.set("mode", "auto")
    flags.set("active", "secondary")
    alice = world.person(world.sessions["alice"], primary_url=primary_broker)
    me = Identity(arn("alice"), "iam-user")
    try:

        def bob_approves(wait):
            engine.decide(alice.settings, wait.execution_id, wait.step_id, "approve", aws=world.people["bob"])

        outcome = engine.run_execution(alice.settings, "disable-auto", aws=alice, identity=me, poll_seconds=0.05,
                                       confirm=lambda prompt: "set_routing_mode" not in prompt,
                                       on_approval_wait=bob_approves, approval_timeout=30)
        assert outcome.status == "stopped", outcome.reason
        eid = outcome.execution_id
        assert flags.read().active == "primary"
        engine.abort_execution(alice.settings, eid, aws=alice, identity=me, reason="not today", rollback=True)
        assert flags.read().active == "secondary" and flags.read().mode == "auto"
        (restored,) = _restores(world, eid)
        assert restored["actor"] == arn("alice") and restored["step_id"] == "set-active"
        assert (restored["data"]["args"], restored["data"]["before"]) == ({"provider": "secondary"}, "primary")
        assert [e["data"]["op"] for e in world.acts(eid)] == ["act", "restore"] and not world.refusals(eid)
        step = next(s for s in engine.execution_history(alice.settings, eid, aws=alice)["steps"]
                    if s["step_id"] == "set-active")
        assert step["rollback"]["status"] == "succeeded" and step["rollback"]["output"]["value"] == "secondary"
        # Asked again (a rollback run twice), the gate refuses a second restore, and nothing changes.
        with pytest.raises(Refused, match="already restored"):
            _ask(world, "alice", "restore", eid, "set-active", value="secondary")
        flags.set("active", "primary")
        with pytest.raises(Refused, match="already restored"):
            _ask(world, "bob", "restore", eid, "set-active", value="secondary")
        assert flags.read().active == "primary" and len(_restores(world, eid)) == 1
        mark = GateLedger(world.admin).restored(eid, "set-active")
        assert mark is not None and mark["outcome"]["output"]["value"] == "secondary"
        assert [e["data"]["reason"] for e in world.refusals(eid)] == [
            f"step set-active of {eid} was already restored at {mark['at']} by {arn('alice')}"] * 2
    finally:
        flags.set("mode", "manual")
        flags.set("active", "primary")


def _quiesced(world: GateWorld) -> str:
    """A failover whose quiesce step (no approval; rollback: restore) the gate has made: processing paused."""
    eid = _execution(world, "failover")
    assert _ask(world, "alice", "act", eid, "quiesce")["output"] == {"flag": "processing", "previous": "running",
                                                                       "value": "paused"}
    return eid


@pytest.mark.parametrize(("case", "why"), [
    ("never-acted", "was never acted on by the gate"),
    ("another-value", "can be restored only to 'running', the value before the gate's change, not 'paused'"),
    ("changed-since", "set 'paused', but 'running' is in force now"),
    ("no-restore", "is not a guarded change with a value to restore"),
])
def test_a_restore_the_gate_did_not_make_or_not_to_the_value_it_replaced_is_refused(world, case, why):
    """A restore of a step the gate never acted on, to another value than the one its change replaced, after a
    later change of the flag, or of a step with nothing to restore, is refused, audited as refused, and nothing
    changes."""
    flags = Flags(world.admin)
    flags.set("processing", "running")
    step, value = "quiesce", "running"
    if case == "never-acted":
        eid = _execution(world, "failover")
    elif case == "no-restore":
        eid, step = _execution(world, "failover"), "declare-void"
    else:
        eid = _quiesced(world)
        if case == "another-value":
            value = "paused"
        else:
            flags.set("processing", "running")  # someone else's change since the gate's
    before = flags.read().processing
    try:
        with pytest.raises(Refused, match=re.escape(why)):
            _ask(world, "alice", "restore", eid, step, value=value)
        assert flags.read().processing == before and not _restores(world, eid)
        assert GateLedger(world.admin).restored(eid, step) is None
        (refused,) = world.refusals(eid)
        assert refused["data"]["op"] == "restore" and why in refused["data"]["reason"]
    finally:
        flags.set("processing", "running")


# ---- resolve: settling the orders in flight at a broker from its answers ---------------------------

RESOLVE = "resolve-in-flight"


@pytest.fixture
def resolving(world, primary_broker) -> Iterator[str]:
    """A gate that knows the simulated primary's URL, whose key is in the deployed secret (where the firm puts it); its
    URL. Afterwards whatever a test left in flight at the primary is settled, so no other test finds it."""
    world.admin.secrets.put_secret_value(SecretId="gt/broker/primary", SecretString=API_KEY)
    try:
        yield world.serve_gate(primary_url=primary_broker)
    finally:
        inflight.resolve_in_flight(world.settings.model_copy(update={"primary_url": primary_broker}), world.admin,
                                   "primary")


def _filled_at_primary(world: GateWorld, broker_url: str) -> str:
    """An order the primary filled whose answer never reached us: IN_DOUBT at the primary in the orders table."""
    order_id = f"rs-{uuid.uuid4().hex[:10]}"
    with make_provider("primary", "alpha", broker_url, api_key=API_KEY, connect_timeout=2, read_timeout=5) as client:
        client.submit(BrokerOrder(order_id, "VOD.L", "BUY", 10, "MARKET", None, "acc-rs"))
    store = OrderStore(world.admin)
    order, _ = store.create(new_order(OrderRequest(order_id=order_id, account_id="acc-rs", symbol="VOD.L", side="BUY",
                                                   quantity=10, quote_price=Decimal("101.5"))))
    order = store.transition(order, "SUBMITTING", actor="test", set_fields={"provider": "primary"})
    store.transition(order, "IN_DOUBT", actor="test")
    return order_id


def _at_step(world: GateWorld, step: str) -> str:
    """A failover run by alice that has reached ``step`` (its meta as the runner writes it before the action)."""
    eid = _execution(world, "failover")
    ExecutionStore(world.people["alice"]).set_fields(eid, {"current_step": step})
    return eid


def _status(world: GateWorld, order_id: str) -> str:
    return str(OrderStore(world.admin).get(order_id)["status"])


def test_resolve_in_flight_is_settled_by_the_gate_for_the_executors_run_audited_once(world, resolving,
                                                                                     primary_broker):
    """An order the primary filled is settled FILLED by the gate when alice's failover reaches resolve-in-flight
    (her own write of the order is AccessDenied); audited once with what was settled; a resumed run takes the gate's
    record instead of asking twice."""
    order_id = _filled_at_primary(world, primary_broker)
    eid = _at_step(world, RESOLVE)
    alice = world.person(world.sessions["alice"], gate_url=resolving)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        alice.dynamodb.update_item(TableName="gt-orders", Key={"order_id": {"S": order_id}},
                                   UpdateExpression="SET #s = :f", ExpressionAttributeNames={"#s": "status"},
                                   ExpressionAttributeValues={":f": {"S": "FILLED"}})
    ctx = OperationContext(settings=alice.settings, aws=alice, execution_id=eid, step_id=RESOLVE, actor=arn("alice"))
    output = actions.resolve_in_flight(ctx, "primary")
    assert output == {"resolved": [order_id], "in_doubt": []} and _status(world, order_id) == "FILLED"
    assert actions.resolve_in_flight(ctx, "primary") == output  # resumed: the gate's record, not a second ask
    (acted,) = world.acts(eid)
    assert acted["actor"] == arn("alice") and acted["step_id"] == RESOLVE
    assert {k: acted["data"][k] for k in ("op", "action", "args", "resolved", "in_doubt", "resolved_ids")} == {
        "op": "resolve", "action": "resolve_in_flight", "args": {"provider": "primary"}, "resolved": 1,
        "in_doubt": 0, "resolved_ids": [order_id]}
    assert not world.refusals(eid)


def test_resolve_is_refused_off_its_step_to_others_for_another_broker_and_twice(world, resolving, primary_broker):
    """Asked before the run reaches the step, by someone not its executor, for a step that does not resolve, for a
    broker the runbook does not name, or a second time: refused with a reason, audited as refused, nothing changed."""
    order_id = _filled_at_primary(world, primary_broker)
    eid = _execution(world, "failover")
    people = {n: world.person(world.sessions[n], gate_url=resolving) for n in ("alice", "bob")}

    def ask(who: str, step: str = RESOLVE, provider: str = "primary") -> dict:
        return ask_gate(people[who], "resolve", eid, step, value=provider)

    with pytest.raises(Refused, match=f"is at step none, not {RESOLVE}"):
        ask("alice")
    ExecutionStore(world.people["alice"]).set_fields(eid, {"current_step": RESOLVE})
    with pytest.raises(Refused, match="is not an executor"):
        ask("bob")
    with pytest.raises(Refused, match="does not settle orders"):
        ask("alice", step="quiesce")
    with pytest.raises(Refused, match="asks the primary broker, not 'secondary'"):
        ask("alice", provider="secondary")
    assert _status(world, order_id) == "IN_DOUBT" and not world.acts(eid)
    assert ask("alice")["output"]["resolved"] == [order_id]
    with pytest.raises(Refused, match="already acted on"):
        ask("alice")
    assert len(world.acts(eid)) == 1 and len(world.refusals(eid)) == 5
    assert all(e["data"]["op"] == "resolve" and e["data"]["reason"] for e in world.refusals(eid))


def test_with_the_gate_down_resolve_in_flight_stops_with_one_line(world):
    """A run's resolve-in-flight whose gate does not answer is GateDown: one line naming how to resume."""
    eid = _at_step(world, RESOLVE)
    down = world.person(world.sessions["alice"], gate_url=f"http://127.0.0.1:{free_port()}", gate_timeout_seconds=2)
    ctx = OperationContext(settings=down.settings, aws=down, execution_id=eid, step_id=RESOLVE, actor=arn("alice"))
    with pytest.raises(GateDown, match="resume") as raised:
        actions.resolve_in_flight(ctx, "primary")
    assert "\n" not in str(raised.value)
