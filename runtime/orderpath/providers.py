"""Broker adapters: one ``Provider`` interface, one adapter per broker wire format.

An adapter turns a ``BrokerOrder`` into its broker's request and the broker's answer into an
``Execution``; a business rejection is an ``Execution`` with status REJECTED, not an error.
Everything else that goes wrong is one of these, and which one decides whether the order may
be sent to the other broker (docs/architecture.md, "Exactly once across a broker switch")::

    ProviderError (tradeops.runtime.platform.errors)
    └── BrokerCallError          carries .provider and .order_id (None for a health check)
        ├── NotReceived          the request never reached the broker (connection refused,
        │   │                    connect timeout, no free connection): safe to send elsewhere
        │   └── NotConnected     the connection itself failed (refused, unreachable): the
        │                        broker is down, not slow, and its breaker opens at once
        ├── NotAccepted          the broker answered that it did not take the request
        │   │                    (e.g. 503 with "accepted": false): safe to send elsewhere
        │   └── AuthFailed       the broker refused our API key
        └── OutcomeUnknown       the request may have reached the broker (read timeout, dropped
                                 connection after sending, a 5xx that does not say "not accepted",
                                 an answer we cannot read): the order is IN_DOUBT until
                                 ``status``/``cancel`` says the broker does not hold it

For ``status``, ``cancel`` and ``health`` any of these errors simply means "no answer": only a
returned value (None, CANCELLED, REJECTED) says the broker does not hold a fill. :func:`ask` makes
one call and turns what it came back with, error or record, into an answer (:mod:`.answers`, which
also decides what that answer does to the order).

httpx's exceptions are translated in one place, ``_map_httpx_errors``; each wire classifies its
unsuccessful answers through ``_refusal``. An adapter told it calls the broker through a fault proxy
(``fault_proxy``, :mod:`tradeops.runtime.brokers.proxy`) reads the proxy's own answers for what they
are, never as the broker's: the broker refused the proxy (``NotConnected``), or the proxy could not
reach the broker at all (``NotReceived``, naming the proxy's path). Only then: a broker must not be
able to claim it never saw an order by answering like a proxy. The API key lives only inside an ``httpx.Auth`` whose
repr hides it; no adapter, error or log line shows it.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, ClassVar, Protocol, Self, TypeGuard
from urllib.parse import quote

import httpx

from tradeops.runtime.brokers.proxyfaults import MARKER_HEADER, UPSTREAM_REFUSED, UPSTREAM_UNREACHABLE
from tradeops.runtime.orderpath.answers import Answer, Call, Execution, Reply, reply_of
from tradeops.runtime.platform.errors import BadInput, ConfigError, ProviderError

__all__ = [
    "ADAPTERS",
    "AlphaProvider",
    "AuthFailed",
    "BetaProvider",
    "BrokerCallError",
    "BrokerOrder",
    "NotAccepted",
    "NotConnected",
    "NotReceived",
    "OutcomeUnknown",
    "Provider",
    "ask",
    "make_provider",
]

FILLED, REJECTED, CANCELLED = "FILLED", "REJECTED", "CANCELLED"


@dataclass(frozen=True)
class BrokerOrder:
    """An order as a broker sees it: ``account_ref`` is opaque, never the customer's identity."""

    order_id: str
    symbol: str
    side: str  # BUY | SELL
    quantity: int
    order_type: str  # MARKET | LIMIT
    limit_price: Decimal | None
    account_ref: str

    def __post_init__(self) -> None:
        if self.side not in ("BUY", "SELL"):
            raise BadInput(f"order {self.order_id}: side must be BUY or SELL, not {self.side!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise BadInput(f"order {self.order_id}: quantity must be a positive whole number")
        if self.order_type not in ("MARKET", "LIMIT"):
            raise BadInput(f"order {self.order_id}: order_type must be MARKET or LIMIT, not {self.order_type!r}")
        if (self.limit_price is None) != (self.order_type == "MARKET"):
            raise BadInput(f"order {self.order_id}: a limit price is required for LIMIT orders and only for them")


class Provider(Protocol):
    name: str

    def submit(self, order: BrokerOrder) -> Execution: ...

    def status(self, order_id: str) -> Execution | None:
        """None: the broker says it does not hold the order."""
        ...

    def cancel(self, order_id: str) -> Execution | None:
        """CANCELLED (or REJECTED): not held, and now it never will be; FILLED: too late."""
        ...

    def health(self) -> float:
        """Round-trip latency in ms; raises BrokerCallError when the broker is not healthy."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Provider: ...

    def __exit__(self, *exc: object) -> None: ...


class BrokerCallError(ProviderError):
    """A call to a broker failed; the subclass says whether the order may be at the broker.

    ``answered`` says whether the broker sent anything back (an HTTP error, an unreadable body):
    a broker that answers, even badly, is alive, which the in-flight watch (:mod:`.suspicion`)
    needs to know. A transport failure (refused, timed out, dropped) is no answer.
    """

    def __init__(self, message: str, *, provider: str, order_id: str | None = None, answered: bool = True) -> None:
        super().__init__(message)
        self.provider = provider
        self.order_id = order_id
        self.answered = answered


class NotReceived(BrokerCallError):
    """The request never reached the broker: the order is safe to send elsewhere."""


class NotConnected(NotReceived):
    """The connection failed before a byte was sent (refused, host unreachable): the broker is down.

    Unlike a connect timeout (maybe a slow network) or a full pool (our side), this is proof.
    """


class NotAccepted(BrokerCallError):
    """The broker answered that it did not take the request: safe to send elsewhere."""


class AuthFailed(NotAccepted):
    """The broker refused our API key."""


class OutcomeUnknown(BrokerCallError):
    """The request may have reached the broker; only its status or a cancel can settle it."""


def ask(call: Call, provider: str, send: Callable[[], Execution | None]) -> Reply:
    """Make one ``call`` to ``provider`` (``send``) and say what it came back with.

    The one place a failed call becomes an answer: only a submit fails with proof that the broker
    does not hold the order (not received, not accepted); a status query or a cancel that fails is
    no answer, so the outcome stays unknown.
    """
    try:
        execution = send()
    except BrokerCallError as exc:
        answer = Answer.OUTCOME_UNKNOWN
        if call is Call.SUBMIT and isinstance(exc, NotReceived):
            answer = Answer.NOT_RECEIVED
        elif call is Call.SUBMIT and isinstance(exc, NotAccepted):
            answer = Answer.NOT_ACCEPTED
        return Reply(call, provider, answer, error=str(exc))
    return reply_of(call, provider, execution)


def _subject(order_id: str | None) -> str:
    return f"order {order_id}" if order_id is not None else "health check"


@contextmanager
def _map_httpx_errors(provider: str, order_id: str | None) -> Iterator[None]:
    """Translate httpx's transport errors into ours: the one place that decides "not received"."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise NotConnected(f"{provider}: {_subject(order_id)} not received ({type(exc).__name__}: {exc})",
                           provider=provider, order_id=order_id, answered=False) from exc
    except (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
        # Raised before a byte of the request was written.
        raise NotReceived(f"{provider}: {_subject(order_id)} not received ({type(exc).__name__}: {exc})",
                          provider=provider, order_id=order_id, answered=False) from exc
    except httpx.TransportError as exc:
        # Read/write timeouts, connections dropped mid-exchange, broken HTTP: the request may have
        # been read and acted on, so nobody may assume it was not.
        raise OutcomeUnknown(f"{provider}: outcome of {_subject(order_id)} unknown ({type(exc).__name__}: {exc})",
                             provider=provider, order_id=order_id, answered=False) from exc


def _proxy_unreached(provider: str, order_id: str | None, marker: str, body: dict[str, Any] | None) -> NotReceived:
    """The fault proxy in front of ``provider`` answered instead of it: nothing reached the broker."""
    error = (body or {}).get("error")
    detail = str(error.get("message")) if isinstance(error, dict) and error.get("message") else "no detail"
    if marker == UPSTREAM_REFUSED:
        return NotConnected(f"{provider}: {_subject(order_id)} not received: the broker refused the fault proxy's "
                            f"connection ({detail})", provider=provider, order_id=order_id, answered=False)
    return NotReceived(f"{provider}: {_subject(order_id)} not received: the fault proxy in front of {provider} cannot "
                       f"reach it ({detail}); a fault of the proxy's path, not an answer of the broker",
                       provider=provider, order_id=order_id, answered=False)


def _refusal(provider: str, order_id: str | None, status_code: int, *, accepted: Any,
             detail: str) -> BrokerCallError:
    """Classify an answer that is neither a result nor a business rejection."""
    text = f"{provider}: {_subject(order_id)}: HTTP {status_code} {detail}".rstrip()
    if status_code in (401, 403):
        return AuthFailed(text, provider=provider, order_id=order_id)
    if accepted is False:
        return NotAccepted(text, provider=provider, order_id=order_id)
    if 400 <= status_code < 500:
        return NotAccepted(text, provider=provider, order_id=order_id)  # 4xx: refused without acting
    return OutcomeUnknown(text, provider=provider, order_id=order_id)


class _ApiKeyAuth(httpx.Auth):
    """Adds the API key header to each request; its repr never shows the key."""

    def __init__(self, header: str, value: str) -> None:
        self._header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._value
        yield request

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._header}: ***>"


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one costs tens of ms, sharing it is safe."""
    return httpx.create_ssl_context()


class _HttpProvider:
    """What both adapters share: one pooled, thread-safe httpx.Client and error translation."""

    wire: ClassVar[str]
    _health_path: ClassVar[str]

    def __init__(self, name: str, base_url: str, *, auth: httpx.Auth | None, connect_timeout: float,
                 read_timeout: float, fault_proxy: bool = False) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.fault_proxy = fault_proxy
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            headers={"accept": "application/json", "user-agent": "tradeops"},
            follow_redirects=False,
            verify=_tls_context(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, order_id: str | None, body: dict[str, Any] | None = None
              ) -> tuple[int, dict[str, Any] | None]:
        """Send one request; returns the status code and the JSON object answered (None if not one)."""
        with _map_httpx_errors(self.name, order_id):
            response = self._client.request(method, path, json=body)
            content = response.read()
        try:
            parsed = response.json() if content else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        marker = response.headers.get(MARKER_HEADER) if self.fault_proxy else None
        if marker in (UPSTREAM_REFUSED, UPSTREAM_UNREACHABLE):
            raise _proxy_unreached(self.name, order_id, marker, body)
        return response.status_code, body

    def _unreadable(self, order_id: str | None, why: object) -> OutcomeUnknown:
        return OutcomeUnknown(f"{self.name}: outcome of {_subject(order_id)} unknown (unreadable answer: {why})",
                              provider=self.name, order_id=order_id)

    def _execution(self, order_id: str, status: str, *, price: Any = None, quantity: Any = 0,
                   broker_ref: Any = None, at: datetime | None = None, reason: Any = None) -> Execution:
        if status not in (FILLED, REJECTED, CANCELLED):
            raise ValueError(f"unknown status {status!r}")
        parsed_price = Decimal(str(price)) if price is not None else None
        if status == FILLED and (parsed_price is None or not parsed_price.is_finite() or parsed_price <= 0):
            raise ValueError("a fill without a valid price")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise ValueError(f"bad filled quantity {quantity!r}")
        return Execution(order_id=order_id, provider=self.name, status=status, price=parsed_price,
                         quantity=quantity, broker_ref=None if broker_ref is None else str(broker_ref),
                         at=at, reason=None if reason is None else str(reason))

    def health(self) -> float:
        started = time.perf_counter()
        status_code, body = self._call("GET", self._health_path, None)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if status_code != 200:
            raise self._failure(status_code, body, None)
        return elapsed_ms

    def _failure(self, status_code: int, body: dict[str, Any] | None, order_id: str | None) -> BrokerCallError:
        raise NotImplementedError


class AlphaProvider(_HttpProvider):
    """Adapter for the ``alpha`` wire (REST, camelCase, errors as HTTP status codes)."""

    wire = "alpha"
    _health_path = "/v1/health"
    _SIDES = {"BUY": "BUY", "SELL": "SELL"}
    _TYPES = {"MARKET": "MKT", "LIMIT": "LMT"}

    def __init__(self, name: str, base_url: str, *, api_key: str | None, connect_timeout: float,
                 read_timeout: float, fault_proxy: bool = False) -> None:
        auth = _ApiKeyAuth("X-Api-Key", api_key) if api_key else None
        super().__init__(name, base_url, auth=auth, connect_timeout=connect_timeout, read_timeout=read_timeout,
                         fault_proxy=fault_proxy)

    @staticmethod
    def _error(body: dict[str, Any] | None) -> dict[str, Any]:
        error = (body or {}).get("error")
        return error if isinstance(error, dict) else {}

    def _failure(self, status_code: int, body: dict[str, Any] | None, order_id: str | None) -> BrokerCallError:
        error = self._error(body)
        detail = " ".join(str(error[k]) for k in ("code", "message") if error.get(k))
        return _refusal(self.name, order_id, status_code, accepted=error.get("accepted"), detail=detail)

    def _from_order(self, body: Any, order_id: str) -> Execution:
        try:
            if body.get("clientOrderId") != order_id:
                raise ValueError(f"answer is about order {body.get('clientOrderId')!r}")
            stamp = body.get("transactTime")
            at = datetime.fromisoformat(stamp).astimezone(UTC) if stamp else None
            return self._execution(order_id, body["state"], price=body.get("avgPx"),
                                   quantity=body.get("filledQty", 0), broker_ref=body.get("brokerOrderId"),
                                   at=at, reason=body.get("rejectReason"))
        except (AttributeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise self._unreadable(order_id, exc) from None

    def submit(self, order: BrokerOrder) -> Execution:
        payload = {"clientOrderId": order.order_id, "instrument": order.symbol, "side": self._SIDES[order.side],
                   "qty": order.quantity, "ordType": self._TYPES[order.order_type],
                   "limitPx": None if order.limit_price is None else str(order.limit_price),
                   "accountRef": order.account_ref}
        status_code, body = self._call("POST", "/v1/orders", order.order_id, payload)
        if status_code in (200, 201):
            return self._from_order(body, order.order_id)
        error = self._error(body)
        if status_code == 400 and error.get("code") == "INVALID_REQUEST":
            return self._execution(order.order_id, REJECTED, reason=f"INVALID_REQUEST: {error.get('message')}")
        raise self._failure(status_code, body, order.order_id)

    def status(self, order_id: str) -> Execution | None:
        status_code, body = self._call("GET", f"/v1/orders/{quote(order_id, safe='')}", order_id)
        if status_code == 200:
            return self._from_order(body, order_id)
        # Only this code means "not held": a bare 404 could be a wrong base URL, not an answer.
        if status_code == 404 and self._error(body).get("code") == "UNKNOWN_ORDER":
            return None
        raise self._failure(status_code, body, order_id)

    def cancel(self, order_id: str) -> Execution | None:
        status_code, body = self._call("DELETE", f"/v1/orders/{quote(order_id, safe='')}", order_id)
        if status_code == 200:
            return self._from_order(body, order_id)
        if status_code == 409 and body is not None and isinstance(body.get("order"), dict):
            return self._from_order(body["order"], order_id)  # already filled or rejected
        raise self._failure(status_code, body, order_id)


class BetaProvider(_HttpProvider):
    """Adapter for the ``beta`` wire (RPC over POST, snake_case, outcomes in the body)."""

    wire = "beta"
    _health_path = "/api/ping"
    _SIDES = {"BUY": "B", "SELL": "S"}
    _TYPES = {"MARKET": "market", "LIMIT": "limit"}
    _STATUS = {"executed": FILLED, "rejected": REJECTED, "cancelled": CANCELLED}

    def __init__(self, name: str, base_url: str, *, api_key: str | None, connect_timeout: float,
                 read_timeout: float, fault_proxy: bool = False) -> None:
        auth = _ApiKeyAuth("Authorization", f"Bearer {api_key}") if api_key else None
        super().__init__(name, base_url, auth=auth, connect_timeout=connect_timeout, read_timeout=read_timeout,
                         fault_proxy=fault_proxy)

    def _failure(self, status_code: int, body: dict[str, Any] | None, order_id: str | None) -> BrokerCallError:
        body = body or {}
        detail = " ".join(str(body[k]) for k in ("error_code", "detail") if body.get(k))
        accepted = body.get("accepted")
        if status_code == 200 and body.get("result") == "error" and accepted is None:
            accepted = False  # beta's explicit error result: the request was not carried out
        return _refusal(self.name, order_id, status_code, accepted=accepted, detail=detail)

    @staticmethod
    def _millis(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"bad epoch milliseconds {value!r}")
        return datetime.fromtimestamp(value / 1000, UTC)

    def _from_order(self, body: Any, order_id: str) -> Execution:
        try:
            if body.get("client_ref") != order_id:
                raise ValueError(f"answer is about order {body.get('client_ref')!r}")
            status = self._STATUS.get(body.get("status"))
            if status is None:
                raise ValueError(f"unknown status {body.get('status')!r}")
            at = self._millis(body.get("executed_at")) or self._millis(body.get("status_at"))
            return self._execution(order_id, status, price=body.get("price"), quantity=body.get("units", 0),
                                   broker_ref=body.get("exec_id"), at=at, reason=body.get("reason"))
        except (AttributeError, KeyError, TypeError, ValueError, ArithmeticError, OverflowError, OSError) as exc:
            raise self._unreadable(order_id, exc) from None

    @staticmethod
    def _ok(body: dict[str, Any] | None, status_code: int) -> TypeGuard[dict[str, Any]]:
        return status_code == 200 and body is not None and body.get("result") == "ok"

    def submit(self, order: BrokerOrder) -> Execution:
        payload = {"client_ref": order.order_id, "ticker": order.symbol, "direction": self._SIDES[order.side],
                   "units": order.quantity, "kind": self._TYPES[order.order_type],
                   "px_limit": None if order.limit_price is None else str(order.limit_price),
                   "acct": order.account_ref}
        status_code, body = self._call("POST", "/api/execute", order.order_id, payload)
        if self._ok(body, status_code):
            return self._from_order(body, order.order_id)
        if status_code == 200 and body is not None and body.get("error_code") == "INVALID_REQUEST":
            return self._execution(order.order_id, REJECTED, reason=f"INVALID_REQUEST: {body.get('detail')}")
        raise self._failure(status_code, body, order.order_id)

    def status(self, order_id: str) -> Execution | None:
        status_code, body = self._call("POST", "/api/status", order_id, {"client_ref": order_id})
        if self._ok(body, status_code):
            if body.get("status") == "not_found" and body.get("client_ref") == order_id:
                return None
            return self._from_order(body, order_id)
        raise self._failure(status_code, body, order_id)

    def cancel(self, order_id: str) -> Execution | None:
        status_code, body = self._call("POST", "/api/cancel", order_id, {"client_ref": order_id})
        if self._ok(body, status_code):
            return self._from_order(body, order_id)
        if status_code == 200 and body is not None and isinstance(body.get("order"), dict):
            return self._from_order(body["order"], order_id)  # already executed or rejected
        raise self._failure(status_code, body, order_id)


ADAPTERS: dict[str, type[AlphaProvider] | type[BetaProvider]] = {"alpha": AlphaProvider, "beta": BetaProvider}


def make_provider(name: str, wire: str, base_url: str, *, api_key: str | None, connect_timeout: float,
                  read_timeout: float, fault_proxy: bool = False) -> Provider:
    """The adapter for ``wire`` talking to the broker at ``base_url`` as provider ``name`` (through a tradeops
    fault proxy when ``fault_proxy``: its own answers are then read as the proxy's)."""
    adapter = ADAPTERS.get(wire)
    if adapter is None:
        raise ConfigError(f"provider {name}: unknown wire {wire!r} (known: {', '.join(sorted(ADAPTERS))})")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"provider {name}: base URL must start with http:// or https://")
    return adapter(name, base_url, api_key=api_key, connect_timeout=connect_timeout, read_timeout=read_timeout,
                   fault_proxy=fault_proxy)
