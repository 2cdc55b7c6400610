"""The liability thresholds, and the watches that see them crossed. Pure, no I/O.

:class:`Threshold` is the one list of the liability thresholds: its members name them in the
settings (``threshold_<name>``), the alerts, the pages, the monitor's summary and ``tradeops
exposure``; everything else that lists them derives from it. Some are per order (keyed by
order_id), the others one figure for the whole book.

A watch reports every *crossing*, exactly when it happens: one breach when a value rises above
its threshold, one recovery when it falls back to or below it, nothing while it stays on the same
side. Whether a crossing is worth waking a person for is :mod:`.paging`'s decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from tradeops.runtime.liability.arithmetic import number, seconds
from tradeops.runtime.liability.exposurebook import ExposureBook, TickResult
from tradeops.runtime.liability.orderexposure import OrderExposure, UnknownPrices
from tradeops.runtime.platform.errors import ConfigError

if TYPE_CHECKING:  # only for annotations: the pure core does not need pydantic at run time
    from tradeops.runtime.platform.settings import Settings

__all__ = [
    "BREACH",
    "PER_ORDER",
    "RECOVERY",
    "UNITS",
    "Alert",
    "KeyedThresholdWatch",
    "LiabilityWatch",
    "Threshold",
    "ThresholdWatch",
    "book_figures",
    "limits_from",
    "order_figure",
]

BREACH = "breach"
RECOVERY = "recovery"


class Threshold(StrEnum):
    """The liability thresholds (see the module docstring): each with its unit, and whether it is per order."""

    unit: str
    per_order: bool

    def __new__(cls, name: str, unit: str, per_order: bool) -> Threshold:
        member = str.__new__(cls, name)
        member._value_ = name
        member.unit = unit
        member.per_order = per_order
        return member

    ORDER_PCT = "order_pct", "%", True  # an order's adverse move from its quote
    ORDER_AMOUNT = "order_amount", "GBP", True  # an order's exposure
    TOTAL_AMOUNT = "total_amount", "GBP", False  # the exposure of all pending orders
    OLDEST_AGE = "oldest_age_seconds", "s", False  # how long the oldest pending order has waited
    UNPRICED_AMOUNT = "unpriced_amount", "GBP", False  # notional at quote of the orders with no price at all
    STALE_AMOUNT = "stale_amount", "GBP", False  # notional at quote of the orders priced from a stale tick

    @property
    def setting(self) -> str:
        """Its limit's name in the settings (``TRADEOPS_THRESHOLD_...`` in the environment)."""
        return f"threshold_{self.value}"


UNITS: Mapping[str, str] = {threshold.value: threshold.unit for threshold in Threshold}
PER_ORDER = frozenset(threshold.value for threshold in Threshold if threshold.per_order)


def limits_from(settings: Settings) -> dict[str, Decimal]:
    """Every threshold's limit in the settings (a float setting by its shortest decimal form: 60.0 -> 60.0)."""
    return {t: number(t.setting, getattr(settings, t.setting), floats=True) for t in Threshold}


def book_figures(book: ExposureBook, now: datetime,
                 unknown: tuple[UnknownPrices, UnknownPrices]) -> dict[Threshold, Decimal | timedelta]:
    """What each whole-book threshold measures at ``now`` (``unknown``: the book's (unpriced, stale) orders)."""
    unpriced, stale = unknown
    return {Threshold.TOTAL_AMOUNT: book.total_exposure(),
            Threshold.OLDEST_AGE: book.oldest_pending(now) or timedelta(0),  # grows with no tick at all
            Threshold.UNPRICED_AMOUNT: unpriced.notional, Threshold.STALE_AMOUNT: stale.notional}


def order_figure(threshold: Threshold, item: OrderExposure) -> Decimal:
    """What a per-order threshold measures of one order (the move is a division: asked only when needed)."""
    return item.adverse_pct if threshold is Threshold.ORDER_PCT else item.exposure


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


def _figure(what: str, value: object) -> Decimal:
    return seconds(value) if isinstance(value, timedelta) else number(what, value, floats=True)


class ThresholdWatch:
    """Crossing/recovery detector: one alert when a value crosses above its threshold, one recovery when
    it falls back to or below it — nothing while it stays on the same side."""

    __slots__ = ("_above", "name", "threshold")

    def __init__(self, name: str, threshold: Decimal | float) -> None:
        self.name = name
        self.threshold = _figure("threshold", threshold)
        self._above = False

    @property
    def above(self) -> bool:
        return self._above

    def observe(self, value: Decimal | float | timedelta, at: datetime) -> Alert | None:
        """Record ``value`` at ``at``; an Alert when it crossed the threshold either way, else None."""
        figure = _figure(self.name, value)
        above = figure > self.threshold
        if above == self._above:
            return None
        self._above = above
        return Alert(BREACH if above else RECOVERY, self.name, figure, self.threshold, at)


