"""Paging rules: hysteresis, hold-down, grouping, repeats and dedup keys, as properties and examples."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.liability.paging import BrokerPaging, Page, PagingGroup, PagingRules
from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.settings import load_settings

T = Decimal(2)
RULES = PagingRules(threshold=T, margin=Decimal("0.2"), hold_down=2.0, immediate=Decimal(4), recovery_hold=10.0,
                    group_window=5.0, repeat=900.0)

holds = st.floats(0.0, 5.0)
steps = st.floats(0.01, 3.0)


def group(rules: PagingRules = RULES) -> PagingGroup:
    return PagingGroup("order_pct", rules, dedup_key="tradeops/exposure/order_pct")


def run(g: PagingGroup, events: list[tuple[float, Decimal | None]], key: str = "o-1") -> list[Page]:
    """Feed (time, value) pairs; None is a tick with no new value."""
    pages: list[Page] = []
    for now, value in events:
        pages += g.tick(now) if value is None else g.observe(key, value, now)
    return pages


# --------------------------------------------------------------------------- properties


@given(hold=holds, steps=st.lists(steps, min_size=1, max_size=30),
       values=st.lists(st.decimals("2.01", "3.99", places=2), min_size=1, max_size=30), extra=st.floats(0.0, 3.0))
def test_a_breach_sustained_past_the_hold_down_pages_exactly_once_on_time(hold, steps, values, extra):
    """Above the threshold (below the immediate level) for longer than the hold-down: exactly one page, a
    breach, sent at the first look at or after hold-down since it began."""
    rules = PagingRules(threshold=T, margin=Decimal("0.2"), hold_down=hold, immediate=Decimal(4), recovery_hold=10.0,
                        group_window=5.0, repeat=900.0)
    g, now, events = group(rules), 100.0, []
    for step, value in zip(steps, values * len(steps), strict=False):
        events.append((now, value))
        now += step
    end = max(now, 100.0 + hold + extra)
    events.append((end, None))
    looks = sorted(t for t, _ in events)
    pages = run(g, events)
    assert [p.kind for p in pages] == ["breach"]
    assert pages[0].at == min(t for t in looks if t - 100.0 + 1e-6 >= hold) and pages[0].began_at == 100.0


@given(swings=st.lists(st.tuples(steps, st.decimals("1.80", "3.99", places=2)), min_size=1, max_size=80),
       repeat=st.floats(1.0, 60.0))
def test_an_oscillation_within_the_margin_pages_at_most_once_per_repeat_interval(swings, repeat):
    """Once breached, a value swinging anywhere above threshold - margin, at any pace, pages at most once per
    repeat interval (the breach, then repeats), and never a recovery."""
    rules = PagingRules(threshold=T, margin=Decimal("0.2"), hold_down=0.0, recovery_hold=10.0, group_window=5.0,
                        repeat=repeat)
    g, now = group(rules), 0.0
    pages = g.observe("o-1", Decimal("2.5"), now)
    for step, value in swings:
        now += step
        pages += g.observe("o-1", value, now)
    assert "recovery" not in {p.kind for p in pages}
    assert len(pages) <= 1 + now / repeat + 1e-6  # float sums of the steps: 3.9999... intervals may hold 4 pages
    assert all(b.at - a.at + 1e-6 >= repeat for a, b in itertools.pairwise(pages))


@given(events=st.lists(st.tuples(steps, st.one_of(st.none(), st.decimals("0", "5", places=1)),
                                 st.sampled_from(["a", "b", "c"])), max_size=120),
       hold=holds, recovery=st.floats(0.0, 12.0))
def test_a_recovery_is_only_ever_paged_after_a_breach(events, hold, recovery):
    """Whatever the values, keys and timing: pages alternate one breach ... one recovery, never a recovery first,
    and every page carries the group's dedup key."""
    rules = PagingRules(threshold=T, margin=Decimal("0.2"), hold_down=hold, immediate=Decimal(4),
                        recovery_hold=recovery, group_window=2.0, repeat=30.0)
    g, now, pages = group(rules), 0.0, []
    for step, value, key in events:
        now += step
        pages += g.tick(now) if value is None else g.observe(key, value, now)
    open_episode = False
    for page in pages:
        assert page.dedup_key == "tradeops/exposure/order_pct"
        if page.kind == "breach":
            assert not open_episode
            open_episode = True
        else:
            assert open_episode, f"{page.kind} without a breach before it"
            if page.kind == "recovery":
                open_episode = False


