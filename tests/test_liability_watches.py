"""The liability thresholds: the one list, and the watches that report each crossing once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import PendingOrder
from tradeops.runtime.liability.paging import ExposurePaging
from tradeops.runtime.liability.watches import (
    BREACH,
    RECOVERY,
    UNITS,
    KeyedThresholdWatch,
    LiabilityWatch,
    Threshold,
    ThresholdWatch,
    limits_from,
)
from tradeops.runtime.platform.errors import BadInput, ConfigError
from tradeops.runtime.platform.settings import Settings, load_settings

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- the one list


def test_every_threshold_has_its_setting_unit_and_paging_group():
    """Each threshold has a limit in the settings, a unit, a watch and a paging group; nothing else is listed."""
    settings = load_settings()
    assert set(limits_from(settings)) == set(Threshold) and set(UNITS) == {t.value for t in Threshold}
    assert {f for f in Settings.model_fields if f.startswith("threshold_")} == {t.setting for t in Threshold}
    watch = LiabilityWatch.from_settings(settings)
    assert [*watch.per_order, *watch.book_wide] == list(Threshold)
    assert list(ExposurePaging.from_settings(settings).groups) == list(Threshold)
    assert [t.value for t in Threshold if t.per_order] == ["order_pct", "order_amount"]


def test_a_missing_limit_is_refused():
    """A watch without a limit for every threshold cannot be built."""
    with pytest.raises(ConfigError, match="stale_amount"):
        LiabilityWatch({t: D(1) for t in Threshold if t is not Threshold.STALE_AMOUNT})


# --------------------------------------------------------------------------- the watches


def test_threshold_watch_alerts_once_per_crossing():
    """One breach on crossing above, silence while above, one recovery at or below the threshold."""
    watch = ThresholdWatch("total_amount", D(5))
    alerts = [watch.observe(D(v), at(i)) for i, v in enumerate([1, 5, 6, 9, 5, 2, 7])]
    assert [(a.kind, a.value, a.at) if a else None for a in alerts] == [
        None, None, (BREACH, D(6), at(2)), None, (RECOVERY, D(5), at(4)), None, (BREACH, D(7), at(6)),
    ]


def test_threshold_watch_accepts_float_threshold_and_time_values():
    """A float threshold (seconds) is read as its decimal form; timedeltas are compared in seconds."""
    watch = ThresholdWatch("oldest_age_seconds", 60.0)
    assert watch.observe(timedelta(seconds=60), at(0)) is None
    alert = watch.observe(timedelta(seconds=60, microseconds=1), at(1))
    assert alert.kind == BREACH and alert.value == D("60.000001") and alert.threshold == D(60)


@pytest.mark.parametrize("value", [D("NaN"), float("inf"), "3", None, True])
def test_threshold_watch_refuses_non_numbers(value):
    """A NaN, infinite or non-numeric value is refused rather than silently compared."""
    with pytest.raises(BadInput):
        ThresholdWatch("x", 1).observe(value, at(0))


@given(st.lists(st.integers(-5, 15), max_size=60), st.integers(0, 10))
def test_threshold_watch_never_breaches_twice_without_recovery(values, threshold):
    """Alerts alternate breach, recovery, breach...; each one agrees with the side of the threshold."""
    watch = ThresholdWatch("x", threshold)
    kinds = []
    for i, v in enumerate(values):
        alert = watch.observe(v, at(i))
        if alert:
            kinds.append(alert.kind)
            assert (alert.kind == BREACH) == (v > threshold)
        assert watch.above == (v > threshold)
    assert kinds == [BREACH, RECOVERY] * (len(kinds) // 2) + [BREACH] * (len(kinds) % 2)


def test_keyed_watch_keeps_keys_apart_and_forgets():
    """Each key crosses on its own; forgetting a breached key closes it with one recovery."""
    watch = KeyedThresholdWatch("order_amount", D(500))
    assert watch.observe("a", D(600), at(0)).kind == BREACH
    assert watch.observe("b", D(400), at(0)) is None
    assert watch.observe("a", D(700), at(1)) is None
    assert watch.breached == {"a"}
    closed = watch.forget("a", at(2))
    assert (closed.kind, closed.key, closed.value) == (RECOVERY, "a", None)
    assert watch.forget("a", at(3)) is None and watch.forget("b", at(3)) is None
    assert watch.breached == frozenset()


def test_liability_watch_from_settings_follows_book():
    """The settings' thresholds raise per-order, total and age alerts from book results, and close them."""
    cfg = load_settings(threshold_order_amount=D(50), threshold_order_pct=D(2), threshold_total_amount=D(80),
                        threshold_oldest_age_seconds=30.0)
    watch = LiabilityWatch.from_settings(cfg)
    book = ExposureBook()
    book.add(PendingOrder("a", "VOD.L", "BUY", 20, D(100), T0))
    book.add(PendingOrder("b", "VOD.L", "BUY", 10, D(100), T0))
    alerts = watch.on_tick(book.on_tick("VOD.L", D("103"), at(1)))  # a: 60 (3 %), b: 30 (3 %), total 90
    assert sorted((a.name, a.kind, a.key) for a in alerts) == [
        ("order_amount", BREACH, "a"),
        ("order_pct", BREACH, "a"),
        ("order_pct", BREACH, "b"),
        ("total_amount", BREACH, None),
    ]
    assert watch.on_tick(book.on_tick("VOD.L", D("103"), at(2))) == []
    book.remove("a")
    left = watch.on_order_left("a", at(3))
    assert sorted((a.name, a.kind) for a in left) == [("order_amount", RECOVERY), ("order_pct", RECOVERY)]
    book.on_tick("VOD.L", D("110"), at(4))  # b: 100 (10 %)
    (b,) = book.take_changes()
    assert [(a.name, a.key) for a in watch.on_orders([b], at(4))] == [("order_amount", "b")]
    book.on_tick("VOD.L", D("103"), at(5))
    periodic = watch.on_book(book, at(31))
    assert sorted((a.name, a.kind) for a in periodic) == [("oldest_age_seconds", BREACH), ("total_amount", RECOVERY)]
