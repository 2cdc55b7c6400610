"""A circuit breaker per broker: pure state, time passed in, no I/O.

States and moves::

    closed ──(window ≥ min_calls and failure share ≥ failure_rate
              or slow share ≥ slow_rate)──▶ open
    closed ──(refused_trip connections refused in a row)──▶ open
    open ──(open_seconds have passed; noticed lazily by allow/record/poll/snapshot)──▶ half_open
    half_open ──(half_open_probes consecutive fast successes)──▶ closed
    half_open ──(any failure, any slow success, or all probe slots used
                 and unanswered for open_seconds)──▶ open (fresh open_seconds)
    closed ──(trip: the in-flight watch found the broker silent, :mod:`.suspicion`)──▶ open

A refused connection is proof, not a symptom: the broker's host answered that nothing listens
(or could not be reached at all) and no byte of the request left us. A timeout may be a slow
broker; a refusal is a down one. So refusals open the breaker after ``refused_trip`` in a row
(default 1) instead of waiting for ``min_calls`` outcomes, which at a few orders a second per
worker took seconds. Any answered call resets the count. The way back is unchanged: half-open
probes.

Opening clears the window, so a closed breaker judges only calls made since it last closed.
Results recorded while open (late answers to calls admitted before it opened, health probes
that come too early) are ignored: open means "refuse everything until open_seconds pass".

Reporting. ``record_*`` and ``poll`` return the net change since the last transition they
handed out, so each returned transition starts where the previous one ended and a consumer
that logs them sees an unbroken chain. ``allow`` returns only a bool: an ``open → half_open``
move it makes is reported by the next ``record_*``/``poll``, unless the state has moved on
by then (a probe that closed or reopened the breaker), in which case the one net change is
reported and a re-open nets to nothing. Call ``poll(now)`` just before ``allow(now)`` (same
``now``) to see every move as its own event.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tradeops.runtime.platform.errors import ConfigError

if TYPE_CHECKING:
    from tradeops.runtime.platform.settings import Settings

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "BreakerConfig", "CircuitBreaker", "State", "Transition"]

State = Literal["closed", "open", "half_open"]
CLOSED: State = "closed"
OPEN: State = "open"
HALF_OPEN: State = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds of one breaker; see the module docstring for how each is used."""

    window: int = 20
    min_calls: int = 5
    failure_rate: float = 0.5
    slow_ms: float = 1500.0
    slow_rate: float = 0.8
    open_seconds: float = 3.0
    half_open_probes: int = 2
    refused_trip: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.window < 1:
            problems.append(f"window must be ≥ 1 (got {self.window})")
        # A min_calls above the window could never be reached: the breaker would never open.
        if not 1 <= self.min_calls <= self.window:
            problems.append(f"min_calls must be between 1 and window={self.window} (got {self.min_calls})")
        for name in ("failure_rate", "slow_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 1):
                problems.append(f"{name} must be in (0, 1] (got {value})")
        for name in ("slow_ms", "open_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be > 0 (got {value})")
        if self.half_open_probes < 1:
            problems.append(f"half_open_probes must be ≥ 1 (got {self.half_open_probes})")
        if self.refused_trip < 1:
            problems.append(f"refused_trip must be ≥ 1 (got {self.refused_trip})")
        if problems:
            raise ConfigError("invalid circuit breaker settings: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerConfig:
        """Build the config from the ``breaker_*`` fields of ``tradeops.runtime.platform.settings.Settings``."""
        return cls(
            window=settings.breaker_window,
            min_calls=settings.breaker_min_calls,
            failure_rate=settings.breaker_failure_rate,
            slow_ms=settings.breaker_slow_ms,
            slow_rate=settings.breaker_slow_rate,
            open_seconds=settings.breaker_open_seconds,
            half_open_probes=settings.breaker_half_open_probes,
            refused_trip=settings.breaker_refused_trip,
        )


@dataclass(frozen=True)
class Transition:
    """One reported change of a breaker's state, for the caller to log and publish."""

    provider: str
    from_state: str
    to_state: str
    reason: str
    at: float


@dataclass(frozen=True)
class _Outcome:
    failed: bool
    slow: bool


class CircuitBreaker:
    """The breaker of one broker. Thread-safe; every method takes ``now`` (monotonic seconds).

    Every call admitted by ``allow`` should be followed by exactly one ``record_success`` or
    ``record_failure``. Health-monitor probes are recorded through the same methods without
    calling ``allow`` first; in half_open their successes count as probes, so a healthy
    broker can be closed by the monitor alone.
    """

    def __init__(self, provider: str, config: BreakerConfig) -> None:
        self.provider = provider
        self.config = config
        self._lock = threading.Lock()
        self._state: State = CLOSED
        self._window: deque[_Outcome] = deque(maxlen=config.window)
        self._opened_at: float | None = None
        # Half-open bookkeeping for the current episode. Admissions are counted, never
        # released: allow() carries no ticket, so a late answer from a call admitted before the
        # breaker opened could not be told apart from a probe's, and releasing a slot for it
        # would let more than half_open_probes calls through at once.
        self._probes_admitted = 0
        self._probe_successes = 0
        self._last_admission: float | None = None
        # The state as of the last transition handed to a caller, so that returned transitions chain.
        self._reported: State = CLOSED
        self._pending_reason = ""
        self._refused_in_a_row = 0  # connections refused since the last answered call

    # ----------------------------------------------------------------- public API

    @property
    def state(self) -> State:
        """The state as last evaluated; time-based moves show only after a call that takes ``now``."""
        with self._lock:
            return self._state

    def allow(self, now: float) -> bool:
        """Whether a call to the broker may go ahead now; in half_open this takes a probe slot."""
        with self._lock:
            self._advance(now)
            if self._state == CLOSED:
                return True
            if self._state == OPEN:
                return False
            if self._probes_admitted >= self.config.half_open_probes:
                return False
            self._probes_admitted += 1
            self._last_admission = now
            return True

    def record_success(self, latency_ms: float, now: float) -> Transition | None:
        """Record a call (or health probe) that the broker answered, and how long it took."""
        with self._lock:
            self._advance(now)
            slow = latency_ms > self.config.slow_ms
            self._refused_in_a_row = 0
            if self._state == CLOSED:
                self._window.append(_Outcome(failed=False, slow=slow))
                self._trip_if_needed(now, last="slow call" if slow else "")
            elif self._state == HALF_OPEN:
                if slow:
                    self._open(now, f"probe too slow: {latency_ms:.0f} ms > {self.config.slow_ms:.0f} ms")
                else:
                    self._probe_successes += 1
                    if self._probe_successes >= self.config.half_open_probes:
                        self._close(f"{self._probe_successes} consecutive successful probes")
            return self._report(now)

    def record_failure(self, now: float, *, reason: str = "", refused: bool = False) -> Transition | None:
        """Record a call (or health probe) that failed; ``reason`` is carried into the transition.

        ``refused``: the connection itself failed (refused, unreachable), so the broker is down, not
        slow; ``refused_trip`` of these in a row open a closed breaker at once.
        """
        with self._lock:
            self._advance(now)
            self._refused_in_a_row = self._refused_in_a_row + 1 if refused else 0
            if self._state == CLOSED:
                self._window.append(_Outcome(failed=True, slow=False))
                if refused and self._refused_in_a_row >= self.config.refused_trip:
                    count = self._refused_in_a_row
                    self._open(now, f"connection refused {count} time{'s' if count > 1 else ''} in a row"
                               + (f"; last: {reason}" if reason else ""))
                else:
                    self._trip_if_needed(now, last=reason)
            elif self._state == HALF_OPEN:
                self._open(now, "probe failed" + (f": {reason}" if reason else ""))
            return self._report(now)

    def trip(self, now: float, *, reason: str) -> Transition | None:
        """Open a closed breaker now, on evidence from outside its window (the in-flight watch).

        Only ``closed`` moves: an open breaker is already refusing, and a half-open one is being
        judged by its own probes. The way back is the usual one, half-open probes that succeed.
        """
        with self._lock:
            self._advance(now)
            if self._state == CLOSED:
                self._open(now, reason)
            return self._report(now)

    def poll(self, now: float) -> Transition | None:
        """Apply the time-based moves due by ``now`` and return any change not yet reported."""
        with self._lock:
            self._advance(now)
            return self._report(now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """A plain view for metrics and ``tradeops status``; does not consume a pending transition."""
        with self._lock:
            self._advance(now)
            calls = len(self._window)
            failures = sum(1 for o in self._window if o.failed)
            slows = sum(1 for o in self._window if o.slow)
            return {
                "provider": self.provider,
                "state": self._state,
                "failure_rate": failures / calls if calls else 0.0,
                "slow_rate": slows / calls if calls else 0.0,
                "calls_in_window": calls,
                "opened_at": self._opened_at,
                "probes_admitted": self._probes_admitted,
                "probe_successes": self._probe_successes,
            }

    # ----------------------------------------------------------------- internals (lock held)

    def _advance(self, now: float) -> None:
        """Make the moves that depend only on time."""
        if self._state == OPEN:
            if self._opened_at is not None and now - self._opened_at >= self.config.open_seconds:
                self._state = HALF_OPEN
                self._probes_admitted = 0
                self._probe_successes = 0
                self._last_admission = None
                self._pending_reason = f"open for {self.config.open_seconds:g} s; probing"
        elif (
            self._state == HALF_OPEN
            and self._probes_admitted >= self.config.half_open_probes
            and self._last_admission is not None
            and now - self._last_admission >= self.config.open_seconds
        ):
            # Every slot is taken and no verdict came: a caller lost a result. Without this the
            # breaker would refuse all traffic forever unless a health monitor happened to run.
            self._open(now, f"probes unanswered for {self.config.open_seconds:g} s")

    def _trip_if_needed(self, now: float, *, last: str) -> None:
        calls = len(self._window)
        if calls < self.config.min_calls:
            return
        failures = sum(1 for o in self._window if o.failed)
        slows = sum(1 for o in self._window if o.slow)
        if failures / calls >= self.config.failure_rate:
            why = f"failure rate {failures}/{calls} ≥ {self.config.failure_rate:.0%}"
        elif slows / calls >= self.config.slow_rate:
            why = f"slow rate {slows}/{calls} ≥ {self.config.slow_rate:.0%} (slower than {self.config.slow_ms:g} ms)"
        else:
            return
        self._open(now, why + (f"; last: {last}" if last else ""))

    def _open(self, now: float, reason: str) -> None:
        self._state = OPEN
        self._refused_in_a_row = 0
        self._opened_at = now
        self._window.clear()
        self._probes_admitted = 0
        self._probe_successes = 0
        self._last_admission = None
        self._pending_reason = reason

    def _close(self, reason: str) -> None:
        self._state = CLOSED
        self._opened_at = None
        self._window.clear()
        self._probes_admitted = 0
        self._probe_successes = 0
        self._last_admission = None
        self._pending_reason = reason

    def _report(self, now: float) -> Transition | None:
        # Net change since the last report: intermediate moves nobody asked about (open → half_open
        # inside allow) fold into this one, so the reported chain never has a gap.
        if self._state == self._reported:
            return None
        transition = Transition(
            provider=self.provider,
            from_state=self._reported,
            to_state=self._state,
            reason=self._pending_reason,
            at=now,
        )
        self._reported = self._state
        return transition
