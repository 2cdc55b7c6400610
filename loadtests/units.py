"""Durations and rates as the load scenarios and thresholds write them. Pure.

The runtime has its own duration parser (``tradeops.runtime.platform.clock.parse_duration``), but
the load side may import nothing of the runtime (it runs inside Locust's gevent process), so the
few lines are kept here; both accept the same forms (``500ms``, ``10s``, ``1.5s``, ``2m``, ``1h``,
or a bare number of seconds).
"""

from __future__ import annotations

import math
import re

__all__ = ["UnitError", "format_seconds", "parse_seconds"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class UnitError(ValueError):
    """A value that is not the unit it must be (the message says what was expected)."""


def parse_seconds(value: str | float | int) -> float:
    """Seconds from ``500ms``, ``10s``, ``2m``, ``1h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise UnitError(f"not a duration: {value!r} (e.g. 30s, 500ms, 2m)")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise UnitError(f"not a duration: {value!r} (e.g. 30s, 500ms, 2m)")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise UnitError(f"not a duration: {value!r} (e.g. 30s, 500ms, 2m)")
    return float(match.group(1)) * _FACTORS[match.group(2) or "s"]


def format_seconds(seconds: float) -> str:
    """A duration the way a person reads it: ``850 ms``, ``1.25 s``, ``2 m 5 s``."""
    if math.isinf(seconds):
        return "never"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s".replace(".00 s", " s")
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} m {rest} s" if rest else f"{minutes} m"
