"""Runtime events: state changes that drills measure and humans must hear about.

An event (breaker opened/closed, broker suspect/cleared, routing flag changed, orders declared
void, dead letter, double execution) is written to the events table with its UTC timestamp
(drills read time-to-detect and time-to-recover from there), published as a metric, logged as one
JSON line, and — for the few kinds that need a human at once — sent to the SNS alert topic. Breaker
and broker-health alerts are paged by the fleet's one broker pager. Publishing never raises into
the order path: an event that cannot be published is logged and dropped.

Two ways to publish, chosen per EventLog:

- **background** (the stack's long-running processes: workers, canary, monitor): :meth:`EventLog.emit`
  logs the event and puts it on a bounded queue; one flusher thread does the DynamoDB put, the
  metric (an EMF log line, :mod:`.metrics`) and the SNS publish. So a breaker transition inside an
  order's submit costs that order a queue put, never an AWS request. A full queue drops the event and
  counts it (:meth:`EventLog.stats`, the worker's heartbeat, ``tradeops status``): an event is worth
  less than an order's latency. :meth:`EventLog.flush` waits for the queue to drain (tests, exit).
- **inline** (one-shot processes: the CLI, a runbook step): the same work before ``emit`` returns,
  since the process may exit next. A one-shot process has no log stream for EMF to ride on, so its
  few metrics (``FlagChanged``, ``OrdersDeclaredVoid``) go by ``PutMetricData``; none is on an
  order's path.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.metrics import publish
from tradeops.runtime.platform.names import Names, names_for

__all__ = ["ALERT_KINDS", "QUEUE_LIMIT", "EventLog", "read_events"]

log = logging.getLogger("tradeops.events")

# Kinds that also go to the alert topic at once. Breaker and broker-health events are not among them:
# every worker records those, and the fleet's one broker pager (runtime/liability/pager.py) decides
# what pages, so N workers do not page N times per flap.
ALERT_KINDS = frozenset({"orders_declared_void", "dead_letter", "double_execution", "break_glass"})

QUEUE_LIMIT = 1000
"""Events waiting for the flusher before new ones are dropped (a flap makes a few per second)."""

_Job = Callable[[], None]


class EventLog:
    """Publishes events of one process (``source`` = worker id, CLI user, ...); see the module doc."""

    def __init__(self, aws: Aws, *, source: str, names: Names | None = None, echo: bool = True,
                 background: bool = False, queue_limit: int = QUEUE_LIMIT) -> None:
        self.aws = aws
        self.echo = echo  # one JSON line per event in the process log; off for the CLI
        self.source = source
        self.names = names or names_for(aws.settings)
        self._topic: str | None = None
        self.background = background
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=queue_limit)
        self._lock = threading.Lock()
        self._counts = {"queued": 0, "published": 0, "dropped": 0, "failed": 0}
        self._thread: threading.Thread | None = None

    def _topic_arn(self) -> str:
        if self._topic is None:
            self._topic = self.aws.topic_arn(self.names.alert_topic)
        return self._topic

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def stats(self) -> dict[str, int]:
        """Events queued, published, dropped (queue full) and failed (AWS refused) since the start."""
        with self._lock:
            return {**self._counts, "waiting": self._queue.qsize()}

    def emit(self, kind: str, *, stream: str = "routing", metric: tuple[str, float] | None = None,
             dimensions: dict[str, str] | None = None, at: datetime | None = None, **facts: Any) -> dict[str, Any]:
        """Record one event; returns it. ``metric`` is (name, value) for CloudWatch."""
        at = at or utcnow()
        event = {"kind": kind, "at": iso(at), "source": self.source, **facts}
        if self.echo:
            log.info("event %s", kind, extra={"event": event})

        def job() -> None:
            self._publish(event, stream=stream, metric=metric, dimensions=dimensions, at=at)

        self._submit(job)
        return event

    def metric(self, name: str, value: float, *, unit: str = "None", dimensions: dict[str, str] | None = None,
               at: datetime | None = None) -> None:
        """Publish one metric point the same way as events' metrics (EMF in the background, else PutMetricData)."""
        self._submit(lambda: self._put_metric(name, value, unit=unit, dimensions=dimensions, at=at or utcnow()))

    def _submit(self, job: _Job) -> None:
        if not self.background:
            self._run(job)
            return
        self._start()
        try:
            self._queue.put_nowait(job)
            self._count("queued")
        except queue.Full:
            self._count("dropped")

    def _run(self, job: _Job) -> None:
        try:
            job()
            self._count("published")
        except Exception as exc:  # publishing must never break the order path
            self._count("failed")
            log.warning("event not published: %s", str(exc)[:200])

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._flusher, name=f"events-{self.source}", daemon=True)
                self._thread.start()
                atexit.register(self.flush, 2.0)

    def _flusher(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is published (or ``timeout`` s); True when none is left."""
        if not self.background or self._thread is None:
            return True
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def _put_metric(self, name: str, value: float, *, unit: str, dimensions: dict[str, str] | None,
                    at: datetime) -> None:
        if self.background:
            publish(self.names.metric_namespace, [(name, float(value), unit)], dimensions=dimensions, at=at)
            return
        with aws_errors(f"publish metric {name}"):
            self.aws.cloudwatch.put_metric_data(
                Namespace=self.names.metric_namespace,
                MetricData=[{"MetricName": name, "Value": float(value), "Unit": unit, "Timestamp": at,
                             "Dimensions": [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]}])

    def _publish(self, event: dict[str, Any], *, stream: str, metric: tuple[str, float] | None,
                 dimensions: dict[str, str] | None, at: datetime) -> None:
        kind = event["kind"]
        self.aws.dynamodb.put_item(
            TableName=self.names.events_table,
            Item={"stream": {"S": stream}, "at_id": {"S": f"{event['at']}#{secrets.token_hex(4)}"},
                  "kind": {"S": kind}, "body": {"S": json.dumps(event, default=str, sort_keys=True)}},
        )
        if metric is not None:
            self._put_metric(metric[0], metric[1], unit="None", dimensions=dimensions, at=at)
        if kind in ALERT_KINDS:
            facts = {k: v for k, v in event.items() if k not in ("kind", "at", "source", "detail")}
            summary = ", ".join(f"{k}={v}" for k, v in facts.items())
            self.aws.sns.publish(TopicArn=self._topic_arn(), Subject=f"tradeops: {kind}"[:99],
                                 Message=json.dumps(event, default=str, sort_keys=True),
                                 MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}})
            log.info("alert %s %s", kind, summary)


def read_events(aws: Aws, *, stream: str, since: datetime, until: datetime | None = None,
                names: Names | None = None) -> list[dict[str, Any]]:
    """The events of ``stream`` recorded from ``since`` to ``until`` (UTC), oldest first (drill reports)."""
    names = names or names_for(aws.settings)
    condition = "#s = :s AND at_id BETWEEN :a AND :b"
    values = {":s": {"S": stream}, ":a": {"S": iso(since)}, ":b": {"S": iso(until or utcnow()) + "~"}}
    kwargs: dict[str, Any] = {"TableName": names.events_table, "KeyConditionExpression": condition,
                              "ExpressionAttributeNames": {"#s": "stream"}, "ExpressionAttributeValues": values}
    events: list[dict[str, Any]] = []
    with aws_errors(f"read the {stream} events"):
        while True:
            page = aws.dynamodb.query(**kwargs)
            events += [json.loads(item["body"]["S"]) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return events
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
