"""The intake API: where the platform submits orders (the local stand-in for its Trade Order API).

``POST /orders`` records an ACCEPTED order and enqueues exactly one message for the workers;
``GET /orders/{order_id}`` shows it; ``GET /health`` says whether the orders table is reachable.
Checks run in a fixed order — token, size, JSON, order rules (:mod:`.order_body`) — and nothing is
written or enqueued for any 4xx. An order that is recorded but cannot be enqueued is withdrawn
again and the caller gets a 503 to retry. An order the intake could not withdraw (or recorded just before it
died) is re-enqueued by the workers' sweeper (:mod:`.sweep`), so no ACCEPTED order waits for ever.

The intake refuses ambiguity (:mod:`.order_body`): a body with the same key twice (at any depth)
answers 400 naming the key; ``quantity`` must be a JSON integer; prices are kept exactly as sent.

Timeouts (settings, seconds): the whole request head must arrive within
``intake_header_timeout`` (default 10) of the connection opening or the previous response, else
the connection is closed; the whole body within ``intake_body_timeout`` (default 10) of the head,
else 408; an idle keep-alive connection is closed after ``intake_idle_timeout`` (default 5). A slow
client is cut off instead of holding a connection open.

Run as a process with ``python -m tradeops.runtime.orderpath.intake --host 127.0.0.1 --port P`` and the bearer token
in ``TRADEOPS_INTAKE_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import botocore.exceptions
import h11
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from tradeops.runtime.orderpath.messages import order_message
from tradeops.runtime.orderpath.order_body import BodyRefused, parse_order
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order, order_json, payload_differences
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import TradeopsError
from tradeops.runtime.platform.faults import fault_point
from tradeops.runtime.platform.logs import FORMATS, bound, configure
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings, load_settings

__all__ = ["MAX_BODY_BYTES", "create_app", "main", "server_config"]

MAX_BODY_BYTES = 16 * 1024
HEALTH_CACHE_SECONDS = 1.0

log = logging.getLogger("tradeops.intake")

# The shape OrderRequest enforces on order_id: an id outside it cannot exist, so GET answers 404
# without sending DynamoDB a key it might reject.
_ORDER_ID = TypeAdapter(Annotated[str, OrderRequest.model_fields["order_id"]])


# ---- response shapes (for the OpenAPI document) -----------------------------------------------------
class ErrorOut(BaseModel):
    error: str


class FieldError(BaseModel):
    field: str
    reason: str


class ValidationErrorOut(BaseModel):
    error: str
    fields: list[FieldError]


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: str
    status: str
    actor: str
    provider: str | None = None
    note: str | None = None


class OrderOut(BaseModel):
    """An order as stored, with its state; money as decimal strings."""

    model_config = ConfigDict(extra="allow")

    order_id: str
    account_id: str
    symbol: str
    side: str
    quantity: int
    order_type: str
    limit_price: str | None = None
    quote_price: str
    placed_at: str
    synthetic: bool
    status: str
    version: int
    created_at: str
    updated_at: str
    provider: str | None = None
    fill_price: str | None = None
    swept_at: str | None = Field(default=None, description="When the workers' sweeper last re-enqueued it "
                                                           "(recorded but never queued).")
    sweeps: int | None = Field(default=None, description="How many times the sweeper re-enqueued it.")
    history: list[HistoryEntry]


class HealthOut(BaseModel):
    ok: bool
    error: str | None = None
    aws_requests: dict[str, int] = {}
    """AWS requests this process has sent, by ``service.Operation`` (load runs read it per order)."""


def _request_schema(universe: frozenset[str] | None) -> dict[str, Any]:
    schema = OrderRequest.model_json_schema()
    if universe is not None:
        # The symbols this intake accepts, listed where clients (and generators) read the body's rules.
        schema["properties"]["symbol"]["enum"] = sorted(universe)
        schema["properties"]["symbol"]["description"] = (
            "A symbol of the tradable universe (anything else answers 400). A synthetic order (a canary) is "
            "never exposure and may name any symbol.")
    # The LIMIT/limit_price rule, stated in the document too so clients (and generators) see it.
    schema["if"] = {"properties": {"order_type": {"const": "LIMIT"}}, "required": ["order_type"]}
    schema["then"] = {"required": ["limit_price"], "properties": {"limit_price": {"not": {"type": "null"}}}}
    schema["else"] = {"properties": {"limit_price": {"type": "null"}}}
    return schema


def _doc(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _doc(ErrorOut, "Missing or wrong bearer token."),
    503: _doc(ErrorOut, "AWS is unreachable or failed; nothing is left half done, retry."),
}


# ---- the application -----------------------------------------------------------------------------
class _ApiError(Exception):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.fields = status, message, headers, fields

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.fields is not None:
            body["fields"] = self.fields
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@contextmanager
def _aws_or_503(what: str) -> Iterator[None]:
    """AWS trouble inside a request becomes a one-line 503 (the caller retries), never a traceback."""
    try:
        yield
    except TradeopsError as exc:
        log.warning("%s: %s", what, exc)
        raise _ApiError(503, f"{what}: {exc}") from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("%s: %s", what, reason)
        raise _ApiError(503, f"{what}: {reason}") from None


class _Intake:
    """The I/O behind the routes: the orders table, the order queue and the health cache."""

    def __init__(self, settings: Settings, aws: Aws) -> None:
        self.aws = aws
        self.names = names_for(settings)
        self.store = OrderStore(aws, self.names)
        self.state_dir = settings.state_dir  # where a test arms a fault point (runtime/platform/faults.py)
        self._lock = threading.Lock()
        self._queue_url: str | None = None
        self._health: tuple[float, str | None] | None = None

    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self.aws.queue_url(self.names.order_queue)
        return self._queue_url

    def accept(self, req: OrderRequest) -> tuple[dict[str, Any], bool]:
        """Record and enqueue a valid order; (order, created)."""
        order = new_order(req)
        with _aws_or_503("order not recorded"):
            stored, created = self.store.create(order)
        if not created and stored == order:
            # Our own put, retried by botocore after a lost response: it is ours and still unsent.
            created = True
        if not created:
            differs = payload_differences(stored, order)
            if differs:
                # Powertools' IdempotencyValidationError, in HTTP: the key is taken by another order.
                raise _ApiError(409, f"order_id {order['order_id']} already names an order with a different "
                                     f"{', '.join(differs)}; use a new order_id for a new order",
                                fields=[{"field": f, "reason": "differs from the stored order"} for f in differs])
            return stored, False
        # A test hook: a crash here leaves the order recorded and never enqueued (the workers' sweeper's case).
        fault_point(self.state_dir, "intake.after_put")
        try:
            with _aws_or_503("order not queued (retry)"):
                self.aws.sqs.send_message(QueueUrl=self.queue_url(),
                                          MessageBody=order_message(order["order_id"]))
        except _ApiError:
            self._withdraw(order["order_id"])
            raise
        return order, True

    def _withdraw(self, order_id: str) -> None:
        try:
            withdrawn = self.store.withdraw_unsent(order_id)
        except Exception as exc:  # whatever went wrong, the caller still gets its 503
            # The one window left open: recorded, not enqueued, not deleted. Say so loudly.
            log.error("order %s is ACCEPTED but was not enqueued and could not be withdrawn: %s", order_id, exc)
            return
        if not withdrawn:
            log.warning("order %s was not withdrawn: a worker already took it", order_id)

    def get(self, order_id: str) -> dict[str, Any] | None:
        with _aws_or_503("order not read"):
            return self.store.get(order_id)

    def health(self) -> str | None:
        """None when the orders table answers, else why not; cached so probes cost little."""
        with self._lock:
            now = time.monotonic()
            if self._health is not None and now - self._health[0] < HEALTH_CACHE_SECONDS:
                return self._health[1]
            try:
                with _aws_or_503("orders table unreachable"):
                    self.aws.dynamodb.get_item(TableName=self.names.orders_table,
                                               Key={"order_id": {"S": "_health"}})
                reason = None
            except _ApiError as exc:
                reason = exc.message
            self._health = (time.monotonic(), reason)
            return reason


async def _read_body(request: Request, timeout: float) -> bytes:
    """The whole body within ``timeout`` seconds, else 408 (a slow client does not hold the connection)."""
    try:
        return await asyncio.wait_for(_read_body_untimed(request), timeout)
    except TimeoutError:
        raise _ApiError(408, f"the body did not arrive within {timeout:g} s",
                        headers={"Connection": "close"}) from None


async def _read_body_untimed(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _ApiError(400, "Content-Length is not a number") from None
        if size > MAX_BODY_BYTES:
            raise _ApiError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    # The header may be absent (chunked) or wrong; count what actually arrives.
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _ApiError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, *, token: str, aws: Aws | None = None) -> FastAPI:
    """The intake API for one settings object; ``token`` is the bearer token callers must send."""
    if not token:
        raise ValueError("the intake API needs a non-empty token")
    expected = token.encode("utf-8")
    intake = _Intake(settings, aws or Aws(settings))
    # An order outside the universe has no price: the monitor could not measure what its wait costs.
    universe = None if settings.allow_unpriced_symbols else frozenset(settings.symbol_list)
    bearer = HTTPBearer(auto_error=False, description="The intake token (TRADEOPS_INTAKE_TOKEN).")

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise _ApiError(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected):
            raise _ApiError(401, "the bearer token is not valid",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    app = FastAPI(title="tradeops intake", version="1", summary="Submit orders and read their state.")

    @app.exception_handler(_ApiError)
    async def _api_error(request: Request, exc: _ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "fields": fields}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.post(
        "/orders",
        dependencies=[Depends(require_token)],
        status_code=202,
        summary="Submit an order",
        description="Records the order as ACCEPTED and queues it for execution. `order_id` is the "
                    "idempotency key: resubmitting the same order answers 200 with the stored order; "
                    "reusing it for a different order (account, symbol, side, quantity, type, prices or "
                    "synthetic) answers 409 naming the fields that differ.",
        responses={
            202: _doc(OrderOut, "Accepted and queued."),
            200: _doc(OrderOut, "An order with this order_id already exists; nothing new was queued."),
            409: _doc(ValidationErrorOut, "This order_id names an order with a different payload (the fields "
                                          "that differ are listed); nothing was written."),
            400: _doc(ErrorOut, "The body is not a JSON object, a key appears twice (named in the error), or "
                                "the symbol is outside the tradable universe (named; `fields` lists `symbol`). "
                                "Operators may allow unpriced symbols (TRADEOPS_ALLOW_UNPRICED_SYMBOLS)."),
            408: _doc(ErrorOut, "The body did not arrive within the body timeout."),
            413: _doc(ErrorOut, f"The body is larger than {MAX_BODY_BYTES} bytes."),
            422: _doc(ValidationErrorOut, "The order breaks a rule; one entry per failing field."),
            **_AUTH_RESPONSES,
        },
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"application/json": {"schema": _request_schema(universe)}}}},
    )
    async def post_order(request: Request) -> JSONResponse:
        body = await _read_body(request, settings.intake_body_timeout)
        try:
            req = parse_order(body)
        except BodyRefused as refused:
            raise _ApiError(refused.status, str(refused), fields=refused.fields) from None
        # Synthetic (canary, drill-probe) orders are never exposure, so they need no price: any symbol goes.
        if universe is not None and req.symbol not in universe and not req.synthetic:
            raise _ApiError(400, f"unknown symbol {req.symbol!r}: not in the tradable universe (nothing prices it, so "
                                 "its exposure could not be measured); `tradeops prices show` lists the symbols",
                            fields=[{"field": "symbol", "reason": "not in the tradable universe"}])
        with bound(order_id=req.order_id):  # the worker thread runs in a copy of this context
            order, created = await run_in_threadpool(intake.accept, req)
            log.info("order accepted" if created else "order repeated (answered with the stored order)",
                     extra={"order_id": order["order_id"], "status": order["status"]})
        headers = {"Location": f"/orders/{order['order_id']}"}
        return JSONResponse(order_json(order), status_code=202 if created else 200, headers=headers)

    @app.get(
        "/orders/{order_id}",
        dependencies=[Depends(require_token)],
        summary="Read an order",
        description="The order with its status, provider, fill price and history.",
        responses={
            200: _doc(OrderOut, "The order."),
            404: _doc(ErrorOut, "No such order."),
            422: _doc(ValidationErrorOut, "The request is malformed."),
            **_AUTH_RESPONSES,
        },
    )
    def get_order(order_id: str) -> JSONResponse:
        try:
            _ORDER_ID.validate_python(order_id)
        except ValidationError:
            raise _ApiError(404, f"no order {order_id!r}") from None
        order = intake.get(order_id)
        if order is None:
            raise _ApiError(404, f"no order {order_id!r}")
        return JSONResponse(order_json(order))

    @app.get(
        "/health",
        summary="Liveness and reachability of the orders table",
        responses={200: _doc(HealthOut, "Healthy."), 503: _doc(HealthOut, "The orders table is unreachable.")},
    )
    def health() -> JSONResponse:
        reason = intake.health()
        requests = intake.aws.counter.snapshot()
        if reason is None:
            return JSONResponse({"ok": True, "aws_requests": requests})
        return JSONResponse({"ok": False, "error": reason, "aws_requests": requests}, status_code=503)

    return app


# ---- the server ----------------------------------------------------------------------------------
class _TimedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request head.

    uvicorn times out idle keep-alive connections but not a client that opens a connection and
    sends its request head slowly (or never): this closes any connection whose head is not complete
    ``header_timeout`` seconds after it opened or after its previous response.
    """

    header_timeout = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        # IDLE on their side: no complete request head yet (h11 moves on once the head has arrived).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)


