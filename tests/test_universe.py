"""No price-blind liability (issue 13, item 3), the pure parts: the shipped universe, the feed's walks over it,
and the exposure book's unpriced and stale orders with their thresholds and pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import PendingOrder
from tradeops.runtime.liability.paging import ExposurePaging
from tradeops.runtime.liability.prices import Feed
from tradeops.runtime.liability.watches import BREACH, RECOVERY, LiabilityWatch
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.universe import shipped_universe, start_price

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
STALE = timedelta(seconds=30)


def _order(order_id: str, symbol: str, *, side: str = "BUY", quantity: int = 10, quote: str = "0.7234",
           placed: datetime = T0) -> PendingOrder:
    return PendingOrder(order_id=order_id, symbol=symbol, side=side, quantity=quantity, quote_price=Decimal(quote),
                        placed_at=placed)


# ---- the universe ----------------------------------------------------------------------------------------

def test_the_default_universe_is_lse_tickers_with_gbp_start_prices():
    """The default universe is 30-50 distinct LSE tickers (.L), each with a name and a positive Decimal price,
    and it is what the settings' symbol list gives when TRADEOPS_SYMBOLS is not set."""
    universe = shipped_universe()
    tickers = [i.ticker for i in universe]
    assert 30 <= len(universe) <= 50 and len(set(tickers)) == len(tickers)
    listed = {"VOD.L", "BARC.L", "LLOY.L", "HSBA.L", "BP.L", "SHEL.L", "AZN.L", "ULVR.L", "GSK.L", "RIO.L"}
    assert listed <= set(tickers)
    assert all(t.endswith(".L") and i.name and isinstance(i.start_price, Decimal) and i.start_price > 0
               for t, i in zip(tickers, universe, strict=True))
    assert load_settings(symbols="").symbol_list == tickers
    assert load_settings(symbols="AAA.L, BBB.L,AAA.L").symbol_list == ["AAA.L", "BBB.L"]


def test_the_feed_opens_at_the_shipped_prices_and_walks_a_tenth_of_a_percent_at_most():
    """Each walk starts at its instrument's price and publishes it to the penny; a tick moves it by at most
    0.1 % (plus the penny's rounding), so cheap shares move too; a ticker the file does not list starts near
    100 GBP."""
    symbols = ["VOD.L", "AZN.L", "LLOY.L", "XYZ.L"]
    feed = Feed(symbols, seed=7, ticks_per_second=1000)
    opening = {t["symbol"]: Decimal(t["price"]) for t in feed.next_batch(0.0, now=0.0)}
    assert opening["VOD.L"] == start_price("VOD.L") == Decimal("0.72")
    assert opening["AZN.L"] == start_price("AZN.L") == Decimal("108.40")
    assert Decimal(95) <= opening["XYZ.L"] <= Decimal(105)
    last, seen = dict(opening), {s: {p} for s, p in opening.items()}
    for step in range(1, 400):
        for tick in feed.next_batch(0.01, now=step * 0.01):
            price, before = Decimal(tick["price"]), last[tick["symbol"]]
            assert price == price.quantize(Decimal("0.01")) and price > 0
            assert abs(price - before) <= before * Decimal("0.001") + Decimal("0.011")
            last[tick["symbol"]] = price
            seen[tick["symbol"]].add(price)
    assert len(seen["LLOY.L"]) > 1 and len(seen["AZN.L"]) > 10, "cheap shares move too, by the penny"


def test_a_spike_on_a_cheap_share_ends_at_its_target_to_the_penny():
    """A scripted move of a share under 1 GBP ends exactly at its target, to the penny, and the walk resumes
    from there."""
    feed = Feed(["LLOY.L"], seed=7, ticks_per_second=0)
    spike = feed.spike("LLOY.L", Decimal(5), 0.0, now=0.0)
    assert spike.target == Decimal("0.58")  # 0.55 x 1.05 = 0.5775
    feed.next_batch(0.0, now=0.0)
    assert Decimal(feed.prices()["LLOY.L"]) == spike.target


# ---- unpriced and stale orders ---------------------------------------------------------------------------

def test_an_order_nobody_prices_is_unpriced_never_zero_exposure():
    """A held order in a symbol that never ticked is reported unpriced (count, oldest wait, notional at quote),
    not as an exposed order: the total does not pretend to know it."""
    book = ExposureBook(price_places=2)
    book.add(_order("a", "NOPE.L", quantity=100, quote="2.50", placed=T0))
    book.add(_order("b", "NOPE.L", side="SELL", quantity=3, quote="2.4999", placed=T0 + timedelta(seconds=5)))
    book.add(_order("c", "VOD.L", placed=T0))
    book.on_tick("VOD.L", Decimal("0.80"), T0 + timedelta(seconds=1))
    unpriced, stale = book.unknown_prices(T0 + timedelta(seconds=10), STALE)
    assert unpriced.orders == 2 and unpriced.notional == Decimal("257.4997")
    assert unpriced.oldest == timedelta(seconds=10)
    assert stale.orders == 0 and stale.notional == 0 and stale.oldest is None
    assert unpriced.as_json() == {"orders": 2, "notional": "257.50", "oldest_seconds": 10.0}
    book.on_tick("NOPE.L", Decimal("2.60"), T0 + timedelta(seconds=11))
    unpriced, _ = book.unknown_prices(T0 + timedelta(seconds=12), STALE)
    assert unpriced.orders == 0


