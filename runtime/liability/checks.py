"""The divergence monitor's decisions that no tick or order event triggers. Pure: values and ``now`` in.

Ticks and order events are judged as they come (:meth:`.watches.LiabilityWatch.on_tick`,
:meth:`.paging.ExposurePaging.on_tick`, ...). Two decisions are the monitor's own:

- :func:`periodic`, about once a second: the whole-book thresholds, because some of their figures
  move with no event at all (the oldest order's wait grows, a symbol's last tick goes stale), and
  the paging timers (a hold-down, a recovery hold, a repeat falls due);
- :func:`go_live`, once, when the monitor has caught up with its streams after a start. Until then
  it replays history (the rebuild, a checkpoint's tail): the watches follow along, but nothing is
  recorded or paged, so a replayed order that has long filled raises nothing. Then the watches
  are settled on what is true now (silently), the paging state of the breaches that had paged
  before the restart is restored and fed what is breached now: one that had paged goes on
  silently (or pages its recovery if it is over), a new one pages by the rules. So a restart
  never repeats a page and never forgets one.

Both update the watch and the paging state they are given and return what to record and send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import UnknownPrices
from tradeops.runtime.liability.paging import ExposurePaging, Page
from tradeops.runtime.liability.watches import Alert, LiabilityWatch, order_figure

__all__ = ["Decisions", "go_live", "periodic"]


@dataclass(frozen=True)
class Decisions:
    """What a check decided: the crossings to record and the pages to send (each in the order they happened),
    and the book's (unpriced, stale) orders it judged, for the summary of the same moment."""

    crossings: list[Alert]
    pages: list[Page]
    unknown: tuple[UnknownPrices, UnknownPrices]


def periodic(book: ExposureBook, watch: LiabilityWatch, paging: ExposurePaging, now: datetime, *,
             live: bool) -> Decisions:
    """The look on a timer: every whole-book threshold, and, once ``live`` (caught up), paging and its timers.

    Until then paging is not fed at all: :func:`go_live` feeds it what is open once.
    """
    unknown = watch.unknown(book, now)
    crossings = watch.on_book(book, now, unknown)
    pages = paging.on_book(book, now, unknown) if live else []
    return Decisions(crossings, pages, unknown)


def go_live(book: ExposureBook, watch: LiabilityWatch, paging: ExposurePaging, saved: Mapping[str, Any],
            now: datetime) -> Decisions:
    """Caught up: settle the watches on ``now`` (no crossing recorded), resume the paging state ``saved`` by the
    last monitor (:meth:`.paging.ExposurePaging.snapshot`) with what is breached now, and take a periodic look."""
    unknown = watch.unknown(book, now)
    watch.on_book(book, now, unknown)  # what changed while replaying is history: nothing to record
    breached: dict[str, list[tuple[str, Decimal]]] = {
        threshold: [(view.order_id, order_figure(threshold, view))
                    for key in sorted(keyed.breached) if (view := book.get(key)) is not None]
        for threshold, keyed in watch.per_order.items()}
    pages = paging.resume(saved, breached, now)
    pages += paging.on_book(book, now, unknown)
    return Decisions([], pages, unknown)
