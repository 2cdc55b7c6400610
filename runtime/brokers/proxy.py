"""A fault proxy: one per broker, between the workers and the broker's order API, controlled like a simulator.

Run as ``python -m tradeops.runtime.brokers.proxy --name primary --upstream http://127.0.0.1:8101
--host 127.0.0.1 --port P --control-port C [--protocol http|tcp] [--seed 1]``. The workers call the
proxy's port instead of the broker's; the proxy relays every request to ``--upstream`` (plain HTTP
to the workers, TLS to an ``https://`` upstream) and shows the fault it is told to show
(:mod:`.proxyfaults`: refused connections, a blackhole, latency with jitter, a late answer, resets
and HTTP error answers at a rate, a bandwidth limit). So a drill breaks a real network path: on the
local stack in front of the simulated brokers (``TRADEOPS_FAULT_PROXY=true``), in staging in front
of a broker's sandbox, which nobody can fault otherwise. SIGTERM or SIGINT stops it cleanly.

Control surface (always reachable, whatever the fault):

- ``GET /_proxy/health`` → ``{"ok": true, "name", "protocol", "upstream", "fault", "upstream_state":
  {"reachable", "error", "since"}, "upstream_lost": [{"state", "error", "since", "until"}], "counters"}``:
  ``upstream_state`` is a fresh connection attempt to the broker, ``upstream_lost`` every stretch of
  time its requests could not reach the broker, ``counters`` what it did to requests since its last reset.
- ``GET /_proxy/fault`` → the current fault; ``POST /_proxy/fault {"mode": ..., ...}`` sets it and
  answers the new fault, or 400 ``{"ok": false, "error": reason}`` leaving it unchanged.
- ``POST /_proxy/reset`` → fault ``none``, counters and the upstream's history forgotten.

A proxy that cannot reach its broker says so and never answers as the broker: before a byte of the
request is sent upstream it answers 502 with the header ``x-tradeops-fault-proxy`` set to
``upstream-refused`` (the broker refused the connection) or ``upstream-unreachable`` (no route, a
timeout, a name or TLS failure: the proxy's own path). Workers that know they sit behind a fault
proxy (``TRADEOPS_FAULT_PROXY``) read the first as "not received, the broker is down" and the
second as "not received, the proxy's path is broken"; the drill records either for what it is
(:mod:`tradeops.runtime.orderpath.providers`). A broker that drops a connection after the request
reached it is relayed as a dropped connection: the outcome is unknown, as it would be without the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import ssl
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import h11

from tradeops.runtime.brokers.h11server import (
    READ_CHUNK,
    FaultedPorts,
    HttpServer,
    Listener,
    encode_reply,
    read_message,
    reset,
)
from tradeops.runtime.brokers.proxyfaults import (
    INJECTED,
    MARKER_HEADER,
    PROTOCOLS,
    UPSTREAM_REFUSED,
    UPSTREAM_UNREACHABLE,
    ProxyFault,
    delay_seconds,
    pace_seconds,
    parse_proxy_fault,
    strikes,
)
from tradeops.runtime.brokers.wires import HttpReply, HttpRequest
from tradeops.runtime.platform.logs import FORMATS, configure

__all__ = ["FaultProxy", "main", "proxy_command"]

log = logging.getLogger("tradeops.proxy")

_PACE_CHUNK = 1024
# Hop-by-hop headers and the framing h11 sets itself: never relayed as they came.
_DROPPED_HEADERS = frozenset({b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                              b"proxy-connection", b"te", b"trailer", b"upgrade"})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Upstream:
    """Where the broker is: host, port, TLS or not, and the ``Host`` the broker expects."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http:// or https:// URL with a host, got {url!r}")
        tls = parts.scheme == "https"
        return cls(url=url.rstrip("/"), host=parts.hostname, port=parts.port or (443 if tls else 80), tls=tls)

    @property
    def netloc(self) -> str:
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


class _Unreached(Exception):
    """The proxy could not open a connection to the broker; nothing was sent."""

    def __init__(self, marker: str, reason: str) -> None:
        super().__init__(reason)
        self.marker = marker
        self.reason = reason