def test_an_order_whose_last_price_is_older_than_the_staleness_is_stale():
    """Once its symbol's latest tick is older than the staleness limit, a pending order is reported stale,
    and no longer once a fresh tick comes."""
    book = ExposureBook(price_places=2)
    book.on_tick("BARC.L", Decimal("2.60"), T0)
    book.add(_order("a", "BARC.L", quantity=1000, quote="2.6125", placed=T0))
    _, stale = book.unknown_prices(T0 + timedelta(seconds=30), STALE)
    assert stale.orders == 0
    _, stale = book.unknown_prices(T0 + timedelta(seconds=31), STALE)
    assert stale.orders == 1 and stale.notional == Decimal("2612.5") and stale.oldest == timedelta(seconds=31)
    book.on_tick("BARC.L", Decimal("2.61"), T0 + timedelta(seconds=31))
    _, stale = book.unknown_prices(T0 + timedelta(seconds=32), STALE)
    assert stale.orders == 0


@given(st.lists(st.tuples(st.sampled_from(["A.L", "B.L", "C.L"]), st.integers(1, 1000),
                          st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(5000), places=4)),
                max_size=40),
       st.sets(st.sampled_from(["A.L", "B.L", "C.L"])), st.integers(0, 120))
def test_unknown_figures_are_exact_sums_over_the_orders_of_unpriced_and_stale_symbols(orders, ticked, age):
    """Unpriced = the orders in symbols never ticked, stale = those whose tick is older than the limit; counts
    and notionals (sum of quote x quantity) are exact, and no order is in both."""
    book = ExposureBook(price_places=2)
    for n, (symbol, quantity, quote) in enumerate(orders):
        book.add(_order(f"o{n}", symbol, quantity=quantity, quote=str(quote)))
    for symbol in ticked:
        book.on_tick(symbol, Decimal(1), T0)
    now = T0 + timedelta(seconds=age)
    unpriced, stale = book.unknown_prices(now, STALE)
    never = [(q, p) for s, q, p in orders if s not in ticked]
    old = [(q, p) for s, q, p in orders if s in ticked and age > 30]
    assert unpriced.orders == len(never) and unpriced.notional == sum((q * p for q, p in never), Decimal(0))
    assert stale.orders == len(old) and stale.notional == sum((q * p for q, p in old), Decimal(0))


def test_unpriced_and_stale_notional_cross_their_thresholds_like_exposure():
    """The watch raises a breach when any order is unpriced (threshold 0) and a recovery when none is left;
    the stale threshold likewise."""
    watch = LiabilityWatch({"order_pct": Decimal(2), "order_amount": Decimal(500), "total_amount": Decimal(10000),
                            "oldest_age_seconds": 3600, "unpriced_amount": Decimal(0), "stale_amount": Decimal(100)},
                           stale_after_seconds=30)
    book = ExposureBook(price_places=2)
    assert watch.on_book(book, T0) == []
    book.add(_order("a", "NOPE.L", quantity=10, quote="2.50"))
    [alert] = watch.on_book(book, T0 + timedelta(seconds=1))
    assert (alert.kind, alert.name, alert.value) == (BREACH, "unpriced_amount", Decimal("25.00"))
    book.on_tick("BP.L", Decimal("4.08"), T0)
    book.add(_order("b", "BP.L", quantity=100, quote="4.0850"))
    [alert] = watch.on_book(book, T0 + timedelta(seconds=31))
    assert (alert.kind, alert.name) == (BREACH, "stale_amount")
    book.remove("a")
    book.remove("b")
    alerts = watch.on_book(book, T0 + timedelta(seconds=32))
    assert sorted((a.kind, a.name) for a in alerts) == [(RECOVERY, "stale_amount"), (RECOVERY, "unpriced_amount")]


def test_an_unpriced_order_pages_after_the_hold_down_and_its_recovery_pages_once_none_is_left():
    """The unpriced threshold pages through the same rules as exposure (hold-down, recovery hold); a threshold of
    0 recovers when nothing is unpriced any more."""
    settings = load_settings(paging_hold_down_seconds=2.0, paging_recovery_seconds=10.0)
    paging = ExposurePaging.from_settings(settings)
    watch = LiabilityWatch.from_settings(settings)
    book = ExposureBook(price_places=2)
    book.add(_order("a", "NOPE.L", quantity=10, quote="2.50"))

    def look(at: float) -> list[str]:
        moment = T0 + timedelta(seconds=at)
        return [p.kind for p in paging.on_book(book, moment, watch.unknown(book, moment))
                if p.group == "unpriced_amount"]

    assert look(0) == [] and paging.groups["unpriced_amount"].state == "pending"
    assert look(2.5) == ["breach"]
    book.remove("a")
    assert look(3) == [] and look(12) == []
    assert look(13.5) == ["recovery"] and paging.groups["unpriced_amount"].state == "idle"