class KeyedThresholdWatch:
    """A ThresholdWatch per key (per order_id), holding state only for keys currently in breach."""

    __slots__ = ("_breached", "name", "threshold")

    def __init__(self, name: str, threshold: Decimal | float) -> None:
        self.name = name
        self.threshold = _figure("threshold", threshold)
        self._breached: set[str] = set()

    @property
    def breached(self) -> frozenset[str]:
        return frozenset(self._breached)

    def observe(self, key: str, value: Decimal | float, at: datetime) -> Alert | None:
        figure = _figure(self.name, value)
        above = figure > self.threshold
        if above == (key in self._breached):
            return None
        if above:
            self._breached.add(key)
        else:
            self._breached.discard(key)
        return Alert(BREACH if above else RECOVERY, self.name, figure, self.threshold, at, key=key)

    def forget(self, key: str, at: datetime, reason: str = "no longer pending") -> Alert | None:
        """Drop ``key``; a recovery Alert when it was in breach, so no breach is left open forever."""
        if key not in self._breached:
            return None
        self._breached.discard(key)
        return Alert(RECOVERY, self.name, None, self.threshold, at, key=key, reason=reason)


class LiabilityWatch:
    """A watch per :class:`Threshold`, fed from an ExposureBook and its tick results.

    ``per_order`` holds the keyed watches, ``book_wide`` the others, each in the order of
    :class:`Threshold`; an order is *stale* when its symbol's latest tick is older than ``stale_after``.
    """

    def __init__(self, limits: Mapping[str, Decimal | float], *, stale_after_seconds: float = 30.0) -> None:
        missing = [t.value for t in Threshold if t not in limits]
        if missing:
            raise ConfigError(f"liability threshold limits missing for {', '.join(missing)}")
        self.per_order = {t: KeyedThresholdWatch(t, limits[t]) for t in Threshold if t.per_order}
        self.book_wide = {t: ThresholdWatch(t, limits[t]) for t in Threshold if not t.per_order}
        self.stale_after = timedelta(seconds=stale_after_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> LiabilityWatch:
        return cls(limits_from(settings), stale_after_seconds=settings.price_stale_seconds)

    def limit(self, threshold: Threshold) -> Decimal:
        return (self.per_order[threshold] if threshold.per_order else self.book_wide[threshold]).threshold

    def on_orders(self, items: Iterable[OrderExposure], at: datetime) -> list[Alert]:
        """Per-order alerts for changed orders: a TickResult's ``changed``, or ``take_changes()``.

        Fed from ``take_changes()`` on a timer, a crossing shorter than the timer can go unseen;
        fed every TickResult, nothing is missed but each changed order costs a division.
        """
        alerts = []
        for item in items:
            for threshold, watch in self.per_order.items():
                alert = watch.observe(item.order_id, order_figure(threshold, item), at)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def on_tick(self, result: TickResult) -> list[Alert]:
        """Alerts from one tick: per changed order (unchanged ones cannot cross) and the total."""
        alerts = self.on_orders(result.changed, result.at)
        alert = self.book_wide[Threshold.TOTAL_AMOUNT].observe(result.total_exposure, result.at)
        if alert is not None:
            alerts.append(alert)
        return alerts

    def unknown(self, book: ExposureBook, now: datetime) -> tuple[UnknownPrices, UnknownPrices]:
        """(unpriced, stale) orders of ``book`` at ``now``, by this watch's staleness limit."""
        return book.unknown_prices(now, self.stale_after)

    def on_book(self, book: ExposureBook, now: datetime,
                unknown: tuple[UnknownPrices, UnknownPrices] | None = None) -> list[Alert]:
        """Alerts from the periodic check: every whole-book threshold (:func:`book_figures`; ``unknown`` is
        :meth:`unknown`, computed when not given)."""
        figures = book_figures(book, now, unknown if unknown is not None else self.unknown(book, now))
        alerts = [watch.observe(figures[threshold], now) for threshold, watch in self.book_wide.items()]
        return [a for a in alerts if a is not None]

    def on_order_left(self, order_id: str, at: datetime) -> list[Alert]:
        """Close any open per-order breach of an order that left pending (call with book.remove)."""
        alerts = [watch.forget(order_id, at) for watch in self.per_order.values()]
        return [a for a in alerts if a is not None]
