"""Double executions after a void: what a broker's answer means, the record, and deciding it (four-eyes)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runbooks.unwind import decide
from tradeops.runtime.orderpath.double_executions import (
    OPEN,
    UNWOUND,
    WRITTEN_OFF,
    BrokerAnswer,
    classify,
    double_record,
    money_at_risk,
)
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, StaleOrder, new_order
from tradeops.runtime.orderpath.states import STATES
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, Refused

VOID = {"provider": "primary", "by": "duty-ann", "reason": "primary lost", "at": "2026-11-26T10:00:00.000Z"}
FILLED_AT_SECONDARY = {"order_id": "o-1", "status": "FILLED", "provider": "secondary", "broker_ref": "secondary-01",
                       "fill_price": Decimal("101.10"), "filled_quantity": 10, "filled_at": "2026-11-26T10:00:05.000Z",
                       "symbol": "SYM1", "side": "BUY", "quantity": 10, "void_declared": VOID}
PRIMARY_FILL = BrokerAnswer(provider="primary", status="FILLED", price=Decimal("100.50"), quantity=10,
                            at="2026-11-26T09:59:58.000Z", broker_ref="primary-07")


def test_a_fill_at_the_voided_broker_beside_the_recorded_one_is_a_double_execution():
    """The voided-at broker holds a fill the order's record (filled elsewhere) does not: executed twice."""
    assert classify(FILLED_AT_SECONDARY, PRIMARY_FILL) == "double"


@pytest.mark.parametrize("answer", [None, BrokerAnswer("primary", "CANCELLED"), BrokerAnswer("primary", "REJECTED")])
def test_no_fill_at_the_voided_broker_is_clean(answer):
    """Not held, cancelled (tombstoned) or rejected at the voided broker: nothing to unwind."""
    assert classify(FILLED_AT_SECONDARY, answer) == "clean"


def test_the_orders_own_fill_at_the_voided_broker_is_clean():
    """An order that went back to the voided broker and filled there holds one fill: its own."""
    own = dict(FILLED_AT_SECONDARY, provider="primary", broker_ref="primary-07")
    assert classify(own, PRIMARY_FILL) == "clean"


@given(status=st.sampled_from(["ACCEPTED", "SUBMITTING", "IN_DOUBT"]),
       answer=st.sampled_from([None, PRIMARY_FILL, BrokerAnswer("primary", "CANCELLED")]))
def test_a_pending_order_is_decided_later(status, answer):
    """While the order may still go anywhere, whatever the broker says decides nothing yet."""
    assert classify(dict(FILLED_AT_SECONDARY, status=status), answer) == "pending"


@given(status=st.sampled_from([s for s in STATES if s != "FILLED"]))
def test_a_fill_for_an_order_not_filled_elsewhere_is_still_listed(status):
    """A fill at the voided broker for an order recorded rejected, cancelled or dead-lettered is unwound too."""
    pending = {"ACCEPTED", "SUBMITTING", "IN_DOUBT"}
    expected = "pending" if status in pending else "double"
    assert classify(dict(FILLED_AT_SECONDARY, status=status), PRIMARY_FILL) == expected


def test_the_record_names_both_fills_the_void_and_the_notional():
    """The double execution record: the recorded fill first, then the extra one; who voided; the extra notional."""
    record = double_record(FILLED_AT_SECONDARY, PRIMARY_FILL, found_at="2026-11-26T10:01:00.000Z", found_by="worker-1")
    assert record["state"] == OPEN and record["voided_at"] == "primary" and record["void_declared_by"] == "duty-ann"
    assert [(f["provider"], f["price"], f["recorded"]) for f in record["fills"]] == [
        ("secondary", Decimal("101.10"), True), ("primary", Decimal("100.50"), False)]
    assert record["notional"] == Decimal("1005.00")


@given(side=st.sampled_from(["BUY", "SELL"]), price=st.decimals("1", "1000", places=2),
       now=st.decimals("1", "1000", places=2), qty=st.integers(1, 1000))
def test_money_at_risk_is_the_adverse_part_of_the_move(side, price, now, qty):
    """A BUY filled twice loses when the price falls, a SELL when it rises; the risk is never negative."""
    move, risk = money_at_risk(side, price, qty, now)
    assert risk >= 0 and risk == max(Decimal(0), -move)
    assert (move > 0) == ((now > price) if side == "BUY" else (now < price)) or move == 0


# --------------------------------------------------------------------------- deciding (four-eyes)

