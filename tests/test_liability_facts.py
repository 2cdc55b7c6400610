"""What the monitor says: the summary's figures and thresholds, a crossing's facts, a page's subject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.facts import crossing_facts, figures, page_facts, page_subject
from tradeops.runtime.liability.orderexposure import PendingOrder
from tradeops.runtime.liability.paging import ExposurePaging
from tradeops.runtime.liability.watches import LiabilityWatch, Threshold
from tradeops.runtime.platform.settings import load_settings

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
SETTINGS = load_settings(threshold_order_pct=Decimal(2), threshold_order_amount=Decimal(25),
                         paging_hold_down_seconds=0.0)


def test_the_summary_shows_every_threshold_once_with_its_unit_limit_and_figure():
    """One row per threshold, in the one list's order, each with its unit, limit and current figure, rounded."""
    book, watch = ExposureBook(price_places=2), LiabilityWatch.from_settings(SETTINGS)
    book.add(PendingOrder("a", "VOD.L", "BUY", 10, Decimal(100), T0))
    book.add(PendingOrder("b", "NOPE.L", "SELL", 4, Decimal("2.50"), T0))
    now = T0 + timedelta(seconds=1)
    watch.on_tick(book.on_tick("VOD.L", Decimal("103.005"), now))
    summary = figures(book, watch, ExposurePaging.from_settings(SETTINGS), now, lambda _oid, peak: peak,
                      watch.unknown(book, now))
    rows = {row["name"]: row for row in summary["thresholds"]}
    assert list(rows) == [t.value for t in Threshold]
    assert [rows[t]["unit"] for t in Threshold] == [t.unit for t in Threshold]
    assert rows["order_pct"] == {"name": "order_pct", "limit": "2", "unit": "%", "value": "3.0050", "breached": True,
                                 "orders_breached": 1}
    assert rows["order_amount"]["value"] == "30.05" and rows["total_amount"]["value"] == "30.05"
    assert rows["unpriced_amount"] == {"name": "unpriced_amount", "limit": "0", "unit": "GBP", "value": "10.00",
                                       "breached": False, "orders_breached": 1}
    assert summary["unpriced"] == {"orders": 1, "notional": "10.00", "oldest_seconds": 1.0}
    assert [w["order_id"] for w in summary["worst"]] == ["a"] and summary["worst"][0]["divergence_pct"] == "3.0050"


def test_a_crossing_and_a_page_name_their_threshold_order_and_unit():
    """A per-order crossing carries the order's figures; its page's subject names the threshold."""
    book, watch = ExposureBook(price_places=2), LiabilityWatch.from_settings(SETTINGS)
    paging = ExposurePaging.from_settings(SETTINGS)
    book.add(PendingOrder("a", "VOD.L", "BUY", 10, Decimal(100), T0))
    result = book.on_tick("VOD.L", Decimal(103), T0)
    crossings = watch.on_tick(result)
    pages = paging.on_tick(result, crossings, T0)
    facts = {f["threshold"]: f for f in (crossing_facts(a, book, watch) for a in crossings)}
    wanted = {"kind": "breach", "order_id": "a", "unit": "GBP", "value": "30.00", "limit": "25", "exposure": "30.00",
              "divergence_pct": "3.0000"}
    assert {k: facts["order_amount"][k] for k in wanted} == wanted
    subjects = sorted(page_subject(page_facts(p, paging, book)) for p in pages)
    assert subjects == ["tradeops exposure breach: order_amount", "tradeops exposure breach: order_pct"]