def server_config(app: FastAPI, settings: Settings, **kwargs: Any) -> uvicorn.Config:
    """uvicorn's configuration for the intake: quiet, and with the head, body and idle timeouts set."""
    protocol = type("IntakeH11Protocol", (_TimedH11Protocol,), {"header_timeout": settings.intake_header_timeout})
    # log_config=None: uvicorn's lines go through the process's one log configuration (platform/logs.py).
    return uvicorn.Config(app, access_log=False, log_level="warning", log_config=None, lifespan="off",
                          server_header=False, http=protocol, timeout_keep_alive=settings.intake_idle_timeout, **kwargs)


# ---- the process ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Serve the intake API until SIGTERM/SIGINT; exit 2 on bad settings or a missing token."""
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.orderpath.intake",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    args = parser.parse_args(argv)
    configure("intake", fmt=args.log_format)
    try:
        settings = load_settings()
    except TradeopsError as exc:
        log.error("intake: %s", exc)
        return exc.exit_code
    # Settings maps TRADEOPS_INTAKE_TOKEN to intake_token (a settings file may also carry it).
    token = (settings.intake_token or "").strip()
    if not token:
        log.error("intake: no token: set TRADEOPS_INTAKE_TOKEN")
        return 2
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        log.error("intake: cannot listen on %s:%s: %s", args.host, args.port, exc.strerror)
        return 1
    app = create_app(settings, token=token)
    # Quiet: no access log; uvicorn's own SIGTERM/SIGINT handling gives a clean, graceful exit.
    config = server_config(app, settings)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it shut down on, under the handler it found; with this no-op one
    # a SIGTERM stop ends in a plain exit 0 instead of death by signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # SIGINT: the default handler raises it again after the graceful stop
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
