"""The load shapes, in orders per second over time. Pure: time in, target rate out.

Ops think in orders a second, so every shape is a rate curve; the Locust side turns the rate into
users (each simulated customer places ``user_rate`` orders a second, see :func:`users_for`).

- ``steady``: ``rate`` for ``duration``.
- ``market-open``: from ``rate`` (the rate before the open) up to ``peak`` in a straight line over
  ``ramp``, then the excess over ``rate`` halves every ``decay``.
- ``spike``: ``rate``, then ``peak`` (or ``rate x multiple``) from ``at`` for ``length``, then
  ``rate`` again.
- ``step``: a staircase for finding the ceiling: ``rate``, then ``step`` more every ``every``,
  never above ``peak`` (when given).

After ``duration`` every shape is over (:meth:`Shape.rate_at` answers None).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["KINDS", "Shape", "Stage", "users_for"]

KINDS = ("steady", "market-open", "spike", "step")


@dataclass(frozen=True)
class Stage:
    """A stretch of the run with one target: ``rate`` is the mean target rate over it."""

    name: str
    start: float
    end: float
    rate: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Shape:
    """One shape with its parameters (seconds and orders per second)."""

    kind: str
    rate: float
    duration: float
    peak: float | None = None
    ramp: float = 120.0
    decay: float = 300.0
    at: float = 10.0
    length: float = 10.0
    multiple: float = 5.0
    step: float = 10.0
    every: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shape {self.kind!r} (one of {', '.join(KINDS)})")
        positive = {"duration": self.duration, "ramp": self.ramp, "decay": self.decay, "length": self.length,
                    "every": self.every}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be above 0, got {value}")
        for name, value in {"rate": self.rate, "at": self.at, "step": self.step,
                            "multiple": self.multiple, "peak": self.peak or 0.0}.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be 0 or more, got {value}")

    # ---- the curve -----------------------------------------------------------------------------
    @property
    def spike_rate(self) -> float:
        return self.peak if self.peak is not None else self.rate * self.multiple

    @property
    def open_peak(self) -> float:
        return self.peak if self.peak is not None else self.rate * self.multiple

    def rate_at(self, t: float) -> float | None:
        """The target rate ``t`` seconds into the run; None once the run is over."""
        if t < 0 or t >= self.duration:
            return None
        if self.kind == "steady":
            return self.rate
        if self.kind == "market-open":
            peak = self.open_peak
            if t < self.ramp:
                return self.rate + (peak - self.rate) * t / self.ramp
            return self.rate + (peak - self.rate) * math.pow(0.5, (t - self.ramp) / self.decay)
        if self.kind == "spike":
            return self.spike_rate if self.at <= t < self.at + self.length else self.rate
        return self._stair(math.floor(t / self.every))

    def _stair(self, index: int) -> float:
        """The target of the step shape's stair number ``index`` (0 first)."""
        level = self.rate + self.step * index
        return min(level, self.peak) if self.peak is not None else level

    @property
    def peak_rate(self) -> float:
        """The highest target the run reaches."""
        if self.kind == "market-open":
            reached = min(self.ramp, self.duration)
            return max(self.rate, self.rate + (self.open_peak - self.rate) * reached / self.ramp)
        return max(stage.rate for stage in self.stages())

    # ---- stretches and totals ------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """The run cut where its target changes (each stair of a step, the spike, the ramp and the decay)."""
        end = self.duration
        if self.kind == "steady":
            return [Stage("steady", 0.0, end, self.rate)]
        if self.kind == "spike":
            cuts = [("before", 0.0, min(self.at, end), self.rate),
                    ("spike", min(self.at, end), min(self.at + self.length, end), self.spike_rate),
                    ("after", min(self.at + self.length, end), end, self.rate)]
            return [Stage(n, s, e, r) for n, s, e, r in cuts if e > s]
        if self.kind == "market-open":
            ramp_end = min(self.ramp, end)
            stages = [Stage("ramp", 0.0, ramp_end, self._integral(0.0, ramp_end) / ramp_end)]
            if end > ramp_end:
                stages.append(Stage("decay", ramp_end, end, self._integral(ramp_end, end) / (end - ramp_end)))
            return stages
        # Stairs by index, never by summing `every` (a sum drifts below k * every, and the stair it
        # names would then be the one before).
        stairs: list[Stage] = []
        index = 0
        while index * self.every < end:
            start, stop = index * self.every, min(end, (index + 1) * self.every)
            stairs.append(Stage(f"step {index + 1}", start, stop, self._stair(index)))
            index += 1
        return stairs

    def _integral(self, a: float, b: float) -> float:
        """Orders the market-open curve asks for between ``a`` and ``b`` (closed form)."""
        peak, total = self.open_peak, 0.0
        ramp_a, ramp_b = min(a, self.ramp), min(b, self.ramp)
        if ramp_b > ramp_a:
            slope = (peak - self.rate) / self.ramp
            total += self.rate * (ramp_b - ramp_a) + slope * (ramp_b ** 2 - ramp_a ** 2) / 2
        decay_a, decay_b = max(a, self.ramp), max(b, self.ramp)
        if decay_b > decay_a:
            k = math.log(2) / self.decay
            excess = (peak - self.rate) / k
            total += self.rate * (decay_b - decay_a) + excess * (
                math.exp(-k * (decay_a - self.ramp)) - math.exp(-k * (decay_b - self.ramp)))
        return total

    def expected_orders(self) -> float:
        """How many orders the whole run asks for."""
        if self.kind == "market-open":
            return self._integral(0.0, self.duration)
        return sum(stage.rate * stage.seconds for stage in self.stages())

    @property
    def mean_rate(self) -> float:
        return self.expected_orders() / self.duration

    def describe(self) -> dict[str, Any]:
        """The parameters that matter for this kind (seconds and orders per second)."""
        wanted = {"steady": ("rate", "duration"),
                  "market-open": ("rate", "peak", "ramp", "decay", "duration"),
                  "spike": ("rate", "peak", "at", "length", "duration"),
                  "step": ("rate", "step", "every", "peak", "duration")}[self.kind]
        values = asdict(self)
        if self.kind in ("spike", "market-open"):
            values["peak"] = self.spike_rate
        return {"kind": self.kind, **{k: values[k] for k in wanted}}


def users_for(rate: float, user_rate: float) -> int:
    """Simulated customers needed for ``rate`` orders a second when each places ``user_rate`` a second."""
    if rate <= 0:
        return 0
    return max(1, round(rate / user_rate))
