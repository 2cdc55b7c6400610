"""The faults a simulated broker can be told to show, and their validation. No I/O.

``POST /_sim/fault`` takes one JSON object; ``parse_fault`` accepts exactly these shapes and
refuses anything else with a reason (a typo in a chaos experiment must fail loudly, not
silently run the experiment against a healthy broker)::

    {"mode": "none"}
    {"mode": "down"}                                   order port closed: connection refused
    {"mode": "error", "rate": 0.5}                     503 "not accepted" for that share (default 1)
    {"mode": "latency", "ms": 800}                     every order-API answer delayed by ms
    {"mode": "blackhole"}                              read requests, never answer
    {"mode": "fill_after_timeout", "ms": 5000}         fill at once, answer after ms (default 5000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["MODES", "Fault", "bounded_number", "fault_mode", "parse_fault"]

MODES = ("none", "down", "error", "latency", "blackhole", "fill_after_timeout")
_PARAMS = {"error": {"rate"}, "latency": {"ms"}, "fill_after_timeout": {"ms"}}
_MAX_MS = 600_000.0


@dataclass(frozen=True)
class Fault:
    mode: str = "none"
    rate: float = 1.0
    ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The fault as ``GET /_sim/fault`` shows it: only the parameters its mode uses."""
        shown: dict[str, Any] = {"mode": self.mode}
        if self.mode == "error":
            shown["rate"] = self.rate
        if self.mode in ("latency", "fill_after_timeout"):
            shown["ms"] = int(self.ms) if self.ms.is_integer() else self.ms
        return shown


def bounded_number(payload: dict[str, Any], key: str, low: float, high: float) -> float:
    """``payload[key]`` as a float between ``low`` and ``high``; ValueError naming the key otherwise."""
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number")
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low:g} and {high:g}")
    return float(value)


def fault_mode(payload: Any, modes: tuple[str, ...], params: dict[str, set[str]]) -> str:
    """The mode of a fault request: one of ``modes``, with no other keys than ``params`` gives it; ValueError
    naming what is wrong otherwise (the simulators' and the fault proxies' requests are read alike)."""
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object like {\"mode\": \"down\"}")
    mode = payload.get("mode")
    if mode not in modes:
        raise ValueError(f"mode must be one of {', '.join(modes)}; got {mode!r}")
    allowed = params.get(mode, set())
    extra = sorted(set(payload) - {"mode"} - allowed)
    if extra:
        raise ValueError(f"mode {mode} takes {', '.join(sorted(allowed)) or 'no parameters'}; "
                         f"unexpected: {', '.join(extra)}")
    return str(mode)


def parse_fault(payload: Any) -> Fault:
    """Validate a fault request; raises ValueError with a reason a person can act on."""
    mode = fault_mode(payload, MODES, _PARAMS)
    if mode == "error":
        return Fault(mode, rate=bounded_number(payload, "rate", 0.0, 1.0) if "rate" in payload else 1.0)
    if mode == "latency":
        if "ms" not in payload:
            raise ValueError("mode latency needs ms (the delay in milliseconds)")
        return Fault(mode, ms=bounded_number(payload, "ms", 0.0, _MAX_MS))
    if mode == "fill_after_timeout":
        return Fault(mode, ms=bounded_number(payload, "ms", 0.0, _MAX_MS) if "ms" in payload else 5000.0)
    return Fault(mode)
