"""Operator-side operations on the running system, shared by the CLI and the runbooks.

Each function does one thing an operator (or a runbook step) asks for and returns plain data;
nothing here keeps state between calls.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.orderpath.double_executions import OPEN, UNWOUND, WATCH_OPEN, WATCH_VOID, WRITTEN_OFF, watch_of
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.messages import order_message
from tradeops.runtime.orderpath.orders import OrderStore, StaleOrder
from tradeops.runtime.orderpath.providers import BrokerCallError, Execution, make_provider
from tradeops.runtime.orderpath.reconcile import Reconciliation, reconcile
from tradeops.runtime.orderpath.router import broker_api_key
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.states import PENDING
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, CheckFailed, OperationFailed
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings

__all__ = [
    "broker_health",
    "canary",
    "declare_void",
    "double_executions",
    "fleet",
    "in_flight_orders",
    "notify",
    "oldest_pending_age",
    "queue_figures",
    "reconcile_orders",
    "resolve_in_flight",
    "runtime_status",
    "swept_recently",
    "void_in_flight",
]


def _check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise BadInput(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    return provider


def _provider(settings: Settings, aws: Aws, provider: str):
    url = settings.broker_url(_check_provider(provider))
    if not url:
        raise OperationFailed(f"no URL known for the {provider} broker (is the stack up?)")
    return make_provider(
        provider,
        settings.broker_wire(provider),
        url,
        api_key=broker_api_key(settings, aws, provider),
        connect_timeout=settings.broker_connect_timeout,
        read_timeout=settings.broker_read_timeout,
    )


def broker_health(settings: Settings, aws: Aws, provider: str) -> dict[str, Any]:
    """One health probe of a broker's order API."""
    with _provider(settings, aws, provider) as client:
        try:
            latency = client.health()
        except BrokerCallError as exc:
            return {"provider": provider, "healthy": False, "latency_ms": None, "error": str(exc)}
    return {"provider": provider, "healthy": True, "latency_ms": round(latency, 1), "error": None}


def fleet(aws: Aws, *, max_age: float | None = None) -> dict[str, Any]:
    """Live workers from their heartbeats, with the total in flight. Drained = live and none in flight."""
    names = names_for(aws.settings)
    max_age = max_age if max_age is not None else 3 * aws.settings.heartbeat_seconds + 1
    with aws_errors("read worker heartbeats"):
        items = aws.dynamodb.scan(TableName=names.heartbeats_table).get("Items", [])
    now = time.time()
    workers = []
    for item in items:
        age = now - float(item["at_epoch"]["N"])
        if age > max_age:
            continue
        workers.append(
            {
                "worker_id": item["worker_id"]["S"],
                "in_flight": int(item["in_flight"]["N"]),
                "taking": item.get("taking", {}).get("BOOL", False),
                "processing": item.get("processing", {}).get("S"),
                "age_seconds": round(age, 2),
                "breakers": json.loads(item.get("breakers", {}).get("S", "{}")),
                "suspect": json.loads(item.get("suspect", {}).get("S", "{}")),
                "counters": json.loads(item.get("counters", {}).get("S", "{}")),
                "aws_requests": json.loads(item.get("aws_requests", {}).get("S", "{}")),
            }
        )
    workers.sort(key=lambda w: w["worker_id"])
    in_flight = sum(w["in_flight"] for w in workers)
    return {
        "workers": workers,
        "in_flight": in_flight,
        "drained": in_flight == 0 and not any(w["taking"] for w in workers),
        # Events the workers' bounded queues dropped rather than delay an order (platform/events.py).
        "events_dropped": sum(int(w["counters"].get("events_dropped", 0)) for w in workers),
    }


def in_flight_orders(aws: Aws, provider: str) -> list[dict[str, Any]]:
    """Orders that may be at ``provider`` without a known outcome (SUBMITTING or IN_DOUBT there)."""
    _check_provider(provider)
    store = OrderStore(aws)
    return [
        o for status in ("SUBMITTING", "IN_DOUBT") for o in store.by_status(status) if o.get("provider") == provider
    ]


