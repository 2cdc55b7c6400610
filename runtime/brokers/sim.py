"""A simulated broker: one order API (wire ``alpha`` or ``beta``) and one control surface.

Run as ``python -m tradeops.runtime.brokers.sim --name primary --wire alpha --host 127.0.0.1
--order-port P --control-port C --seed 1``. The API key the order API demands is read from
``TRADEOPS_SIM_API_KEY`` (never an argument, never printed); unset means no key is needed.
SIGTERM or SIGINT stops it cleanly (exit 0, both ports closed). It prints nothing while it
runs; a port it cannot bind is one line on stderr and exit 1.

The order rules are in ``orderbook``, the wire formats (and their exact shapes) in ``wires``, the
fault vocabulary in ``faults``. This module moves bytes and applies faults.

Control surface (same for both wires, always reachable, even while the order port is down):

- ``GET /_sim/health`` → ``{"ok": true, "name", "wire", "fault": {...}}``
- ``GET /_sim/fault`` → the current fault; ``POST /_sim/fault {"mode": ..., ...}`` sets it and
  answers the new fault, or 400 ``{"ok": false, "error": reason}`` leaving it unchanged.
- ``GET /_sim/fills`` → ``{"fills": [{"order_id", "price", "quantity", "symbol", "side",
  "provider", "broker_ref", "filled_at"}]}``: every fill since the last reset.
- ``POST /_sim/prices {"prices": {"VOD.L": "101.25"}}`` pins fill prices (the market-data feed
  calls this); ``GET /_sim/prices`` shows the current ones.
- ``POST /_sim/reset`` forgets orders, fills, tombstones and the fault (prices are kept); answers
  ``{"ok": true, "fault": {"mode": "none"}}``.

Faults act on the order API only: ``down`` closes its listening socket and drops its
connections (clients get "connection refused"; any other mode re-opens the same port);
``error`` answers 503 "not accepted" without touching the order for a share ``rate`` of
requests; ``latency`` delays every answer by ``ms`` before handling it; ``blackhole`` reads each
request and never answers, dropping the connection when the fault changes; and
``fill_after_timeout`` handles a submission at once but answers it only after ``ms``
(status, cancel and health still answer promptly).

HTTP is served by h11 over asyncio streams (:mod:`.h11server`) rather than a framework, because two
faults need control a framework does not give: dropping a connection without any answer, and closing
one listening socket while the other stays up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
from datetime import UTC, datetime

from tradeops.runtime.brokers.faults import Fault, parse_fault
from tradeops.runtime.brokers.h11server import FaultedPorts, HttpServer
from tradeops.runtime.brokers.orderbook import Book, InvalidOrder
from tradeops.runtime.brokers.wires import WIRES, HttpReply, HttpRequest
from tradeops.runtime.platform.logs import FORMATS, configure

log = logging.getLogger("tradeops.sim")

__all__ = ["API_KEY_ENV", "Simulator", "main", "sim_command"]

API_KEY_ENV = "TRADEOPS_SIM_API_KEY"

def _control_error(status: int, reason: str) -> HttpReply:
    return HttpReply(status, {"ok": False, "error": reason})


class Simulator(FaultedPorts[Fault]):
    """One simulated broker: book, wire, fault, and the two servers."""

    def __init__(self, *, name: str, wire: str, host: str, order_port: int, control_port: int, seed: int,
                 api_key: str | None) -> None:
        super().__init__(Fault(), HttpServer(host, order_port, self._on_order_request),
                         HttpServer(host, control_port, self._on_control_request))
        self.name = name
        self.wire = WIRES[wire]
        self.book = Book(name, seed)
        self._api_key = api_key
        self._fault_rng = random.Random(seed)

    def __repr__(self) -> str:  # never shows the key
        return f"Simulator(name={self.name!r}, wire={self.wire.name!r}, fault={self.fault.as_dict()!r})"

    async def _on_order_request(self, request: HttpRequest) -> HttpReply | None:
        fault = self.fault
        if fault.mode == "blackhole":
            await self.until_fault_changes()
            return None
        if fault.mode == "error" and self._fault_rng.random() < fault.rate:
            return self.wire.unavailable()
        if fault.mode == "latency":
            await asyncio.sleep(fault.ms / 1000)
        endpoint, reply = self.wire.handle(self.book, request, api_key=self._api_key, now=datetime.now(UTC))
        if fault.mode == "fill_after_timeout" and endpoint == "submit":
            # The order is already dealt with; only the answer is late — the dual-execution trap.
            await asyncio.sleep(fault.ms / 1000)
        return reply

    async def _on_control_request(self, request: HttpRequest) -> HttpReply:
        route = (request.method, request.path)
        if route == ("GET", "/_sim/health"):
            return HttpReply(200, {"ok": True, "name": self.name, "wire": self.wire.name,
                                   "fault": self.fault.as_dict()})
        if route == ("GET", "/_sim/fault"):
            return HttpReply(200, self.fault.as_dict())
        if route == ("GET", "/_sim/fills"):
            return HttpReply(200, {"fills": self.book.fills()})
        if route == ("GET", "/_sim/prices"):
            return HttpReply(200, {"prices": self.book.prices()})
        if route == ("POST", "/_sim/reset"):
            self.book.reset()
            return await self._apply(Fault(), reset=True)
        if route == ("POST", "/_sim/fault"):
            try:
                fault = parse_fault(json.loads(request.body or b"null"))
            except ValueError as exc:  # includes malformed JSON
                return _control_error(400, f"fault unchanged: {exc}")
            return await self._apply(fault)
        if route == ("POST", "/_sim/prices"):
            try:
                payload = json.loads(request.body or b"null")
                if not isinstance(payload, dict) or set(payload) != {"prices"} \
                        or not isinstance(payload["prices"], dict):
                    raise ValueError('body must be {"prices": {"SYMBOL": "price", ...}}')
                count = self.book.set_prices(payload["prices"])
            except (ValueError, InvalidOrder) as exc:
                return _control_error(400, f"prices unchanged: {exc}")
            return HttpReply(200, {"ok": True, "updated": count})
        if request.path in {"/_sim/health", "/_sim/fault", "/_sim/fills", "/_sim/prices", "/_sim/reset"}:
            return _control_error(405, f"{request.method} not allowed on {request.path}")
        return _control_error(404, f"no control endpoint {request.path}")

    async def _apply(self, fault: Fault, *, reset: bool = False) -> HttpReply:
        try:
            await self.set_fault(fault)
        except OSError as exc:
            # Re-opening the order port failed (someone took it): the broker really is still down.
            return _control_error(500, f"could not re-open order port {self.orders.port}: {exc.strerror}")
        return HttpReply(200, {"ok": True, "fault": self.fault.as_dict()} if reset else self.fault.as_dict())


def sim_command(*, name: str, wire: str, host: str, order_port: int, control_port: int,
                seed: int) -> list[str]:
    """The argv that starts one simulated broker (pass the key in the environment)."""
    return [sys.executable, "-m", "tradeops.runtime.brokers.sim", "--name", name, "--wire", wire, "--host", host,
            "--order-port", str(order_port), "--control-port", str(control_port), "--seed", str(seed)]


async def _run(args: argparse.Namespace, api_key: str | None) -> None:
    sim = Simulator(name=args.name, wire=args.wire, host=args.host, order_port=args.order_port,
                    control_port=args.control_port, seed=args.seed, api_key=api_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await sim.start()
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.brokers.sim", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="provider name, e.g. primary")
    parser.add_argument("--wire", required=True, choices=sorted(WIRES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--order-port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    args = parser.parse_args(argv)
    configure(f"broker-{args.name}", fmt=args.log_format)
    api_key = os.environ.get(API_KEY_ENV) or None
    try:
        asyncio.run(_run(args, api_key))
    except KeyboardInterrupt:  # interrupted before the signal handlers were installed
        return 0
    except OSError as exc:
        log.error("sim %s: cannot listen on %s (order port %s, control port %s): %s", args.name, args.host,
                  args.order_port, args.control_port, exc.strerror or exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
