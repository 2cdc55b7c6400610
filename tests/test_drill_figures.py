"""A drill's figures and verdict from journal, events, orders and timeline (drillresult.figures, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.drillresult.figures import (
    compute_figures,
    fault_window,
    journal_findings,
    judge,
    parse_tolerance,
    share_from,
)
from tradeops.runtime.orderpath.routing import trickle_bucket
from tradeops.runtime.platform.clock import iso

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return iso(T0 + timedelta(seconds=seconds))


def run(name: str, func: str, end: float, status: str = "succeeded", **arguments) -> dict:
    return {"activity": {"name": name, "type": "action",
                         "provider": {"type": "python", "func": func, "arguments": arguments}},
            "status": status, "start": at(end - 0.05), "end": at(end)}


def journal(*runs, before=True, after=True, status="completed", deviated=False, rollbacks=()) -> dict:
    return {"status": status, "deviated": deviated, "run": list(runs), "rollbacks": list(rollbacks),
            "steady_states": {"before": {"steady_state_met": before, "probes": []},
                              "after": {"steady_state_met": after, "probes": []}}}


OUTAGE = journal(run("auto", "put_parameter", 0.0), run("down", "inject_fault", 10.0, provider="primary", mode="down"),
                 run("heal", "clear_fault", 20.0, provider="primary"))


def order(oid: str, provider: str, submitted: float, filled: float | None = None, status: str = "FILLED") -> dict:
    history = [{"at": at(submitted - 0.1), "status": "ACCEPTED"},
               {"at": at(submitted), "status": "SUBMITTING", "provider": provider}]
    if filled is not None:
        history.append({"at": at(filled), "status": status})
    return {"order_id": oid, "provider": provider, "status": status, "history": history}


def test_the_fault_window_is_read_from_the_method_runs():
    """Fault start is the start of the first real inject_fault (the fault takes hold within the call); healed is
    the end of the clear after it."""
    window = fault_window(OUTAGE)
    assert window.provider == "primary"
    assert window.start == pytest.approx((T0 + timedelta(seconds=9.95)).timestamp())
    assert window.healed == pytest.approx((T0 + timedelta(seconds=20)).timestamp())


def test_a_detection_before_the_inject_call_returned_counts_and_none_before_it_started():
    """A breaker opened while the inject call was still answering (the fault had taken hold) is the detection,
    not a miss; one before the call started is another fault's."""
    during = compute_figures(journal=OUTAGE, events=[{"kind": "breaker_opened", "provider": "primary",
                                                      "at": at(9.98)}], orders={}, timeline=[], counts={})
    assert during["time_to_detect"] == pytest.approx(0.03)
    before = compute_figures(journal=OUTAGE, events=[{"kind": "broker_suspect", "provider": "primary",
                                                      "at": at(9.9)}], orders={}, timeline=[], counts={})
    assert before["time_to_detect"] is None


def test_a_fault_mode_none_is_not_a_fault_and_a_killed_worker_is_one_without_a_broker():
    """inject_fault mode none starts nothing; kill_worker starts a fault that names no broker."""
    assert fault_window(journal(run("x", "inject_fault", 5.0, provider="primary", mode="none"))).start is None
    killed = fault_window(journal(run("kill", "kill_worker", 3.0, worker="worker-1")))
    assert killed.start is not None and killed.provider is None


