"""A listening port that can close and re-open, and the small JSON HTTP/1.1 server on it: h11 over asyncio.

The simulated brokers (:mod:`.sim`) and the fault proxies (:mod:`.proxy`) serve their order port and
their control surface with these. A framework would not do: both need to close one listening socket
while another stays up (a broker or proxy ``down``), to drop a connection without any answer
(``blackhole``), and the proxy to reset one (``reset``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import h11

from tradeops.runtime.brokers.wires import HttpReply, HttpRequest

__all__ = ["MAX_BODY", "READ_CHUNK", "FaultedPorts", "HttpServer", "Listener", "encode_reply", "read_message",
           "read_request", "reset"]

log = logging.getLogger("tradeops.sim")

MAX_BODY = 1 << 20
"""The largest request body either server reads (a larger one is answered 413)."""
READ_CHUNK = 65536

# A connection handler owns the connection until it returns; the listener aborts it when it closes.
ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# A request handler answers with a reply, or with None to drop the connection without answering.
Handler = Callable[[HttpRequest], Awaitable[HttpReply | None]]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset (RST), not an orderly close: the peer reads "connection reset"."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already gone: nothing left to reset
    writer.transport.abort()


class Listener:
    """One listening port whose connections it tracks, so that closing it drops every one of them."""

    def __init__(self, host: str, port: int, on_connection: ConnectionHandler) -> None:
        self.host = host
        self.port = port
        self._on_connection = on_connection
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True,
                                                  backlog=1024)
        # Port 0 asks the OS for one; keep it so that re-opening after `down` uses the same port.
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every connection, answered or not."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.drop_connections()
        if server is not None:
            await server.wait_closed()

    async def drop_connections(self) -> None:
        """Drop every open connection (the port stays as it is)."""
        connections = list(self._connections.items())
        for task, writer in connections:
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*(task for task, _ in connections), return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._on_connection(reader, writer)
        except (ConnectionError, h11.ProtocolError):
            pass  # the peer went away or spoke broken HTTP: nothing left to answer
        except asyncio.CancelledError:
            pass  # dropped by close(): asyncio would log a cancelled connection task as an error
        finally:
            self._connections.pop(task, None)
            writer.transport.abort()


async def read_message(conn: h11.Connection, reader: asyncio.StreamReader
                       ) -> tuple[h11.Request, bytes] | HttpReply | None:
    """The next request on ``conn`` as it came (head and body); a 413 reply if its body is too large; None at
    end of stream."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_CHUNK))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                return HttpReply(413, {"error": {"code": "TOO_LARGE", "message": "body over 1 MiB"}})
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return head, bytes(body)
        else:  # ConnectionClosed or PAUSED
            return None


async def read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> HttpRequest | HttpReply | None:
    """The next request on ``conn`` (path percent-decoded, headers lower-case); a 413 reply; None at end of stream."""
    message = await read_message(conn, reader)
    if message is None or isinstance(message, HttpReply):
        return message
    head, body = message
    target = urlsplit(head.target.decode("latin-1"))
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
    return HttpRequest(head.method.decode("latin-1"), unquote(target.path), headers, body)


def encode_reply(conn: h11.Connection, reply: HttpReply, *, extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The reply as bytes on ``conn``: a JSON body with its length (and ``extra_headers``)."""
    payload = json.dumps(reply.body, separators=(",", ":")).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(payload))), *extra_headers]
    if conn.their_state is not h11.DONE:
        headers.append(("connection", "close"))  # we answer before the body is read (413)
    return (conn.send(h11.Response(status_code=reply.status, headers=headers))
            + conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))


class HttpServer(Listener):
    """A small HTTP/1.1 server (keep-alive, JSON answers) that can close and re-open its port."""

    def __init__(self, host: str, port: int, handler: Handler) -> None:
        super().__init__(host, port, self._connection)
        self._handler = handler

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request = await read_request(conn, reader)
            if request is None:
                break
            if isinstance(request, HttpReply):
                reply: HttpReply | None = request
            else:
                try:
                    reply = await self._handler(request)
                except Exception as exc:  # a bug of ours: say so in one line and keep serving
                    log.error("internal error on %s %s: %r", request.method, request.path, exc)
                    reply = HttpReply(500, {"error": {"code": "INTERNAL", "message": "internal error"}})
            if reply is None or writer.is_closing():
                break
            writer.write(encode_reply(conn, reply))
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                break
            conn.start_next_cycle()


class _Fault(Protocol):
    @property
    def mode(self) -> str: ...


F = TypeVar("F", bound=_Fault)


class FaultedPorts(Generic[F]):
    """An order port under a fault beside a control surface that always answers: the simulated brokers' and the
    fault proxies' shared switch. ``down`` closes the order port, any other fault re-opens it; whatever waits
    on the fault in force (a blackholed request) is woken when it changes."""

    def __init__(self, fault: F, orders: Listener, control: HttpServer) -> None:
        self.fault = fault
        self.orders = orders
        self.control = control
        self._fault_changed = asyncio.Event()

    async def start(self) -> None:
        await self.control.open()
        await self.orders.open()

    async def stop(self) -> None:
        self._fault_changed.set()
        await self.orders.close()
        await self.control.close()

    async def set_fault(self, fault: F) -> None:
        """Apply a new fault: open or close the order port, release the requests held under the old one."""
        if fault.mode == "down":
            await self.orders.close()
        else:
            await self.orders.open()
        self.fault = fault
        changed, self._fault_changed = self._fault_changed, asyncio.Event()
        changed.set()

    async def until_fault_changes(self) -> None:
        await self._fault_changed.wait()
