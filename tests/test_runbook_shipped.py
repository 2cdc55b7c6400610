"""The shipped runbooks, run unattended on the local AWS stage with both simulated brokers (no workers).

Without workers no customer order moves, so these tests prove the procedure itself: the checks
read the real brokers, the flags move in the right order, an order in doubt at the failed primary
is declared void only with two approvals, and failback and the auto-mode runbooks bring it back.
(Orders filling exactly once across the switch needs workers: the end-to-end scenario tests.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tradeops.runbooks import engine
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runbooks.testing import ScriptedApprover, install_roster, write_operators
from tradeops.runtime.brokers.sim import API_KEY_ENV, sim_command
from tradeops.runtime.orderpath import inflight
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.orderpath.providers import BrokerOrder, make_provider
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.supervisor import free_port

KEY = "shipped-test-key"
ALICE = Identity("alice", "test")
APPROVERS = [Identity("bob", "test"), Identity("carol", "test")]


@pytest.fixture(scope="module")
def stage(aws_settings, tmp_path_factory):
    """Both simulated brokers, isolated flags, and an operators file; the brokers stop afterwards."""
    base = tmp_path_factory.mktemp("runbook-shipped")
    procs, urls = [], {}
    try:
        for name, wire in (("primary", "alpha"), ("secondary", "beta")):
            order_port, control_port = free_port(), free_port()
            proc = subprocess.Popen(sim_command(name=name, wire=wire, host="127.0.0.1", order_port=order_port,
                                                control_port=control_port, seed=3),
                                    env={**os.environ, API_KEY_ENV: KEY}, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            procs.append(proc)
            urls[name] = (f"http://127.0.0.1:{order_port}", f"http://127.0.0.1:{control_port}")
        for _, control in urls.values():
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{control}/_sim/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "simulated broker did not start"
                time.sleep(0.1)
        operators = write_operators(base / "operators.yaml", {
            "alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"]})
        # A stack of its own in the session's emulator: the order this module voids and re-queues
        # never reaches another test's queue, table or flags.
        prefix = f"rbs{uuid.uuid4().hex[:6]}"
        settings = aws_settings.model_copy(update={
            "name_prefix": prefix, "param_prefix": f"/{prefix}", "stack_name": prefix,
            "primary_url": urls["primary"][0], "primary_api_key": KEY, "secondary_url": urls["secondary"][0],
            "secondary_api_key": KEY, "operators_file": operators.source, "operator": "alice"})
        deploy_stack(Aws(settings), settings)
        roster = install_roster(Aws(settings), operators)
        yield {"settings": settings, "aws": Aws(settings), "operators": roster,
               "control": {name: control for name, (_, control) in urls.items()}}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _fault(stage, provider, mode):
    httpx.post(f"{stage['control'][provider]}/_sim/fault", json={"mode": mode}, timeout=5).raise_for_status()


def _run(stage, name, **params):
    approver = ScriptedApprover(stage["settings"], aws=stage["aws"], operators=stage["operators"],
                                identities=APPROVERS)
    outcome = engine.run_execution(stage["settings"], name, aws=stage["aws"], identity=ALICE,
                                   operators=stage["operators"], assume_yes=True, on_approval_wait=approver,
                                   poll_seconds=0.05, params={k: str(v) for k, v in params.items()})
    assert outcome.status == "completed", (outcome.status, outcome.reason)
    return outcome, AuditLog(stage["aws"]).entries(outcome.execution_id)


def _actions(timeline):
    return [(e["step_id"], e["data"]["action"], e["data"]["args"]) for e in timeline if e["kind"] == "action.started"]


@pytest.fixture
def order_in_doubt_at_primary(stage):
    """One customer order IN_DOUBT at the primary (sent, outcome unknown)."""
    store = OrderStore(stage["aws"])
    order, _ = store.create(new_order(OrderRequest(
        order_id=f"rb-{uuid.uuid4().hex[:10]}", account_id="acc-rb", symbol="VOD.L", side="BUY", quantity=10,
        quote_price=Decimal("101.5"))))
    order = store.transition(order, "SUBMITTING", actor="test", set_fields={"provider": "primary"})
    order = store.transition(order, "IN_DOUBT", actor="test")
    return order["order_id"]


def test_failover_then_failback(stage, order_in_doubt_at_primary):
    """failover pauses, voids the primary's order in doubt under two approvals, switches, resumes; failback returns."""
    flags = Flags(stage["aws"])
    _fault(stage, "primary", "down")
    try:
        plan = engine.plan_runbook(stage["settings"], "failover", aws=stage["aws"], operators=stage["operators"])
        live = {s["id"]: s["checks"][0]["value"] for s in plan["steps"] if s["checks"]}
        assert live["primary-unhealthy"] is False and live["secondary-healthy"] is True
        assert live["declare-void"] >= 1  # the precondition sees the order in doubt

        outcome, timeline = _run(stage, "failover", verify_canary="false")
        eid = outcome.execution_id
        actions = _actions(timeline)
        assert [a[:2] for a in actions] == [
            ("notify-start", "notify"), ("quiesce", "set_processing"), ("resolve-in-flight", "resolve_in_flight"),
            ("declare-void", "declare_void"), ("toggle-to-secondary", "set_active_broker"),
            ("resume", "set_processing"), ("notify-done", "notify")]
        # processing: paused → secondary active → running
        assert [a[2] for a in actions[1:2] + actions[4:6]] == [
            {"state": "paused"}, {"provider": "secondary"}, {"state": "running"}]
        assert "secondary-provider" in actions[0][2]["audience"]
        values = flags.read()
        assert (values.processing, values.active) == ("running", "secondary")
        steps = {r["step_id"]: r for r in outcome.steps}
        assert order_in_doubt_at_primary in steps["resolve-in-flight"]["output"]["action"]["output"]["in_doubt"]
        void = steps["declare-void"]
        assert sorted(void["approvals"]["approved_by"]) == ["bob", "carol"]
        assert order_in_doubt_at_primary in void["output"]["action"]["output"]["released"]
        order = OrderStore(stage["aws"]).get(order_in_doubt_at_primary)
        assert order["status"] == "ACCEPTED" and "provider" not in order
        assert order["void_declared"]["execution_id"] == eid
        assert steps["canary"]["status"] == "skipped"
    finally:
        _fault(stage, "primary", "none")

    # No workers run, so the order released by failover is still pending: allow it in the backlog check.
    outcome, timeline = _run(stage, "failback", healthy_seconds=1, verify_canary="false", backlog_age_limit=3600)
    assert [a[:2] for a in _actions(timeline)] == [
        ("notify-start", "notify"), ("quiesce", "set_processing"), ("reconcile", "resolve_in_flight"),
        ("toggle-to-primary", "set_active_broker"), ("resume", "set_processing"), ("notify-done", "notify")]
    values = flags.read()
    assert (values.processing, values.active) == ("running", "primary")
    check = next(e for e in timeline if e["kind"] == "check.evaluated" and e["step_id"] == "primary-sustained-healthy")
    assert check["data"]["value"] is True and check["data"]["detail"]["samples"] >= 2