def test_detect_recover_and_back_on_primary_come_from_events_and_orders():
    """Detect: first breaker/suspect event for the faulted broker after the fault; recover and back on the
    primary: from the orders' own submission and fill times."""
    events = [{"kind": "breaker_opened", "provider": "secondary", "at": at(10.1)},
              {"kind": "breaker_opened", "provider": "primary", "at": at(9.0)},   # before the fault: ignored
              {"kind": "broker_suspect", "provider": "primary", "at": at(10.4)},
              {"kind": "breaker_opened", "provider": "primary", "at": at(10.6)}]
    orders = {}
    for n in range(30):  # before the fault, at the primary
        orders[f"a{n}"] = order(f"a{n}", "primary", 5 + n * 0.1, 5.2 + n * 0.1)
    orders["late"] = order("late", "primary", 10.2, 10.3)  # one more at the primary just after the fault
    for n in range(40):  # during the outage, at the secondary
        orders[f"b{n}"] = order(f"b{n}", "secondary", 10.5 + n * 0.2, 10.7 + n * 0.2)
    for n in range(40):  # after the heal: a few at the secondary first, then the primary
        provider = "secondary" if n < 5 else "primary"
        orders[f"c{n}"] = order(f"c{n}", provider, 20.1 + n * 0.2, 20.2 + n * 0.2)
    figures = compute_figures(journal=OUTAGE, events=events, orders=orders, timeline=[], counts={"lost": 0})
    # From the inject call's start (9.95 s): the fault took hold somewhere within it.
    assert figures["time_to_detect"] == pytest.approx(0.45)
    assert figures["time_to_first_secondary_fill"] == pytest.approx(0.75)
    assert figures["time_to_99pct_secondary"] == pytest.approx(0.55)
    assert figures["time_back_on_primary"] == pytest.approx(0.1 + 3 * 0.2)  # from there, every 20 hold 90 %
    assert figures["orders_lost"] == 0


def test_orders_the_trickle_keeps_on_the_standby_do_not_deny_the_time_back_on_primary():
    """After the heal every order goes back to the primary except those whose trickle bucket sends them to the
    standby by design. Three of those among the last 20 used to leave the figure unmeasured (a failed drill, by
    chance, about one run in thirteen at a 5 % trickle); with the routing trickle given they are left out."""
    trickled = [oid for oid in (f"t{n}" for n in range(2000)) if trickle_bucket(oid) < 0.05][:3]
    kept = [oid for oid in (f"c{n}" for n in range(2000)) if trickle_bucket(oid) >= 0.05][:40]
    orders = {}
    for n, oid in enumerate(kept):  # after the heal: five at the secondary (breaker still open), then the primary
        orders[oid] = order(oid, "secondary" if n < 5 else "primary", 20.1 + n * 0.2, 20.2 + n * 0.2)
    for n, oid in enumerate(trickled):  # the trickle's own, among the last 20
        orders[oid] = order(oid, "secondary", 26.05 + n * 0.2, 26.1 + n * 0.2)
    blind = compute_figures(journal=OUTAGE, events=[], orders=orders, timeline=[], counts={})
    assert blind["time_back_on_primary"] is None  # the bug: three trickle orders in the last 20 read as "not back"
    figures = compute_figures(journal=OUTAGE, events=[], orders=orders, timeline=[], counts={}, trickle=0.05)
    assert figures["time_back_on_primary"] == pytest.approx(0.1 + 3 * 0.2)  # as in the test above
    # A real relapse still counts: a chosen (non-trickle) order at the secondary late in the run moves the figure.
    late = kept[-1]
    orders[late] = order(late, "secondary", 20.1 + 39 * 0.2, 20.2 + 39 * 0.2)
    relapsed = compute_figures(journal=OUTAGE, events=[], orders=orders, timeline=[], counts={}, trickle=0.05)
    assert relapsed["time_back_on_primary"] == pytest.approx(0.1 + 3 * 0.2)  # one in 20 still holds 90 %
    for n in (37, 38):
        orders[kept[n]] = order(kept[n], "secondary", 20.1 + n * 0.2, 20.2 + n * 0.2)
    assert compute_figures(journal=OUTAGE, events=[], orders=orders, timeline=[], counts={},
                           trickle=0.05)["time_back_on_primary"] is None  # three in the last 20 do not


def test_timeline_maxima_reimbursements_alerts_and_in_doubt_are_reported():
    """Max oldest age and max exposure from the timeline; owed money as a string; exposure_breach events
    counted; orders still IN_DOUBT counted."""
    timeline = [{"oldest_pending_seconds": 1.5, "exposure_gbp": "10.50"},
                {"oldest_pending_seconds": 4.0, "exposure_gbp": "9.00"}, {"error": "unreadable"}]
    orders = {"x": {"order_id": "x", "status": "IN_DOUBT", "provider": "primary", "history": []}}
    figures = compute_figures(journal=journal(), events=[{"kind": "exposure_breach", "at": at(1)}], orders=orders,
                              timeline=timeline, counts={}, reimbursements_owed=Decimal("12.34"))
    assert figures["max_oldest_pending_seconds"] == 4.0
    assert figures["max_exposure_gbp"] == "10.50"
    assert figures["reimbursements_owed_gbp"] == "12.34"
    assert figures["exposure_alerts"] == 1
    assert figures["orders_in_doubt_unresolved"] == 1
    assert figures["time_to_detect"] is None


