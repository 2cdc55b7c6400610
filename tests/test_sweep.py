"""The sweeper for orders recorded but never queued (issue 13, item 1): the pure decision, the conditional
mark against moto over HTTP, and the intake's fault point."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.orderpath.sweep import MAX_WAIT_SECONDS, due_for_sweep, sweep_interval, sweep_wait
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.faults import FAULT_EXIT, arm

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _order(order_id: str, *, status: str = "ACCEPTED", waited: float = 0.0, sweeps: int = 0,
           swept_ago: float | None = None) -> dict[str, object]:
    order: dict[str, object] = {"order_id": order_id, "status": status,
                                "created_at": iso(NOW - timedelta(seconds=waited)),
                                "updated_at": iso(NOW - timedelta(seconds=waited))}
    if sweeps:
        order["sweeps"] = sweeps
    if swept_ago is not None:
        order["swept_at"] = iso(NOW - timedelta(seconds=swept_ago))
    return order


def test_only_accepted_orders_older_than_the_age_are_due():
    """An ACCEPTED order untouched for the age is due; a younger one or one in any other state is not."""
    orders = [_order("old", waited=31), _order("young", waited=29), _order("exact", waited=30),
              _order("claimed", status="SUBMITTING", waited=300), _order("filled", status="FILLED", waited=300)]
    assert due_for_sweep(orders, now=NOW, age=30) == ["old", "exact"]


def test_a_swept_order_waits_twice_as_long_each_time():
    """After a sweep the next one waits 2 x age, then 4 x age, counted from the sweep: no flood of messages."""
    assert due_for_sweep([_order("a", waited=500, sweeps=1, swept_ago=59)], now=NOW, age=30) == []
    assert due_for_sweep([_order("a", waited=500, sweeps=1, swept_ago=60)], now=NOW, age=30) == ["a"]
    assert due_for_sweep([_order("a", waited=500, sweeps=2, swept_ago=119)], now=NOW, age=30) == []
    assert due_for_sweep([_order("a", waited=500, sweeps=2, swept_ago=120)], now=NOW, age=30) == ["a"]


def test_a_pass_sweeps_at_most_its_limit_longest_waiting_first():
    """A pass re-enqueues at most `limit` orders, those untouched longest first."""
    orders = [_order(f"o{n}", waited=100 + n) for n in range(10)]
    assert due_for_sweep(orders, now=NOW, age=30, limit=3) == ["o9", "o8", "o7"]


@given(age=st.floats(min_value=0.1, max_value=3600), sweeps=st.integers(min_value=0, max_value=10_000))
def test_the_wait_grows_and_is_bounded(age, sweeps):
    """The wait never shrinks with more sweeps, is at least the age, and at most max(10 min, age)."""
    wait = sweep_wait(age, sweeps).total_seconds()
    assert sweep_wait(age, sweeps + 1).total_seconds() >= wait >= min(age, MAX_WAIT_SECONDS) - 1e-6
    assert wait <= max(MAX_WAIT_SECONDS, age) + 1e-6
    assert 1.0 <= sweep_interval(age) <= 15.0


@given(st.lists(st.tuples(st.sampled_from(["ACCEPTED", "SUBMITTING", "IN_DOUBT", "FILLED"]),
                          st.floats(min_value=0, max_value=5000), st.integers(min_value=0, max_value=8)),
                max_size=30),
       st.integers(min_value=0, max_value=40))
def test_due_orders_are_accepted_and_waited_their_turn(specs, limit):
    """Every id returned is an ACCEPTED order that has waited its sweep's wait; none twice; at most `limit`."""
    orders = [_order(f"o{i}", status=s, waited=w, sweeps=k, swept_ago=w if k else None)
              for i, (s, w, k) in enumerate(specs)]
    due = due_for_sweep(orders, now=NOW, age=30, limit=limit)
    by_id = {o["order_id"]: o for o in orders}
    assert len(due) == len(set(due)) <= limit
    for order_id in due:
        order = by_id[order_id]
        assert order["status"] == "ACCEPTED"
        assert NOW - datetime.fromisoformat(str(order["updated_at"])) >= sweep_wait(30, int(order.get("sweeps", 0)))
    eligible = [o for o in orders if o["status"] == "ACCEPTED"
                and NOW - datetime.fromisoformat(str(o["updated_at"])) >= sweep_wait(30, int(o.get("sweeps", 0)))]
    assert len(due) == min(len(eligible), limit)


def _recorded(aws_settings, order_id: str, *, ago: float) -> tuple[OrderStore, dict]:
    store = OrderStore(Aws(aws_settings))
    req = OrderRequest(order_id=order_id, account_id="acc-1", symbol="VOD.L", side="BUY", quantity=1,
                       quote_price="0.72")
    order = new_order(req, now=datetime.now(UTC) - timedelta(seconds=ago))
    assert store.create(order)[1]
    return store, order


def test_two_sweepers_marking_one_order_grant_one_re_enqueue(aws_settings):
    """Of two sweepers that read the same ACCEPTED order, exactly one mark wins; the order's version is
    unchanged (a worker's claim racing the sweep still lands) and it is a candidate for a sweep."""
    store, order = _recorded(aws_settings, f"sweep-{datetime.now(UTC).timestamp()}", ago=60)
    cutoff = datetime.now(UTC) - timedelta(seconds=30)
    assert order["order_id"] in {o["order_id"] for o in store.accepted_untouched_since(cutoff)}
    assert store.mark_swept(order, actor="worker-1") is True
    assert store.mark_swept(order, actor="worker-2") is False
    after = store.require(order["order_id"])
    assert after["version"] == 1 and after["sweeps"] == 1 and after["history"][-1]["actor"] == "worker-1"
    assert store.mark_swept(after, actor="worker-2") is True
    assert store.require(order["order_id"])["sweeps"] == 2
    claimed = store.transition(order, "SUBMITTING", actor="worker-1", set_fields={"provider": "primary"})
    assert claimed["status"] == "SUBMITTING"
    assert store.mark_swept(store.require(order["order_id"]), actor="worker-2") is False


def test_the_intake_does_not_withdraw_an_order_the_sweeper_re_enqueued(aws_settings):
    """The intake's compensating delete leaves an order alone once the sweeper has sent it a message."""
    store, order = _recorded(aws_settings, f"withdraw-{datetime.now(UTC).timestamp()}", ago=60)
    assert store.mark_swept(order, actor="worker-1")
    assert store.withdraw_unsent(order["order_id"]) is False
    assert store.get(order["order_id"]) is not None


def test_an_armed_fault_point_kills_the_process_once(processes, tmp_path):
    """An armed fault point exits the process with FAULT_EXIT and disarms itself; unarmed, it does nothing."""
    code = ("import sys; from pathlib import Path; from tradeops.runtime.platform.faults import fault_point; "
            f"fault_point(Path({str(tmp_path)!r}), 'intake.after_put'); sys.exit(0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    armed = arm(tmp_path, "intake.after_put")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == FAULT_EXIT
    assert not armed.exists()
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
