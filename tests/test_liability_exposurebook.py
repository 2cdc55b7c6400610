"""The exposure book: pending orders, the book by example, and the book against a Decimal model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tradeops.runtime.liability.arithmetic import NumberProblem, adverse_exposure, adverse_pct
from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import PendingOrder
from tradeops.runtime.liability.ticks import BadTick, TickProblem
from tradeops.runtime.platform.errors import BadInput

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def order(order_id: str = "o1", symbol: str = "VOD.L", side: str = "BUY", quantity: int | D = 100,
          quote: str = "100", placed: float = 0, synthetic: bool = False) -> PendingOrder:
    return PendingOrder(order_id, symbol, side, quantity, D(quote), at(placed), synthetic=synthetic)


# --------------------------------------------------------------------------- pending orders


@pytest.mark.parametrize(
    "kwargs",
    [
        {"order_id": ""},
        {"symbol": ""},
        {"side": "HOLD"},
        {"quantity": 0},
        {"quantity": D("0.000000001")},
        {"quantity": 1.5},
        {"quote": "0"},
        {"quote": "1E+20"},
        {"quote": "1.0000000000001"},
    ],
)
def test_pending_order_refuses_bad_fields(kwargs):
    """A PendingOrder with an empty id, bad side, bad quantity or absurd quote cannot be built."""
    with pytest.raises(BadInput):
        order(**kwargs)


def test_pending_order_refuses_naive_time():
    """placed_at must be timezone-aware."""
    with pytest.raises(BadInput):
        PendingOrder("o1", "VOD.L", "BUY", 1, D(1), datetime(2026, 1, 1))


# --------------------------------------------------------------------------- the book, by example


def test_tick_evaluates_only_its_symbol():
    """A tick changes the orders of its own symbol and leaves other symbols' exposure alone."""
    book = ExposureBook()
    book.add(order("a", "VOD.L", quote="100"))
    book.add(order("b", "BARC.L", quote="100"))
    book.on_tick("BARC.L", D("102"), at(1))
    result = book.on_tick("VOD.L", D("101"), at(1))
    assert [c.order_id for c in result.changed] == ["a"]
    assert book.get("a").exposure == D(100)
    assert book.get("b").exposure == D(200)
    assert result.total_exposure == book.total_exposure() == D(300)


def test_tick_result_lists_only_changed_orders():
    """Only orders whose current exposure changed are listed, so the I/O layer writes only those."""
    book = ExposureBook()
    book.add(order("buy", side="BUY", quote="100"))
    book.add(order("sell", side="SELL", quote="100"))
    first = book.on_tick("VOD.L", D("101"), at(1))
    assert [(c.order_id, c.exposure) for c in first.changed] == [("buy", D(100))]
    same = book.on_tick("VOD.L", D("101"), at(2))
    assert same.changed == () and not same.stale
    flip = book.on_tick("VOD.L", D("99"), at(3))
    assert {(c.order_id, c.exposure) for c in flip.changed} == {("buy", D(0)), ("sell", D(100))}
    assert flip.pending == 2 and flip.exposed == 1


def test_max_exposure_is_kept_when_the_market_comes_back():
    """Current exposure falls with the market; max_exposure keeps the worst seen while pending."""
    book = ExposureBook()
    book.add(order(quote="100", quantity=10))
    book.on_tick("VOD.L", D("103"), at(1))
    result = book.on_tick("VOD.L", D("100.5"), at(2))
    (item,) = result.changed
    assert (item.exposure, item.max_exposure, item.price, item.at) == (D(5), D(30), D("100.5"), at(2))
    assert book.total_exposure() == D(5)


def test_order_is_not_evaluated_against_a_price_older_than_its_quote():
    """An order placed after its symbol's latest tick has exposure 0 until a tick at or after placement."""
    book = ExposureBook()
    book.on_tick("VOD.L", D("105"), at(1))
    book.add(order(quote="100", placed=2))
    assert book.get("o1").exposure == 0 and book.get("o1").price is None
    assert book.on_tick("VOD.L", D("105"), at(1.5)).changed == ()  # older than placement: no effect
    result = book.on_tick("VOD.L", D("105"), at(2))
    assert [c.exposure for c in result.changed] == [D(500)]