@dataclass
class _Link:
    """One connection to the broker, kept for as long as the worker's connection to the proxy."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection

    def drop(self) -> None:
        self.writer.transport.abort()


class FaultProxy(FaultedPorts[ProxyFault]):
    """One fault proxy: the port the workers call, the control surface, the fault and what it did."""

    def __init__(self, *, name: str, upstream: str, protocol: str, host: str, port: int, control_port: int,
                 seed: int, connect_timeout: float = 2.0) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        serve = self._serve_http if protocol == "http" else self._serve_tcp
        super().__init__(ProxyFault(), Listener(host, port, serve), HttpServer(host, control_port, self._on_control))
        self.name = name
        self.upstream = Upstream.parse(upstream)
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self.counters: Counter[str] = Counter()
        self.lost: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        self._tls = ssl.create_default_context() if self.upstream.tls else None

    def __repr__(self) -> str:
        return f"FaultProxy(name={self.name!r}, upstream={self.upstream.url!r}, fault={self.fault.as_dict()!r})"

    # ---- the broker, and what the proxy remembers of reaching it ---------------------------------------------
    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        up = self.upstream
        try:
            opened = await asyncio.wait_for(
                asyncio.open_connection(up.host, up.port, ssl=self._tls, server_hostname=up.host if up.tls else None),
                self.connect_timeout)
        except ConnectionRefusedError as exc:
            self._reached(False, UPSTREAM_REFUSED, f"connection refused ({exc.strerror or exc})")
            raise _Unreached(UPSTREAM_REFUSED, "the broker refused the connection") from None
        except TimeoutError:
            reason = f"no connection within {self.connect_timeout:g}s"
            self._reached(False, UPSTREAM_UNREACHABLE, reason)
            raise _Unreached(UPSTREAM_UNREACHABLE, reason) from None
        except (OSError, ssl.SSLError) as exc:
            reason = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            self._reached(False, UPSTREAM_UNREACHABLE, reason)
            raise _Unreached(UPSTREAM_UNREACHABLE, reason) from None
        self._reached(True)
        return opened

    def _reached(self, ok: bool, state: str = "", error: str = "") -> None:
        """Keep each stretch of time the broker could not be reached (``upstream_lost``)."""
        current = self.lost[-1] if self.lost and self.lost[-1]["until"] is None else None
        if ok:
            if current is not None:
                current["until"] = _now()
            return
        self.counters[state] += 1
        if current is None or current["state"] != state:
            if current is not None:
                current["until"] = _now()
            self.lost.append({"state": state, "error": error, "since": _now(), "until": None})

    async def _probe(self) -> dict[str, Any]:
        """A fresh connection attempt to the broker, for the health answer (it counts nothing)."""
        up, limit = self.upstream, min(1.0, self.connect_timeout)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(up.host, up.port), limit)
        except ConnectionRefusedError:
            error = "connection refused"
        except TimeoutError:
            error = f"no connection within {limit:g}s"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
        else:
            writer.transport.abort()
            return {"reachable": True, "error": None, "since": None}
        since = self.lost[-1]["since"] if self.lost and self.lost[-1]["until"] is None else None
        return {"reachable": False, "error": error, "since": since}

    # ---- HTTP: one request at a time, the fault applied to each ------------------------------------------
    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = h11.Connection(h11.SERVER)
        link: _Link | None = None
        try:
            while True:
                message = await read_message(client, reader)
                if message is None:
                    return
                if isinstance(message, HttpReply):
                    writer.write(encode_reply(client, message))
                    await writer.drain()
                    return
                keep, link = await self._exchange(client, reader, writer, *message, link)
                if not keep or client.our_state is not h11.DONE or client.their_state is not h11.DONE:
                    return
                client.start_next_cycle()
        finally:
            if link is not None:
                link.drop()

    async def _exchange(self, client: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        head: h11.Request, body: bytes, link: _Link | None) -> tuple[bool, _Link | None]:
        """Relay one request under the fault in force; whether to keep the worker's connection, and the broker link."""
        fault = self.fault
        self.counters["requests"] += 1
        if fault.mode == "blackhole":
            self.counters["blackholed"] += 1
            await self.until_fault_changes()
            return False, link
        if fault.mode == "error" and strikes(fault, self._rng.random()):
            self.counters["injected_errors"] += 1
            reply = HttpReply(fault.status, {"error": {"code": "FAULT_PROXY", "message":
                                                       f"injected by the fault proxy for {self.name}"}})
            await self._write(writer, encode_reply(client, reply, extra_headers=((MARKER_HEADER, INJECTED),)), fault)
            return True, link
        if delay := delay_seconds(fault, self._rng.random()):
            await asyncio.sleep(delay)
        resetting = fault.mode == "reset" and strikes(fault, self._rng.random())
        if link is not None and (link.reader.at_eof() or link.reader.exception() is not None
                                 or link.writer.is_closing()):
            # The broker closed or reset the idle connection (a broker going down aborts its connections): nothing
            # was sent on it, so a new one is safe, and its refusal is then the proof the broker is down.
            link.drop()
            link = None
        if link is None:
            try:
                up_reader, up_writer = await self._connect()
            except _Unreached as unreached:
                reply = HttpReply(502, {"error": {"code": "FAULT_PROXY_UPSTREAM", "message":
                                                  f"the fault proxy for {self.name} did not reach "
                                                  f"{self.upstream.url}: {unreached.reason}"}})
                await self._write(writer, encode_reply(client, reply, extra_headers=((MARKER_HEADER,
                                                                                      unreached.marker),)), fault)
                return True, None
            link = _Link(up_reader, up_writer, h11.Connection(h11.CLIENT))
        try:
            await self._write(link.writer, self._request_bytes(link.conn, head, body), fault)
        except ConnectionError:
            link.drop()
            return False, None  # part of the request may have reached the broker: its outcome is unknown
        self.counters["forwarded"] += 1
        answer = await self._answer(link, reader, client)
        if answer is None:
            link.drop()
            return False, None
        if resetting:
            # Reset once the broker has answered, so that it has acted: a reset sent right behind the request
            # can overtake it in the broker's receive queue, and then nothing was forwarded after all.
            self.counters["resets"] += 1
            link.drop()
            reset(writer)
            return False, None
        if fault.mode == "answer_delay":
            await asyncio.sleep(fault.ms / 1000)
        status, headers, content = answer
        relayed = [(k, v) for k, v in headers if k.lower() not in _DROPPED_HEADERS]
        data = (client.send(h11.Response(status_code=status, headers=[*relayed,
                                                                      (b"content-length", str(len(content)).encode())]))
                + client.send(h11.Data(data=content)) + client.send(h11.EndOfMessage()))
        await self._write(writer, data, fault)
        if link.conn.our_state is h11.DONE and link.conn.their_state is h11.DONE:
            link.conn.start_next_cycle()
            return True, link
        link.drop()
        return True, None

    def _request_bytes(self, conn: h11.Connection, head: h11.Request, body: bytes) -> bytes:
        headers = [(k, v) for k, v in head.headers if k.lower() not in _DROPPED_HEADERS]
        headers = [(b"host", self.upstream.netloc.encode()), *headers, (b"content-length", str(len(body)).encode())]
        return (conn.send(h11.Request(method=head.method, target=head.target, headers=headers))
                + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))

    async def _answer(self, link: _Link, reader: asyncio.StreamReader,
                      client: h11.Connection) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The broker's answer, or None when the broker dropped the connection or the worker went away first."""
        answer = asyncio.ensure_future(_read_response(link.conn, link.reader))
        while True:
            watch = asyncio.ensure_future(reader.read(READ_CHUNK))
            done, _ = await asyncio.wait({answer, watch}, return_when=asyncio.FIRST_COMPLETED)
            if answer in done:
                # The next read of the worker's connection must not find this one still waiting.
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                if not watch.cancelled() and watch.exception() is None and watch.result():
                    client.receive_data(watch.result())
                return answer.result()
            data = watch.result()
            if not data:  # the worker gave up (its read timeout) and closed: so does the proxy
                answer.cancel()
                await asyncio.gather(answer, return_exceptions=True)
                return None
            client.receive_data(data)  # a next request, sent early: h11 keeps it

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, fault: ProxyFault) -> None:
        if fault.mode != "bandwidth":
            writer.write(data)
            await writer.drain()
            return
        for start in range(0, len(data), _PACE_CHUNK):
            chunk = data[start:start + _PACE_CHUNK]
            await asyncio.sleep(pace_seconds(len(chunk), fault))  # before: the bytes arrive no sooner than the rate
            writer.write(chunk)
            await writer.drain()

    # ---- TCP: a wire that is not HTTP, the fault applied to the bytes --------------------------------------
    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self.fault
        self.counters["connections"] += 1
        if fault.mode == "blackhole":
            self.counters["blackholed"] += 1
            swallow = asyncio.ensure_future(_swallow(reader))
            await self.until_fault_changes()
            swallow.cancel()
            return
        try:
            up_reader, up_writer = await self._connect()
        except _Unreached:
            reset(writer)  # no HTTP to say it in: the worker reads a reset, its outcome unknown
            return
        resetting = fault.mode == "reset" and strikes(fault, self._rng.random())

        async def upstream_bound() -> None:
            first = True
            while data := await reader.read(READ_CHUNK):
                now = self.fault
                if delay := delay_seconds(now, self._rng.random()):
                    await asyncio.sleep(delay)
                await self._write(up_writer, data, now)
                if first:
                    self.counters["forwarded"] += 1
                first = False

        async def worker_bound() -> None:
            first = True
            while data := await up_reader.read(READ_CHUNK):
                if first and resetting:  # the broker has answered, so it has acted: its caller reads a reset
                    self.counters["resets"] += 1
                    raise ConnectionResetError("reset by the fault proxy")
                first = False
                now = self.fault
                if now.mode == "answer_delay":
                    await asyncio.sleep(now.ms / 1000)
                await self._write(writer, data, now)

        pumps = [asyncio.ensure_future(upstream_bound()), asyncio.ensure_future(worker_bound())]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            failed = any(p.exception() is not None for p in done if not p.cancelled())
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        if failed:
            reset(up_writer)
            reset(writer)
        else:
            up_writer.transport.abort()

    # ---- control ------------------------------------------------------------------------------------------
    async def _on_control(self, request: HttpRequest) -> HttpReply:
        route = (request.method, request.path)
        if route == ("GET", "/_proxy/health"):
            return HttpReply(200, {"ok": True, "name": self.name, "protocol": self.protocol,
                                   "upstream": self.upstream.url, "fault": self.fault.as_dict(),
                                   "upstream_state": await self._probe(), "upstream_lost": self.lost,
                                   "counters": dict(self.counters)})
        if route == ("GET", "/_proxy/fault"):
            return HttpReply(200, self.fault.as_dict())
        if route == ("POST", "/_proxy/fault"):
            try:
                fault = parse_proxy_fault(json.loads(request.body or b"null"), protocol=self.protocol)
            except ValueError as exc:  # includes malformed JSON
                return HttpReply(400, {"ok": False, "error": f"fault unchanged: {exc}"})
            return await self._apply(fault)
        if route == ("POST", "/_proxy/reset"):
            self.counters.clear()
            self.lost.clear()
            return await self._apply(ProxyFault())
        if request.path in {"/_proxy/health", "/_proxy/fault", "/_proxy/reset"}:
            return HttpReply(405, {"ok": False, "error": f"{request.method} not allowed on {request.path}"})
        return HttpReply(404, {"ok": False, "error": f"no control endpoint {request.path}"})

    async def _apply(self, fault: ProxyFault) -> HttpReply:
        try:
            await self.set_fault(fault)
        except OSError as exc:
            return HttpReply(500, {"ok": False, "error": f"could not re-open port {self.orders.port}: {exc.strerror}"})
        return HttpReply(200, self.fault.as_dict())


