"""An order worker whose router uses a stock circuit breaker: pybreaker at its defaults (5 failures, 60 s reset).

Run:  python bench/pybreaker_worker.py --id NAME   (bench/bench_drills.py starts it; not shipped)

The baseline of bench/bench_drills.py. Everything else is tradeops's worker and router as shipped;
only the breaker class the router builds is replaced, before the worker starts, by :class:`StockBreaker`,
which offers the router the interface of :class:`tradeops.runtime.orderpath.breaker.CircuitBreaker`
and decides nothing itself: pybreaker counts the failures, opens, waits its reset timeout and
half-opens on the next call. A stock breaker has no in-flight watch, so the bench also runs this
worker with ``TRADEOPS_BROKER_SUSPICION=false``; ``trip`` (the watch's lever) therefore never fires.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pybreaker

from tradeops.runtime.orderpath import router
from tradeops.runtime.orderpath.breaker import BreakerConfig, Transition

STATES = {"closed": "closed", "open": "open", "half-open": "half_open"}


class _Failed(Exception):
    """A failed broker call, replayed into pybreaker so that it counts it."""


class StockBreaker:
    """The router's breaker interface over ``pybreaker.CircuitBreaker()`` with its defaults."""

    def __init__(self, provider: str, config: BreakerConfig) -> None:
        self.provider = provider
        self.config = config  # tradeops's thresholds are ignored: the point is the stock defaults
        self._cb = pybreaker.CircuitBreaker()
        self._lock = threading.Lock()
        self._reported = "closed"

    @property
    def state(self) -> str:
        return STATES[self._cb.current_state]

    def _feed(self, outcome: Any) -> None:
        try:
            self._cb.call(outcome)
        except (_Failed, pybreaker.CircuitBreakerError):
            pass

    def _report(self, now: float, reason: str) -> Transition | None:
        with self._lock:
            state = self.state
            if state == self._reported:
                return None
            transition = Transition(self.provider, self._reported, state, reason, now)
            self._reported = state
            return transition

    def allow(self, now: float) -> bool:
        return self.state != "open"

    def record_success(self, latency_ms: float, now: float) -> Transition | None:
        self._feed(lambda: None)
        return self._report(now, "pybreaker: call succeeded")

    def record_failure(self, now: float, *, reason: str = "", refused: bool = False) -> Transition | None:
        def fail() -> None:
            raise _Failed(reason)

        self._feed(fail)
        return self._report(now, f"pybreaker: {self._cb.fail_counter} failures; last: {reason}")

    def trip(self, now: float, *, reason: str) -> Transition | None:
        return None

    def poll(self, now: float) -> Transition | None:
        return self._report(now, "pybreaker")

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"provider": self.provider, "state": self.state, "failure_rate": 0.0, "slow_rate": 0.0,
                "calls_in_window": self._cb.fail_counter, "opened_at": None, "probes_admitted": 0,
                "probe_successes": 0}


if __name__ == "__main__":
    router.CircuitBreaker = StockBreaker  # type: ignore[misc,assignment]
    from tradeops.runtime.orderpath.worker import _main

    sys.exit(_main(sys.argv[1:]))
