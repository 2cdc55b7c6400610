"""Exposure alerts leave the monitor here, and only here: SNS, plus a record in the events table.

One message per crossing and one per recovery, its Subject naming the threshold and its Message
the facts as JSON. More than ``DIGEST_OVER`` per-order crossings of one threshold in one
evaluation become one digest message listing the orders (an alert storm helps nobody). Every
message is also recorded as an event (stream ``exposure``), which is where drills read the time of
an alert from.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import Names

__all__ = ["DIGEST_OVER", "AlertPublisher"]

log = logging.getLogger("tradeops.monitor")

DIGEST_OVER = 20
"""Per-order alerts of one threshold in one evaluation above which one digest message goes instead."""


class AlertPublisher:
    """The one place exposure alerts leave the monitor: SNS (and a record in the events table)."""

    def __init__(self, aws: Aws, names: Names, *, source: str) -> None:
        self.aws = aws
        self.names = names
        self.events = EventLog(aws, source=source, names=names, echo=True)
        self._topic: str | None = None

    def topic(self) -> str:
        if self._topic is None:
            self._topic = self.aws.topic_arn(self.names.alert_topic)
        return self._topic

    def messages(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One message per alert; a group of more than DIGEST_OVER per-order alerts becomes one digest."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for alert in alerts:
            groups.setdefault((alert["kind"], alert["threshold"]), []).append(alert)
        out = []
        for (kind, threshold), group in groups.items():
            keyed = [a for a in group if a.get("order_id")]
            if len(keyed) > DIGEST_OVER:
                out.append({"kind": kind, "threshold": threshold, "digest": True, "count": len(keyed),
                            "limit": keyed[0]["limit"], "unit": keyed[0]["unit"], "at": keyed[0]["at"],
                            "order_ids": [a["order_id"] for a in keyed][:200]})
                out += [a for a in group if not a.get("order_id")]
            else:
                out += group
        return out

    def publish(self, alerts: list[dict[str, Any]]) -> int:
        """Publish ``alerts`` (facts dicts); returns how many messages SNS accepted."""
        sent = 0
        for message in self.messages(alerts):
            kind, threshold = message["kind"], message["threshold"]
            subject = f"tradeops exposure {kind}: {threshold}" + (
                f" ({message['count']} orders)" if message.get("digest") else "")
            attributes = {"kind": {"DataType": "String", "StringValue": f"exposure_{kind}"},
                          "threshold": {"DataType": "String", "StringValue": threshold}}
            if message.get("order_id"):
                attributes["order_id"] = {"DataType": "String", "StringValue": message["order_id"]}
            for attempt in range(3):
                try:
                    self.aws.sns.publish(TopicArn=self.topic(), Subject=subject[:99],
                                         Message=json.dumps(message, sort_keys=True, default=str),
                                         MessageAttributes=attributes)
                    sent += 1
                    break
                except Exception as exc:
                    if attempt == 2:
                        log.error("alert not published (%s): %s", subject, str(exc)[:200])
                    time.sleep(0.2 * (attempt + 1))
            # The record drills read time-to-detect from (EventLog never publishes these kinds to SNS).
            self.events.emit(f"exposure_{kind}", stream="exposure", at=datetime.fromisoformat(message["at"]),
                             **{k: v for k, v in message.items() if k not in ("kind", "at")})
        return sent
