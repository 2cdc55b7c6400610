"""Which ACCEPTED orders have lost their message, and when to look again. Pure: orders and ``now`` in,
decisions out; the I/O shell is the workers' sweeper (:meth:`tradeops.runtime.orderpath.worker.Worker.sweep_unsent`).

An order can be recorded and never enqueued: the intake died between the put and the send, or the send
failed and so did its compensating delete. Nothing distinguishes such an order from one whose message
is simply still waiting in the queue, except time: an ACCEPTED order untouched for ``age`` has most likely
lost its message, so the sweeper sends it another one. That is always safe (a worker's claim is a
conditional write on the order's version, so a second message for the same order finds it claimed or
final and is dropped), but it must not become a flood when orders wait in the queue for a good reason
(a backlog, a broker outage in manual mode). So each order's next sweep waits twice as long as the last
(``age``, ``2 x age``, ``4 x age`` ... at most :data:`MAX_WAIT_SECONDS`), counted from its last change or
its last sweep, and a pass re-enqueues at most ``limit`` orders, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from tradeops.runtime.orderpath.states import ACCEPTED
from tradeops.runtime.platform.clock import parse_iso

__all__ = ["MAX_WAIT_SECONDS", "due_for_sweep", "last_touched", "sweep_interval", "sweep_wait"]

MAX_WAIT_SECONDS = 600.0
"""The longest wait between two sweeps of one order: an order still waiting gets a message every 10 min."""


def sweep_wait(age: float, sweeps: int) -> timedelta:
    """How long an ACCEPTED order must sit untouched before its next sweep (``sweeps`` so far)."""
    return timedelta(seconds=min(age * 2 ** min(max(sweeps, 0), 20), max(MAX_WAIT_SECONDS, age)))


def sweep_interval(age: float) -> float:
    """Seconds between two passes of one sweeper: half the age (an order is found within 1.5 x age), 1-15 s."""
    return min(max(age / 2, 1.0), 15.0)


def last_touched(order: Mapping[str, Any]) -> datetime:
    """When the order last changed or was last swept, whichever is later."""
    touched = parse_iso(str(order.get("updated_at") or order["created_at"]))
    swept = order.get("swept_at")
    return max(touched, parse_iso(str(swept))) if swept else touched


def due_for_sweep(orders: Iterable[Mapping[str, Any]], *, now: datetime, age: float, limit: int = 100) -> list[str]:
    """Ids of the ACCEPTED orders due for another message at ``now``, the longest waiting first, at most ``limit``."""
    due: list[tuple[datetime, str]] = []
    for order in orders:
        if order.get("status") != ACCEPTED:
            continue
        touched = last_touched(order)
        if now - touched >= sweep_wait(age, int(order.get("sweeps") or 0)):
            due.append((touched, str(order["order_id"])))
    due.sort()
    return [order_id for _, order_id in due[:max(limit, 0)]]
