"""After a void, every double execution is found, listed for the desk, alerted once, and decided four-eyes."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from tests.support.orderflow import AlertInbox, Flow
from tests.support.orderflow import wait_until as _wait
from tests.support.stack import run_cli


def _void(flow: Flow, operator: str) -> list[str]:
    """Declare the primary's in-doubt orders void, break-glass (the four-eyes path is the runbook's tests')."""
    flow.roster({operator: ["ops-manager"]}, break_glass=("ops-manager",))
    env = dict(flow.stack["env"], TRADEOPS_OPERATOR=operator)
    done = run_cli("orders", "declare-void", "--provider", "primary", "--reason", "primary lost", "--break-glass",
                   "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["released"]


def _duplicates(flow: Flow, *args: str) -> list[dict[str, Any]]:
    done = run_cli("orders", "duplicates", "--json", *args, env=flow.stack["env"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_fill_at_a_voided_broker_is_listed_with_both_fills_and_one_alert(flow):
    """The issue's four steps (filled then answered late, down, void, filled at the secondary, healed) end with
    the order listed by `orders duplicates --json` naming both fills within 10 s of the heal, one alert, and the
    money at risk in `exposure`; a voided order the primary never executed closes clean and is not listed."""
    inbox = AlertInbox(flow)
    try:
        # A voided order the primary never executed: blackholed, in doubt, voided, filled at the secondary.
        clean = flow.post(flow.order_body(flow.unique("void-clean"), 1))["order_id"]
        flow.fault("primary", "blackhole")
        _wait("the blackholed order in doubt", lambda: flow.get(clean)["status"] == "IN_DOUBT", 10)
        flow.fault("primary", "down")
        flow.flag("active", "secondary")
        assert clean in _void(flow, "duty-ann")
        _wait("the clean order to fill at the secondary", lambda: flow.get(clean)["status"] == "FILLED", 20)

        # 1. The primary fills, then answers late: the order goes in doubt once the primary goes down.
        flow.fault("primary", "fill_after_timeout", ms=5000)
        flow.flag("active", "primary")
        time.sleep(1.5)  # a flag change reaches every worker within a second
        flow.wait_breakers_closed(timeout=30)
        twice = flow.post(flow.order_body(flow.unique("void-twice"), 3))["order_id"]
        _wait("the primary to fill it", lambda: twice in {f["order_id"] for f in flow.fills("primary")}, 10,
              every=0.05)
        # 2. The primary goes down, the active broker is switched, and the order is declared void.
        flow.fault("primary", "down")
        _wait("the order in doubt", lambda: flow.get(twice)["status"] == "IN_DOUBT", 10)
        flow.flag("active", "secondary")
        assert twice in _void(flow, "duty-bob")
        # 3. It fills at the secondary.
        _wait("the fill at the secondary", lambda: flow.get(twice)["status"] == "FILLED", 20)
        assert flow.get(twice)["provider"] == "secondary"
        # 4. The primary heals.
        flow.fault("primary", "none")
        healed = time.monotonic()
        listed = _wait("the double execution to be listed",
                       lambda: [d for d in _duplicates(flow) if d["order_id"] == twice], 15)
        assert time.monotonic() - healed <= 10.0
        record = listed[0]
        primary_fill = next(f for f in flow.fills("primary") if f["order_id"] == twice)
        secondary_fill = next(f for f in flow.fills("secondary") if f["order_id"] == twice)
        assert record["state"] == "open" and record["void_declared_by"] == "duty-bob"
        assert [(f["provider"], Decimal(f["price"]), f["quantity"], f["recorded"]) for f in record["fills"]] == [
            ("secondary", Decimal(secondary_fill["price"]), secondary_fill["quantity"], True),
            ("primary", Decimal(primary_fill["price"]), primary_fill["quantity"], False)]
        assert all(f["at"] for f in record["fills"])
        assert Decimal(record["notional"]) == Decimal(primary_fill["price"]) * primary_fill["quantity"]

        order = _wait("the clean void to close", lambda: (o := flow.get(clean)).get("void_check") and o, 15)
        assert order["void_check"]["result"] == "clean" and "watch" not in order
        assert clean not in {d["order_id"] for d in _duplicates(flow)}

        time.sleep(2.0)  # any second alert would have arrived by now
        alerts = [m for m in inbox.drain() if m.get("kind") == "double_execution" and m.get("order_id") == twice]
        assert len(alerts) == 1 and alerts[0]["void_declared_by"] == "duty-bob"
        assert not [m for m in inbox.messages if m.get("kind") == "double_execution" and m.get("order_id") == clean]

        exposure = _wait("the money at risk in exposure", lambda: (s := json.loads(run_cli(
            "exposure", "--json", env=flow.stack["env"]).stdout)["double_executions"]) and twice in {
            r["order_id"] for r in s["orders"]} and s, 10, every=0.5)
        row = next(r for r in exposure["orders"] if r["order_id"] == twice)
        assert Decimal(row["notional"]) == Decimal(record["notional"]).quantize(Decimal("0.01"))
        assert row["at_risk"] is not None and Decimal(row["at_risk"]) >= 0
    finally:
        inbox.close()
    # Deciding it: four-eyes above the notional (set low here), one role-holder at a time.
    flow.roster({"olga": ["ops-manager"], "rita": ["risk"], "dave": ["duty-engineer"]})
    env = dict(flow.stack["env"], TRADEOPS_UNWIND_DUAL_APPROVAL="1")

    def unwind(who: str, *extra: str) -> Any:
        return run_cli("orders", "unwind", twice, "--reason", "sold on the desk", *extra,
                       env=dict(env, TRADEOPS_OPERATOR=who))

    refused = unwind("dave")
    assert refused.returncode == 1 and "approving needs one of ops-manager, risk" in refused.stderr
    first = unwind("olga", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["state"] == "open"
    again = unwind("olga")
    assert again.returncode == 1 and "one identity counts once" in again.stderr and "Traceback" not in again.stderr
    second = unwind("rita")
    assert second.returncode == 0 and "unwound" in second.stdout
    decided = next(d for d in _duplicates(flow, "--state", "unwound") if d["order_id"] == twice)
    assert decided["decided_by"] == ["olga", "rita"] and decided["decision_reason"]
    assert twice not in {d["order_id"] for d in _duplicates(flow, "--state", "open")}
    assert run_cli("orders", "duplicates", "--state", "lost", env=flow.stack["env"]).returncode == 2
