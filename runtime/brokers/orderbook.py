"""The simulated broker's order book: prices, fills, deduplication and tombstones. No I/O.

Every rule a simulated broker applies to an order lives here, in plain synchronous code that
takes ``now`` from its caller; the wire formats (``wires``) only translate field names and
vocabulary, and the server (``sim``) only moves bytes and applies faults.

Rules:

- A MARKET order fills at once, in full, at the broker's current price for the symbol.
- A LIMIT order fills at the current price if marketable (BUY: price <= limit; SELL: price >=
  limit), otherwise it is REJECTED with a reason. Nothing rests on the book.
- An order id seen before returns the first result unchanged: never a second fill.
- Cancelling an order id the book does not hold records a CANCELLED tombstone, so that a late
  arrival of that id is refused rather than filled. That is what makes "cancel at X, then send
  to Y" safe when X may still receive the order.
- Prices: a seeded random walk per symbol (starting near 100, one step of -10..+10 pence each
  time the price is used), until the market-data feed sets a price; from then on the latest
  value set is the price used, so that fills agree with the feed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "CENT",
    "MAX_QUANTITY",
    "Book",
    "InvalidOrder",
    "OrderRecord",
    "SimOrder",
    "check_order_id",
    "make_order",
    "parse_money",
]

CENT = Decimal("0.01")
MAX_QUANTITY = 1_000_000
_ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,15}")
FILLED, REJECTED, CANCELLED = "FILLED", "REJECTED", "CANCELLED"


class InvalidOrder(ValueError):
    """The request is not a well-formed order; ``field`` is the canonical field name at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SimOrder:
    order_id: str
    symbol: str
    side: str  # BUY | SELL
    quantity: int
    order_type: str  # MARKET | LIMIT
    limit_price: Decimal | None
    account_ref: str


@dataclass(frozen=True)
class OrderRecord:
    """What the broker holds for one order id: its one and only outcome."""

    order_id: str
    state: str  # FILLED | REJECTED | CANCELLED
    at: datetime
    broker_ref: str | None = None
    price: Decimal | None = None
    filled_quantity: int = 0
    reason: str | None = None
    symbol: str | None = None  # None for a tombstone: the order itself never arrived
    side: str | None = None
    quantity: int | None = None


def check_order_id(value: Any) -> str:
    """Return ``value`` if it is a usable client order id, else raise InvalidOrder."""
    if not isinstance(value, str) or not _ORDER_ID.fullmatch(value):
        raise InvalidOrder("order_id", "must be 1-64 characters of letters, digits and . _ : -")
    return value


