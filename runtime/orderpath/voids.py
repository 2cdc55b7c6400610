"""The void watch: after a void, ask the broker again, and catch every double execution.

An order declared void at a broker (:func:`.inflight.void_in_flight`) carries ``watch = "void"`` (a
sparse index of the orders table) and ``void_declared.provider``. Each worker runs
:meth:`VoidWatch.sweep` every ``void_watch_seconds``; for a broker whose last health probe was
answered (it answers again), it asks that broker about each watched order that is final now, one
status query each (a batch of at most ``limit`` per sweep), and records what it means
(:mod:`.double_executions`):

- **clean**: the broker does not hold a fill. A broker that says "not found" is first told to
  cancel the id (a tombstone), so a copy of the order still on its way can never fill there
  later: then the watch is lifted (``void_check`` records the answer and who checked).
- **double**: the broker filled it too. The order gets ``double_execution`` (both fills, who
  declared the void, the notional) and ``watch = "double:open"``, and a ``double_execution``
  event is raised (an alert: a person must unwind it). The write is conditional on the order's
  version, so with many workers sweeping, one records it and one alert goes out.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tradeops.runtime.orderpath.answers import Execution
from tradeops.runtime.orderpath.double_executions import WATCH_OPEN, WATCH_VOID, BrokerAnswer, classify, double_record
from tradeops.runtime.orderpath.orders import OrderStore, StaleOrder
from tradeops.runtime.orderpath.providers import BrokerCallError
from tradeops.runtime.orderpath.router import Router
from tradeops.runtime.orderpath.states import PENDING
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.events import EventLog

__all__ = ["EMPTY_BACKOFF_SECONDS", "VoidWatch", "answer_of"]

EMPTY_BACKOFF_SECONDS = 5.0
"""After finding nothing under watch, look again this much later (a void is rare; the query is not free)."""


def answer_of(ex: Execution | None) -> BrokerAnswer | None:
    """An adapter's answer as the pure rules take it."""
    if ex is None:
        return None
    return BrokerAnswer(provider=ex.provider, status=ex.status, price=ex.price, quantity=ex.quantity,
                        at=iso(ex.at) if ex.at else None, broker_ref=ex.broker_ref)


class VoidWatch:
    """One worker's view of the orders declared void (see the module docstring)."""

    def __init__(self, store: OrderStore, router: Router, events: EventLog, *, actor: str,
                 clock: Any = time.monotonic) -> None:
        self.store = store
        self.router = router
        self.events = events
        self.actor = actor
        self.clock = clock
        self._next_query = 0.0

    def sweep(self, *, limit: int = 50) -> Counter[str]:
        """One round: ask each answering broker about its watched final orders. Returns what was found."""
        found: Counter[str] = Counter()
        answering = {p for p in self.router.providers if self.router.answers(p)}
        if not answering or self.clock() < self._next_query:
            return found
        watched = list(self.store.by_watch(WATCH_VOID))
        if not watched:
            self._next_query = self.clock() + EMPTY_BACKOFF_SECONDS
            return found
        for order in watched:
            if sum(found.values()) >= limit:
                break
            provider = (order.get("void_declared") or {}).get("provider")
            if provider not in answering or order.get("status") in PENDING:
                continue  # that broker is still silent, or the order may yet go back to it: later
            found[self.check(order, provider)] += 1
        return found

    def check(self, order: dict[str, Any], provider: str) -> str:
        """Ask ``provider`` about one voided order and record the outcome; returns it (or ``unanswered``)."""
        order_id = order["order_id"]
        try:
            answer = answer_of(self.router.status(provider, order_id))
            if answer is None:
                # "Not found" now is not "never": tombstone the id so that a late copy is refused.
                answer = answer_of(self.router.cancel(provider, order_id))
        except BrokerCallError:
            return "unanswered"
        outcome = classify(order, answer)
        now = iso(utcnow())
        try:
            if outcome == "clean":
                self.store.annotate(order, actor=self.actor, remove_fields=("watch",),
                                    note=f"void check at {provider}: it holds no other fill",
                                    set_fields={"void_check": {
                                        "result": "clean", "provider": provider, "at": now, "by": self.actor,
                                        "answer": "not held" if answer is None else answer.status}})
            elif outcome == "double":
                assert answer is not None
                record = double_record(order, answer, found_at=now, found_by=self.actor)
                self.store.annotate(order, actor=self.actor, set_fields={"watch": WATCH_OPEN,
                                                                         "double_execution": record},
                                    note=f"executed twice: {provider} filled it after it was declared void "
                                         f"by {record['void_declared_by']}")
                self.events.emit("double_execution", stream="orders", metric=("DoubleExecutions", 1.0),
                                 dimensions={"Provider": provider}, order_id=order_id,
                                 void_declared_by=record["void_declared_by"], voided_at=provider,
                                 fills=record["fills"], notional=str(record["notional"]))
        except StaleOrder:
            return "raced"  # another worker recorded it first (or the order moved): the next sweep sees it
        return outcome
