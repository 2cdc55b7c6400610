"""The faults a fault proxy can be told to show, and the small decisions it takes with them. No I/O.

``POST /_proxy/fault`` takes one JSON object; :func:`parse_proxy_fault` accepts exactly these shapes
and refuses anything else with a reason (a typo in an experiment must fail loudly, never run the
drill against a healthy path)::

    {"mode": "none"}
    {"mode": "down"}                                 the proxy's port closed: connection refused
    {"mode": "blackhole"}                            connections accepted, requests read, never forwarded
                                                     nor answered (dropped when the fault changes)
    {"mode": "latency", "ms": 800, "jitter_ms": 100} each request forwarded ms ± jitter_ms late (uniform)
    {"mode": "answer_delay", "ms": 5000}             forwarded at once, the answer held back ms: the
                                                     broker has acted, its caller hears late
    {"mode": "reset", "rate": 0.3}                   that share of requests forwarded and answered by the
                                                     broker, then the caller's connection reset instead
                                                     of relaying the answer (default 1)
    {"mode": "error", "rate": 0.5, "status": 503}    that share answered by the proxy itself with the
                                                     status (default 503), never forwarded (HTTP only)
    {"mode": "bandwidth", "bytes_per_second": 2000}  every byte, both ways, paced to that rate

Where a fault acts on "a request", a TCP proxy (``protocol: tcp``, a wire that is not HTTP) acts on
the first bytes of a connection instead; an HTTP error answer needs HTTP, so ``error`` is HTTP only.

The proxy never answers as the broker: an answer of its own carries the header
:data:`MARKER_HEADER`, whose value says which (:data:`INJECTED`, or :data:`UPSTREAM_REFUSED` /
:data:`UPSTREAM_UNREACHABLE` when it could not reach the broker, before sending it a byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tradeops.runtime.brokers.faults import bounded_number, fault_mode

__all__ = ["HTTP_ONLY", "INJECTED", "MARKER_HEADER", "MODES", "PROTOCOLS", "UPSTREAM_REFUSED",
           "UPSTREAM_UNREACHABLE", "ProxyFault", "delay_seconds", "pace_seconds", "parse_proxy_fault", "strikes"]

MODES = ("none", "down", "blackhole", "latency", "answer_delay", "reset", "error", "bandwidth")
PROTOCOLS = ("http", "tcp")
HTTP_ONLY = frozenset({"error"})
_PARAMS: dict[str, set[str]] = {"latency": {"ms", "jitter_ms"}, "answer_delay": {"ms"}, "reset": {"rate"},
                                "error": {"rate", "status"}, "bandwidth": {"bytes_per_second"}}
_MAX_MS = 600_000.0
_MAX_RATE_BYTES = 1e9

MARKER_HEADER = "x-tradeops-fault-proxy"
"""The header on every answer the proxy gives itself instead of relaying the broker's."""
INJECTED = "injected"
"""The answer is an injected fault (``error``)."""
UPSTREAM_REFUSED = "upstream-refused"
"""The broker refused the proxy's connection: nothing was sent to it (the broker's port is closed)."""
UPSTREAM_UNREACHABLE = "upstream-unreachable"
"""The proxy could not reach the broker at all (no route, timeout, name, TLS): nothing was sent to it;
a fault of the proxy's path, not an answer of the broker."""


@dataclass(frozen=True)
class ProxyFault:
    mode: str = "none"
    rate: float = 1.0
    ms: float = 0.0
    jitter_ms: float = 0.0
    status: int = 503
    bytes_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The fault as ``GET /_proxy/fault`` shows it: only the parameters its mode uses."""
        shown: dict[str, Any] = {"mode": self.mode}
        for key in sorted(_PARAMS.get(self.mode, ())):
            value = getattr(self, key)
            shown[key] = int(value) if isinstance(value, float) and value.is_integer() else value
        return shown


def parse_proxy_fault(payload: Any, *, protocol: str = "http") -> ProxyFault:
    """Validate a fault request for a proxy of ``protocol``; raises ValueError with a reason a person can act on."""
    mode = fault_mode(payload, MODES, _PARAMS)
    if mode in HTTP_ONLY and protocol != "http":
        raise ValueError(f"mode {mode} answers HTTP errors: this proxy relays a {protocol} wire")
    if mode in ("latency", "answer_delay"):
        if "ms" not in payload:
            raise ValueError(f"mode {mode} needs ms (the delay in milliseconds)")
        ms = bounded_number(payload, "ms", 0.0, _MAX_MS)
        jitter = bounded_number(payload, "jitter_ms", 0.0, _MAX_MS) if "jitter_ms" in payload else 0.0
        return ProxyFault(mode, ms=ms, jitter_ms=jitter)
    if mode == "reset":
        return ProxyFault(mode, rate=bounded_number(payload, "rate", 0.0, 1.0) if "rate" in payload else 1.0)
    if mode == "error":
        rate = bounded_number(payload, "rate", 0.0, 1.0) if "rate" in payload else 1.0
        status = payload.get("status", 503)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status, 400 to 599")
        return ProxyFault(mode, rate=rate, status=status)
    if mode == "bandwidth":
        if "bytes_per_second" not in payload:
            raise ValueError("mode bandwidth needs bytes_per_second")
        return ProxyFault(mode, bytes_per_second=bounded_number(payload, "bytes_per_second", 1.0, _MAX_RATE_BYTES))
    return ProxyFault(mode)


def strikes(fault: ProxyFault, draw: float) -> bool:
    """Whether a fault acting on a share of requests (``reset``, ``error``) strikes this one; ``draw`` in [0, 1)."""
    return draw < fault.rate


def delay_seconds(fault: ProxyFault, draw: float) -> float:
    """How long to hold this request (``latency``: ms ± jitter_ms, uniform over ``draw`` in [0, 1), never below 0)."""
    if fault.mode != "latency":
        return 0.0
    return max(0.0, fault.ms + (2 * draw - 1) * fault.jitter_ms) / 1000


def pace_seconds(nbytes: int, fault: ProxyFault) -> float:
    """How long ``nbytes`` take at the ``bandwidth`` fault's rate (0 under any other fault)."""
    if fault.mode != "bandwidth" or nbytes <= 0:
        return 0.0
    return nbytes / fault.bytes_per_second