ROLES = {"olga": frozenset({"ops-manager"}), "rita": frozenset({"risk"}), "dave": frozenset({"duty-engineer"})}


def _open_record(notional: str) -> dict:
    return {"state": OPEN, "fills": [{"provider": "primary"}], "voided_at": "primary", "void_declared_by": "ann",
            "found_at": "t", "notional": Decimal(notional)}


def _decide(record, who, outcome=UNWOUND, reason="closed out", dual="10000"):
    return decide(record, order_id="o-1", identity=who, source="TRADEOPS_OPERATOR", outcome=outcome, reason=reason,
                  roles_of=ROLES, dual_above=Decimal(dual), at="2026-11-26T11:00:00.000Z")


def test_one_decision_settles_a_double_execution_at_or_below_the_notional():
    """At or below the dual-approval notional, one person with a deciding role settles it."""
    done = _decide(_open_record("10000"), "olga")
    assert done["state"] == UNWOUND and done["decided_by"] == ["olga"] and done["decision_reason"] == "closed out"


def test_above_the_notional_two_different_people_must_agree():
    """Above the notional the first decision waits; the same person again is refused; a second one settles it."""
    first = _decide(_open_record("10000.01"), "olga", outcome=WRITTEN_OFF, reason="market closed")
    assert first["state"] == OPEN and first["approvals_needed"] == 2
    with pytest.raises(Refused, match="one identity counts once"):
        _decide(first, "olga", outcome=WRITTEN_OFF)
    other_outcome = _decide(first, "rita", outcome=UNWOUND)
    assert other_outcome["state"] == OPEN, "a decision for another outcome does not count towards this one"
    done = _decide(first, "rita", outcome=WRITTEN_OFF, reason="agreed")
    assert done["state"] == WRITTEN_OFF and done["decided_by"] == ["olga", "rita"]


@pytest.mark.parametrize(("who", "outcome", "reason", "error", "message"), [
    ("dave", UNWOUND, "x", Refused, "approving needs one of ops-manager, risk"),
    ("nobody", UNWOUND, "x", Refused, "has no role"),
    ("olga", "forgotten", "x", BadInput, "outcome must be one of"),
    ("olga", UNWOUND, "  ", BadInput, "needs a reason"),
])
def test_a_decision_that_cannot_count_is_refused(who, outcome, reason, error, message):
    """No deciding role (Refused, exit 1), an unknown outcome or no reason (BadInput, exit 2): one line,
    nothing recorded."""
    with pytest.raises(error, match=message):
        _decide(_open_record("5"), who, outcome=outcome, reason=reason)


def test_a_decided_double_execution_cannot_be_decided_again():
    """Once unwound or written off, a further decision is refused naming who decided."""
    done = _decide(_open_record("5"), "olga")
    with pytest.raises(BadInput, match=r"already unwound \(by olga\)"):
        _decide(done, "rita")


# --------------------------------------------------------------------------- the store (moto over HTTP)


def test_annotate_records_facts_on_a_final_order_and_the_watch_index_finds_it(aws_settings):
    """A FILLED order takes facts without a state move (history entry, version check), and the sparse watch
    index lists exactly the orders carrying that watch value."""
    store = OrderStore(Aws(aws_settings))
    order, _ = store.create(new_order(OrderRequest(account_id="a", symbol="SYM1", side="BUY", quantity=1,
                                                   quote_price=Decimal("100"))))
    order = store.transition(order, "SUBMITTING", actor="t", set_fields={"provider": "secondary"})
    order = store.transition(order, "FILLED", actor="t", set_fields={"fill_price": Decimal("100.5")})
    noted = store.annotate(order, actor="worker-9", note="executed twice",
                           set_fields={"watch": "double:open", "double_execution": {"state": "open"}})
    assert noted["status"] == "FILLED" and noted["version"] == order["version"] + 1
    assert noted["history"][-1] == {"at": noted["history"][-1]["at"], "status": "FILLED", "actor": "worker-9",
                                    "provider": "secondary", "note": "executed twice"}
    assert order["order_id"] in {o["order_id"] for o in store.by_watch("double:open")}
    with pytest.raises(StaleOrder):
        store.annotate(order, actor="late", note="stale")
    with pytest.raises(ValueError, match="state moves only through transition"):
        store.annotate(noted, actor="x", note="y", set_fields={"status": "ACCEPTED"})
    cleared = store.annotate(noted, actor="worker-9", note="unwound", remove_fields=("watch",))
    assert "watch" not in cleared
    assert order["order_id"] not in {o["order_id"] for o in store.by_watch("double:open")}