async def _read_response(conn: h11.Connection, reader: asyncio.StreamReader
                         ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """The broker's answer (status, headers, body), or None if it closed the connection first."""
    head: h11.Response | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return None
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(await reader.read(READ_CHUNK))
            except ConnectionError:
                return None
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return head.status_code, list(head.headers), bytes(body)
        elif isinstance(event, h11.InformationalResponse):
            continue
        else:
            return None


async def _swallow(reader: asyncio.StreamReader) -> None:
    while await reader.read(READ_CHUNK):
        pass


def proxy_command(*, name: str, upstream: str, host: str, port: int, control_port: int,
                  protocol: str = "http", seed: int = 1) -> list[str]:
    """The argv that starts one fault proxy."""
    return [sys.executable, "-m", "tradeops.runtime.brokers.proxy", "--name", name, "--upstream", upstream,
            "--protocol", protocol, "--host", host, "--port", str(port), "--control-port", str(control_port),
            "--seed", str(seed)]


async def _run(args: argparse.Namespace) -> None:
    proxy = FaultProxy(name=args.name, upstream=args.upstream, protocol=args.protocol, host=args.host,
                       port=args.port, control_port=args.control_port, seed=args.seed,
                       connect_timeout=args.connect_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await proxy.start()
        await stop.wait()
    finally:
        await proxy.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.brokers.proxy",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the broker it stands in front of, e.g. primary")
    parser.add_argument("--upstream", required=True, help="the broker's order API, e.g. https://sandbox.broker:443")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1, help="the random draws of faults at a rate and of jitter")
    parser.add_argument("--connect-timeout", type=float, default=2.0, help="seconds to reach the upstream")
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    args = parser.parse_args(argv)
    configure(f"proxy-{args.name}", fmt=args.log_format)
    try:
        Upstream.parse(args.upstream)
    except ValueError as exc:
        log.error("proxy %s: %s", args.name, exc)
        return 2
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        log.error("proxy %s: cannot listen on %s (port %s, control port %s): %s", args.name, args.host, args.port,
                  args.control_port, exc.strerror or exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
