"""What happens to a message once its order was handled: deleted, shown again later, sent afresh, or
dead-lettered.

The worker hands in one :class:`Handled` per message (its outcome, see below) and :class:`Settler`
acts on it. A ``done`` message's order is final or parked, so its delete can wait a little and go
out with others (:class:`DeleteBuffer`, never later than ``worker_delete_flush_ms``) without any
customer waiting for it; it must only go out well within the visibility timeout, which a fraction
of a second does. A delete that fails leaves the message to come back after its visibility
timeout, and handling it again is a no-op (the order is final).

Outcome of one message (what happens to it after handling):
    done       the order reached a final state, or is parked IN_DOUBT for the resolver: delete
    retry      the order could not be placed now (no broker usable, paused, lost a race): back off
    poison     the message is not an order we can process: back off until SQS dead-letters it
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tradeops.runtime.orderpath.answers import LEASE
from tradeops.runtime.orderpath.messages import parse_order_message
from tradeops.runtime.orderpath.orders import OrderStore, StaleOrder
from tradeops.runtime.orderpath.states import DEAD_LETTERED, FINAL
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.events import EventLog

__all__ = ["DONE", "POISON", "RETRY", "DeleteBuffer", "Handled", "Settler"]

DONE, RETRY, POISON = "done", "retry", "poison"
_BATCH = 10  # SQS takes at most 10 entries in one batch request


@dataclass
class Handled:
    """What happens to one message after its order was handled (see the module docstring)."""

    outcome: str
    reason: str = ""
    delay: int | None = None  # seconds before the message is visible again (retry/poison)
    no_broker: bool = False  # a retry because no broker could take the order now: not the message's fault


class Settler:
    """Acts on the outcomes of handled messages: one worker's side of the order queue after handling."""

    def __init__(self, aws: Aws, queue_url: str, *, store: OrderStore, events: EventLog, actor: str,
                 max_receive_count: int, delete_within: float, log: Callable[..., Any]) -> None:
        self.aws = aws
        self.queue_url = queue_url
        self.store = store
        self.events = events
        self.actor = actor
        self.max_receive_count = max_receive_count
        self._log = log
        self.deletes = DeleteBuffer(aws, queue_url, delete_within, log=log)

    def settle(self, messages: list[dict[str, Any]], results: list[Handled]) -> int:
        """Act on each message's outcome; returns how many were poison."""
        deletes, delays, resend, poison = [], [], [], 0
        for i, (message, result) in enumerate(zip(messages, results, strict=True)):
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if result.outcome == DONE:
                deletes.append(message["ReceiptHandle"])
                continue
            if result.outcome == POISON:
                poison += 1
                if receives >= self.max_receive_count:
                    self.dead_letter(message, result.reason, receives)
            elif result.no_broker and receives >= self.max_receive_count - 1:
                # Waiting for a broker is not the message's fault: start its receive count afresh
                # rather than let a long outage dead-letter good orders.
                resend.append((message, result))
                continue
            delay = result.delay if result.delay is not None else min(2 ** receives, 30)
            delays.append({"Id": str(i), "ReceiptHandle": message["ReceiptHandle"],
                           "VisibilityTimeout": int(delay + random.uniform(0, 1))})
        for message, result in resend:
            try:
                self.aws.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"],
                                          DelaySeconds=min(result.delay or 2, 900))
                deletes.append(message["ReceiptHandle"])
            except Exception as exc:  # keep the original; it will come back after its visibility timeout
                self._log("resend_failed", error=str(exc)[:200])
        self.deletes.add(deletes)
        with contextlib.suppress(Exception):
            for chunk in (delays[i:i + _BATCH] for i in range(0, len(delays), _BATCH)):
                self.aws.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=chunk)
        return poison

    def dead_letter(self, message: dict[str, Any], reason: str, receives: int) -> None:
        """Last receive before SQS moves it to the DLQ: mark the order (if there is one) and say why."""
        order_id = parse_order_message(message.get("Body"))
        why = f"dead-lettered after {receives} receives: {reason}"
        if order_id:
            order = self.store.get(order_id)
            if order is not None and order["status"] not in FINAL:
                with contextlib.suppress(StaleOrder):
                    self.store.transition(order, DEAD_LETTERED, actor=self.actor, note=why[:300],
                                          set_fields={"dead_letter_reason": why[:300]}, remove_fields=LEASE)
        self.events.emit("dead_letter", stream="orders", metric=("DeadLettered", 1.0),
                         order_id=order_id, message_id=message.get("MessageId"), reason=why)


class DeleteBuffer:
    """Deletes of handled messages, sent in batches of up to 10 and never later than ``max_wait`` seconds."""

    def __init__(self, aws: Aws, queue_url: str, max_wait: float, *, log: Callable[..., Any]) -> None:
        self.aws = aws
        self.queue_url = queue_url
        self.max_wait = max_wait
        self._log = log
        self._cond = threading.Condition()
        self._pending: list[tuple[str, float]] = []  # (receipt handle, when it was handed in)
        self.requests = 0

    def add(self, receipts: list[str]) -> None:
        if not receipts:
            return
        with self._cond:
            now = time.monotonic()
            self._pending += [(r, now) for r in receipts]
            self._cond.notify()
        if self.max_wait <= 0:
            self.flush(everything=True)
        else:
            self.flush(everything=False)  # full batches of 10 go at once

    def flush(self, *, everything: bool) -> None:
        """Send full batches of 10; with ``everything`` the remainder too."""
        with self._cond:
            take = len(self._pending) if everything else len(self._pending) // _BATCH * _BATCH
            batch, self._pending = self._pending[:take], self._pending[take:]
        for i in range(0, len(batch), _BATCH):
            entries = [{"Id": str(n), "ReceiptHandle": r} for n, (r, _) in enumerate(batch[i:i + _BATCH])]
            try:
                self.aws.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                self.requests += 1
            except Exception as exc:  # the messages come back after their visibility timeout: harmless
                self._log("delete_failed", error=str(exc)[:200])

    def run(self, stop: threading.Event) -> None:
        """Flush what has waited ``max_wait`` (until ``stop``; the worker flushes the rest itself)."""
        while not stop.is_set():
            with self._cond:
                if not self._pending:
                    self._cond.wait(0.5)
                    continue
                due = self._pending[0][1] + self.max_wait - time.monotonic()
                if due > 0:
                    self._cond.wait(due)
                    continue
            self.flush(everything=True)