def parse_money(value: Any, field: str, *, exact_cents: bool) -> Decimal:
    """A positive amount from a JSON string or number (floats arrive as Decimal, never float)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidOrder(field, "must be a decimal number or a string holding one")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise InvalidOrder(field, f"{value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidOrder(field, "must be a positive number")
    if exact_cents and amount != amount.quantize(CENT):
        raise InvalidOrder(field, "must have at most 2 decimal places")
    return amount.quantize(CENT)


def make_order(
    *,
    order_id: Any,
    symbol: Any,
    side: str,
    quantity: Any,
    order_type: str,
    limit_price: Any,
    account_ref: Any,
) -> SimOrder:
    """Validate raw field values (vocabulary already mapped to BUY/SELL, MARKET/LIMIT)."""
    order_id = check_order_id(order_id)
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise InvalidOrder("symbol", "must be 1-16 upper-case letters, digits, '.' or '-'")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise InvalidOrder("quantity", "must be a positive whole number")
    if not isinstance(account_ref, str) or not 0 < len(account_ref) <= 64:
        raise InvalidOrder("account_ref", "must be a string of 1-64 characters")
    limit: Decimal | None = None
    if order_type == "LIMIT":
        if limit_price is None:
            raise InvalidOrder("limit_price", "is required for a limit order")
        limit = parse_money(limit_price, "limit_price", exact_cents=True)
    elif limit_price is not None:
        raise InvalidOrder("limit_price", "must be absent for a market order")
    return SimOrder(order_id, symbol, side, quantity, order_type, limit, account_ref)


class Book:
    """One broker's orders, fills, tombstones and prices.

    Not locked: the simulator calls it only from its single event-loop thread, and no method
    awaits, so each call is atomic with respect to every other request.
    """

    def __init__(self, name: str, seed: int, *, max_quantity: int = MAX_QUANTITY) -> None:
        self.name = name
        self.seed = seed
        self.max_quantity = max_quantity
        self._orders: dict[str, OrderRecord] = {}
        self._fills: list[OrderRecord] = []
        self._sequence = 0
        self._walks: dict[str, tuple[random.Random, Decimal]] = {}
        self._pinned: dict[str, Decimal] = {}

    # Prices -------------------------------------------------------------------------------

    def price(self, symbol: str) -> Decimal:
        """The price to deal at now; a walking price takes one step each time it is used."""
        if symbol in self._pinned:
            return self._pinned[symbol]
        walk = self._walks.get(symbol)
        if walk is None:
            # Seeded per symbol, so a symbol's path does not depend on which others were traded.
            rng = random.Random(f"{self.seed}:{symbol}")
            start = Decimal(10_000 + rng.randint(-500, 500)) * CENT
            walk = (rng, start)
        rng, current = walk
        current = max(CENT, current + rng.randint(-10, 10) * CENT)
        self._walks[symbol] = (rng, current)
        return current

    def set_prices(self, prices: Mapping[str, Any]) -> int:
        """Pin prices from the feed (all or nothing); returns how many were set."""
        parsed: dict[str, Decimal] = {}
        for symbol, value in prices.items():
            if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
                raise InvalidOrder("symbol", f"{symbol!r} is not a valid symbol")
            parsed[symbol] = parse_money(value, f"prices.{symbol}", exact_cents=False)
        self._pinned.update(parsed)
        return len(parsed)

    def prices(self) -> dict[str, str]:
        """The last price of every symbol seen, pinned prices winning over walks."""
        current = {symbol: str(walk[1]) for symbol, walk in self._walks.items()}
        current.update({symbol: str(price) for symbol, price in self._pinned.items()})
        return dict(sorted(current.items()))

    # Orders -------------------------------------------------------------------------------

    def submit(self, order: SimOrder, now: datetime) -> tuple[OrderRecord, bool]:
        """Deal with an order once; returns its record and whether this call created it."""
        held = self._orders.get(order.order_id)
        if held is not None:
            return held, False
        self._sequence += 1
        ref = f"{self.name}-{self._sequence:07d}"
        def record_of(state: str, **outcome: Any) -> OrderRecord:
            return OrderRecord(order_id=order.order_id, at=now, broker_ref=ref, symbol=order.symbol,
                               side=order.side, quantity=order.quantity, state=state, **outcome)

        if order.quantity > self.max_quantity:
            record = record_of(REJECTED, reason=f"quantity exceeds the maximum of {self.max_quantity}")
        else:
            price = self.price(order.symbol)
            limit = order.limit_price
            if limit is not None and (price > limit if order.side == "BUY" else price < limit):
                record = record_of(REJECTED, reason=f"limit {limit} not marketable at {price}")
            else:
                record = record_of(FILLED, price=price, filled_quantity=order.quantity)
                self._fills.append(record)
        self._orders[order.order_id] = record
        return record, True

    def status(self, order_id: str) -> OrderRecord | None:
        """The record held for ``order_id``, or None if the broker never saw it."""
        return self._orders.get(order_id)

    def cancel(self, order_id: str, now: datetime) -> OrderRecord:
        """Cancel ``order_id``: a held order is returned as it is (nothing rests, so a filled or
        rejected order stays so); an unknown id becomes a CANCELLED tombstone."""
        held = self._orders.get(order_id)
        if held is not None:
            return held
        tombstone = OrderRecord(order_id=order_id, state=CANCELLED, at=now,
                                reason="cancelled before arrival; a later submission is refused")
        self._orders[order_id] = tombstone
        return tombstone

    def fills(self) -> list[dict[str, Any]]:
        """Every fill made since the last reset, oldest first (the reconciliation ground truth)."""
        return [
            {"order_id": f.order_id, "price": str(f.price), "quantity": f.filled_quantity,
             "symbol": f.symbol, "side": f.side, "provider": self.name, "broker_ref": f.broker_ref,
             "filled_at": f.at.isoformat()}
            for f in self._fills
        ]

    def reset(self) -> None:
        """Forget orders, fills and tombstones (prices are the feed's, and are kept)."""
        self._orders.clear()
        self._fills.clear()