def test_an_undetected_fault_leaves_detect_unmeasured_and_its_tolerance_fails():
    """No breaker event after the fault: time_to_detect None, and a tolerance on it fails as 'not measured'."""
    figures = compute_figures(journal=OUTAGE, events=[], orders={}, timeline=[], counts={})
    verdict = judge(figures, parse_tolerance({"time_to_detect": "<= 1"}), [])
    assert not verdict.passed
    assert verdict.failures == ["time to detect (time_to_detect) not measured, tolerance <= 1"]


def test_judge_names_each_failing_figure_with_its_value_and_bound():
    """A figure over its bound fails naming figure, value and bound; ones within pass; the verdict fails."""
    verdict = judge({"time_to_detect": 1.172, "orders_lost": 0},
                    parse_tolerance({"time_to_detect": "<= 0.5", "orders_lost": 0}), [])
    assert not verdict.passed
    assert verdict.failures == ["time to detect (time_to_detect) 1.172s, tolerance <= 0.5"]
    assert [c["passed"] for c in verdict.checks] == [False, True]


def test_the_journal_decides_too_never_the_exit_code():
    """Steady state not met before, a failed activity, a failed rollback or an interruption fail the drill."""
    assert journal_findings(OUTAGE) == []
    bad = journal(run("down", "inject_fault", 1.0, status="failed", provider="primary", mode="down"), before=False,
                  status="interrupted", rollbacks=[run("heal", "clear_faults", 2.0, status="failed")])
    found = journal_findings(bad)
    assert any(f.startswith("steady state before the method: not met") for f in found)
    assert "the experiment ended interrupted" in found
    assert any(f.startswith("activity down failed") for f in found)
    assert any(f.startswith("rollback heal failed") for f in found)
    assert not judge({}, {}, found).passed
    missing = journal_findings({"status": "completed", "run": []})
    assert "steady state after the method: not checked" in missing


@pytest.mark.parametrize("spec,error", [
    ({"latency": "<= 1"}, "unknown figure 'latency'"),
    ({"time_to_detect": "soon"}, "is not a bound"),
])
def test_a_bad_tolerance_is_refused_naming_the_figure(spec, error):
    """An unknown figure or an unreadable bound raises ValueError saying which."""
    with pytest.raises(ValueError, match=error):
        parse_tolerance(spec)


def test_share_from_is_not_fooled_by_many_good_orders_after_a_few_bad_ones():
    """The earliest time from which every run of 20 consecutive orders holds the share."""
    subs = [(float(n), "primary") for n in range(5)] + [(float(n), "secondary") for n in range(5, 500)]
    assert share_from(subs, "secondary", 0.99) == 5.0
    subs.append((500.0, "primary"))  # a trickle order at the very end: 19 of the last 20 still hold 90 %
    assert share_from(subs, "secondary", 0.9) == 3.0
    assert share_from([(1.0, "primary")] * 3, "secondary", 0.99) is None
    assert share_from([], "secondary", 0.99) is None


@given(st.lists(st.tuples(st.floats(0, 100), st.sampled_from(["primary", "secondary"])), min_size=1, max_size=80),
       st.floats(0.5, 1.0))
def test_share_from_answers_a_time_after_which_the_share_holds(subs, share):
    """Whatever the submissions, the answer (if any) is one of their times, and the suffix from it holds the share."""
    found = share_from(subs, "secondary", share)
    if found is None:
        return
    assert found in [t for t, _ in subs]
    ordered = sorted(subs)
    size = min(20, len(ordered))


    def holds_from(first: int) -> bool:
        return all(sum(p == "secondary" for _, p in ordered[s:s + size]) >= share * size
                   for s in range(first, len(ordered) - size + 1))

    assert any(holds_from(i) for i, (t, _) in enumerate(ordered) if t == found)
