"""The monitor's own decisions, with no moto and no stack: the periodic look, and going live after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradeops.runtime.liability.checks import go_live, periodic
from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import PendingOrder
from tradeops.runtime.liability.paging import ExposurePaging
from tradeops.runtime.liability.watches import BREACH, LiabilityWatch, Threshold
from tradeops.runtime.platform.settings import load_settings

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
SETTINGS = load_settings(threshold_order_pct=Decimal(2), threshold_oldest_age_seconds=30.0, price_stale_seconds=3600,
                         paging_hold_down_seconds=0.0, paging_recovery_seconds=10.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def parts() -> tuple[ExposureBook, LiabilityWatch, ExposurePaging]:
    """A book holding one BUY of 10 quoted at 100 (priced at 100 when placed), and fresh watch and paging."""
    book = ExposureBook(price_places=2)
    book.add(PendingOrder("a", "VOD.L", "BUY", 10, Decimal(100), T0))
    book.on_tick("VOD.L", Decimal(100), T0)
    return book, LiabilityWatch.from_settings(SETTINGS), ExposurePaging.from_settings(SETTINGS)


def test_the_periodic_look_sees_what_no_event_moves_and_pages_only_once_live():
    """The oldest order's wait crosses its threshold with no tick at all: the crossing is decided either way,
    but paging is fed only once the monitor is live, and a crossing is not decided twice."""
    book, watch, paging = parts()
    replaying = periodic(book, watch, paging, at(31), live=False)
    assert [(a.kind, a.name) for a in replaying.crossings] == [(BREACH, Threshold.OLDEST_AGE)]
    assert replaying.pages == [] and paging.groups[Threshold.OLDEST_AGE].state == "idle"
    live = periodic(book, watch, paging, at(32), live=True)
    assert live.crossings == []
    assert [(p.kind, p.group) for p in live.pages] == [("breach", Threshold.OLDEST_AGE)]
    assert live.unknown[0].orders == 0 and live.unknown[1].orders == 0


def _firing_order_pct() -> dict:
    """The paging state a monitor saves after it paged order 'a' breaching order_pct."""
    book, watch, paging = parts()
    result = book.on_tick("VOD.L", Decimal(103), at(1))
    pages = paging.on_tick(result, watch.on_tick(result), at(1))
    assert [(p.kind, p.group) for p in pages] == [("breach", Threshold.ORDER_PCT)]
    return paging.snapshot()


def test_going_live_continues_a_breach_that_had_paged_silently():
    """A restarted monitor that finds the order still breached neither records the crossing again nor pages."""
    saved = _firing_order_pct()
    book, watch, paging = parts()
    watch.on_tick(book.on_tick("VOD.L", Decimal(103), at(2)))  # replayed while catching up
    decided = go_live(book, watch, paging, saved, at(5))
    assert decided.crossings == [] and decided.pages == []
    assert paging.groups[Threshold.ORDER_PCT].state == "firing"
    assert periodic(book, watch, paging, at(6), live=True).pages == []


def test_going_live_pages_the_recovery_of_a_breach_over_while_it_was_down():
    """A breach that had paged and ended while the monitor was down pages its recovery after the recovery hold."""
    saved = _firing_order_pct()
    book, watch, paging = parts()
    assert go_live(book, watch, paging, saved, at(5)).pages == []
    assert periodic(book, watch, paging, at(14), live=True).pages == []
    assert [(p.kind, p.group) for p in periodic(book, watch, paging, at(15), live=True).pages] == [
        ("recovery", Threshold.ORDER_PCT)]


def test_going_live_pages_a_breach_that_never_paged_by_the_rules():
    """A breach open when the monitor goes live, which no monitor had paged, pages as a new one: once."""
    book, watch, paging = parts()
    watch.on_tick(book.on_tick("VOD.L", Decimal(103), at(2)))
    decided = go_live(book, watch, paging, {}, at(5))
    assert decided.crossings == []
    [page] = decided.pages
    assert (page.kind, page.group, page.values) == ("breach", Threshold.ORDER_PCT, (("a", Decimal(3)),))
    assert periodic(book, watch, paging, at(6), live=True).pages == []
