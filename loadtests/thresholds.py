"""Thresholds as pass/fail, the way k6 does it: ``METRIC OP VALUE``, parsed and judged. Pure.

Examples::

    time_to_fill p99 < 2s
    http failure rate < 0.1%
    orders lost == 0
    orders pending after drain == 0
    achieved rate >= 95% of target
    aws requests per order < 30

The metrics (:data:`METRICS`) and the unit each value is read in:

============================  ==========  ===============================================
metric                        unit        value forms
============================  ==========  ===============================================
``time_to_fill p50|p90|p95|p99|max|mean``  duration  ``2s``, ``500ms``, ``1.5s``, ``2m``
``http p50|p90|p95|p99|max|mean``          duration  response time of ``POST /orders``
``http failure rate``         ratio       ``0.1%`` or ``0.001``
``achieved rate``             rate        ``95% of target`` or ``18/s``
``orders <outcome>``          count       ``0``; outcomes: placed, filled, rejected, pending
                                          after drain, dead lettered, lost, filled twice,
                                          wrong broker, unrecorded fill, unanswered
``aws requests per order``    number      AWS requests per filled order, all processes
============================  ==========  ===============================================

Layers merge by metric (:func:`merge`): a later layer replaces an earlier threshold on the same
metric, so ``--threshold`` on the command line overrides the scenario, which overrides the
:data:`BUILT_IN` ones. A metric that could not be measured (no order filled, no fill ledger to
check) fails its threshold: a run never passes on what it did not see.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tradeops.loadtests.units import UnitError, format_seconds, parse_seconds

__all__ = [
    "BUILT_IN",
    "METRICS",
    "Threshold",
    "ThresholdError",
    "Verdict",
    "evaluate",
    "format_value",
    "merge",
    "parse_threshold",
]

_PERCENTILES = ("p50", "p90", "p95", "p99", "max", "mean")
_OUTCOMES = ("placed", "filled", "rejected", "pending after drain", "dead lettered", "lost", "filled twice",
             "wrong broker", "unrecorded fill", "unanswered")

METRICS: dict[str, str] = {
    **{f"time_to_fill {p}": "duration" for p in _PERCENTILES},
    **{f"http {p}": "duration" for p in _PERCENTILES},
    "http failure rate": "ratio",
    "achieved rate": "rate",
    **{f"orders {o}": "count" for o in _OUTCOMES},
    "aws requests per order": "number",
}
"""Every metric a threshold may name, with its kind of value."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
_SHAPE = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_ ]*?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>\S.*?)\s*$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


