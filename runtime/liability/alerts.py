"""Pages leave the monitor here, and only here: SNS, plus a record in the events table.

Two kinds of record, kept apart on purpose (issue 16: exact figures are never delayed, only the
paging is damped):

- **crossings** (:meth:`AlertPublisher.record_crossings`): every moment a liability threshold was
  crossed or recovered, exactly when it happened, as events ``exposure_breach`` /
  ``exposure_recovery`` (stream ``exposure``). Never sent to SNS. More than ``DIGEST_OVER``
  per-order crossings of one threshold in one evaluation become one digest record.
- **pages** (:meth:`AlertPublisher.page`): what :mod:`.paging` decided is worth a person's
  attention. One SNS message each (its ``kind`` and ``dedup_key`` as message attributes, so a pager
  can collapse repeats), and an event recording when it went out and when its breach began
  (``exposure_paged`` on stream ``exposure``, ``broker_paged`` on stream ``routing``): a drill
  reports both times from there.

The monitor decides under its lock and hands both kinds to :class:`AlertSender`, its alert thread,
so a slow topic never holds up the streams.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections import Counter
from datetime import datetime
from typing import Any

import stamina

from tradeops.runtime.liability.exposuretable import ExposureTable
from tradeops.runtime.liability.facts import page_subject
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import Names

__all__ = ["DIGEST_OVER", "PUBLISH_ATTEMPTS", "AlertPublisher", "AlertSender"]

log = logging.getLogger("tradeops.monitor")

PUBLISH_ATTEMPTS = 2
"""Publishes of one page (each already retried by botocore): a page is recorded as not sent after these."""

DIGEST_OVER = 20
"""Per-order crossings of one threshold in one evaluation above which one digest record goes instead."""


class AlertPublisher:
    """The one place pages leave the monitor: SNS (and a record in the events table)."""

    def __init__(self, aws: Aws, names: Names, *, source: str) -> None:
        self.aws = aws
        self.names = names
        # Inline, not in the background: a page's record must be durable when page() returns, because a
        # restarted pager reads it to know what it already paged. Nothing here is on an order's path.
        self.events = EventLog(aws, source=source, names=names, echo=True)
        self._topic: str | None = None

    def topic(self) -> str:
        if self._topic is None:
            self._topic = self.aws.topic_arn(self.names.alert_topic)
        return self._topic

    @staticmethod
    def digest(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One record per crossing; a group of more than DIGEST_OVER per-order crossings becomes one digest."""
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

    def record_crossings(self, alerts: list[dict[str, Any]]) -> int:
        """Record threshold crossings (facts dicts) as events, at the moment each happened. Returns how many."""
        records = self.digest(alerts)
        for record in records:
            self.events.emit(f"exposure_{record['kind']}", stream="exposure", at=datetime.fromisoformat(record["at"]),
                             **{k: v for k, v in record.items() if k not in ("kind", "at")})
        return len(records)

    def page(self, message: dict[str, Any], *, kind: str, subject: str, stream: str, event: str) -> bool:
        """Publish one page (``message``: its facts) with its ``kind`` and dedup key; True when SNS took it.

        The event (``event`` on ``stream``) records it either way, with ``sent`` saying whether it went out.
        """
        attributes = {"kind": {"DataType": "String", "StringValue": kind},
                      "dedup_key": {"DataType": "String", "StringValue": message["dedup_key"]}}
        for name in ("threshold", "provider", "order_id"):
            if message.get(name):
                attributes[name] = {"DataType": "String", "StringValue": str(message[name])}
        body = {"kind": kind, **{k: v for k, v in message.items() if k != "kind"}}
        sent = False
        try:
            # botocore has already retried each publish (4 attempts, standard mode) on throttling and
            # transient errors; one more jittered round covers a topic briefly unreachable, no more.
            for attempt in stamina.retry_context(on=Exception, attempts=PUBLISH_ATTEMPTS, timeout=None,
                                                 wait_initial=0.2, wait_max=1.0, wait_jitter=0.2):
                with attempt:
                    self.aws.sns.publish(TopicArn=self.topic(), Subject=subject[:99], MessageAttributes=attributes,
                                         Message=json.dumps(body, sort_keys=True, default=str))
            sent = True
        except Exception as exc:
            log.error("page not published after %d attempts (%s): %s", PUBLISH_ATTEMPTS, subject, str(exc)[:200])
        self.events.emit(event, stream=stream, page=kind, sent=sent, subject=subject[:99],
                         **{k: v for k, v in body.items() if k not in ("kind", "at")})
        return sent


class AlertSender:
    """The monitor's alert thread: records the crossings and sends the pages it is handed, in order.

    After each batch of pages it saves the exposure paging state (``#alerts``) the monitor handed
    with them, so a restarted monitor neither repeats nor forgets a page.
    """

    def __init__(self, publisher: AlertPublisher, table: ExposureTable, *, lock: threading.RLock,
                 counters: Counter[str]) -> None:
        self.publisher = publisher
        self.table = table
        self.lock = lock
        self.counters = counters  # shared with the monitor, under its lock
        self._queue: queue.Queue[tuple[str, list[dict[str, Any]], dict[str, Any]] | None] = queue.Queue()

    def crossings(self, facts: list[dict[str, Any]]) -> None:
        """Record these crossings (:func:`.facts.crossing_facts`)."""
        self._queue.put(("crossings", facts, {}))

    def pages(self, facts: list[dict[str, Any]], paging_state: dict[str, Any]) -> None:
        """Send these pages (:func:`.facts.page_facts`), then save ``paging_state``."""
        self._queue.put(("pages", facts, paging_state))

    def close(self) -> None:
        """Stop after what was handed so far."""
        self._queue.put(None)

    def run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            what, facts, paging_state = item
            try:
                if what == "crossings":
                    self.publisher.record_crossings(facts)
                    continue
                sent = sum(self.publisher.page(f, kind=f"exposure_{f['kind']}", stream="exposure",
                                               event="exposure_paged", subject=page_subject(f)) for f in facts)
            except Exception as exc:  # this thread must outlive any one bad alert
                log.error("alerts not published: %s", str(exc)[:200])
                continue
            with self.lock:
                self.counters["alert_messages"] += sent
            with contextlib.suppress(Exception):
                self.table.put_paging_state(paging_state, iso(utcnow()))
