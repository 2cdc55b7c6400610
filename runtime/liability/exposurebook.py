"""The exposure book: every pending order's exposure, kept current tick by tick. Pure, no I/O.

For every pending customer order (status ACCEPTED, SUBMITTING or IN_DOUBT, never ``synthetic``) the
book keeps, at the latest price of its symbol, the exposure and adverse move that
:mod:`.arithmetic` defines, and the totals over all of them.

Orders the book cannot price
    An order whose symbol has never ticked has no exposure the book can know: it is *unpriced*, and
    reported as such (count, oldest wait, notional at its quote), never as an exposure of 0. An order
    whose symbol's latest tick is older than a staleness limit is valued at that old price and also
    reported *stale* (:meth:`ExposureBook.unknown_prices`); thresholds on the notional of either
    alert like the exposure thresholds (:mod:`.watches`).

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
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradeops.runtime.liability.arithmetic import (
    BUY,
    MAX_PRICE_PLACES,
    MAX_QUANTITY_PLACES,
    PRICE,
    BadNumber,
    micros,
    number,
    percent,
    places,
    round_exposure,
    round_pct,
    scaled,
    unscaled,
)
from tradeops.runtime.liability.orderexposure import OrderExposure, PendingOrder, UnknownPrices
from tradeops.runtime.liability.ticks import BadTick, tick_price, tick_time
from tradeops.runtime.platform.errors import BadInput

__all__ = ["ExposureBook", "TickResult"]

_ZERO = Decimal(0)
_MICROSECOND = timedelta(microseconds=1)


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

    __slots__ = ("at", "buy_keys", "buy_total", "buys", "exposed_buys", "exposed_sells", "name", "pct",
                 "price", "price_dec", "sell_keys", "sell_total", "sells", "version", "waiting")

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


def _materialise(entry: _Entry, price: Decimal | None, at: datetime | None, cur: int, peak: int,
                 units: int) -> OrderExposure:
    order = entry.order
    return OrderExposure(order_id=order.order_id, symbol=order.symbol, side=order.side, quantity=order.quantity,
                         quote_price=order.quote_price, placed_at=order.placed_at, price=price, at=at,
                         exposure=unscaled(cur, units), max_exposure=unscaled(peak, units))


class TickResult:
    """What one tick did: the orders whose current exposure changed, and the book's new totals.

    ``max_divergence_pct`` is not here: it costs a division per symbol, so the book computes it
    on demand (:meth:`ExposureBook.max_divergence_pct`) for the symbols that ticked since.

    ``changed`` is built on first access (the evaluation itself keeps raw integers), so a caller
    that only needs the totals does not pay for it. Treat every attribute as read-only.
    ``stale`` is True when the tick was older than the symbol's latest and was ignored.
    """

    __slots__ = ("_changed", "_places", "_raw", "_total", "at", "exposed", "pending", "price", "stale", "symbol")

    def __init__(self, symbol: str, price: Decimal, at: datetime, stale: bool, raw: list[tuple[_Entry, int, int]],
                 units: int, total: int, pending: int, exposed: int) -> None:
        self.symbol = symbol
        self.price = price
        self.at = at
        self.stale = stale
        self.pending = pending
        self.exposed = exposed
        self._raw = raw
        self._places = units
        self._total = total
        self._changed: tuple[OrderExposure, ...] | None = None

    @property
    def total_exposure(self) -> Decimal:
        """Exact sum of the current exposures of all pending orders after this tick."""
        return unscaled(self._total, self._places)

    @property
    def changed_count(self) -> int:
        return len(self._raw)

    @property
    def changed(self) -> tuple[OrderExposure, ...]:
        """Orders whose current exposure changed (the only ones the I/O layer needs to write)."""
        if self._changed is None:
            self._changed = tuple(_materialise(entry, self.price, self.at, cur, peak, self._places)
                                  for entry, cur, peak in self._raw)
        return self._changed

    def __repr__(self) -> str:
        return (f"TickResult(symbol={self.symbol!r}, price={self.price}, stale={self.stale}, "
                f"changed={len(self._raw)}, total_exposure={self.total_exposure})")


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
    price or quantity needs more places. The tests prove equality with :func:`.arithmetic.adverse_exposure`.
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

    def _price_int(self, price: Decimal) -> int:
        """``price`` in the book's units, refined when it needs more places. BadNumber when it is out of
        bounds: only a tick's price can be (PendingOrder checked the quotes), and only here is it cheap to ask."""
        # Bounded before scaling: 1E+999999 would be a huge int.
        whole = scaled(price, self._pp) if price.adjusted() <= PRICE.max_adjusted else None
        if whole is None:
            number("price", price, bounds=PRICE)
            self._rescale(places(price), self._qp)
            whole = scaled(price, self._pp)
            assert whole is not None
        return whole

    def _qty_int(self, quantity: int | Decimal) -> int:
        if isinstance(quantity, int) and not isinstance(quantity, bool):
            return quantity * self._qfactor
        value = Decimal(quantity)
        whole = scaled(value, self._qp)
        if whole is None:  # PendingOrder bounded its places
            self._rescale(self._pp, places(value))
            whole = scaled(value, self._qp)
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
        q = self._price_int(order.quote_price)
        qty = self._qty_int(order.quantity)  # may refine quantity units; q (price units) stays valid
        placed_us = micros(order.placed_at, "placed_at")  # validated by PendingOrder; an int for the heap
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
                pct = percent(p - lowest_buy, lowest_buy)
            if sym.exposed_sells:
                highest_sell = -sym.sell_keys[0]
                pct = max(pct, percent(highest_sell - p, highest_sell))
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
        # The checks cost a call only when a value is not already what the feed's parse_tick gives.
        if type(price) is not Decimal or not price.is_finite() or price <= 0:
            price = tick_price(price, feed=False)
        if type(at) is not datetime or at.tzinfo is not UTC:
            at = tick_time(at, feed=False)
        sym = self._symbols.get(symbol)
        if sym is None:
            sym = self._symbol(symbol)
        elif sym.at is not None and at < sym.at:
            return self._result(symbol, price, at, True, [])
        try:
            p = self._price_int(price)
        except BadNumber as exc:
            raise BadTick.of(exc) from None
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
            at_us = micros(at, "tick time")
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

    def _result(self, symbol: str, price: Decimal, at: datetime, stale: bool,
                raw: list[tuple[_Entry, int, int]]) -> TickResult:
        return TickResult(symbol, price, at, stale, raw, self._places_total, self._total, len(self._entries),
                          self._exposed)

    # -- reading

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._entries

    def total_exposure(self) -> Decimal:
        """Exact sum over pending orders of their current exposure (maintained by deltas)."""
        return unscaled(self._total, self._places_total)

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
        now_us = micros(now, "now")
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
        now_us = micros(now, "now")
        stale_us = now_us - stale_after // _MICROSECOND
        found: dict[bool, list[int]] = {True: [0, 0, now_us], False: [0, 0, now_us]}  # count, notional, oldest
        for sym in self._symbols.values():
            if sym.at is None:
                unpriced = True
            elif micros(sym.at, "at") < stale_us:
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
                                 notional=unscaled(tally[1], self._places_total))

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
            "max_divergence_pct": round_pct(self.max_divergence_pct()),
        }
        if now is not None:
            age = self.oldest_pending(now)
            snap["oldest_pending_seconds"] = 0.0 if age is None else age.total_seconds()
        return snap
