"""Orders in flight at one broker, as an operator or a runbook step settles them.

An operator (``tradeops orders``, the failover and declare-void runbooks) lists the orders that may
be at a broker without a known outcome, asks the broker about each and records what it answers
(:func:`resolve_in_flight`), and, for what nobody can know, declares them void
(:func:`void_in_flight`). What each answer does to an order is :func:`.answers.decide`'s, exactly as
in the worker. Orders a worker holds right now (SUBMITTING with a live lease) are left to it. The
broker's own health (:func:`broker_health`) is asked through the same kind of client, without the
API key: one of the operator's own, not a worker's, so no breaker or in-flight watch is fed by these calls.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

from tradeops.runtime.orderpath.answers import Call, Void, decide, lease_left
from tradeops.runtime.orderpath.messages import order_message
from tradeops.runtime.orderpath.orders import OrderStore, StaleOrder
from tradeops.runtime.orderpath.providers import BrokerCallError, Provider, ask, make_provider
from tradeops.runtime.orderpath.router import broker_api_key
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.states import IN_DOUBT, SUBMITTING
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings

__all__ = ["broker_health", "check_provider", "in_flight_orders", "resolve_in_flight", "void_in_flight"]


def check_provider(provider: str) -> str:
    """``provider`` if it names one of the brokers, else BadInput listing them."""
    if provider not in PROVIDERS:
        raise BadInput(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    return provider


def _client(settings: Settings, aws: Aws, provider: str, *, keyed: bool = True) -> Provider:
    url = settings.broker_url(check_provider(provider))
    if not url:
        raise OperationFailed(f"no URL known for the {provider} broker (is the stack up?)")
    return make_provider(
        provider,
        settings.broker_wire(provider),
        url,
        api_key=broker_api_key(settings, aws, provider) if keyed else None,
        connect_timeout=settings.broker_connect_timeout,
        read_timeout=settings.broker_read_timeout,
        fault_proxy=settings.fault_proxy,
    )


def broker_health(settings: Settings, aws: Aws, provider: str) -> dict[str, Any]:
    """One health probe of a broker's order API, made without the broker's API key.

    Every wire's health endpoint answers without a key (docs/brokers.md), so whoever probes (an
    operator's ``doctor`` or ``runbook plan``) needs no ``secretsmanager:GetSecretValue`` on the keys:
    the operator role has none; only the runtime's roles and the approval gate read them."""
    with _client(settings, aws, provider, keyed=False) as client:
        try:
            latency = client.health()
        except BrokerCallError as exc:
            return {"provider": provider, "healthy": False, "latency_ms": None, "error": str(exc)}
    return {"provider": provider, "healthy": True, "latency_ms": round(latency, 1), "error": None}


def in_flight_orders(aws: Aws, provider: str) -> list[dict[str, Any]]:
    """Orders that may be at ``provider`` without a known outcome (SUBMITTING or IN_DOUBT there)."""
    check_provider(provider)
    store = OrderStore(aws)
    return [o for status in (SUBMITTING, IN_DOUBT) for o in store.by_status(status) if o.get("provider") == provider]


def _worker_holds(order: dict[str, Any]) -> bool:
    """A worker is on the order right now: its claim's lease has not run out."""
    return order["status"] == SUBMITTING and lease_left(order, utcnow().timestamp()) > 0


def resolve_in_flight(settings: Settings, aws: Aws, provider: str, *,
                      actor: str = "operator:resolve") -> dict[str, Any]:
    """Ask ``provider`` about each order in flight there and record every outcome it reports, as ``actor`` (on each
    settled order's history: the approval gate names itself and whose run asked it)."""
    store = OrderStore(aws)
    resolved: list[str] = []
    in_doubt: list[str] = []
    orders = in_flight_orders(aws, provider)
    if not orders:  # nothing to ask about: no broker key is read (people's roles may not read one)
        return {"provider": provider, "resolved": resolved, "in_doubt": in_doubt}
    with _client(settings, aws, provider) as client:
        for order in orders:
            order_id = order["order_id"]
            if _worker_holds(order):
                in_doubt.append(order_id)
                continue
            decision = decide(order, ask(Call.STATUS, provider, partial(client.status, order_id)), now=utcnow())
            if not decision.settles:
                # No answer, or not held there: the workers' resolver moves it once a broker can take it.
                in_doubt.append(order_id)
                continue
            with contextlib.suppress(StaleOrder):  # someone else recorded it meanwhile: settled all the same
                store.apply(order, decision, actor=actor)
            resolved.append(order_id)
    return {"provider": provider, "resolved": resolved, "in_doubt": in_doubt}


def void_in_flight(aws: Aws, provider: str, *, actor: str, reason: str,
                   execution_id: str | None = None) -> dict[str, Any]:
    """Declare ``provider``'s in-flight orders void: release them to be routed again, and say who did it.

    Only orders with no worker on them (IN_DOUBT, or SUBMITTING with an expired lease) are
    released. Immediately before releasing each one the broker is asked once more: an order it now
    answers for (filled or rejected) is settled with that answer instead of released, because a
    void is only for what nobody can know. Each released order gets a history entry naming the
    actor, and a fresh queue message. Returns ``{"released", "settled", "provider"}``.
    """
    check_provider(provider)
    if not actor:
        raise BadInput("declaring orders void needs an identity")
    store, names = OrderStore(aws), names_for(aws.settings)
    queue_url = aws.queue_url(names.order_queue)
    void = Void(by=actor, reason=reason, execution_id=execution_id)
    released: list[str] = []
    settled: list[str] = []
    with _client(aws.settings, aws, provider) as client:
        for order in in_flight_orders(aws, provider):
            order_id = order["order_id"]
            if _worker_holds(order):
                continue
            # Still no answer is exactly what the declaration is for: the decision releases it.
            reply = ask(Call.STATUS, provider, partial(client.status, order_id))
            decision = decide(order, reply, now=utcnow(), void=void)
            if decision.settles:
                with contextlib.suppress(StaleOrder):  # someone else recorded it meanwhile: settled all the same
                    store.apply(order, decision, actor=f"operator:declare-void ({actor})")
                settled.append(order_id)
                continue
            try:
                store.apply(order, decision, actor=actor)
            except StaleOrder:
                continue
            with aws_errors("re-enqueue a voided order"):
                aws.sqs.send_message(QueueUrl=queue_url, MessageBody=order_message(order_id))
            released.append(order_id)
    EventLog(aws, source=actor, echo=False).emit(
        "orders_declared_void",
        metric=("OrdersDeclaredVoid", float(len(released))),
        dimensions={"Provider": provider},
        provider=provider,
        actor=actor,
        reason=reason,
        execution_id=execution_id,
        orders=len(released),
        settled=len(settled),
    )
    return {"provider": provider, "released": released, "settled": settled}
