"""What the worker sends a broker: only what execution needs."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.orderpath.worker import account_ref, broker_order


def _order(account_id: str) -> dict:
    return {"order_id": "o-1", "account_id": account_id, "symbol": "SYM1", "side": "BUY", "quantity": 3,
            "order_type": "LIMIT", "limit_price": Decimal("101.5"), "quote_price": Decimal("100")}


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=40))
def test_broker_order_carries_an_opaque_account_reference(account_id):
    """The broker sees a stable hash of the account, never the account id itself."""
    sent = broker_order(_order(account_id), "salt")
    assert account_id not in sent.account_ref
    assert sent.account_ref == account_ref(account_id, "salt") == broker_order(_order(account_id), "salt").account_ref
    assert account_ref(account_id, "other-salt") != sent.account_ref


def test_broker_order_has_only_execution_fields():
    """Quote price, placement time and customer fields are not part of what a broker receives."""
    sent = broker_order(_order("cust-42"), "salt")
    assert set(vars(sent)) == {"order_id", "symbol", "side", "quantity", "order_type", "limit_price", "account_ref"}
    assert sent.limit_price == Decimal("101.5")