def test_failover_refuses_while_the_primary_is_healthy(stage):
    """With the primary answering, failover stops at its first health check and changes nothing."""
    flags = Flags(stage["aws"])
    before = flags.read().as_dict()
    outcome = engine.run_execution(stage["settings"], "failover", aws=stage["aws"], identity=ALICE,
                                   operators=stage["operators"], assume_yes=True, poll_seconds=0.05)
    assert outcome.status == "failed"
    assert "broker_healthy is true, expected false" in outcome.reason
    assert flags.read().as_dict() == before
    assert [r["step_id"] for r in outcome.steps] == ["routing-is-manual", "primary-unhealthy"]


def test_enable_then_disable_auto(stage):
    """enable-auto switches routing to auto under one approval; disable-auto pins the broker and returns to manual."""
    flags = Flags(stage["aws"])
    _run(stage, "enable-auto")
    assert flags.read().mode == "auto"
    _, timeline = _run(stage, "disable-auto", active="secondary")
    values = flags.read()
    assert (values.mode, values.active) == ("manual", "secondary")
    assert [a[1] for a in _actions(timeline)] == ["set_active_broker", "set_routing_mode", "notify"]
    flags.set("active", "primary")


# ---- declare-void: four-eyes outside a failover, or break-glass; the broker is asked once more -------------

