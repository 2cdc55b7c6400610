"""A pending order and its exposure: what the exposure book takes and gives. Pure, no I/O.

The book (:mod:`.exposurebook`) takes a :class:`PendingOrder` (validated here, once, so the book
can trust it), and gives back an :class:`OrderExposure` per order and :class:`UnknownPrices` for
the orders it cannot value at a current price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tradeops.runtime.liability.arithmetic import (
    PRICE,
    QUANTITY,
    adverse_pct,
    checked_side,
    micros,
    number,
    round_exposure,
)
from tradeops.runtime.platform.errors import BadInput

__all__ = ["OrderExposure", "PendingOrder", "UnknownPrices"]

_ZERO = Decimal(0)


@dataclass(frozen=True)
class PendingOrder:
    """A pending customer order as the monitor sees it (its state in tradeops.runtime.orderpath.states.PENDING)."""

    order_id: str
    symbol: str
    side: str
    quantity: int | Decimal
    quote_price: Decimal
    placed_at: datetime
    synthetic: bool = False  # canary orders are never customer exposure; the book ignores them

    def __post_init__(self) -> None:
        for name in ("order_id", "symbol"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise BadInput(f"{name} must be a non-empty string, got {value!r}")
        checked_side(self.side)
        number("quantity", self.quantity, positive=True, bounds=QUANTITY)
        number("quote_price", self.quote_price, positive=True, bounds=PRICE)
        micros(self.placed_at, "placed_at")


@dataclass(frozen=True)
class OrderExposure:
    """One pending order's exposure: exact current value at ``price`` (tick time ``at``) and maximum.

    ``price`` and ``at`` are None while the order has not yet been evaluated: the book evaluates an
    order only against ticks at or after it was placed (:mod:`.exposurebook`).
    """

    order_id: str
    symbol: str
    side: str
    quantity: int | Decimal
    quote_price: Decimal
    placed_at: datetime
    price: Decimal | None
    at: datetime | None
    exposure: Decimal
    max_exposure: Decimal

    @property
    def adverse_pct(self) -> Decimal:
        """Current adverse move in percent (computed on access: the division is the costly part)."""
        return _ZERO if self.price is None else adverse_pct(self.side, self.quote_price, self.price)


@dataclass(frozen=True)
class UnknownPrices:
    """Pending orders of one kind the book cannot value at a current price (unpriced, or stale).

    ``notional`` is the exact sum of quote x quantity (GBP): what the orders are worth at the price the
    customers were shown, the scale of what is unknown. ``oldest`` is the longest wait among them.
    """

    orders: int = 0
    oldest: timedelta | None = None
    notional: Decimal = Decimal(0)

    def as_json(self) -> dict[str, Any]:
        return {"orders": self.orders, "notional": str(round_exposure(self.notional)),
                "oldest_seconds": None if self.oldest is None else round(self.oldest.total_seconds(), 3)}