@given(hold=st.floats(0.1, 5.0), value=st.decimals("4", "100", places=2))
def test_a_value_at_twice_the_threshold_pages_at_once(hold, value):
    """At or above the immediate level the breach pages on the tick that saw it, whatever the hold-down."""
    rules = PagingRules(threshold=T, margin=Decimal("0.2"), hold_down=hold, immediate=Decimal(4))
    pages = group(rules).observe("o-1", value, 50.0)
    assert [(p.kind, p.at) for p in pages] == [("breach", 50.0)]


# --------------------------------------------------------------------------- examples


def test_the_issue_oscillation_pages_one_breach_and_one_recovery():
    """The price swinging eight times between +2.6 % and -2.5 % over 20 s around the 2 % threshold, then
    settling: one breach, and one recovery once it has stayed below the margin for the recovery hold."""
    g, pages = group(), []
    for n in range(8):  # the monitor looks at least every 0.5 s
        pages += g.observe("o-1", Decimal("2.6") if n % 2 == 0 else Decimal(0), n * 2.5)
        for look in range(1, 5):
            pages += g.tick(n * 2.5 + look * 0.5)
    for look in range(40, 90):
        pages += g.observe("o-1", Decimal(0), look * 0.5)
    assert [p.kind for p in pages] == ["breach", "recovery"]
    assert pages[0].at == 2.0 and pages[1].at == 27.5 and pages[1].transitions == 8


def test_a_breach_shorter_than_the_hold_down_pages_nothing():
    """Up for 1.5 s, back below the margin for good: no page, no recovery."""
    g = group()
    pages = run(g, [(0.0, Decimal("2.5")), (1.5, Decimal("1.5")), (5.0, None), (20.0, None)])
    assert pages == [] and g.state == "idle"


def test_the_hold_down_counts_breached_time_across_short_gaps():
    """1 s breaches with 1 s gaps (within the recovery hold): paged once 2 s of breach have accrued, at the end
    of the second one, even though no single breach lasted the hold-down."""
    pages = run(group(), [(0.0, Decimal("2.5")), (1.0, Decimal(1)), (2.0, Decimal("2.5")), (2.9, None),
                          (3.0, Decimal(1)), (4.0, Decimal("2.5")), (4.5, None)])
    assert [(p.kind, p.at) for p in pages] == [("breach", 3.0)]


def test_breaches_starting_together_go_in_one_message_and_later_ones_are_grouped():
    """Five orders breaching on one tick: one page naming all five, worst first. Two more within the group
    window: one update naming them, sent when the window has passed. All back: one recovery."""
    g, pages = group(), []
    for n, value in enumerate(("2.5", "3.9", "2.1", "3.0", "2.2")):
        pages += g.observe(f"o-{n}", Decimal(value), 0.0)
    pages += g.tick(2.0)
    assert [(p.kind, p.count) for p in pages] == [("breach", 5)]
    assert [k for k, _ in pages[0].values] == ["o-1", "o-3", "o-0", "o-4", "o-2"]
    pages += g.observe("o-5", Decimal("2.4"), 3.0) + g.observe("o-6", Decimal("2.3"), 4.0) + g.tick(6.9)
    assert len(pages) == 1
    pages += g.tick(7.0)
    assert pages[-1].kind == "update" and pages[-1].new_keys == ("o-5", "o-6") and pages[-1].count == 7
    for n in range(7):
        pages += g.forget(f"o-{n}", 8.0)
    pages += g.tick(17.9) + g.tick(18.0)
    assert [p.kind for p in pages] == ["breach", "update", "recovery"]


def test_an_open_breach_is_announced_again_at_the_repeat_interval():
    """Still breached 15 minutes after the page: a repeat with the current value; silence means recovered."""
    g = group(PagingRules(threshold=T, margin=Decimal("0.2"), hold_down=2.0, repeat=900.0))
    pages = run(g, [(0.0, Decimal("2.5")), (2.0, None), (600.0, Decimal("3.1")), (901.9, None), (902.0, None)])
    assert [(p.kind, p.at) for p in pages] == [("breach", 2.0), ("repeat", 902.0)]
    assert pages[1].values == (("o-1", Decimal("3.1")),) and pages[1].began_at == 0.0


