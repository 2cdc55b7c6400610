"""Is a broker silent? A watch on calls still in flight, beside the breaker. Pure: time passed in, no I/O.

The circuit breaker (:mod:`.breaker`) judges *finished* calls. A blackholed broker accepts the
connection and never answers, so no call finishes until the read timeout, and every order sent
meanwhile is an order in doubt. This module judges the calls that have *not* finished yet:

    A broker is **suspect** when one of its outstanding calls was sent after the last answer it
    gave, and has been waiting longer than the suspicion threshold.

    threshold = clamp(multiple x p99 of its recent answered calls, floor_ms, ceiling_ms)

With too few answered calls to know a p99 (``min_samples``), the threshold is the ceiling (the
read timeout): no earlier than a timeout would tell. An answer of any kind (a fill, a rejection,
an HTTP error, a health check) proves the broker is alive, so a call sent before the latest
answer is never evidence: a broker that answers others while one request is lost is slow, not
silent.

:func:`judge` is the decision (plain values and ``now`` in, a :class:`Verdict` with its evidence
out). :class:`CallWatch` is the bookkeeping the router keeps per broker: outstanding calls with
their start times, the time of the last answer, and the recent latencies, all in monotonic
seconds the caller passes in. What the router does with a verdict (trip the breaker, publish a
``broker_suspect`` event, keep orders away until the breaker's probes close it again) is in
:mod:`.router`; a suspect broker never comes back because a timer ran out.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tradeops.runtime.platform.errors import ConfigError

if TYPE_CHECKING:
    from tradeops.runtime.platform.settings import Settings

__all__ = ["CallWatch", "SuspicionConfig", "Verdict", "judge", "p99", "threshold_ms"]


@dataclass(frozen=True)
class SuspicionConfig:
    """How long a silence may last before a broker is suspect (see the module docstring)."""

    multiple: float = 4.0
    floor_ms: float = 150.0
    ceiling_ms: float = 2000.0
    min_samples: int = 5
    history: int = 200

    def __post_init__(self) -> None:
        problems = []
        # Below 1 a broker answering exactly at its p99 would be suspect.
        if not (math.isfinite(self.multiple) and self.multiple >= 1):
            problems.append(f"multiple must be ≥ 1 (got {self.multiple})")
        if not (math.isfinite(self.floor_ms) and self.floor_ms > 0):
            problems.append(f"floor_ms must be > 0 (got {self.floor_ms})")
        if not (math.isfinite(self.ceiling_ms) and self.ceiling_ms >= self.floor_ms):
            problems.append(f"ceiling_ms must be ≥ floor_ms={self.floor_ms:g} (got {self.ceiling_ms})")
        if not 1 <= self.min_samples <= self.history:
            problems.append(f"min_samples must be between 1 and history={self.history} (got {self.min_samples})")
        if problems:
            raise ConfigError("invalid suspicion settings: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings) -> SuspicionConfig:
        """From the ``suspect_*`` settings; the ceiling defaults to the broker read timeout."""
        ceiling = settings.suspect_ceiling_ms or settings.broker_read_timeout * 1000
        return cls(multiple=settings.suspect_multiple, floor_ms=min(settings.suspect_floor_ms, ceiling),
                   ceiling_ms=ceiling, min_samples=settings.suspect_min_samples, history=settings.suspect_history)


@dataclass(frozen=True)
class Verdict:
    """One judgement of one broker, with the evidence a person needs to trust it."""

    suspect: bool
    oldest_age_ms: float | None  # age of the oldest call sent since the last answer (None: there is none)
    threshold_ms: float
    p99_ms: float | None  # None: too few answered calls to know
    outstanding: int  # calls in flight, answered-since or not

    def evidence(self) -> dict[str, Any]:
        """The verdict as event facts, in milliseconds to 0.1.

        The call's age is rounded up and the threshold down, so the evidence of a suspect broker always
        reads "older than the threshold": a call 150.04 ms old against a 150 ms threshold is published
        as 150.1 > 150.0, never as 150.0 > 150.0.
        """
        def ms(value: float | None, to: Callable[[float], int] = round) -> float | None:
            return None if value is None else to(value * 10) / 10

        return {"oldest_call_ms": ms(self.oldest_age_ms, math.ceil), "threshold_ms": ms(self.threshold_ms, math.floor),
                "p99_ms": ms(self.p99_ms), "outstanding": self.outstanding}


def p99(latencies: Sequence[float]) -> float | None:
    """The 99th percentile (nearest rank) of ``latencies``; None for an empty sequence."""
    if not latencies:
        return None
    ranked = sorted(latencies)
    return ranked[max(0, math.ceil(0.99 * len(ranked)) - 1)]


def threshold_ms(p99_ms: float | None, config: SuspicionConfig) -> float:
    """The suspicion threshold for a broker whose recent p99 is ``p99_ms`` (None: unknown → the ceiling)."""
    if p99_ms is None:
        return config.ceiling_ms
    return min(max(config.multiple * p99_ms, config.floor_ms), config.ceiling_ms)


def judge(outstanding: Iterable[float], last_answer_at: float | None, latencies_ms: Sequence[float],
          now: float, config: SuspicionConfig) -> Verdict:
    """Whether a broker is suspect ``now``.

    ``outstanding``: start times of its calls in flight; ``last_answer_at``: when it last answered
    anything (None: never); ``latencies_ms``: its recent answered calls' latencies. All times are
    the caller's monotonic seconds.
    """
    starts = list(outstanding)
    known = p99(latencies_ms) if len(latencies_ms) >= config.min_samples else None
    limit = threshold_ms(known, config)
    unanswered = [s for s in starts if last_answer_at is None or s > last_answer_at]
    age = (now - min(unanswered)) * 1000 if unanswered else None
    return Verdict(suspect=age is not None and age > limit, oldest_age_ms=age, threshold_ms=limit,
                   p99_ms=known, outstanding=len(starts))


class CallWatch:
    """One broker's calls in flight, its last answer and its recent latencies. Thread-safe, time passed in."""

    def __init__(self, config: SuspicionConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._outstanding: dict[int, float] = {}
        self._latencies: deque[float] = deque(maxlen=config.history)
        self._last_answer: float | None = None

    def started(self, now: float) -> int:
        """A call was sent at ``now``; returns its token for :meth:`answered` or :meth:`ended`."""
        with self._lock:
            token = next(self._tokens)
            self._outstanding[token] = now
            return token

    def answered(self, token: int, now: float, latency_ms: float | None = None) -> None:
        """The broker answered the call (``latency_ms`` for a successful one, counted in the p99)."""
        with self._lock:
            self._outstanding.pop(token, None)
            self._last_answer = now if self._last_answer is None else max(self._last_answer, now)
            if latency_ms is not None and math.isfinite(latency_ms) and latency_ms >= 0:
                self._latencies.append(latency_ms)

    def ended(self, token: int) -> None:
        """The call ended without an answer (timeout, refused connection): no proof of life."""
        with self._lock:
            self._outstanding.pop(token, None)

    def verdict(self, now: float) -> Verdict:
        with self._lock:
            starts, last, latencies = list(self._outstanding.values()), self._last_answer, list(self._latencies)
        return judge(starts, last, latencies, now, self.config)