def test_order_added_late_is_evaluated_at_the_latest_tick():
    """An order added after a tick newer than its placement is evaluated against that tick at once."""
    book = ExposureBook()
    book.on_tick("VOD.L", D("101"), at(5))
    book.add(order(quote="100", placed=1))
    view = book.get("o1")
    assert (view.exposure, view.price, view.at) == (D(100), D(101), at(5))
    assert book.total_exposure() == D(100) and book.max_divergence_pct() == D(1)


def test_stale_tick_is_ignored():
    """A tick older than the symbol's latest changes nothing and is reported stale."""
    book = ExposureBook()
    book.add(order(quote="100"))
    book.on_tick("VOD.L", D("101"), at(5))
    result = book.on_tick("VOD.L", D("120"), at(4))
    assert result.stale and result.changed == ()
    assert book.total_exposure() == D(100)


def test_add_is_idempotent_and_refuses_a_conflicting_duplicate():
    """Adding the same order twice is a no-op; the same order_id with other details is refused."""
    book = ExposureBook()
    book.add(order(quote="100"))
    book.add(order(quote="100.00"))
    assert len(book) == 1
    with pytest.raises(BadInput, match="different details"):
        book.add(order(quote="101"))


def test_remove_is_idempotent_and_takes_the_exposure_out():
    """Removing an order takes its current exposure out of the total; removing again is a no-op."""
    book = ExposureBook()
    book.add(order("a", quote="100"))
    book.add(order("b", quote="100"))
    book.on_tick("VOD.L", D("101"), at(1))
    book.remove("a")
    book.remove("a")
    book.remove("never-seen")
    assert len(book) == 1 and "a" not in book and book.get("a") is None
    assert book.total_exposure() == D(100) and book.exposed_count() == 1


def test_remove_takes_out_the_right_order_among_equal_quotes():
    """Removing one of several orders with the same quote removes that one, not its neighbour."""
    book = ExposureBook()
    book.add(order("first", quote="100", quantity=1))
    book.add(order("second", quote="100", quantity=2))
    book.add(order("third", side="SELL", quote="100", quantity=4))
    book.add(order("fourth", side="SELL", quote="100.0", quantity=8))
    book.on_tick("VOD.L", D("100"), at(1))
    book.remove("second")
    book.remove("fourth")
    assert [c.order_id for c in book.on_tick("VOD.L", D("101"), at(2)).changed] == ["first"]
    assert [c.order_id for c in book.on_tick("VOD.L", D("99"), at(3)).changed] == ["first", "third"]
    assert book.total_exposure() == D(4)


def test_take_changes_coalesces_ticks_into_latest_values():
    """take_changes returns each changed order once, at its latest values, then nothing until more change."""
    book = ExposureBook()
    book.add(order("a", quote="100"))
    book.add(order("b", "BARC.L", quote="100"))
    for i, price in enumerate(["101", "103", "102"]):
        book.on_tick("VOD.L", D(price), at(i + 1))
    book.on_tick("BARC.L", D("99"), at(1))
    (a,) = book.take_changes()
    assert (a.order_id, a.exposure, a.max_exposure, a.adverse_pct) == ("a", D(200), D(300), D(2))
    assert book.take_changes() == []
    book.on_tick("VOD.L", D("102"), at(5))
    assert book.take_changes() == []
    book.on_tick("VOD.L", D("104"), at(6))
    book.on_tick("VOD.L", D("102"), at(7))  # back to the value taken, but with a new maximum
    assert [(c.order_id, c.exposure, c.max_exposure) for c in book.take_changes()] == [("a", D(200), D(400))]
    book.on_tick("VOD.L", D("99"), at(8))
    assert [(c.order_id, c.exposure) for c in book.take_changes()] == [("a", D(0))]


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_total_stays_right_when_a_symbol_ticks_after_a_removal(side):
    """After an exposed order leaves, later ticks of its symbol keep the total equal to the remaining orders."""
    book = ExposureBook()
    worse, better = ("101", "99") if side == "BUY" else ("99", "101")
    book.add(order("gone", side=side, quote="100", quantity=5))
    book.add(order("stays", side=side, quote="100", quantity=1))
    book.on_tick("VOD.L", D(worse), at(1))
    book.remove("gone")
    book.on_tick("VOD.L", D(better), at(2))
    assert book.total_exposure() == 0
    book.remove("stays")
    book.add(order("new", side=side, quote="100", quantity=2, placed=2))
    book.on_tick("VOD.L", D(worse) + (1 if side == "BUY" else -1), at(3))
    assert book.total_exposure() == D(4) == book.get("new").exposure


