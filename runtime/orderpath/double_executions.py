"""Double executions after a void: what a broker's answer about a voided order means. Pure, no I/O.

Declaring a broker's in-flight orders void (:func:`.inflight.void_in_flight`) is an operator
accepting that the broker will never fill them, so they may go to the other broker. If the broker
did fill one after all (it answered too late, then went down), the firm now holds the order twice.
Each voided order stays under watch at the broker it was voided at; once that broker answers
again, the void watch (:mod:`.voids`) asks it about the order and :func:`classify` says what it means:

- ``pending``: the order is not final yet (it may still go back to that broker, which would
  simply return its first result): ask again later;
- ``clean``: the broker holds no fill for it (not found, cancelled, rejected), or the fill it
  holds is the order's own recorded fill;
- ``double``: the broker holds a fill the order's record does not: a double execution.

Why facts on the order rather than a new order state: for the customer the order *is* filled
(or rejected) exactly as its record says, and everything downstream (the ledger, exposure, the
state machine's FINAL group) must keep treating it so. The double execution is the firm's
problem, with its own lifecycle, so it is recorded beside the state as ``double_execution``::

    open ──unwind──▶ unwound        (the extra position was closed out)
         └─write off─▶ written_off  (accepted as a loss)

``tradeops orders unwind`` records that decision (four-eyes above a notional:
``tradeops.runbooks.unwind``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from tradeops.runtime.orderpath.states import FILLED, PENDING

__all__ = [
    "DECISIONS",
    "OPEN",
    "UNWOUND",
    "WATCH_OPEN",
    "WATCH_VOID",
    "WRITTEN_OFF",
    "BrokerAnswer",
    "classify",
    "double_record",
    "money_at_risk",
    "notional",
    "watch_of",
]

OPEN: Final = "open"
UNWOUND: Final = "unwound"
WRITTEN_OFF: Final = "written_off"
DECISIONS: Final[tuple[str, ...]] = (UNWOUND, WRITTEN_OFF)

WATCH_VOID: Final = "void"
"""The ``watch`` value of an order declared void and not yet checked at that broker."""
WATCH_OPEN: Final = "double:open"

Outcome = Literal["pending", "clean", "double"]


def watch_of(state: str) -> str:
    """The ``watch`` index value of a double execution in ``state`` (open, unwound, written_off)."""
    return f"double:{state}"


@dataclass(frozen=True)
class BrokerAnswer:
    """What a broker says it holds for an order: its status and, for a fill, the fill."""

    provider: str
    status: str  # FILLED | REJECTED | CANCELLED
    price: Decimal | None = None
    quantity: int = 0
    at: str | None = None  # ISO 8601, UTC
    broker_ref: str | None = None


def classify(order: Mapping[str, Any], answer: BrokerAnswer | None) -> Outcome:
    """What ``answer`` (None: the broker does not hold the order) from the voided-at broker means."""
    if order.get("status") in PENDING:
        return "pending"
    if answer is None or answer.status != FILLED:
        return "clean"
    own = (order.get("status") == FILLED and order.get("provider") == answer.provider
           and order.get("broker_ref") == answer.broker_ref)
    return "clean" if own else "double"


def _fill(provider: Any, price: Any, quantity: Any, at: Any, broker_ref: Any, *, recorded: bool) -> dict[str, Any]:
    return {"provider": provider, "price": price, "quantity": quantity, "at": at, "broker_ref": broker_ref,
            "recorded": recorded}


def double_record(order: Mapping[str, Any], answer: BrokerAnswer, *, found_at: str, found_by: str) -> dict[str, Any]:
    """The ``double_execution`` facts of ``order``: both fills (the recorded one first), the void, the notional."""
    void = dict(order.get("void_declared") or {})
    fills = []
    if order.get("status") == FILLED:
        fills.append(_fill(order.get("provider"), order.get("fill_price"), order.get("filled_quantity"),
                           order.get("filled_at"), order.get("broker_ref"), recorded=True))
    fills.append(_fill(answer.provider, answer.price, answer.quantity, answer.at, answer.broker_ref,
                       recorded=False))
    return {
        "state": OPEN,
        "voided_at": answer.provider,
        "void_declared_by": void.get("by"),
        "void_reason": void.get("reason"),
        "void_declared_at": void.get("at"),
        "fills": fills,
        "notional": notional(answer.price, answer.quantity),
        "found_at": found_at,
        "found_by": found_by,
    }


def notional(price: Decimal | None, quantity: int | Decimal) -> Decimal:
    """Price x quantity of the fill the record does not hold (GBP, exact)."""
    return Decimal(0) if price is None else Decimal(price) * Decimal(quantity)


def money_at_risk(side: str, price: Decimal, quantity: int | Decimal, now_price: Decimal) -> tuple[Decimal, Decimal]:
    """(price move since the extra fill, money at risk), both GBP over the extra fill's quantity.

    The extra fill left the firm holding the customer's side of the trade: a BUY filled twice is
    one lot too many bought at ``price``, which loses when the price falls; a SELL the opposite.
    ``move`` is signed in the firm's favour; ``at_risk`` is the loss part of it, never negative.
    """
    qty = Decimal(quantity)
    move = (now_price - price) * qty if side == "BUY" else (price - now_price) * qty
    return move, max(Decimal(0), -move)