def _settle(store: OrderStore, order: dict[str, Any], ex: Execution | None, *, actor: str) -> bool:
    """Record what the broker answered when it answered with an outcome (FILLED or REJECTED); False otherwise."""
    if ex is None or ex.status not in ("FILLED", "REJECTED"):
        return False
    fields = (
        {
            "fill_price": ex.price,
            "filled_quantity": ex.quantity,
            "broker_ref": ex.broker_ref,
            "filled_at": iso(ex.at or utcnow()),
        }
        if ex.status == "FILLED"
        else {"reject_reason": ex.reason or "rejected"}
    )
    with contextlib.suppress(StaleOrder):  # someone else recorded it meanwhile: settled all the same
        store.transition(
            order,
            ex.status,
            actor=actor,
            set_fields={k: v for k, v in fields.items() if v is not None},
            remove_fields=("lease_owner", "lease_until"),
        )
    return True


def resolve_in_flight(settings: Settings, aws: Aws, provider: str) -> dict[str, Any]:
    """Ask ``provider`` about each order in flight there and record every outcome it reports."""
    store = OrderStore(aws)
    resolved, in_doubt = [], []
    with _provider(settings, aws, provider) as client:
        for order in in_flight_orders(aws, provider):
            if order["status"] == "SUBMITTING" and order.get("lease_until", 0) > time.time():
                in_doubt.append(order["order_id"])  # a worker is on it right now
                continue
            try:
                ex = client.status(order["order_id"])
            except BrokerCallError:
                in_doubt.append(order["order_id"])
                continue
            if _settle(store, order, ex, actor="operator:resolve"):
                resolved.append(order["order_id"])
            else:
                # Not held there: the workers' resolver moves it once a broker can take it.
                in_doubt.append(order["order_id"])
    return {"provider": provider, "resolved": resolved, "in_doubt": in_doubt}


def declare_void(aws: Aws, provider: str, *, actor: str, reason: str, execution_id: str | None = None) -> list[str]:
    """Declare ``provider``'s in-flight orders void; the ids released (see :func:`void_in_flight`)."""
    return list(void_in_flight(aws, provider, actor=actor, reason=reason, execution_id=execution_id)["released"])


def void_in_flight(aws: Aws, provider: str, *, actor: str, reason: str,
                   execution_id: str | None = None) -> dict[str, Any]:
    """Declare ``provider``'s in-flight orders void: release them to be routed again, and say who did it.

    Only orders with no worker on them (IN_DOUBT, or SUBMITTING with an expired lease) are
    released. Immediately before releasing each one the broker is asked once more: an order it now
    answers for (filled or rejected) is settled with that answer instead of released, because a
    void is only for what nobody can know. Each released order gets a history entry naming the
    actor, and a fresh queue message. Returns ``{"released", "settled", "provider"}``.
    """
    _check_provider(provider)
    if not actor:
        raise BadInput("declaring orders void needs an identity")
    store, names = OrderStore(aws), names_for(aws.settings)
    queue_url = aws.queue_url(names.order_queue)
    released: list[str] = []
    settled: list[str] = []
    with _provider(aws.settings, aws, provider) as client:
        for order in in_flight_orders(aws, provider):
            if order["status"] == "SUBMITTING" and order.get("lease_until", 0) > time.time():
                continue
            try:
                ex = client.status(order["order_id"])
            except BrokerCallError:
                ex = None  # still no answer: exactly what the declaration is for
            if _settle(store, order, ex, actor=f"operator:declare-void ({actor})"):
                settled.append(order["order_id"])
                continue
            note = f"declared void at {provider} by {actor}: {reason}" + (
                f" (execution {execution_id})" if execution_id else ""
            )
            try:
                store.transition(
                    order,
                    "ACCEPTED",
                    actor=actor,
                    note=note[:300],
                    set_fields={
                        "void_declared": {
                            "provider": provider,
                            "by": actor,
                            "reason": reason,
                            "execution_id": execution_id,
                            "at": iso(),
                        },
                        # Under watch at that broker until it answers again (runtime/orderpath/voids.py).
                        "watch": WATCH_VOID,
                    },
                    remove_fields=("provider", "lease_owner", "lease_until"),
                )
            except StaleOrder:
                continue
            with aws_errors("re-enqueue a voided order"):
                aws.sqs.send_message(QueueUrl=queue_url, MessageBody=order_message(order["order_id"]))
            released.append(order["order_id"])
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