def test_synthetic_orders_are_never_exposure():
    """Canary (synthetic) orders are ignored by the book."""
    book = ExposureBook()
    book.add(order(synthetic=True))
    book.on_tick("VOD.L", D("200"), at(1))
    assert len(book) == 0 and book.total_exposure() == 0


def test_max_divergence_pct_follows_the_most_adverse_order():
    """The largest current adverse move is tracked across symbols and updated on removal and recovery."""
    book = ExposureBook()
    book.add(order("v-buy", "VOD.L", "BUY", quote="100"))
    book.add(order("v-buy2", "VOD.L", "BUY", quote="101"))
    book.add(order("b-sell", "BARC.L", "SELL", quote="200"))
    book.on_tick("VOD.L", D("102"), at(1))
    book.on_tick("BARC.L", D("197"), at(1))
    assert book.max_divergence_pct() == D(2)  # VOD 100 -> 102 beats BARC 200 -> 197 (1.5 %)
    book.remove("v-buy")
    assert book.max_divergence_pct() == D("1.5")  # VOD 101 -> 102 is 0.99 %
    book.on_tick("BARC.L", D("201"), at(2))
    assert book.max_divergence_pct() == adverse_pct("BUY", D(101), D(102))
    book.on_tick("VOD.L", D("90"), at(2))
    assert book.max_divergence_pct() == 0


def test_max_divergence_pct_after_many_unqueried_ticks():
    """The largest move is right after many ticks on many symbols with no query in between."""
    book = ExposureBook()
    for i in range(20):
        book.add(order(f"o{i}", f"S{i % 5}", "BUY" if i % 2 else "SELL", quote=str(100 + i)))
    prices = {}
    for step in range(200):
        symbol, price = f"S{step % 5}", D(90 + (step * 7) % 40)
        book.on_tick(symbol, price, at(step))
        prices[symbol] = price
    o = [order(f"o{i}", f"S{i % 5}", "BUY" if i % 2 else "SELL", quote=str(100 + i)) for i in range(20)]
    assert book.max_divergence_pct() == max(adverse_pct(x.side, x.quote_price, prices[x.symbol]) for x in o)


def test_tick_times_in_other_zones_compare_as_instants():
    """A tick time with a UTC offset is the same instant in UTC: a later instant is not stale."""
    book = ExposureBook()
    book.add(order(quote="100"))
    book.on_tick("VOD.L", D("101"), at(10))
    plus_one = timezone(timedelta(hours=1))
    later = book.on_tick("VOD.L", D("102"), (T0 + timedelta(seconds=11)).astimezone(plus_one))
    assert not later.stale and later.at == at(11) and later.at.tzinfo is UTC
    assert book.on_tick("VOD.L", D("103"), (T0 + timedelta(seconds=9)).astimezone(plus_one)).stale


def test_oldest_pending_age():
    """The oldest pending order's age is reported, follows removals, and is None with nothing pending."""
    book = ExposureBook()
    assert book.oldest_pending(at(0)) is None
    book.add(order("old", placed=1))
    book.add(order("new", placed=5))
    assert book.oldest_pending(at(11)) == timedelta(seconds=10)
    book.remove("old")
    assert book.oldest_pending(at(11)) == timedelta(seconds=6)
    assert book.oldest_pending(at(0)) == timedelta(0)  # a clock behind placement never gives a negative age
    book.remove("new")
    assert book.oldest_pending(at(11)) is None


def test_worst_lists_exposed_orders_worst_first():
    """worst(n) gives the n largest current exposures, exposed orders only."""
    book = ExposureBook()
    for i, quote in enumerate(["100", "99", "98", "150"]):
        book.add(order(f"o{i}", quote=quote))
    book.on_tick("VOD.L", D("101"), at(1))
    assert [w.order_id for w in book.worst(2)] == ["o2", "o1"]
    assert [w.order_id for w in book.worst(10)] == ["o2", "o1", "o0"]
    assert book.worst(0) == []


