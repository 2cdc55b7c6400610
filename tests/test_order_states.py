"""The order state machine is data, and the orders table refuses any move it does not list."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.orderpath.states import (
    FINAL,
    PENDING,
    STATES,
    TRANSITIONS,
    IllegalTransition,
    check_transition,
)
from tradeops.runtime.platform.aws import Aws


def test_every_state_is_pending_or_final_and_has_a_row():
    """Pending and final split the states exactly, and the table has a row for every state."""
    assert PENDING | FINAL == set(STATES)
    assert not PENDING & FINAL
    assert set(TRANSITIONS) == set(STATES)
    assert all(targets <= set(STATES) for targets in TRANSITIONS.values())


def test_final_states_have_no_way_out():
    """Nothing moves an order out of FILLED, REJECTED, CANCELLED or DEAD_LETTERED."""
    for final in FINAL:
        for target in STATES:
            with pytest.raises(IllegalTransition):
                check_transition(final, target)


def test_a_sent_order_never_goes_back_without_a_claim():
    """ACCEPTED reaches FILLED, REJECTED or IN_DOUBT only through SUBMITTING (the write-ahead claim)."""
    for target in ("FILLED", "REJECTED", "IN_DOUBT"):
        with pytest.raises(IllegalTransition):
            check_transition("ACCEPTED", target)
    check_transition("ACCEPTED", "SUBMITTING")


def test_unknown_states_are_refused():
    """A misspelt state is an error, on either side of the move."""
    with pytest.raises(IllegalTransition):
        check_transition("ACCEPTED", "FILED")
    with pytest.raises(IllegalTransition):
        check_transition("WAITING", "SUBMITTING")


def test_the_store_refuses_a_move_not_in_the_table_and_writes_nothing(aws_settings):
    """OrderStore.transition raises IllegalTransition for ACCEPTED -> FILLED; the item is unchanged."""
    store = OrderStore(Aws(aws_settings))
    order, _ = store.create(new_order(OrderRequest(
        order_id=f"sm-{uuid.uuid4().hex[:10]}", account_id="acc-sm", symbol="SYM1", side="BUY", quantity=1,
        quote_price=Decimal("100"))))
    with pytest.raises(IllegalTransition):
        store.transition(order, "FILLED", actor="test", set_fields={"fill_price": Decimal("100")})
    assert store.require(order["order_id"]) == order
    moved = store.transition(order, "SUBMITTING", actor="test", set_fields={"provider": "primary"})
    assert moved["status"] == "SUBMITTING" and moved["version"] == order["version"] + 1
