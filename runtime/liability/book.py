"""What waiting costs customers: divergence exposure, its book, its thresholds, its ticks. Pure, no I/O.

While an order waits (a broker outage, a paused queue) the market moves away from the price the
customer was shown (``quote_price``). For every pending customer order (status ACCEPTED,
SUBMITTING or IN_DOUBT, never ``synthetic``) this module computes, at a price:

- **exposure** (GBP) = (price - quote) x quantity for a BUY when price > quote;
  (quote - price) x quantity for a SELL when price < quote; 0 otherwise. Never negative.
- **adverse move** (percent) = that adverse difference / quote x 100; 0 when not adverse.

Rounding rule
    Amounts are computed exactly in Decimal and rounded to the penny only when they are stored or
    reported: exposure with ROUND_HALF_UP (:func:`round_exposure`), reimbursements with ROUND_UP,
    in the customer's favour (:mod:`tradeops.runtime.liability.reimbursement`). Totals are sums of exact values, so a
    reported total is the rounded exact total, not a sum of rounded parts. Thresholds compare exact
    values. A percentage is a division and cannot always be exact: it is correctly rounded to 28
    significant digits (and to 4 decimal places in :meth:`ExposureBook.snapshot`).

Orders the book cannot price
    An order whose symbol has never ticked has no exposure the book can know: it is *unpriced*, and
    reported as such (count, oldest wait, notional at its quote), never as an exposure of 0. An order
    whose symbol's latest tick is older than a staleness limit is valued at that old price and also
    reported *stale* (:meth:`ExposureBook.unknown_prices`); thresholds on the notional of either
    alert like the exposure thresholds (:class:`LiabilityWatch`).

Current and maximum exposure
    An order's *current* exposure is its exposure at the latest tick of its symbol; the book's
    total is the sum of current exposures, so it falls again when the market comes back. Its
    *max_exposure* is the largest current exposure it has had while pending (monotone; the I/O
    layer stores it in the exposure table). An order is evaluated only against ticks at or after
    its ``placed_at``: a price older than the quote is not a move away from it, so an order has
    exposure 0 until its symbol ticks at or after the moment it was placed (or, when added late,
    is evaluated at once against the symbol's latest tick if that tick is not older than it).
    ``max_divergence_pct`` is the largest *current* adverse move over pending orders.
"""

from __future__ import annotations

import heapq
import json
from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import TYPE_CHECKING, Any

from tradeops.runtime.platform.errors import BadInput

if TYPE_CHECKING:  # only for annotations: the pure core does not need pydantic at run time
    from tradeops.runtime.platform.settings import Settings

__all__ = [
    "BREACH",
    "BUY",
    "MAX_PRICE_PLACES",
    "MAX_QUANTITY_PLACES",
    "RECOVERY",
    "SELL",
    "Alert",
    "BadTick",
    "ExposureBook",
    "KeyedThresholdWatch",
    "LiabilityWatch",
    "OrderExposure",
    "PendingOrder",
    "ThresholdWatch",
    "Tick",
    "TickResult",
    "UnknownPrices",
    "adverse_exposure",
    "adverse_pct",
    "parse_tick",
    "round_exposure",
]

BUY = "BUY"
SELL = "SELL"
_SIDES = frozenset({BUY, SELL})

BREACH = "breach"
RECOVERY = "recovery"

MAX_PRICE_PLACES = 12
"""Most decimal places a price or quote may carry (beyond it, a feed is sending nonsense)."""
MAX_QUANTITY_PLACES = 8
# Magnitude bounds (powers of ten) keep the book's integers small and refuse absurd input.
_MAX_PRICE_ADJUSTED = 9  # prices below 10**10 GBP
_MAX_QUANTITY_ADJUSTED = 11  # quantities below 10**12

