"""Runtime events: state changes that drills measure and humans must hear about.

An event (breaker opened/closed, broker suspect/cleared, routing flag changed, orders declared
void, dead letter, double execution) is written to the events table with its UTC timestamp
(drills read time-to-detect and time-to-recover from there), published as a CloudWatch metric,
logged as one JSON line, and — for the few kinds that need a human at once — sent to the SNS
alert topic. Breaker and broker-health alerts are paged by the fleet's one broker pager. Publishing never raises into
the order path: an event that cannot be published is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from datetime import datetime
from typing import Any

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.names import Names, names_for

__all__ = ["ALERT_KINDS", "EventLog", "read_events"]

log = logging.getLogger("tradeops.events")

# Kinds that also go to the alert topic at once. Breaker and broker-health events are not among them:
# every worker records those, and the fleet's one broker pager (runtime/liability/pager.py) decides
# what pages, so N workers do not page N times per flap.
ALERT_KINDS = frozenset({"orders_declared_void", "dead_letter", "double_execution", "break_glass"})


class EventLog:
    """Publishes events of one process (``source`` = worker id, CLI user, ...)."""

    def __init__(self, aws: Aws, *, source: str, names: Names | None = None, echo: bool = True) -> None:
        self.aws = aws
        self.echo = echo  # one JSON line per event on stderr (process logs); off for the CLI
        self.source = source
        self.names = names or names_for(aws.settings)
        self._topic: str | None = None

    def _topic_arn(self) -> str:
        if self._topic is None:
            self._topic = self.aws.topic_arn(self.names.alert_topic)
        return self._topic

    def emit(self, kind: str, *, stream: str = "routing", metric: tuple[str, float] | None = None,
             dimensions: dict[str, str] | None = None, at: datetime | None = None, **facts: Any) -> dict[str, Any]:
        """Record one event; returns it. ``metric`` is (name, value) for CloudWatch."""
        at = at or utcnow()
        event = {"kind": kind, "at": iso(at), "source": self.source, **facts}
        if self.echo:
            sys.stderr.write(json.dumps({"event": event}, default=str) + "\n")
        try:
            self.aws.dynamodb.put_item(
                TableName=self.names.events_table,
                Item={"stream": {"S": stream}, "at_id": {"S": f"{event['at']}#{secrets.token_hex(4)}"},
                      "kind": {"S": kind}, "body": {"S": json.dumps(event, default=str, sort_keys=True)}},
            )
            if metric is not None:
                self.aws.cloudwatch.put_metric_data(
                    Namespace=self.names.metric_namespace,
                    MetricData=[{"MetricName": metric[0], "Value": float(metric[1]), "Timestamp": at,
                                 "Dimensions": [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]}],
                )
            if kind in ALERT_KINDS:
                summary = ", ".join(f"{k}={v}" for k, v in facts.items() if k != "detail")
                self.aws.sns.publish(TopicArn=self._topic_arn(), Subject=f"tradeops: {kind}"[:99],
                                     Message=json.dumps(event, default=str, sort_keys=True),
                                     MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}})
                log.info("alert %s %s", kind, summary)
        except Exception as exc:  # publishing must never break the order path
            sys.stderr.write(json.dumps({"event_publish_failed": kind, "error": str(exc)[:200]}) + "\n")
        return event


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
