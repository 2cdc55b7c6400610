"""What the divergence monitor says: its live summary, and the facts of a crossing or a page. Pure, no I/O.

Every figure is exact in the book and rounded only here, for reading: amounts half up to the
penny, percentages to 4 places (:mod:`.arithmetic`). The summary is what ``GET /snapshot`` serves
and ``tradeops exposure`` shows; its ``thresholds`` list one row per :class:`.watches.Threshold`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeops.runtime.liability.arithmetic import round_exposure, round_pct
from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import OrderExposure, UnknownPrices
from tradeops.runtime.liability.paging import ExposurePaging, Page, from_epoch
from tradeops.runtime.liability.watches import PER_ORDER, UNITS, Alert, LiabilityWatch, Threshold
from tradeops.runtime.orderpath.double_executions import money_at_risk
from tradeops.runtime.platform.clock import iso

__all__ = ["WORST", "crossing_facts", "doubles_summary", "figures", "page_facts", "page_subject", "threshold_rows"]

WORST = 20
"""Orders listed by worst exposure in the summary (and open double executions)."""

MaxOf = Callable[[str, Decimal], Decimal]
"""An order's maximum exposure from the book's value (a restarted monitor also knows the stored one)."""


def _order_row(view: OrderExposure) -> dict[str, Any]:
    return {"symbol": view.symbol, "side": view.side, "quantity": str(view.quantity),
            "quote_price": str(view.quote_price), "price": None if view.price is None else str(view.price),
            "exposure": str(round_exposure(view.exposure)), "divergence_pct": str(round_pct(view.adverse_pct))}


def crossing_facts(alert: Alert, book: ExposureBook, watch: LiabilityWatch) -> dict[str, Any]:
    """What the record of one threshold crossing says: which threshold, its value and limit, the order or book."""
    facts: dict[str, Any] = {
        "kind": alert.kind, "threshold": alert.name, "limit": str(alert.threshold),
        "unit": UNITS.get(alert.name, ""), "value": None if alert.value is None else str(alert.value),
        "at": iso(alert.at),
    }
    if alert.reason:
        facts["reason"] = alert.reason
    if alert.key is not None:
        facts["order_id"] = alert.key
        view = book.get(alert.key)
        if view is not None:
            facts.update(_order_row(view))
    else:
        facts.update(total_exposure=str(round_exposure(book.total_exposure())), pending_orders=len(book),
                     currency="GBP")
        if alert.name in (Threshold.UNPRICED_AMOUNT, Threshold.STALE_AMOUNT):
            unpriced, stale = watch.unknown(book, alert.at)
            facts["orders"] = (unpriced if alert.name == Threshold.UNPRICED_AMOUNT else stale).orders
    return facts


def page_facts(page: Page, paging: ExposurePaging, book: ExposureBook) -> dict[str, Any]:
    """What one page says: the threshold, when its breach began, the worst orders, the total."""
    name = page.group
    limit = paging.groups[name].rules.threshold
    facts: dict[str, Any] = {
        "kind": page.kind, "threshold": name, "dedup_key": page.dedup_key, "limit": str(limit),
        "unit": UNITS.get(name, ""), "began_at": iso(from_epoch(page.began_at)), "at": iso(from_epoch(page.at)),
        "transitions": page.transitions,
    }
    if name in PER_ORDER:
        views = [(key, value, book.get(key) if key is not None else None) for key, value in page.values]
        total = sum((v.exposure for _, _, v in views if v is not None), Decimal(0))
        worst = []
        for key, value, view in views[:10]:
            row: dict[str, Any] = {"order_id": key, "value": str(value)}
            if view is not None:
                row.update(_order_row(view))
            worst.append(row)
        facts.update(orders_breached=page.count, new_orders=list(page.new_keys)[:200], worst=worst,
                     orders=list(page.announced)[:200], total_exposure=str(round_exposure(total)), currency="GBP")
        if page.count == 1 and worst:
            facts.update({k: v for k, v in worst[0].items() if k != "value"}, value=worst[0]["value"])
    else:
        facts.update(value=str(page.values[0][1]) if page.values else None,
                     total_exposure=str(round_exposure(book.total_exposure())), pending_orders=len(book),
                     currency="GBP")
    return facts


def page_subject(facts: Mapping[str, Any]) -> str:
    """The subject line of an exposure page: what, which threshold, how many orders."""
    kind, threshold = facts["kind"], facts["threshold"]
    count = facts.get("orders_breached")
    return f"tradeops exposure {kind}: {threshold}" + (f" ({count} orders)" if count and count > 1 else "")


def threshold_rows(watch: LiabilityWatch, snap: Mapping[str, Any], top_exposure: Decimal,
                   unknown: tuple[UnknownPrices, UnknownPrices]) -> list[dict[str, Any]]:
    """One row per threshold: its limit, the figure it watches now, and whether it is breached."""
    unpriced, stale = unknown
    shown = {Threshold.ORDER_PCT: snap["max_divergence_pct"], Threshold.ORDER_AMOUNT: top_exposure,
             Threshold.TOTAL_AMOUNT: snap["total_exposure"],
             Threshold.OLDEST_AGE: round(snap.get("oldest_pending_seconds", 0.0), 1),
             Threshold.UNPRICED_AMOUNT: round_exposure(unpriced.notional),
             Threshold.STALE_AMOUNT: round_exposure(stale.notional)}
    rows = []
    for threshold in Threshold:
        row: dict[str, Any] = {"name": threshold.value, "limit": str(watch.limit(threshold)), "unit": threshold.unit,
                               "value": str(shown[threshold])}
        if threshold.per_order:
            breached = watch.per_order[threshold].breached
            row.update(breached=bool(breached), orders_breached=len(breached))
        else:
            row["breached"] = watch.book_wide[threshold].above
            if threshold in (Threshold.UNPRICED_AMOUNT, Threshold.STALE_AMOUNT):
                row["orders_breached"] = (unpriced if threshold == Threshold.UNPRICED_AMOUNT else stale).orders
        rows.append(row)
    return rows


def figures(book: ExposureBook, watch: LiabilityWatch, paging: ExposurePaging, now: datetime, max_of: MaxOf,
            unknown: tuple[UnknownPrices, UnknownPrices]) -> dict[str, Any]:
    """The summary's figures at ``now``: totals, the orders it cannot price (``unpriced``) or prices from a stale
    tick (``stale_price``), thresholds, worst orders, and what the pager is doing."""
    snap = book.snapshot(now)
    unpriced, stale = unknown
    worst = book.worst(WORST)
    top_exposure = round_exposure(worst[0].exposure) if worst else Decimal("0.00")
    rows = [{"order_id": view.order_id, **_order_row(view),
             "max_exposure": str(round_exposure(max_of(view.order_id, view.max_exposure))),
             "waited_seconds": round((now - view.placed_at).total_seconds(), 1)} for view in worst]
    return {
        "currency": "GBP",
        "rounding": "exposure exact in Decimal, reported rounded half-up to the penny; percentages to 4 places",
        "total_exposure": str(snap["total_exposure"]), "total_exposure_exact": str(book.total_exposure()),
        "max_divergence_pct": str(snap["max_divergence_pct"]),
        "oldest_pending_seconds": round(snap.get("oldest_pending_seconds", 0.0), 3),
        "pending_orders": snap["pending_orders"], "exposed_orders": snap["exposed_orders"],
        # Not zeros: orders whose exposure is unknown (no price at all) or rests on an old price. Notional
        # at the quote; `stale` (of `tradeops exposure`) is about the summary's own age, hence `stale_price`.
        "unpriced": unpriced.as_json(),
        "stale_price": {**stale.as_json(), "after_seconds": watch.stale_after.total_seconds()},
        "thresholds": threshold_rows(watch, snap, top_exposure, unknown), "worst": rows,
        # What the pager (not the figures) is doing: idle, pending (held down) or firing (paged).
        "paging": {name: {"state": g.state, "began_at": None if g.began_at is None else iso(from_epoch(g.began_at))}
                   for name, g in paging.groups.items()},
    }


def doubles_summary(doubles: Mapping[str, Mapping[str, Any]],
                    last_price: Callable[[str], str | None]) -> dict[str, Any]:
    """Open double executions: the extra fills' notional, and the price move since (GBP)."""
    rows = []
    notional = move = at_risk = Decimal(0)
    for order_id, extra in sorted(doubles.items()):
        price, qty = extra["price"], Decimal(extra["quantity"] or 0)
        notional += price * qty
        row = {"order_id": order_id, "symbol": extra["symbol"], "side": extra["side"],
               "quantity": str(extra["quantity"]), "fill_price": str(price), "provider": extra["provider"],
               "filled_at": extra["at"], "notional": str(round_exposure(price * qty)), "price": None,
               "price_move": None, "at_risk": None}
        latest = last_price(extra["symbol"])
        if latest is not None:
            moved, risk = money_at_risk(extra["side"], price, qty, Decimal(latest))
            move += moved
            at_risk += risk
            row.update(price=latest, price_move=str(round_exposure(moved)), at_risk=str(round_exposure(risk)))
        rows.append(row)
    return {"open": len(rows), "notional": str(round_exposure(notional)),
            "price_move": str(round_exposure(move)), "at_risk": str(round_exposure(at_risk)),
            "orders": rows[:WORST]}