class ThresholdError(ValueError):
    """A threshold that cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class Threshold:
    """One declared threshold. ``value`` is in the metric's base unit (seconds, a ratio, a count,
    orders a second); with ``of_target`` it is a share of the target rate."""

    metric: str
    op: str
    value: float
    text: str
    of_target: bool = False
    source: str = "scenario"

    def holds(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.value)


@dataclass(frozen=True)
class Verdict:
    """How one threshold fared: the measured value (None when it could not be measured)."""

    threshold: Threshold
    measured: float | None
    shown: str
    passed: bool

    def line(self) -> str:
        """``time_to_fill p99 < 2s: measured 2.35 s — breached`` (for an operator's terminal)."""
        state = "ok" if self.passed else "BREACHED"
        return f"{self.threshold.text}: measured {self.shown} ({state})"


def _normal_metric(text: str) -> str:
    words = text.lower().replace("time to fill", "time_to_fill").replace("-", " ").split()
    return " ".join(words)


def _value(kind: str, raw: str, text: str) -> tuple[float, bool]:
    raw = raw.strip()
    try:
        if kind == "duration":
            return parse_seconds(raw), False
        if kind == "ratio":
            if raw.endswith("%"):
                number = raw[:-1].strip()
                if _NUMBER.match(number):
                    return float(number) / 100, False
            elif _NUMBER.match(raw):
                return float(raw), False
            raise UnitError("a share like 0.1% or 0.001")
        if kind == "rate":
            share = re.match(r"^(\d+(?:\.\d+)?)\s*%\s*of\s+target$", raw)
            if share:
                return float(share.group(1)) / 100, True
            absolute = re.match(r"^(\d+(?:\.\d+)?)\s*(?:/s)?$", raw)
            if absolute:
                return float(absolute.group(1)), False
            raise UnitError("a rate like '95% of target' or '18/s'")
        if _NUMBER.match(raw):
            return float(raw), False
        raise UnitError("a number")
    except UnitError as exc:
        raise ThresholdError(f"threshold {text!r}: {raw!r} is not {_expected(kind, exc)}") from None


def _expected(kind: str, exc: UnitError) -> str:
    return "a duration like 2s or 500ms" if kind == "duration" else str(exc)


def parse_threshold(text: str, *, source: str = "scenario") -> Threshold:
    """``"time_to_fill p99 < 2s"`` as a Threshold; ThresholdError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ThresholdError("a threshold must be text like 'time_to_fill p99 < 2s'")
    match = _SHAPE.match(text)
    if not match:
        raise ThresholdError(f"threshold {text!r} is not 'METRIC OP VALUE' (e.g. 'time_to_fill p99 < 2s', "
                             "ops: < <= > >= == !=)")
    metric = _normal_metric(match.group("metric"))
    kind = METRICS.get(metric)
    if kind is None:
        raise ThresholdError(f"threshold {text!r}: unknown metric {metric!r} (known: "
                             + ", ".join(sorted(METRICS)) + ")")
    value, of_target = _value(kind, match.group("value"), text)
    normal = f"{metric} {match.group('op')} {match.group('value').strip()}"
    return Threshold(metric=metric, op=match.group("op"), value=value, text=normal, of_target=of_target,
                     source=source)


BUILT_IN: tuple[Threshold, ...] = tuple(
    parse_threshold(t, source="built-in")
    for t in ("orders lost == 0", "orders filled twice == 0", "orders wrong broker == 0",
              "orders unrecorded fill == 0", "orders pending after drain == 0", "orders dead lettered == 0")
)
"""What every run must hold unless a scenario or the command line says otherwise for that metric:
no order lost, filled twice, filled at the wrong broker or filled unknown to the order, and none
left unsettled."""


def merge(*layers: Iterable[Threshold]) -> list[Threshold]:
    """The thresholds in force: later layers replace earlier ones on the same metric (order kept)."""
    merged: dict[str, Threshold] = {}
    for layer in layers:
        for threshold in layer:
            merged.pop(threshold.metric, None)
            merged[threshold.metric] = threshold
    return list(merged.values())


def format_value(metric: str, value: float | None) -> str:
    """A measured value as a person reads it (``1.25 s``, ``0.05%``, ``19.8/s``, ``3``)."""
    if value is None:
        return "nothing (not measured)"
    kind = METRICS.get(metric, "number")
    if kind == "duration":
        return format_seconds(value)
    if kind == "ratio":
        return f"{value * 100:.3g}%"
    if kind == "rate":
        return f"{value:.2f}/s"
    if kind == "count" and float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def evaluate(thresholds: Iterable[Threshold], measured: Mapping[str, float | None], *,
             target_rate: float) -> list[Verdict]:
    """Judge each threshold against the measured metrics; an unmeasured metric fails."""
    verdicts = []
    for threshold in thresholds:
        value = measured.get(threshold.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            verdicts.append(Verdict(threshold, None, format_value(threshold.metric, None), False))
            continue
        if threshold.of_target:
            share = value / target_rate if target_rate > 0 else math.inf
            shown = f"{format_value(threshold.metric, value)} = {share * 100:.1f}% of {target_rate:.2f}/s"
            verdicts.append(Verdict(threshold, value, shown, threshold.holds(share)))
            continue
        verdicts.append(Verdict(threshold, value, format_value(threshold.metric, value), threshold.holds(value)))
    return verdicts