def double_executions(aws: Aws, *, states: tuple[str, ...] = (OPEN, UNWOUND, WRITTEN_OFF)) -> list[dict[str, Any]]:
    """Every double execution found after a void, in ``states``, oldest first (the trading desk's list)."""
    store = OrderStore(aws)
    rows = []
    for state in states:
        for order in store.by_watch(watch_of(state)):
            record = dict(order.get("double_execution") or {})
            # Nested numbers come back from DynamoDB as Decimal: quantities are whole, money stays exact.
            record["fills"] = [{**f, "quantity": int(f["quantity"]) if f.get("quantity") is not None else None}
                               for f in record.get("fills") or []]
            if "approvals_needed" in record:
                record["approvals_needed"] = int(record["approvals_needed"])
            rows.append({"order_id": order["order_id"], "symbol": order.get("symbol"), "side": order.get("side"),
                         "quantity": order.get("quantity"), "order_status": order.get("status"), **record})
    return sorted(rows, key=lambda r: (str(r.get("found_at")), r["order_id"]))


def oldest_pending_age(aws: Aws) -> float | None:
    """Seconds since the oldest pending customer order was placed (tradeops's own figure: the
    emulator has no SQS age metric, and on AWS this is what the customer actually waits)."""
    store = OrderStore(aws)
    oldest: datetime | None = None
    for status in sorted(PENDING):
        for order in store.by_status(status):
            if order.get("synthetic"):
                continue
            placed = parse_iso(order["placed_at"])
            oldest = placed if oldest is None or placed < oldest else oldest
    return None if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())


SWEPT_WINDOW_SECONDS = 3600