def test_snapshot_rounds_for_reporting():
    """The snapshot reports the exact total rounded half up to the penny, and the oldest age."""
    book = ExposureBook()
    book.add(order("a", quantity=1, quote="1.000"))
    book.add(order("b", quantity=1, quote="1.000", placed=3))
    book.on_tick("VOD.L", D("1.0025"), at(3))  # 0.0025 each: exact total 0.005, reported 0.01
    assert book.total_exposure() == D("0.005")
    assert book.snapshot(at(13)) == {
        "pending_orders": 2,
        "exposed_orders": 2,
        "total_exposure": D("0.01"),
        "max_divergence_pct": D("0.25"),
        "oldest_pending_seconds": 13.0,
    }


def test_finer_prices_and_quantities_rescale_without_changing_values():
    """A price or quantity with more decimal places than seen so far keeps every value exact."""
    book = ExposureBook(price_places=2)
    book.add(order("a", quote="100.25", quantity=3))
    book.on_tick("VOD.L", D("100.5"), at(1))
    assert [c.order_id for c in book.take_changes()] == ["a"]
    book.add(order("b", quote="100.123456789", quantity=D("0.125")))
    assert [c.order_id for c in book.take_changes()] == ["b"]  # rescaling is not a change
    book.on_tick("VOD.L", D("100.50000001"), at(2))
    assert book.get("a").exposure == adverse_exposure("BUY", D("100.25"), D("100.50000001"), 3)
    assert book.get("b").exposure == adverse_exposure("BUY", D("100.123456789"), D("100.50000001"), D("0.125"))
    assert book.get("a").max_exposure == book.get("a").exposure
    assert book.total_exposure() == book.get("a").exposure + book.get("b").exposure


@pytest.mark.parametrize(("price", "kind"), [
    (D(0), NumberProblem.NOT_POSITIVE), (D(-1), NumberProblem.NOT_POSITIVE), (D("NaN"), NumberProblem.NAN),
    (D("Infinity"), NumberProblem.INFINITE), (1.5, NumberProblem.NOT_A_NUMBER),
    (D("1E+20"), NumberProblem.OUT_OF_RANGE), (D("1.0000000000001"), NumberProblem.TOO_PRECISE),
])
def test_on_tick_refuses_bad_prices(price, kind):
    """on_tick refuses non-positive, non-finite, float, absurdly large or over-precise prices, naming which."""
    book = ExposureBook()
    book.add(order())
    with pytest.raises(BadTick) as caught:
        book.on_tick("VOD.L", price, at(1))
    assert caught.value.kind is kind
    assert book.total_exposure() == 0


def test_on_tick_refuses_naive_time():
    """A tick time without a time zone is refused."""
    with pytest.raises(BadTick) as caught:
        ExposureBook().on_tick("VOD.L", D(1), datetime(2026, 1, 1))
    assert caught.value.kind is TickProblem.BAD_TIME


# --------------------------------------------------------------------------- the book, against a model

prices = st.builds(lambda c, k: D(c).scaleb(-k), st.integers(1, 5_000_000), st.integers(0, 6))
quantities = st.one_of(st.integers(1, 10_000), st.builds(lambda c, k: D(c).scaleb(-k), st.integers(1, 10**6),
                                                          st.integers(0, 3)))
sides = st.sampled_from(["BUY", "SELL"])
SYMBOLS = ["A", "B"]
ORDER_IDS = [f"o{i}" for i in range(8)]
book_prices = st.one_of(st.sampled_from([D("100"), D("100.00"), D("101.5"), D("98.25")]), prices)


