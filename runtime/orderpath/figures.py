"""Figures of the order path as it runs: the queues, the oldest pending order, sweeps, double
executions, and the routing summary `tradeops status` shows.

Plain reads, shared by the CLI, the runbooks and the drills; nothing here changes anything.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tradeops.runtime.orderpath.double_executions import OPEN, UNWOUND, WATCH_OPEN, WRITTEN_OFF, watch_of
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.heartbeats import fleet
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.states import PENDING
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.names import names_for

__all__ = [
    "SWEPT_WINDOW_SECONDS",
    "double_executions",
    "oldest_pending_age",
    "queue_figures",
    "runtime_status",
    "swept_recently",
]


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
    """Messages waiting (visible) and being handled (in flight) on the order queue and its dead-letter queue."""
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
