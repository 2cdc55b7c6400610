"""The divergence monitor's HTTP endpoint, served on a thread of its own.

``GET /health``: cheap liveness and progress (readiness, counters, stream positions).
``GET /snapshot``: the live summary (503 until the monitor has caught up); ``?orders=all`` or
``?prefix=ID`` adds the exact per-order exposure of pending orders, for drills and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tradeops.runtime.platform.service import JsonHandler

__all__ = ["handler"]


def handler(health: Callable[[], dict[str, Any]],
            snapshot: Callable[[str | None], dict[str, Any] | None]) -> type[BaseHTTPRequestHandler]:
    """A request handler answering from ``health()`` and ``snapshot(orders)`` (None while not ready;
    ``orders``: ``"all"``, an order id prefix, or None for the summary alone)."""

    class Handler(JsonHandler):
        server_version = "tradeops-monitor"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/health":
                self.reply(200, health())
            elif url.path == "/snapshot":
                orders = query.get("orders", [None])[0]
                prefix = query.get("prefix", [None])[0]
                body = snapshot("all" if orders == "all" else prefix)
                if body is None:
                    self.reply(503, {"ready": False, "error": "rebuilding"})
                else:
                    self.reply(200, body)
            else:
                self.reply(404, {"error": f"no such path {url.path}"})

    return Handler
