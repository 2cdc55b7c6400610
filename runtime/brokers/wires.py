"""The two wire formats of the simulated brokers: requests in, ``Book`` calls, answers out. No I/O.

They differ the way real broker APIs differ, so that the adapters in ``tradeops.runtime.orderpath.providers`` have
real translating to do. Both hold orders by the client's order id (our ``order_id``).

**alpha** — REST, camelCase, errors carried by HTTP status codes. Auth: ``X-Api-Key: <key>``.

- ``POST /v1/orders`` ``{"clientOrderId", "instrument", "side": "BUY|SELL", "qty": int,
  "ordType": "MKT|LMT", "limitPx": "101.25" | null, "accountRef"}`` (unknown fields refused)
  → 201 new / 200 duplicate ``{"clientOrderId", "brokerOrderId", "state":
  "FILLED|REJECTED|CANCELLED", "avgPx": "101.25" | null, "filledQty": int, "transactTime":
  "2025-01-02T03:04:05.678Z", "rejectReason": str | null}``. A business rejection (limit not
  marketable, quantity over the maximum) is 201 with state REJECTED; a submission of an id
  cancelled earlier answers 200 with state CANCELLED (the tombstone).
- ``GET /v1/orders/{clientOrderId}`` → 200 order, or 404 ``{"error": {"code": "UNKNOWN_ORDER"}}``.
- ``DELETE /v1/orders/{clientOrderId}`` → 200 order in state CANCELLED (an unknown id is
  tombstoned), or 409 ``{"error": {"code": "ALREADY_FILLED" | "NOT_CANCELLABLE"}, "order": {...}}``.
- ``GET /v1/health`` → 200 ``{"status": "UP"}`` (no key needed).
- Errors: ``{"error": {"code", "message"}}`` with 400 ``INVALID_REQUEST``, 401 ``UNAUTHORIZED``,
  404 ``NOT_FOUND``, 405 ``METHOD_NOT_ALLOWED``, 503 ``UNAVAILABLE`` (with ``"accepted": false``:
  the order was not taken).

**beta** — RPC over POST, snake_case, HTTP 200 for every business outcome with the outcome in the
body; times are epoch milliseconds. Auth: ``Authorization: Bearer <key>``.

- ``POST /api/execute`` ``{"client_ref", "ticker", "direction": "B|S", "units": int,
  "kind": "market|limit", "px_limit": "101.25" | null, "acct"}`` → ``{"result": "ok",
  "client_ref", "status": "executed|rejected|cancelled", "exec_id", "price": "101.25" | null,
  "units": int (filled), "executed_at": ms | null, "status_at": ms, "reason": str | null,
  "duplicate": bool}``.
- ``POST /api/status {"client_ref"}`` → the same order body, or ``{"result": "ok", "client_ref",
  "status": "not_found"}``.
- ``POST /api/cancel {"client_ref"}`` → order body with status ``cancelled`` (an unknown id is
  tombstoned), or ``{"result": "error", "error_code": "ALREADY_EXECUTED" | "NOT_CANCELLABLE",
  "detail", "order": {...}}``.
- ``GET /api/ping`` → ``{"result": "ok", "pong": true}`` (no key needed).
- Errors: ``{"result": "error", "error_code", "detail"}`` — HTTP 200 ``INVALID_REQUEST``;
  401 ``AUTH_FAILED``; 404 ``UNKNOWN_METHOD``; 405 ``METHOD_NOT_ALLOWED``; 503
  ``SERVICE_UNAVAILABLE`` with ``"accepted": false``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from tradeops.runtime.brokers.orderbook import (
    CANCELLED,
    FILLED,
    Book,
    InvalidOrder,
    OrderRecord,
    check_order_id,
    make_order,
)

__all__ = ["WIRES", "AlphaWire", "BetaWire", "HttpReply", "HttpRequest", "Wire"]


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # percent-decoded, without the query string
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: dict[str, Any]


class Wire(Protocol):
    name: str

    def handle(self, book: Book, request: HttpRequest, *, api_key: str | None,
               now: datetime) -> tuple[str | None, HttpReply]:
        """Answer one order-API request; returns the endpoint (submit, status, cancel, health)."""
        ...

    def unavailable(self) -> HttpReply:
        """The answer of a broker that is up but refusing work: the order was not accepted."""
        ...


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object, numbers with a fraction as Decimal so money is never a float."""
    try:
        value = json.loads(body or b"null", parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InvalidOrder("body", f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidOrder("body", "must be a JSON object")
    return value


def _key_ok(given: str | None, expected: str | None) -> bool:
    if expected is None:
        return True
    if given is None:
        return False
    # Constant-time, so the key cannot be guessed a character at a time from response times.
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))