def test_a_restored_episode_is_not_paged_again_and_recovers_if_over():
    """After a restart a firing episode continues silently while its keys are still breached; if none is, its
    recovery is paged after the recovery hold."""
    first = group()
    first.observe("o-1", Decimal("5"), 0.0)
    saved = first.snapshot()
    assert saved is not None and saved["announced"] == ["o-1"]
    again = group()
    again.restore(saved, 100.0)
    assert again.observe("o-1", Decimal("3"), 100.0) == [] and again.tick(200.0) == []
    over = group()
    over.restore(saved, 100.0)
    assert over.tick(109.9) == [] and [p.kind for p in over.tick(110.0)] == ["recovery"]


def test_impossible_rules_are_a_config_error():
    """Negative margins or holds, a zero repeat, an immediate level below the threshold: refused."""
    with pytest.raises(ConfigError, match="margin must be"):
        PagingRules(threshold=T, margin=Decimal(-1))
    with pytest.raises(ConfigError, match="immediate must be above"):
        PagingRules(threshold=T, immediate=Decimal(1))
    with pytest.raises(ConfigError, match="repeat must be > 0"):
        PagingRules(threshold=T, repeat=0)


def test_the_exposure_rules_come_from_the_settings():
    """Margin 10 % of the threshold, hold-down 2 s, at once from 2x, recovery hold, group window, 15 min repeats."""
    rules = PagingRules.exposure(Decimal("500"), load_settings())
    assert (rules.margin, rules.hold_down, rules.immediate, rules.repeat) == (Decimal("50"), 2.0, Decimal("1000"),
                                                                            900.0)


# --------------------------------------------------------------------------- brokers, fleet-wide


def _breaker(source: str, from_state: str, to_state: str) -> dict[str, str]:
    kind = {"open": "breaker_opened", "closed": "breaker_closed", "half_open": "breaker_half_open"}[to_state]
    return {"kind": kind, "provider": "primary", "source": source, "from_state": from_state, "to_state": to_state,
            "reason": "failure rate 5/5"}


def test_a_breaker_flapping_ten_times_in_a_minute_pages_twice_at_most():
    """Two workers' breakers opening and closing ten times each within a minute: one page when it first opens,
    one when it has settled, naming the transitions and that it flapped."""
    paging = BrokerPaging(PagingRules.broker(load_settings()), flapping=2)
    pages: list[Page] = []
    now = 0.0
    for flap in range(5):
        for source in ("worker-1", "worker-2"):
            pages += paging.on_event(_breaker(source, "closed", "open"), now, now)
        now += 3.0
        for source in ("worker-1", "worker-2"):
            pages += paging.on_event(_breaker(source, "open", "half_open"), now, now)
            pages += paging.on_event(_breaker(source, "half_open", "closed"), now + 0.5, now + 0.5)
        now += 9.0 if flap < 4 else 0.5
        pages += paging.tick(now)
    assert now < 60
    pages += paging.tick(now + 29.0) + paging.tick(now + 30.5)
    assert [p.kind for p in pages] == ["breach", "recovery"]
    assert pages[1].transitions >= 10 and paging.is_flapping(pages[1])
    assert {p.dedup_key for p in pages} == {"tradeops/broker/primary"}


def test_a_dead_worker_stops_holding_a_broker_unhealthy():
    """A worker whose last word was 'open' and that has said nothing for the stale time no longer counts."""
    paging = BrokerPaging(PagingRules(threshold=Decimal("0.5"), recovery_hold=5.0), stale=60.0)
    assert [p.kind for p in paging.on_event(_breaker("worker-9", "closed", "open"), 0.0, 0.0)] == ["breach"]
    assert paging.tick(59.0) == [] and paging.unhealthy("primary", 59.0) == ["worker-9"]
    assert paging.tick(61.0) == [] and [p.kind for p in paging.tick(66.0)] == ["recovery"]


def test_suspicion_makes_a_broker_unhealthy_until_cleared():
    """A broker_suspect event pages (with the evidence kept); broker_cleared from the same worker lets it recover."""
    paging = BrokerPaging(PagingRules(threshold=Decimal("0.5"), recovery_hold=1.0))
    suspect = {"kind": "broker_suspect", "provider": "primary", "source": "worker-1", "oldest_call_ms": 180.0}
    assert [p.kind for p in paging.on_event(suspect, 0.0, 0.0)] == ["breach"]
    assert paging.last["primary"]["oldest_call_ms"] == 180.0
    cleared = {"kind": "broker_cleared", "provider": "primary", "source": "worker-1"}
    assert paging.on_event(cleared, 4.0, 4.0) == [] and [p.kind for p in paging.tick(5.0)] == ["recovery"]