def _in_doubt(stage, *, at_the_broker: bool) -> str:
    """An order IN_DOUBT at the primary; with ``at_the_broker`` the primary did take and fill it."""
    store = OrderStore(stage["aws"])
    order, _ = store.create(new_order(OrderRequest(
        order_id=f"dv-{uuid.uuid4().hex[:10]}", account_id="acc-dv", symbol="VOD.L", side="BUY", quantity=5,
        quote_price=Decimal("101.5"))))
    if at_the_broker:
        with make_provider("primary", "alpha", stage["settings"].primary_url, api_key=KEY, connect_timeout=2,
                           read_timeout=5) as client:
            client.submit(BrokerOrder(order_id=order["order_id"], symbol="VOD.L", side="BUY", quantity=5,
                                      order_type="MARKET", limit_price=None, account_ref="ref-dv"))
    order = store.transition(order, "SUBMITTING", actor="test", set_fields={"provider": "primary"})
    store.transition(order, "IN_DOUBT", actor="test")
    return order["order_id"]


def test_declare_void_asks_the_broker_once_more_and_settles_what_it_answers_for(stage):
    """Right before releasing each order the broker is asked again: a fill it now reports is recorded, not voided."""
    filled, unknown = _in_doubt(stage, at_the_broker=True), _in_doubt(stage, at_the_broker=False)
    result = inflight.void_in_flight(stage["aws"], "primary", actor="alice", reason="test")
    assert filled in result["settled"] and filled not in result["released"]
    assert unknown in result["released"]
    store = OrderStore(stage["aws"])
    assert store.get(filled)["status"] == "FILLED" and store.get(filled)["provider"] == "primary"
    assert store.get(unknown)["status"] == "ACCEPTED" and "provider" not in store.get(unknown)


def test_declare_void_outside_a_runbook_is_four_eyes(stage):
    """The declare-void runbook releases the broker's unconfirmed orders only after two approvals."""
    unknown = _in_doubt(stage, at_the_broker=False)
    outcome, timeline = _run(stage, "declare-void", provider="primary", reason="primary down (INC-1)")
    step = next(r for r in outcome.steps if r["step_id"] == "declare-void")
    assert sorted(step["approvals"]["approved_by"]) == ["bob", "carol"]
    assert unknown in step["output"]["action"]["output"]["released"]
    assert [e["kind"] for e in timeline].count("approval.approved") == 2


def _cli_env(stage, operator: str) -> dict[str, str]:
    s = stage["settings"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_AWS_ENDPOINT_URL": s.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": s.name_prefix,
                "TRADEOPS_PARAM_PREFIX": s.param_prefix, "TRADEOPS_STACK_NAME": s.stack_name,
                "TRADEOPS_STATE_DIR": str(Path(str(s.operators_file)).parent / "state"),
                "TRADEOPS_PRIMARY_URL": s.primary_url, "TRADEOPS_PRIMARY_API_KEY": KEY,
                "TRADEOPS_SECONDARY_URL": s.secondary_url, "TRADEOPS_SECONDARY_API_KEY": KEY,
                "TRADEOPS_OPERATOR": operator})
    return env


def test_declare_void_by_hand_needs_the_break_glass_role_and_a_reason(stage):
    """`orders declare-void --break-glass`: refused (exit 1, nothing released) without a break-glass role; with
    one it releases, audited, and needs --reason either way."""
    unknown = _in_doubt(stage, at_the_broker=False)
    base = ["tradeops", "orders", "declare-void", "--provider", "primary", "--break-glass", "--yes", "--json"]
    no_reason = subprocess.run(base, env=_cli_env(stage, "bob"), capture_output=True, text=True, timeout=60)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    refused = subprocess.run([*base, "--reason", "primary down"], env=_cli_env(stage, "carol"), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1 and "break-glass role" in refused.stderr
    assert OrderStore(stage["aws"]).get(unknown)["status"] == "IN_DOUBT"
    roster = stage["operators"]
    install_roster(stage["aws"], Operators(roles=roster.roles, break_glass=frozenset({"ops-manager"})))
    try:
        done = subprocess.run([*base, "--reason", "primary down"], env=_cli_env(stage, "bob"), capture_output=True,
                              text=True, timeout=60)
    finally:
        install_roster(stage["aws"], roster)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert unknown in result["released"] and result["declared_by"] == "bob" and result["break_glass"] is True
    records = [e for e in AuditLog(stage["aws"]).entries() if e["kind"] == "break_glass.declare_void"]
    assert records and records[-1]["actor"] == "bob" and records[-1]["data"]["reason"] == "primary down"