def _map_vocab(value: Any, vocab: Mapping[str, str], field: str) -> str:
    if not isinstance(value, str) or value not in vocab:
        raise InvalidOrder(field, f"must be one of {', '.join(vocab)}")
    return vocab[value]


def _decode_order(payload: dict[str, Any], names: Mapping[str, str], sides: Mapping[str, str],
                  kinds: Mapping[str, str]) -> dict[str, Any]:
    """Wire field names and vocabulary → ``make_order`` keywords (errors still canonical)."""
    unknown = sorted(set(payload) - set(names.values()))
    if unknown:
        raise InvalidOrder("body", f"unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for field, wire_name in names.items():
        if field != "limit_price" and payload.get(wire_name) is None:
            raise InvalidOrder(field, "is required")
        values[field] = payload.get(wire_name)
    values["side"] = _map_vocab(values["side"], sides, "side")
    values["order_type"] = _map_vocab(values["order_type"], kinds, "order_type")
    return values


def _wire_message(exc: InvalidOrder, names: Mapping[str, str]) -> str:
    return f"{names.get(exc.field, exc.field)}: {exc.message}"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class AlphaWire:
    """REST, camelCase, HTTP status codes carry errors."""

    name = "alpha"
    _NAMES = {"order_id": "clientOrderId", "symbol": "instrument", "side": "side", "quantity": "qty",
              "order_type": "ordType", "limit_price": "limitPx", "account_ref": "accountRef"}
    _SIDES = {"BUY": "BUY", "SELL": "SELL"}
    _KINDS = {"MKT": "MARKET", "LMT": "LIMIT"}

    @staticmethod
    def _error(status: int, code: str, message: str, **extra: Any) -> HttpReply:
        return HttpReply(status, {"error": {"code": code, "message": message}, **extra})

    @staticmethod
    def _order(record: OrderRecord) -> dict[str, Any]:
        at = record.at.astimezone(UTC)
        return {
            "clientOrderId": record.order_id,
            "brokerOrderId": record.broker_ref,
            "state": record.state,
            "avgPx": _money(record.price),
            "filledQty": record.filled_quantity,
            "transactTime": f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z",
            "rejectReason": record.reason,
        }

    def unavailable(self) -> HttpReply:
        return HttpReply(503, {"error": {"code": "UNAVAILABLE", "accepted": False,
                                         "message": "service unavailable; the request was not accepted"}})

    def _route(self, request: HttpRequest) -> tuple[str, str | None] | HttpReply:
        method, path = request.method, request.path
        if path == "/v1/health":
            return ("health", None) if method == "GET" else self._error(405, "METHOD_NOT_ALLOWED", "use GET")
        if path == "/v1/orders":
            return ("submit", None) if method == "POST" else self._error(405, "METHOD_NOT_ALLOWED", "use POST")
        if path.startswith("/v1/orders/"):
            order_id = path.removeprefix("/v1/orders/")
            if method == "GET":
                return "status", order_id
            if method == "DELETE":
                return "cancel", order_id
            return self._error(405, "METHOD_NOT_ALLOWED", "use GET or DELETE")
        return self._error(404, "NOT_FOUND", f"no resource {path}")

    def handle(self, book: Book, request: HttpRequest, *, api_key: str | None,
               now: datetime) -> tuple[str | None, HttpReply]:
        routed = self._route(request)
        if isinstance(routed, HttpReply):
            return None, routed
        endpoint, path_id = routed
        if endpoint == "health":
            return endpoint, HttpReply(200, {"status": "UP"})
        if not _key_ok(request.headers.get("x-api-key"), api_key):
            return endpoint, self._error(401, "UNAUTHORIZED", "missing or invalid X-Api-Key")
        try:
            if endpoint == "submit":
                values = _decode_order(_json_object(request.body), self._NAMES, self._SIDES, self._KINDS)
                record, created = book.submit(make_order(**values), now)
                return endpoint, HttpReply(201 if created else 200, self._order(record))
            order_id = check_order_id(path_id)
        except InvalidOrder as exc:
            return endpoint, self._error(400, "INVALID_REQUEST", _wire_message(exc, self._NAMES))
        if endpoint == "status":
            known = book.status(order_id)
            if known is None:
                return endpoint, self._error(404, "UNKNOWN_ORDER", f"no order with clientOrderId {order_id}")
            return endpoint, HttpReply(200, self._order(known))
        record = book.cancel(order_id, now)
        if record.state == CANCELLED:
            return endpoint, HttpReply(200, self._order(record))
        if record.state == FILLED:
            return endpoint, self._error(409, "ALREADY_FILLED", "order is filled; it cannot be cancelled",
                                         order=self._order(record))
        return endpoint, self._error(409, "NOT_CANCELLABLE", "order was rejected; nothing to cancel",
                                     order=self._order(record))


class BetaWire:
    """RPC over POST, snake_case, outcomes (even errors) in an HTTP 200 body."""

    name = "beta"
    _NAMES = {"order_id": "client_ref", "symbol": "ticker", "side": "direction", "quantity": "units",
              "order_type": "kind", "limit_price": "px_limit", "account_ref": "acct"}
    _SIDES = {"B": "BUY", "S": "SELL"}
    _KINDS = {"market": "MARKET", "limit": "LIMIT"}
    _STATUS = {"FILLED": "executed", "REJECTED": "rejected", "CANCELLED": "cancelled"}
    _ROUTES = {"/api/execute": ("POST", "submit"), "/api/status": ("POST", "status"),
               "/api/cancel": ("POST", "cancel"), "/api/ping": ("GET", "health")}

    @staticmethod
    def _error(code: str, detail: str, *, status: int = 200, **extra: Any) -> HttpReply:
        return HttpReply(status, {"result": "error", "error_code": code, "detail": detail, **extra})

    @staticmethod
    def _millis(at: datetime) -> int:
        return int(at.timestamp() * 1000)

    def _order(self, record: OrderRecord) -> dict[str, Any]:
        return {
            "client_ref": record.order_id,
            "status": self._STATUS[record.state],
            "exec_id": record.broker_ref,
            "price": _money(record.price),
            "units": record.filled_quantity,
            "executed_at": self._millis(record.at) if record.state == FILLED else None,
            "status_at": self._millis(record.at),
            "reason": record.reason,
        }

    def unavailable(self) -> HttpReply:
        return self._error("SERVICE_UNAVAILABLE", "service unavailable; the request was not accepted",
                           status=503, accepted=False)

    def handle(self, book: Book, request: HttpRequest, *, api_key: str | None,
               now: datetime) -> tuple[str | None, HttpReply]:
        route = self._ROUTES.get(request.path)
        if route is None:
            return None, self._error("UNKNOWN_METHOD", f"no method {request.path}", status=404)
        method, endpoint = route
        if request.method != method:
            return None, self._error("METHOD_NOT_ALLOWED", f"use {method}", status=405)
        if endpoint == "health":
            return endpoint, HttpReply(200, {"result": "ok", "pong": True})
        header = request.headers.get("authorization")
        token = header.removeprefix("Bearer ") if header and header.startswith("Bearer ") else None
        if not _key_ok(token, api_key):
            return endpoint, self._error("AUTH_FAILED", "missing or invalid bearer token", status=401)
        try:
            payload = _json_object(request.body)
            if endpoint == "submit":
                values = _decode_order(payload, self._NAMES, self._SIDES, self._KINDS)
                record, created = book.submit(make_order(**values), now)
                return endpoint, HttpReply(200, {"result": "ok", **self._order(record), "duplicate": not created})
            if set(payload) != {"client_ref"}:
                raise InvalidOrder("body", "must be exactly {\"client_ref\": ...}")
            order_id = check_order_id(payload["client_ref"])
        except InvalidOrder as exc:
            return endpoint, self._error("INVALID_REQUEST", _wire_message(exc, self._NAMES))
        if endpoint == "status":
            known = book.status(order_id)
            if known is None:
                return endpoint, HttpReply(200, {"result": "ok", "client_ref": order_id, "status": "not_found"})
            return endpoint, HttpReply(200, {"result": "ok", **self._order(known)})
        record = book.cancel(order_id, now)
        if record.state == CANCELLED:
            return endpoint, HttpReply(200, {"result": "ok", **self._order(record)})
        if record.state == FILLED:
            return endpoint, self._error("ALREADY_EXECUTED", "order is executed; it cannot be cancelled",
                                         order=self._order(record))
        return endpoint, self._error("NOT_CANCELLABLE", "order was rejected; nothing to cancel",
                                     order=self._order(record))


WIRES: dict[str, Wire] = {"alpha": AlphaWire(), "beta": BetaWire()}