_ZERO = Decimal(0)
_PENNY = Decimal("0.01")
_PCT_PLACES = Decimal("0.0001")
# 80 digits is far beyond any bounded input here; the Inexact trap turns "impossible" rounding
# into an error instead of a silently wrong amount.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
# Percentages: one correctly rounded division, independent of the caller's decimal context.
_PCT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class BadTick(BadInput):
    """A price tick is malformed; ``reason`` says how. The tick is dropped, nothing changes."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad tick: {reason}")
        self.reason = reason


# --------------------------------------------------------------------------------------- arithmetic


def _side(side: object) -> str:
    if not isinstance(side, str) or side not in _SIDES:
        raise BadInput(f"side must be BUY or SELL, got {side!r}")
    return side


def _positive(name: str, value: object, error: type[BadInput] = BadInput) -> Decimal:
    """A positive finite Decimal from a Decimal or int; floats are refused (money is Decimal)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise error(f"{name} must be a Decimal or int, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite() or number <= 0:
        raise error(f"{name} must be a positive finite number, got {value}")
    return number


def _adverse_diff(side: str, quote: Decimal, price: Decimal) -> Decimal:
    try:
        return _EXACT.subtract(price, quote) if side == BUY else _EXACT.subtract(quote, price)
    except Inexact:
        raise BadInput("price or quote has too many digits for exact arithmetic") from None


def adverse_exposure(side: str, quote: Decimal, price: Decimal, quantity: int | Decimal) -> Decimal:
    """Exact (unrounded) GBP cost to the customer of ``price`` versus ``quote``; never negative."""
    side = _side(side)
    diff = _adverse_diff(side, _positive("quote", quote), _positive("price", price))
    if diff <= 0:
        return _ZERO
    try:
        return _EXACT.multiply(diff, _positive("quantity", quantity))
    except Inexact:
        raise BadInput("quantity has too many digits for exact arithmetic") from None


def adverse_pct(side: str, quote: Decimal, price: Decimal) -> Decimal:
    """Adverse move of ``price`` from ``quote`` in percent of the quote; 0 when not adverse."""
    side = _side(side)
    quote = _positive("quote", quote)
    diff = _adverse_diff(side, quote, _positive("price", price))
    if diff <= 0:
        return _ZERO
    return _PCT.divide(_EXACT.multiply(diff, 100), quote)


def round_exposure(amount: Decimal) -> Decimal:
    """An exact exposure rounded to the penny, half up: the form it is stored and reported in."""
    return amount.quantize(_PENNY, rounding=ROUND_HALF_UP)


def _places(number: Decimal) -> int:
    """Decimal places ``number`` really needs (trailing zeros do not count)."""
    _sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing += 1
    return max(0, -exponent - trailing)


def _scaled(number: Decimal, places: int) -> int | None:
    """``number`` x 10**places as an int, or None when that is not a whole number."""
    shifted = number.scaleb(places, _EXACT)
    whole = int(shifted)
    return whole if whole == shifted else None


def _unscaled(value: int, places: int) -> Decimal:
    return Decimal(value).scaleb(-places, _EXACT) if value else _ZERO


def _utc(moment: object, what: str, error: type[BadInput] = BadInput) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise error(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _micros(moment: object, what: str, error: type[BadInput] = BadInput) -> int:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise error(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


# --------------------------------------------------------------------------------------- the book


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
        _side(self.side)
        quantity = _positive("quantity", self.quantity)
        if quantity.adjusted() > _MAX_QUANTITY_ADJUSTED or _places(quantity) > MAX_QUANTITY_PLACES:
            raise BadInput(f"quantity is out of range or has more than {MAX_QUANTITY_PLACES} places: {quantity}")
        quote = _positive("quote_price", self.quote_price)
        if quote.adjusted() > _MAX_PRICE_ADJUSTED or _places(quote) > MAX_PRICE_PLACES:
            raise BadInput(f"quote_price is out of range or has more than {MAX_PRICE_PLACES} places: {quote}")
        _micros(self.placed_at, "placed_at")


@dataclass(frozen=True)
class OrderExposure:
    """One pending order's exposure: exact current value at ``price`` (tick time ``at``) and maximum.

    ``price`` and ``at`` are None while the order has not yet been evaluated (see module docstring).
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


class _Entry:
    """Book-internal state of one order; prices and quantities as scaled integers (see ExposureBook)."""

    __slots__ = ("active", "cur", "order", "peak", "placed_us", "q", "qty", "sent_cur", "sent_peak", "seq")

    def __init__(self, order: PendingOrder, q: int, qty: int, placed_us: int, seq: int) -> None:
        self.order = order
        self.q = q
        self.qty = qty
        self.placed_us = placed_us
        self.seq = seq
        self.cur = 0
        self.peak = 0
        self.sent_cur = 0  # values last handed out by take_changes()
        self.sent_peak = 0
        self.active = False


class _Symbol:
    """One symbol's orders, each side sorted from most to least adverse quote.

    BUYs ascend by quote and SELLs descend, so the orders exposed at price p are a prefix of each
    list (BUY: quote < p; SELL: quote > p), found by bisecting a parallel list of int keys (the
    quote for BUYs, minus the quote for SELLs). ``exposed_buys``/``exposed_sells`` are those prefix
    lengths at ``price``. Invariant: every order in the lists holds its exposure at ``price``.
    The first order of each list also decides the symbol's largest adverse move, since
    (p - q)/q falls as a BUY quote rises and (q - p)/q rises with a SELL quote.
    """

    __slots__ = (
        "at",
        "buy_keys",
        "buy_total",
        "buys",
        "exposed_buys",
        "exposed_sells",
        "name",
        "pct",
        "price",
        "price_dec",
        "sell_keys",
        "sell_total",
        "sells",
        "version",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.buys: list[_Entry] = []
        self.buy_keys: list[int] = []
        self.sells: list[_Entry] = []
        self.sell_keys: list[int] = []
        self.exposed_buys = 0
        self.exposed_sells = 0
        self.buy_total = 0  # sum of current exposure per side
        self.sell_total = 0
        self.waiting: dict[str, _Entry] = {}  # placed after the latest tick: exposure 0 until the next
        self.price: int | None = None
        self.price_dec: Decimal | None = None
        self.at: datetime | None = None  # in UTC, so that comparing tick times is cheap
        self.pct = _ZERO
        self.version = 0

    def recount(self) -> None:
        if self.price is not None:
            self.exposed_buys = bisect_left(self.buy_keys, self.price)
            self.exposed_sells = bisect_left(self.sell_keys, -self.price)


def _materialise(
    entry: _Entry, price: Decimal | None, at: datetime | None, cur: int, peak: int, places: int
) -> OrderExposure:
    order = entry.order
    return OrderExposure(
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        quote_price=order.quote_price,
        placed_at=order.placed_at,
        price=price,
        at=at,
        exposure=_unscaled(cur, places),
        max_exposure=_unscaled(peak, places),
    )


class TickResult:
    """What one tick did: the orders whose current exposure changed, and the book's new totals.

    ``max_divergence_pct`` is not here: it costs a division per symbol, so the book computes it
    on demand (:meth:`ExposureBook.max_divergence_pct`) for the symbols that ticked since.

    ``changed`` is built on first access (the evaluation itself keeps raw integers), so a caller
    that only needs the totals does not pay for it. Treat every attribute as read-only.
    ``stale`` is True when the tick was older than the symbol's latest and was ignored.
    """

    __slots__ = (
        "_changed",
        "_places",
        "_raw",
        "_total",
        "at",
        "exposed",
        "pending",
        "price",
        "stale",
        "symbol",
    )

    def __init__(
        self,
        symbol: str,
        price: Decimal,
        at: datetime,
        stale: bool,
        raw: list[tuple[_Entry, int, int]],
        places: int,
        total: int,
        pending: int,
        exposed: int,
    ) -> None:
        self.symbol = symbol
        self.price = price
        self.at = at
        self.stale = stale
        self.pending = pending
        self.exposed = exposed
        self._raw = raw
        self._places = places
        self._total = total
        self._changed: tuple[OrderExposure, ...] | None = None

    @property
    def total_exposure(self) -> Decimal:
        """Exact sum of the current exposures of all pending orders after this tick."""
        return _unscaled(self._total, self._places)

    @property
    def changed_count(self) -> int:
        return len(self._raw)

    @property
    def changed(self) -> tuple[OrderExposure, ...]:
        """Orders whose current exposure changed (the only ones the I/O layer needs to write)."""
        if self._changed is None:
            self._changed = tuple(
                _materialise(entry, self.price, self.at, cur, peak, self._places) for entry, cur, peak in self._raw
            )
        return self._changed

    def __repr__(self) -> str:
        return (
            f"TickResult(symbol={self.symbol!r}, price={self.price}, stale={self.stale}, "
            f"changed={len(self._raw)}, total_exposure={self.total_exposure})"
        )


class ExposureBook:
    """Pending orders indexed by symbol; per-order current and maximum exposure; running totals.

    Costs: ``on_tick`` O(exposed orders in that symbol, before or after the tick) — at most the
    orders in that symbol, never the whole book; ``add`` and ``remove`` O(log n + orders in that
    symbol) (a sorted insert); ``total_exposure``, ``len`` O(1); ``max_divergence_pct`` and
    ``oldest_pending`` O(log) amortised (lazy heaps); ``worst`` O(n).

    Why integers: Decimal arithmetic per order per tick is too slow for the feed. Prices are held
    as ints in units of 10**-P GBP and quantities in units of 10**-Q, so exposure is an int in
    units of 10**-(P+Q): exact, and converted back to Decimal only when read. P and Q start at
    ``price_places``/``quantity_places`` and grow (rescaling every stored value once) when a
    price or quantity needs more places. The tests prove equality with :func:`adverse_exposure`.
    """

    def __init__(self, *, price_places: int = 4, quantity_places: int = 0) -> None:
        if not 0 <= price_places <= MAX_PRICE_PLACES or not 0 <= quantity_places <= MAX_QUANTITY_PLACES:
            raise BadInput("price_places or quantity_places out of range")
        self._pp = price_places
        self._qp = quantity_places
        self._qfactor: int = 10**quantity_places
        self._entries: dict[str, _Entry] = {}
        self._symbols: dict[str, _Symbol] = {}
        self._total = 0
        self._exposed = 0
        self._seq = 0
        self._oldest: list[tuple[int, int, str]] = []  # (placed_us, seq, order_id); stale rows skipped
        self._pct_heap: list[tuple[Decimal, int, str]] = []  # (-pct, symbol version, symbol)
        self._pct_dirty: set[str] = set()  # symbols whose largest move may have changed
        self._dirty: set[str] = set()  # symbols with exposure changes not yet taken by take_changes()

    # -- scaled integers

    def _price_int(self, price: Decimal, what: str, error: type[BadInput]) -> int:
        if price.adjusted() > _MAX_PRICE_ADJUSTED:  # before scaling: 1E+999999 would be a huge int
            raise error(f"{what} is out of range: {price}")
        whole = _scaled(price, self._pp)
        if whole is None:
            places = _places(price)
            if places > MAX_PRICE_PLACES:
                raise error(f"{what} has more than {MAX_PRICE_PLACES} decimal places: {price}")
            self._rescale(places, self._qp)
            whole = _scaled(price, self._pp)
            assert whole is not None
        return whole

    def _qty_int(self, quantity: int | Decimal) -> int:
        if isinstance(quantity, int) and not isinstance(quantity, bool):
            return quantity * self._qfactor
        number = Decimal(quantity)
        whole = _scaled(number, self._qp)
        if whole is None:
            places = _places(number)
            if places > MAX_QUANTITY_PLACES:
                raise BadInput(f"quantity has more than {MAX_QUANTITY_PLACES} decimal places: {quantity}")
            self._rescale(self._pp, places)
            whole = _scaled(number, self._qp)
            assert whole is not None
        return whole

    def _rescale(self, price_places: int, quantity_places: int) -> None:
        """Move every stored integer to finer units; rare (places only grow) and O(n)."""
        fp = 10 ** (price_places - self._pp)
        fq = 10 ** (quantity_places - self._qp)
        fe = fp * fq
        for entry in self._entries.values():
            entry.q *= fp
            entry.qty *= fq
            entry.cur *= fe
            entry.peak *= fe
            entry.sent_cur *= fe
            entry.sent_peak *= fe
        for sym in self._symbols.values():
            if sym.price is not None:
                sym.price *= fp
            sym.buy_keys = [key * fp for key in sym.buy_keys]  # order, hence the prefix counts, unchanged
            sym.sell_keys = [key * fp for key in sym.sell_keys]
            sym.buy_total *= fe
            sym.sell_total *= fe
        self._total *= fe
        self._pp, self._qp = price_places, quantity_places
        self._qfactor = 10**quantity_places

    @property
    def _places_total(self) -> int:
        return self._pp + self._qp

    # -- membership

    def _symbol(self, name: str) -> _Symbol:
        sym = self._symbols.get(name)
        if sym is None:
            sym = self._symbols[name] = _Symbol(name)
        return sym

    def add(self, order: PendingOrder) -> None:
        """Start tracking a pending order. Idempotent on ``order_id``; synthetic orders are ignored."""
        if not isinstance(order, PendingOrder):
            raise BadInput(f"expected a PendingOrder, got {type(order).__name__}")
        if order.synthetic:
            return
        known = self._entries.get(order.order_id)
        if known is not None:
            if known.order != order:
                raise BadInput(f"order {order.order_id} is already pending with different details")
            return
        q = self._price_int(order.quote_price, "quote_price", BadInput)
        qty = self._qty_int(order.quantity)  # may refine quantity units; q (price units) stays valid
        placed_us = _micros(order.placed_at, "placed_at")  # validated by PendingOrder; an int for the heap
        self._seq += 1
        entry = _Entry(order, q, qty, placed_us, self._seq)
        self._entries[order.order_id] = entry
        heapq.heappush(self._oldest, (placed_us, entry.seq, order.order_id))
        self._compact_oldest()
        sym = self._symbol(order.symbol)
        if sym.at is not None and sym.at >= order.placed_at:
            if self._insert(sym, entry) is not None:
                self._dirty.add(sym.name)
                self._pct_dirty.add(sym.name)
        else:
            sym.waiting[order.order_id] = entry

    def remove(self, order_id: str) -> None:
        """Stop tracking an order that left pending (filled, rejected, cancelled...). Idempotent."""
        entry = self._entries.pop(order_id, None)
        if entry is None:
            return
        self._compact_oldest()
        sym = self._symbols[entry.order.symbol]
        if not entry.active:
            del sym.waiting[order_id]
            return
        if entry.cur:
            self._total -= entry.cur
            self._exposed -= 1
        if entry.order.side == BUY:
            entries, keys, key = sym.buys, sym.buy_keys, entry.q
            sym.buy_total -= entry.cur
        else:
            entries, keys, key = sym.sells, sym.sell_keys, -entry.q
            sym.sell_total -= entry.cur
        i = bisect_left(keys, key)
        while entries[i] is not entry:  # past other orders with the same quote
            i += 1
        del entries[i], keys[i]
        sym.recount()
        self._pct_dirty.add(sym.name)

    def _insert(self, sym: _Symbol, entry: _Entry) -> tuple[_Entry, int, int] | None:
        """Place an order in its side's sorted list and evaluate it at the symbol's latest price.

        Returns the change (entry, exposure, max) when that makes it exposed, else None.
        """
        p = sym.price
        assert p is not None
        entry.active = True
        if entry.order.side == BUY:
            i = bisect_right(sym.buy_keys, entry.q)
            sym.buy_keys.insert(i, entry.q)
            sym.buys.insert(i, entry)
            diff = p - entry.q
        else:
            i = bisect_right(sym.sell_keys, -entry.q)
            sym.sell_keys.insert(i, -entry.q)
            sym.sells.insert(i, entry)
            diff = entry.q - p
        sym.recount()
        if diff <= 0:
            return None
        value = diff * entry.qty
        if entry.order.side == BUY:
            sym.buy_total += value
        else:
            sym.sell_total += value
        entry.cur = value
        entry.peak = max(entry.peak, value)
        self._total += value
        self._exposed += 1
        return entry, value, entry.peak

    def _refresh_pct(self, sym: _Symbol) -> None:
        p = sym.price
        pct = _ZERO
        if p is not None:
            if sym.exposed_buys:
                lowest_buy = sym.buy_keys[0]
                pct = _PCT.divide((p - lowest_buy) * 100, lowest_buy)
            if sym.exposed_sells:
                highest_sell = -sym.sell_keys[0]
                pct = max(pct, _PCT.divide((highest_sell - p) * 100, highest_sell))
        if pct != sym.pct:
            sym.pct = pct
            sym.version += 1
            if pct:
                heapq.heappush(self._pct_heap, (-pct, sym.version, sym.name))
                if len(self._pct_heap) > 2 * len(self._symbols) + 64:
                    self._pct_heap = [(-s.pct, s.version, s.name) for s in self._symbols.values() if s.pct]
                    heapq.heapify(self._pct_heap)

    def _compact_oldest(self) -> None:
        # Removed orders stay in the heap until they reach its top; rebuild before they dominate it.
        if len(self._oldest) > 2 * len(self._entries) + 64:
            self._oldest = [(e.placed_us, e.seq, oid) for oid, e in self._entries.items()]
            heapq.heapify(self._oldest)

    # -- ticks

    def on_tick(self, symbol: str, price: Decimal, at: datetime) -> TickResult:
        """Re-evaluate the orders of ``symbol`` at ``price``; at most O(orders in that symbol).

        A tick older than the symbol's latest is ignored (``stale``): feeds replay and reorder.
        Symbols are remembered with their latest price, so filter ticks against the symbol
        universe first (``parse_tick(raw, known_symbols)``).
        """
        if type(price) is not Decimal:
            price = _positive("price", price, BadTick)
        elif not price.is_finite() or price <= 0:
            raise BadTick(f"price must be a positive finite number, got {price}")
        if type(at) is not datetime or at.tzinfo is not UTC:
            at = _utc(at, "tick time", BadTick)
        sym = self._symbols.get(symbol)
        if sym is None:
            sym = self._symbol(symbol)
        elif sym.at is not None and at < sym.at:
            return self._result(symbol, price, at, True, [])
        p = self._price_int(price, "price", BadTick)
        changed: list[tuple[_Entry, int, int]] = []
        if p != sym.price:
            # Every order in the exposed prefix at the new price changes (the price moved and its
            # quantity is positive); so does every order that was exposed and no longer is; the
            # rest stay at 0. So the work is the exposed orders only, with no comparisons.
            append = changed.append
            delta = 0
            if sym.buys:
                was = sym.exposed_buys
                now = sym.exposed_buys = bisect_left(sym.buy_keys, p)
                side_total = 0
                for entry in sym.buys[:now]:
                    value = (p - entry.q) * entry.qty
                    side_total += value
                    entry.cur = value
                    peak = entry.peak
                    if value > peak:
                        entry.peak = peak = value
                    append((entry, value, peak))
                if was > now:
                    for entry in sym.buys[now:was]:
                        entry.cur = 0
                        append((entry, 0, entry.peak))
                delta += side_total - sym.buy_total
                sym.buy_total = side_total
                self._exposed += now - was
            if sym.sells:
                was = sym.exposed_sells
                now = sym.exposed_sells = bisect_left(sym.sell_keys, -p)
                side_total = 0
                for entry in sym.sells[:now]:
                    value = (entry.q - p) * entry.qty
                    side_total += value
                    entry.cur = value
                    peak = entry.peak
                    if value > peak:
                        entry.peak = peak = value
                    append((entry, value, peak))
                if was > now:
                    for entry in sym.sells[now:was]:
                        entry.cur = 0
                        append((entry, 0, entry.peak))
                delta += side_total - sym.sell_total
                sym.sell_total = side_total
                self._exposed += now - was
            self._total += delta
            sym.price = p
        sym.price_dec, sym.at = price, at
        if sym.waiting:
            at_us = _micros(at, "tick time")
            for oid, entry in list(sym.waiting.items()):
                if entry.placed_us <= at_us:
                    del sym.waiting[oid]
                    change = self._insert(sym, entry)
                    if change is not None:
                        changed.append(change)
        if changed:
            self._dirty.add(symbol)
            self._pct_dirty.add(symbol)
        return self._result(symbol, price, at, False, changed)

    def _result(
        self, symbol: str, price: Decimal, at: datetime, stale: bool, raw: list[tuple[_Entry, int, int]]
    ) -> TickResult:
        return TickResult(
            symbol,
            price,
            at,
            stale,
            raw,
            self._places_total,
            self._total,
            len(self._entries),
            self._exposed,
        )

    # -- reading

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._entries

    def total_exposure(self) -> Decimal:
        """Exact sum over pending orders of their current exposure (maintained by deltas)."""
        return _unscaled(self._total, self._places_total)

    def exposed_count(self) -> int:
        """Number of pending orders whose current exposure is above zero."""
        return self._exposed

    def max_divergence_pct(self) -> Decimal:
        """Largest current adverse move, in percent, over all pending orders (0 when none).

        Costs O(log) per symbol that changed since the previous call, then O(log) amortised.
        """
        if self._pct_dirty:
            for name in self._pct_dirty:
                self._refresh_pct(self._symbols[name])
            self._pct_dirty.clear()
        heap, symbols = self._pct_heap, self._symbols
        while heap:
            neg_pct, version, name = heap[0]
            if symbols[name].version == version:
                return -neg_pct
            heapq.heappop(heap)
        return _ZERO

    def oldest_pending(self, now: datetime) -> timedelta | None:
        """Age at ``now`` of the oldest pending order (never negative), or None when none is pending."""
        now_us = _micros(now, "now")
        heap = self._oldest
        while heap:
            placed_us, seq, oid = heap[0]
            entry = self._entries.get(oid)
            if entry is not None and entry.seq == seq:
                return timedelta(microseconds=max(0, now_us - placed_us))
            heapq.heappop(heap)
        return None

    def unknown_prices(self, now: datetime, stale_after: timedelta) -> tuple[UnknownPrices, UnknownPrices]:
        """(unpriced, stale) at ``now``: the pending orders whose symbol has never ticked, and those whose
        symbol's latest tick is older than ``stale_after``. O(symbols + orders in such symbols)."""
        now_us = _micros(now, "now")
        stale_us = now_us - stale_after // _MICROSECOND
        found: dict[bool, list[int]] = {True: [0, 0, now_us], False: [0, 0, now_us]}  # count, notional, oldest
        for sym in self._symbols.values():
            if sym.at is None:
                unpriced = True
            elif _micros(sym.at, "at") < stale_us:
                unpriced = False
            else:
                continue
            tally = found[unpriced]
            for entries in (sym.buys, sym.sells, sym.waiting.values()):
                for entry in entries:
                    tally[0] += 1
                    tally[1] += entry.q * entry.qty
                    tally[2] = min(tally[2], entry.placed_us)

        def _figures(tally: list[int]) -> UnknownPrices:
            if not tally[0]:
                return UnknownPrices()
            return UnknownPrices(orders=tally[0], oldest=timedelta(microseconds=max(0, now_us - tally[2])),
                                 notional=_unscaled(tally[1], self._places_total))

        return _figures(found[True]), _figures(found[False])

    def _view(self, entry: _Entry) -> OrderExposure:
        sym = self._symbols[entry.order.symbol]
        price, at = (sym.price_dec, sym.at) if entry.active else (None, None)
        return _materialise(entry, price, at, entry.cur, entry.peak, self._places_total)

    def get(self, order_id: str) -> OrderExposure | None:
        """The current view of one pending order, or None when it is not pending."""
        entry = self._entries.get(order_id)
        return None if entry is None else self._view(entry)

    def take_changes(self) -> list[OrderExposure]:
        """Orders whose current or max exposure changed since the previous call, at their latest values.

        For an I/O layer that cannot write every change of every tick (a store taking hundreds of
        writes a second against a feed of thousands of ticks): call it on a timer and write what it
        returns. Costs O(orders in the symbols that changed); orders that left are not included.
        """
        out = []
        for name in self._dirty:
            sym = self._symbols[name]
            for entries in (sym.buys, sym.sells):
                for entry in entries:
                    if entry.cur != entry.sent_cur or entry.peak != entry.sent_peak:
                        entry.sent_cur, entry.sent_peak = entry.cur, entry.peak
                        out.append(self._view(entry))
        self._dirty.clear()
        return out

    def worst(self, n: int) -> list[OrderExposure]:
        """The ``n`` orders with the largest current exposure (exposed orders only), worst first."""
        if n <= 0:
            return []
        exposed = (e for e in self._entries.values() if e.cur)
        top = heapq.nlargest(n, exposed, key=lambda e: (e.cur, e.peak, -e.placed_us))
        return [self._view(e) for e in top]

    def snapshot(self, now: datetime | None = None) -> dict[str, Any]:
        """Totals for metrics, rounded for reporting; with ``now``, also the oldest pending age."""
        snap: dict[str, Any] = {
            "pending_orders": len(self._entries),
            "exposed_orders": self._exposed,
            "total_exposure": round_exposure(self.total_exposure()),
            "max_divergence_pct": self.max_divergence_pct().quantize(_PCT_PLACES, rounding=ROUND_HALF_UP),
        }
        if now is not None:
            age = self.oldest_pending(now)
            snap["oldest_pending_seconds"] = 0.0 if age is None else age.total_seconds()
        return snap


# --------------------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Alert:
    """A threshold crossing. ``value`` is None when a keyed watch forgot a key while in breach."""

    kind: str  # BREACH | RECOVERY
    name: str
    value: Decimal | None
    threshold: Decimal
    at: datetime
    key: str | None = None
    reason: str | None = None


def _as_number(what: str, value: object) -> Decimal:
    if isinstance(value, timedelta):
        return _unscaled(value // _MICROSECOND, 6)
    if isinstance(value, float):
        value = Decimal(repr(value))  # the float's shortest decimal form: 60.0 -> 60.0, 0.1 -> 0.1
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise BadInput(f"{what} must be a number, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise BadInput(f"{what} must be finite, got {value}")
    return number


class ThresholdWatch:
    """Crossing/recovery detector: one alert when a value crosses above its threshold, one recovery when
    it falls back to or below it — nothing while it stays on the same side."""

    __slots__ = ("_above", "name", "threshold")

    def __init__(self, name: str, threshold: Decimal | float) -> None:
        self.name = name
        self.threshold = _as_number("threshold", threshold)
        self._above = False

    @property
    def above(self) -> bool:
        return self._above

    def observe(self, value: Decimal | float | timedelta, at: datetime) -> Alert | None:
        """Record ``value`` at ``at``; an Alert when it crossed the threshold either way, else None."""
        number = _as_number(self.name, value)
        above = number > self.threshold
        if above == self._above:
            return None
        self._above = above
        return Alert(BREACH if above else RECOVERY, self.name, number, self.threshold, at)


class KeyedThresholdWatch:
    """A ThresholdWatch per key (per order_id), holding state only for keys currently in breach."""

    __slots__ = ("_breached", "name", "threshold")

    def __init__(self, name: str, threshold: Decimal | float) -> None:
        self.name = name
        self.threshold = _as_number("threshold", threshold)
        self._breached: set[str] = set()

    @property
    def breached(self) -> frozenset[str]:
        return frozenset(self._breached)

    def observe(self, key: str, value: Decimal | float, at: datetime) -> Alert | None:
        number = _as_number(self.name, value)
        above = number > self.threshold
        if above == (key in self._breached):
            return None
        if above:
            self._breached.add(key)
        else:
            self._breached.discard(key)
        return Alert(BREACH if above else RECOVERY, self.name, number, self.threshold, at, key=key)

    def forget(self, key: str, at: datetime, reason: str = "no longer pending") -> Alert | None:
        """Drop ``key``; a recovery Alert when it was in breach, so no breach is left open forever."""
        if key not in self._breached:
            return None
        self._breached.discard(key)
        return Alert(RECOVERY, self.name, None, self.threshold, at, key=key, reason=reason)


class LiabilityWatch:
    """The liability thresholds of the settings, fed from an ExposureBook and its tick results.

    Names of the alerts: ``order_pct`` and ``order_amount`` (keyed by order_id), ``total_amount``,
    ``oldest_age_seconds``, ``unpriced_amount`` and ``stale_amount`` (notional at quote of the orders
    the book cannot price, or prices from a tick older than ``stale_after``).
    """

    def __init__(
        self, *, order_pct: Decimal, order_amount: Decimal, total_amount: Decimal, oldest_age_seconds: float,
        unpriced_amount: Decimal = Decimal(0), stale_amount: Decimal = Decimal(0), stale_after_seconds: float = 30.0,
    ) -> None:
        self.order_pct = KeyedThresholdWatch("order_pct", order_pct)
        self.order_amount = KeyedThresholdWatch("order_amount", order_amount)
        self.total_amount = ThresholdWatch("total_amount", total_amount)
        self.oldest_age = ThresholdWatch("oldest_age_seconds", oldest_age_seconds)
        self.unpriced_amount = ThresholdWatch("unpriced_amount", unpriced_amount)
        self.stale_amount = ThresholdWatch("stale_amount", stale_amount)
        self.stale_after = timedelta(seconds=stale_after_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> LiabilityWatch:
        return cls(
            order_pct=settings.threshold_order_pct,
            order_amount=settings.threshold_order_amount,
            total_amount=settings.threshold_total_amount,
            oldest_age_seconds=settings.threshold_oldest_age_seconds,
            unpriced_amount=settings.threshold_unpriced_amount,
            stale_amount=settings.threshold_stale_amount,
            stale_after_seconds=settings.price_stale_seconds,
        )

    def on_orders(self, items: Iterable[OrderExposure], at: datetime) -> list[Alert]:
        """Per-order alerts for changed orders: a TickResult's ``changed``, or ``take_changes()``.

        Fed from ``take_changes()`` on a timer, a crossing shorter than the timer can go unseen;
        fed every TickResult, nothing is missed but each changed order costs a division.
        """
        alerts = []
        for item in items:
            for watch, value in ((self.order_pct, item.adverse_pct), (self.order_amount, item.exposure)):
                alert = watch.observe(item.order_id, value, at)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def on_tick(self, result: TickResult) -> list[Alert]:
        """Alerts from one tick: per changed order (unchanged ones cannot cross) and the total."""
        alerts = self.on_orders(result.changed, result.at)
        alert = self.total_amount.observe(result.total_exposure, result.at)
        if alert is not None:
            alerts.append(alert)
        return alerts

    def unknown(self, book: ExposureBook, now: datetime) -> tuple[UnknownPrices, UnknownPrices]:
        """(unpriced, stale) orders of ``book`` at ``now``, by this watch's staleness limit."""
        return book.unknown_prices(now, self.stale_after)

    def on_book(self, book: ExposureBook, now: datetime,
                unknown: tuple[UnknownPrices, UnknownPrices] | None = None) -> list[Alert]:
        """Alerts from the periodic check: total, oldest age (age grows with no tick at all) and the notional
        of the orders it cannot price or prices stale (``unknown``: :meth:`unknown`, computed when not given)."""
        age = book.oldest_pending(now)
        unpriced, stale = unknown if unknown is not None else self.unknown(book, now)
        alerts = [
            self.total_amount.observe(book.total_exposure(), now),
            self.oldest_age.observe(age if age is not None else timedelta(0), now),
            self.unpriced_amount.observe(unpriced.notional, now),
            self.stale_amount.observe(stale.notional, now),
        ]
        return [a for a in alerts if a is not None]

    def on_order_left(self, order_id: str, at: datetime) -> list[Alert]:
        """Close any open per-order breach of an order that left pending (call with book.remove)."""
        alerts = [self.order_pct.forget(order_id, at), self.order_amount.forget(order_id, at)]
        return [a for a in alerts if a is not None]


# --------------------------------------------------------------------------------------- ticks


@dataclass(frozen=True)
class Tick:
    """A validated price tick: ``{"symbol": "VOD.L", "price": "101.25", "at": "...Z", "seq": 17}``."""

    symbol: str
    price: Decimal
    at: datetime
    seq: int | None = None


def _tick_price(raw: object) -> Decimal:
    if raw is None:
        raise BadTick("missing price")
    if isinstance(raw, bool):
        raise BadTick(f"price is not a number: {raw!r}")
    if isinstance(raw, float):
        raw = Decimal(repr(raw))
    if isinstance(raw, str):
        try:
            price = Decimal(raw.strip())
        except InvalidOperation:
            raise BadTick(f"price is not a number: {raw[:40]!r}") from None
    elif isinstance(raw, Decimal | int):
        price = Decimal(raw)
    else:
        raise BadTick(f"price is not a number: {type(raw).__name__}")
    if price.is_nan():
        raise BadTick("price is NaN")
    if price.is_infinite():
        raise BadTick("price is infinite")
    if price <= 0:
        raise BadTick(f"price must be positive, got {price}")
    if price.adjusted() > _MAX_PRICE_ADJUSTED:
        raise BadTick(f"price is out of range: {price}")
    if _places(price) > MAX_PRICE_PLACES:
        raise BadTick(f"price has more than {MAX_PRICE_PLACES} decimal places")
    return price


def _tick_time(raw: object) -> datetime:
    if raw is None:
        raise BadTick("missing timestamp 'at'")
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise BadTick(f"bad timestamp {raw[:40]!r}: not ISO 8601") from None
    else:
        raise BadTick(f"bad timestamp: {type(raw).__name__}, expected an ISO 8601 string")
    if moment.utcoffset() is None:
        raise BadTick(f"bad timestamp {raw!s:.40}: no time zone")
    return moment.astimezone(UTC)


def parse_tick(raw: bytes | str | Mapping[str, Any], known_symbols: Container[str] | None = None) -> Tick:
    """Validate one tick from the feed; raise BadTick with the reason when it is malformed.

    Prices are read exactly (JSON numbers as Decimal, never through float).
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadTick("not JSON: not UTF-8 text") from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            raise BadTick(f"not JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise BadTick(f"not a JSON object: {type(raw).__name__}")
    symbol = raw.get("symbol")
    if symbol is None:
        raise BadTick("missing symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise BadTick(f"symbol must be a non-empty string, got {symbol!r:.40}")
    if known_symbols is not None and symbol not in known_symbols:
        raise BadTick(f"unknown symbol {symbol!r:.40}")
    price = _tick_price(raw.get("price"))
    at = _tick_time(raw.get("at"))
    seq = raw.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise BadTick(f"seq must be a non-negative integer, got {seq!r:.40}")
    return Tick(symbol=symbol, price=price, at=at, seq=seq)