class BookModel(RuleBasedStateMachine):
    """The book after any sequence of add/remove/tick agrees with plain Decimal arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.book = ExposureBook(price_places=0)  # start coarse so that rescaling is exercised
        self.orders: dict[str, PendingOrder] = {}
        self.active: set[str] = set()
        self.last: dict[str, tuple[D, datetime]] = {}
        self.peak: dict[str, D] = {}
        self.seen_peak: dict[str, D] = {}
        self.taken: dict[str, tuple[D, D]] = {}

    def current(self, oid: str) -> D:
        o = self.orders[oid]
        if oid not in self.active:
            return D(0)
        return adverse_exposure(o.side, o.quote_price, self.last[o.symbol][0], o.quantity)

    @rule(oid=st.sampled_from(ORDER_IDS), symbol=st.sampled_from(SYMBOLS), side=sides, quantity=quantities,
          quote=book_prices, placed=st.integers(0, 10), synthetic=st.booleans())
    def add(self, oid, symbol, side, quantity, quote, placed, synthetic):
        new = PendingOrder(oid, symbol, side, quantity, quote, at(placed), synthetic=synthetic)
        if oid in self.orders and not synthetic:
            if self.orders[oid] != new:
                with pytest.raises(BadInput):
                    self.book.add(new)
                return
        self.book.add(new)
        if synthetic or oid in self.orders:
            return
        self.orders[oid] = new
        if symbol in self.last and self.last[symbol][1] >= new.placed_at:
            self.active.add(oid)
        self.peak[oid] = self.current(oid)

    @rule(oid=st.sampled_from(ORDER_IDS))
    def readd_same(self, oid):
        if oid in self.orders:
            self.book.add(self.orders[oid])

    @rule(oid=st.sampled_from(ORDER_IDS))
    def remove(self, oid):
        self.book.remove(oid)
        for table in (self.orders, self.peak, self.seen_peak, self.taken):
            table.pop(oid, None)
        self.active.discard(oid)

    @rule(symbol=st.sampled_from(SYMBOLS), price=book_prices, when=st.integers(0, 12))
    def tick(self, symbol, price, when):
        before = {oid: self.current(oid) for oid in self.orders}
        result = self.book.on_tick(symbol, price, at(when))
        if symbol in self.last and at(when) < self.last[symbol][1]:
            assert result.stale and result.changed == ()
            return
        assert not result.stale
        self.last[symbol] = (price, at(when))
        for oid, o in self.orders.items():
            if o.symbol == symbol and o.placed_at <= at(when):
                self.active.add(oid)
        changed = {c.order_id: c for c in result.changed}
        expect = {oid for oid in self.orders if self.current(oid) != before[oid]}
        assert set(changed) == expect
        for oid, item in changed.items():
            self.peak[oid] = max(self.peak[oid], self.current(oid))
            assert item.exposure == self.current(oid)
            assert item.max_exposure == self.peak[oid]
            o = self.orders[oid]
            assert item.adverse_pct == adverse_pct(o.side, o.quote_price, price)
        assert result.total_exposure == sum((self.current(oid) for oid in self.orders), D(0))
        assert result.pending == len(self.orders)

    @rule()
    def take_changes(self):
        taken = {c.order_id: (c.exposure, c.max_exposure) for c in self.book.take_changes()}
        latest = {oid: (self.current(oid), self.peak[oid]) for oid in self.orders}
        assert taken == {oid: v for oid, v in latest.items() if v != self.taken.get(oid, (D(0), D(0)))}
        self.taken.update(taken)

    @invariant()
    def totals_equal_sum_of_current_exposures(self):
        assert self.book.total_exposure() == sum((self.current(oid) for oid in self.orders), D(0))
        assert len(self.book) == len(self.orders)
        assert self.book.exposed_count() == sum(1 for oid in self.orders if self.current(oid) > 0)

    @invariant()
    def each_order_matches_and_its_max_is_monotone(self):
        for oid in self.orders:
            view = self.book.get(oid)
            assert view.exposure == self.current(oid)
            assert view.max_exposure == self.peak[oid]
            assert view.max_exposure >= self.seen_peak.get(oid, D(0))
            self.seen_peak[oid] = view.max_exposure

    @invariant()
    def max_divergence_is_the_largest_current_move(self):
        moves = [
            adverse_pct(o.side, o.quote_price, self.last[o.symbol][0])
            for oid, o in self.orders.items()
            if oid in self.active
        ]
        assert self.book.max_divergence_pct() == max(moves, default=D(0))

    @invariant()
    def oldest_is_the_earliest_placement(self):
        oldest = self.book.oldest_pending(at(20))
        placed = [o.placed_at for o in self.orders.values()]
        assert oldest == (at(20) - min(placed) if placed else None)


def test_book_agrees_with_decimal_model():
    """Any sequence of add/remove/tick keeps totals, per-order values, maxima and the max move exact."""
    run_state_machine_as_test(BookModel, settings=settings(max_examples=200, stateful_step_count=40,
                                                           deadline=None))