def swept_recently(aws: Aws, *, seconds: int = SWEPT_WINDOW_SECONDS) -> int:
    """Orders the workers' sweeper re-enqueued in the last ``seconds`` (``order_swept`` events; a figure
    that survives worker restarts, unlike their counters). Counted by DynamoDB, no event bodies read."""
    names = names_for(aws.settings)
    since = utcnow() - timedelta(seconds=seconds)
    kwargs: dict[str, Any] = {
        "TableName": names.events_table, "Select": "COUNT",
        "KeyConditionExpression": "#s = :s AND at_id >= :a", "FilterExpression": "#k = :k",
        "ExpressionAttributeNames": {"#s": "stream", "#k": "kind"},
        "ExpressionAttributeValues": {":s": {"S": "orders"}, ":a": {"S": iso(since)}, ":k": {"S": "order_swept"}},
    }
    total = 0
    with aws_errors("count swept orders"):
        while True:
            page = aws.dynamodb.query(**kwargs)
            total += page.get("Count", 0)
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def queue_figures(aws: Aws) -> dict[str, Any]:
    names = names_for(aws.settings)
    figures: dict[str, Any] = {}
    for key, name in (("queue", names.order_queue), ("dlq", names.order_dlq)):
        with aws_errors(f"read queue {name}"):
            attrs = aws.sqs.get_queue_attributes(
                QueueUrl=aws.queue_url(name),
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        figures[key] = {
            "visible": int(attrs["ApproximateNumberOfMessages"]),
            "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        }
    return figures


def notify(aws: Aws, subject: str, message: str) -> str:
    """Publish an operator notification on the alert topic; returns the message id."""
    names = names_for(aws.settings)
    with aws_errors("publish notification"):
        return aws.sns.publish(TopicArn=aws.topic_arn(names.alert_topic), Subject=subject[:99], Message=message)[
            "MessageId"
        ]


def canary(
    settings: Settings, *, expect_provider: str | None = None, timeout: float = 10.0, symbol: str = "CANARY"
) -> dict[str, Any]:
    """Post a synthetic order through the intake API and wait for it to fill; check the broker."""
    if not settings.intake_url or not settings.intake_token:
        raise OperationFailed("no intake API known (is the stack up?)")
    headers = {"Authorization": f"Bearer {settings.intake_token}"}
    order_id = f"canary-{int(time.time() * 1000)}"
    body = {
        "order_id": order_id,
        "account_id": "canary",
        "symbol": symbol,
        "side": "BUY",
        "quantity": 1,
        "quote_price": "100",
        "synthetic": True,
    }
    start = time.monotonic()
    try:
        posted = httpx.post(f"{settings.intake_url}/orders", json=body, headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        raise OperationFailed(f"canary: intake API unreachable: {exc}") from None
    if posted.status_code not in (200, 202):
        raise OperationFailed(f"canary: intake refused the order: {posted.status_code} {posted.text[:200]}")
    order: dict[str, Any] = posted.json()
    while time.monotonic() - start < timeout:
        order = httpx.get(f"{settings.intake_url}/orders/{order_id}", headers=headers, timeout=5).json()
        if order.get("status") in ("FILLED", "REJECTED", "DEAD_LETTERED"):
            break
        time.sleep(0.2)
    result = {
        "order_id": order_id,
        "provider": order.get("provider"),
        "status": order.get("status"),
        "seconds": round(time.monotonic() - start, 3),
    }
    if result["status"] != "FILLED":
        raise CheckFailed(f"canary {order_id} did not fill within {timeout:.0f}s (status {result['status']})")
    if expect_provider and result["provider"] != expect_provider:
        raise CheckFailed(f"canary {order_id} filled at {result['provider']}, expected {expect_provider}")
    return result


def runtime_status(aws: Aws) -> dict[str, Any]:
    """Routing, queue and order figures for `tradeops status`."""
    flags = Flags(aws).read()
    workers = fleet(aws)
    breakers: dict[str, str] = {}
    for worker in workers["workers"]:
        for provider, state in worker["breakers"].items():
            # Worst state across workers: one worker seeing a broker open is worth showing.
            rank = {"closed": 0, "half_open": 1, "open": 2}
            if rank.get(state, 0) >= rank.get(breakers.get(provider, "closed"), 0):
                breakers[provider] = state
    # Brokers some worker's in-flight watch finds silent, with each worker's evidence.
    suspect: dict[str, dict[str, Any]] = {}
    for worker in workers["workers"]:
        for provider, evidence in worker["suspect"].items():
            suspect.setdefault(provider, {})[worker["worker_id"]] = evidence
    return {
        "suspect": suspect,
        "double_executions": {"open": sum(1 for _ in OrderStore(aws).by_watch(WATCH_OPEN))},
        "swept": {"last_hour": swept_recently(aws)},
        "routing": {
            "mode": flags.mode,
            "active": flags.active,
            "trickle": flags.trickle,
            "processing": flags.processing,
        },
        "breakers": breakers,
        "queues": queue_figures(aws),
        "oldest_pending_age_seconds": oldest_pending_age(aws),
        "orders": OrderStore(aws).count_by_status(),
        "workers": workers,
    }


def broker_fills(settings: Settings) -> dict[str, list[dict[str, Any]]] | None:
    """Each broker's own fill ledger (the simulated brokers' ``/_sim/fills``); None when a broker has no
    control address we know (a real broker: its fills are not ours to read)."""
    fills: dict[str, list[dict[str, Any]]] = {}
    for provider in PROVIDERS:
        url = getattr(settings, f"{provider}_control_url")
        if not url:
            return None
        with SimControl(url, timeout=10.0) as control:
            fills[provider] = control.fills()
    return fills


def reconcile_orders(settings: Settings, aws: Aws, accepted: list[str], *, unanswered: Sequence[str] = (),
                     fills: dict[str, list[dict[str, Any]]] | None = None,
                     orders: dict[str, dict[str, Any]] | None = None,
                     ) -> tuple[Reconciliation, dict[str, dict[str, Any]]]:
    """Reconcile orders the intake accepted against the orders table and both brokers' fill ledgers.

    Reads the orders by id (BatchGetItem, never a scan) unless ``orders`` is given, and the fills
    unless ``fills`` is given; returns the reconciliation (:func:`.reconcile.reconcile`) and the
    orders as read. The orders are read first: a broker fills before the order is marked FILLED, so
    every FILLED order read then has its fill in a ledger read after (the other way round, an order
    that fills between the two reads would look lost). Pass ``fills`` only if read after ``orders``.
    """
    if orders is None:
        orders = OrderStore(aws).get_many([*accepted, *unanswered])
    if fills is None:
        fills = broker_fills(settings)
    return reconcile(accepted, orders, fills, unanswered=unanswered), orders
