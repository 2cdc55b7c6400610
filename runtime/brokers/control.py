"""Clients for the control surfaces of a simulated broker (faults, fills, prices, reset) and of a fault proxy.

Used by the local stack, chaos experiment activities, the price publisher and tests. Errors are
ours: an unreachable control port is a ``StackError``; a refused request (bad fault, bad
prices) is ``BadInput`` with the simulator's or the proxy's reason.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import Any, Self

import httpx

from tradeops.runtime.platform.errors import BadInput, StackError

__all__ = ["ProxyControl", "SimControl"]


@cache
def _tls_context() -> ssl.SSLContext:
    # Building a context costs tens of ms; drills and tests create many short-lived clients.
    return httpx.create_ssl_context()


class _Control:
    """One control address and its JSON requests; ``what`` names it in errors."""

    what = "control"

    def __init__(self, base_url: str, *, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, verify=_tls_context())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise StackError(f"{self.what} at {self.base_url} not reachable: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 400:
            raise BadInput(f"{self.base_url}{path}: {answer.get('error', 'bad request')}")
        if response.status_code != 200 or not isinstance(answer, dict):
            raise StackError(f"{self.base_url}{path}: HTTP {response.status_code} {answer.get('error', '')}".rstrip())
        return answer


class SimControl(_Control):
    """Talks to one simulated broker's control address, e.g. ``http://127.0.0.1:9102``."""

    what = "simulated broker control"

    def health(self) -> dict[str, Any]:
        """``{"ok": true, "name", "wire", "fault"}``."""
        return self._request("GET", "/_sim/health")

    def fault(self) -> dict[str, Any]:
        """The current fault, e.g. ``{"mode": "error", "rate": 0.5}``."""
        return self._request("GET", "/_sim/fault")

    def set_fault(self, mode: str, **params: float) -> dict[str, Any]:
        """Set the fault (``set_fault("latency", ms=800)``); returns it as the broker now shows it."""
        return self._request("POST", "/_sim/fault", {"mode": mode, **params})

    def fills(self) -> list[dict[str, Any]]:
        """Every fill the broker has made since its last reset."""
        return self._request("GET", "/_sim/fills")["fills"]

    def set_prices(self, prices: Mapping[str, Decimal | str]) -> int:
        """Pin fill prices (the market-data feed's latest values); returns how many were set."""
        return self._request("POST", "/_sim/prices", {"prices": {s: str(p) for s, p in prices.items()}})["updated"]

    def prices(self) -> dict[str, str]:
        return self._request("GET", "/_sim/prices")["prices"]

    def reset(self) -> None:
        """Forget orders, fills, tombstones and the fault."""
        self._request("POST", "/_sim/reset")


class ProxyControl(_Control):
    """Talks to one fault proxy's control address (:mod:`tradeops.runtime.brokers.proxy`)."""

    what = "fault proxy control"

    def health(self) -> dict[str, Any]:
        """``{"ok": true, "name", "protocol", "upstream", "fault", "upstream_state", "upstream_lost", "counters"}``."""
        return self._request("GET", "/_proxy/health")

    def fault(self) -> dict[str, Any]:
        """The current fault, e.g. ``{"mode": "latency", "ms": 800, "jitter_ms": 100}``."""
        return self._request("GET", "/_proxy/fault")

    def set_fault(self, mode: str, **params: float) -> dict[str, Any]:
        """Set the fault (``set_fault("reset", rate=0.3)``); returns it as the proxy now shows it."""
        return self._request("POST", "/_proxy/fault", {"mode": mode, **params})

    def reset(self) -> None:
        """Fault ``none``; counters and the upstream's history forgotten."""
        self._request("POST", "/_proxy/reset")
