"""The fleet's broker pager: one place that pages about brokers, however many workers there are.

Every worker records its breakers' transitions and its in-flight watch's suspicions as routing
events (``breaker_opened`` ..., ``broker_suspect``, ``broker_cleared``) and pages nobody. This
follows those events from the events table (stream ``routing``) about twice a second and lets
:class:`.paging.BrokerPaging` decide: one page when a broker turns unhealthy anywhere in the
fleet, one when it has been healthy everywhere for the recovery hold, naming the transitions (and
that it flapped), and a repeat every repeat interval in between. Pages are published by
:class:`.alerts.AlertPublisher` and recorded as ``broker_paged`` events.

It runs in the divergence monitor's process (one per stack). Its paging state, what each worker
last said, and how far it has read are kept in the reserved exposure-table item
``#pager#brokers`` (written whenever it read events or paged); a restarted pager resumes from
there (or, the first time, from ``LOOKBACK_SECONDS`` ago), so an open episode is neither
forgotten nor paged again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tradeops.runtime.liability.alerts import AlertPublisher
from tradeops.runtime.liability.paging import BrokerPaging, Page, epoch_seconds, from_epoch
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.names import Names
from tradeops.runtime.platform.settings import Settings

__all__ = ["LOOKBACK_SECONDS", "PAGER_KEY", "FleetPager"]

log = logging.getLogger("tradeops.pager")

PAGER_KEY = "#pager#brokers"
LOOKBACK_SECONDS = 60.0
POLL_SECONDS = 0.5
_OVERLAP = timedelta(seconds=5)  # workers' clocks and writes are not in order: re-read a little, skip what was seen


def _stamp(epoch: float) -> str:
    return iso(from_epoch(epoch))


class FleetPager:
    """Follows the routing events and pages about brokers (see the module docstring)."""

    def __init__(self, aws: Aws, names: Names, settings: Settings, publisher: AlertPublisher, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.aws = aws
        self.names = names
        self.publisher = publisher
        self.clock = clock
        self.paging = BrokerPaging.from_settings(settings)
        self._cursor = clock() - timedelta(seconds=LOOKBACK_SECONDS)
        self._seen: dict[str, datetime] = {}
        self.pages_sent = 0

    def restore(self) -> None:
        """Resume the paging state a previous pager left."""
        with aws_errors("read the broker pager's state"):
            item = self.aws.dynamodb.get_item(TableName=self.names.exposure_table,
                                              Key={"order_id": {"S": PAGER_KEY}}, ConsistentRead=True).get("Item")
        if item:
            saved = json.loads(item["paging"]["S"])
            self.paging.restore(saved, epoch_seconds(self.clock()))
            # Resume after the last event it acted on: one read twice would count its transition twice.
            if saved.get("cursor"):
                self._cursor = parse_iso(saved["cursor"])
                self._seen = {k: parse_iso(at) for k, at in (saved.get("seen") or {}).items()}

    def _read(self) -> list[dict[str, Any]]:
        """Routing events not seen yet, oldest first."""
        since = iso(self._cursor - _OVERLAP)
        kwargs: dict[str, Any] = {
            "TableName": self.names.events_table, "KeyConditionExpression": "#s = :s AND at_id > :a",
            "ExpressionAttributeNames": {"#s": "stream"},
            "ExpressionAttributeValues": {":s": {"S": "routing"}, ":a": {"S": since}},
        }
        events = []
        with aws_errors("read the routing events"):
            while True:
                page = self.aws.dynamodb.query(**kwargs)
                for item in page.get("Items", []):
                    key = item["at_id"]["S"]
                    if key in self._seen:
                        continue
                    event = json.loads(item["body"]["S"])
                    at = parse_iso(event["at"])
                    self._seen[key] = at
                    self._cursor = max(self._cursor, at)
                    events.append(event)
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        horizon = self._cursor - 2 * _OVERLAP
        self._seen = {k: at for k, at in self._seen.items() if at >= horizon}
        return sorted(events, key=lambda e: e["at"])

    def poll(self) -> int:
        """One look: new events in, due pages out. Returns the number of pages sent."""
        now = epoch_seconds(self.clock())  # the paging state's time (see paging.py)
        pages: list[Page] = []
        events = self._read()
        for event in events:
            pages += self.paging.on_event(event, epoch_seconds(parse_iso(event["at"])), now)
        pages += self.paging.tick(now)
        sent = sum(self._send(page, now) for page in pages)
        if events or pages:
            state = {**self.paging.snapshot(), "cursor": iso(self._cursor),
                     "seen": {k: iso(at) for k, at in self._seen.items()}}
            with contextlib.suppress(Exception):
                self.aws.dynamodb.put_item(TableName=self.names.exposure_table, Item={
                    "order_id": {"S": PAGER_KEY}, "paging": {"S": json.dumps(state)},
                    "updated_at": {"S": _stamp(now)}})
        self.pages_sent += sent
        return sent

    def _send(self, page: Page, now: float) -> bool:
        provider = page.group
        flapping = self.paging.is_flapping(page)
        last = self.paging.last.get(provider, {})
        kind = {"breach": "broker_unhealthy", "update": "broker_unhealthy", "recovery": "broker_recovered",
                "repeat": "broker_flapping" if flapping else "broker_unhealthy"}[page.kind]
        workers = self.paging.unhealthy(provider, now)
        message: dict[str, Any] = {
            "provider": provider, "repeat": page.kind == "repeat", "dedup_key": page.dedup_key,
            "began_at": _stamp(page.began_at), "at": _stamp(page.at), "transitions": page.transitions,
            "flapping": flapping, "workers": workers, "reason": last.get("reason"), "mode": last.get("mode"),
            "action": last.get("action"),
        }
        when, suspect = self.paging.suspicion.get(provider, (0.0, {}))
        silent = bool(suspect) and when >= page.began_at - 5.0  # this episode began with (or after) a suspicion
        if silent:
            message.update(evidence={k: suspect.get(k) for k in ("oldest_call_ms", "threshold_ms", "p99_ms")},
                           mode=suspect.get("mode"), action=suspect.get("action"))
        if kind == "broker_recovered":
            subject = f"tradeops broker {provider} recovered" + (
                f" after flapping ({page.transitions} transitions)" if flapping else "")
        else:
            why = "suspect (silent)" if silent else (last.get("reason") or "breaker open")
            subject = f"tradeops broker {provider} {'flapping' if flapping else 'unhealthy'}: {why}"
        return self.publisher.page(message, kind=kind, subject=subject, stream="routing", event="broker_paged")

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a failed look is logged and retried on the next one."""
        with contextlib.suppress(Exception):
            self.restore()
        while not stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception as exc:  # AWS unreachable for a moment: keep the state, look again
                log.warning("broker pager: %s", str(exc)[:200])
