"""The divergence monitor's writer thread: flushes and ledger entries, one at a time, in order.

The stream-following thread never waits on a write. About once a second it takes a
:class:`Flush` under its lock (one consistent moment) and hands it here; a fill's ledger entry is
handed here as it is seen. This thread writes them in the order they came:

- a flush: the orders whose *maximum* exposure rose (BatchWriteItem), the live summary, the
  CloudWatch metrics (an EMF log line), and last the checkpoints, so a checkpoint never passes
  the writes it covers and a crash can only replay, never skip;
- a ledger entry (:meth:`.ledger.Ledger.record_fill`: created once, a replayed fill finds it there).

Every write is retried until it works; once one is lost (only while stopping), nothing after it is
written, and the next start replays from the checkpoint before it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from tradeops.runtime.liability.exposuretable import ExposureTable
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.logs import bound
from tradeops.runtime.platform.metrics import publish
from tradeops.runtime.platform.retries import until_done

__all__ = ["Flush", "Writer"]

log = logging.getLogger("tradeops.monitor")

T = TypeVar("T")


@dataclass(frozen=True)
class Flush:
    """Everything one flush writes: items of the exposure table, the summary, the metrics, taken at ``at``."""

    writes: list[dict[str, Any]]  # the maxima that rose
    summary: dict[str, Any]
    checkpoints: list[dict[str, Any]]
    metrics: list[tuple[str, float, str]]
    at: datetime


class Writer:
    """The writer thread (see the module docstring). ``lock`` guards ``counters``, shared with the monitor."""

    def __init__(self, table: ExposureTable, ledger: Ledger, metric_namespace: str, *, lock: threading.RLock,
                 counters: Counter[str], stop: threading.Event) -> None:
        self.table = table
        self.ledger = ledger
        self.metric_namespace = metric_namespace
        self.lock = lock
        self.counters = counters
        self.stop = stop
        self._busy = threading.Event()  # a flush is queued or being written
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()

    @property
    def behind(self) -> bool:
        """Whether the last flush is not written yet (the next one would carry the same changes)."""
        return self._busy.is_set()

    def flush(self, take: Callable[[], Flush]) -> None:
        """Queue the flush ``take`` builds, unless the last one is still being written (its changes wait for the
        next). ``take`` runs on the caller's thread (and takes the caller's lock)."""
        if self._busy.is_set():
            return
        self._busy.set()
        self._queue.put(("flush", take()))

    def final_flush(self, take: Callable[[], Flush]) -> None:
        """Queue one last flush whatever is pending (the monitor is stopping)."""
        self._busy.clear()
        self.flush(take)

    def ledger_entry(self, order: dict[str, Any], fallback: datetime) -> None:
        """Queue the ledger entry of a filled order (``fallback``: its fill time when the order has none)."""
        self._queue.put(("ledger", (order, fallback)))

    def close(self) -> None:
        """Stop after what was queued so far."""
        self._queue.put(None)

    def run(self) -> None:
        failed = False
        while True:
            task = self._queue.get()
            if task is None:
                return
            kind, payload = task
            try:
                if failed:
                    continue  # nothing after a lost write may be written: a checkpoint would skip it
                if kind == "ledger":
                    with bound(order_id=payload[0].get("order_id")):  # every line about this fill names the order
                        self._ledger_entry(*payload)
                else:
                    self._write(payload)
            except Exception as exc:  # only when stopping: the checkpoint stays behind, a restart replays
                failed = True
                log.error("%s not written: %s", kind, str(exc)[:200])
            finally:
                if kind == "flush":
                    self._busy.clear()

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """Retry an AWS write until it works (a checkpoint must not pass what it covers).

        Unbounded on purpose, but jittered and capped at 5 s between attempts (stamina). Once the
        monitor is stopping it does not retry (the stack may be going down with it): the checkpoint
        then stays behind this write and the next start replays it. Bad input is never retried.
        """
        def retry(exc: Exception) -> bool:
            if isinstance(exc, BadInput):
                return False
            with self.lock:
                self.counters["write_errors"] += 1
            if self.stop.is_set():
                return False
            log.warning("%s failed, retrying: %s", what, str(exc)[:200])
            return True

        return until_done(action, retry=retry)

    def _write(self, task: Flush) -> None:
        self._retrying("write maxima", lambda: self.table.batch_write(task.writes))
        self._retrying("write summary", lambda: self.table.put_summary(task.summary))
        self._retrying("write checkpoints", lambda: self.table.batch_write(task.checkpoints))
        # An EMF log line (platform/metrics.py), not PutMetricData: no request, nothing to stall on.
        publish(self.metric_namespace, task.metrics, at=task.at)

    def _ledger_entry(self, order: dict[str, Any], fallback: datetime) -> None:
        try:
            _, created = self._retrying(f"ledger entry for {order.get('order_id')}",
                                        lambda: self.ledger.record_fill(order, filled_at_fallback=fallback))
        except BadInput as exc:
            with self.lock:
                self.counters["ledger_errors"] += 1
            log.error("no ledger entry for order %s: %s", order.get("order_id"), exc)
            return
        with self.lock:
            self.counters["ledger_created" if created else "ledger_replayed"] += 1
        log.info("ledger entry %s for filled order %s", "created" if created else "already there",
                 order.get("order_id"))
