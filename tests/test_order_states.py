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


def test_each_move_returns_exactly_the_item_the_table_holds(aws_settings):
    """The order a move returns (built locally, the write returning nothing) equals a consistent read of
    the item after it, for each kind of move: fields set and removed, attempts counted, facts annotated."""
    store = OrderStore(Aws(aws_settings))
    order, _ = store.create(new_order(OrderRequest(
        order_id=f"sm-{uuid.uuid4().hex[:10]}", account_id="acc-sm", symbol="SYM1", side="BUY", quantity=3,
        quote_price=Decimal("100.5"))))
    moves = [
        lambda o: store.transition(o, "SUBMITTING", actor="w1", set_fields={"provider": "primary",
                                   "lease_owner": "w1", "lease_until": 1234567890}, count_attempt=True),
        lambda o: store.transition(o, "IN_DOUBT", actor="w1", note="no answer",
                                   remove_fields=("lease_owner", "lease_until")),
        lambda o: store.transition(o, "ACCEPTED", actor="ops", note="void",
                                   set_fields={"void_declared": {"by": "ann", "at": "2026-11-26T00:00:00.000Z"}},
                                   remove_fields=("provider",)),
        lambda o: store.transition(o, "SUBMITTING", actor="w2", set_fields={"provider": "secondary"},
                                   count_attempt=True),
        lambda o: store.transition(o, "FILLED", actor="w2", set_fields={"fill_price": Decimal("101.25"),
                                   "filled_quantity": 3}),
        lambda o: store.annotate(o, actor="watch", note="checked", set_fields={"void_check": {"clean": True}}),
    ]
    for move in moves:
        order = move(order)
        assert order == store.require(order["order_id"])
    assert order["attempts"] == 2 and order["version"] == 7 and len(order["history"]) == 7
