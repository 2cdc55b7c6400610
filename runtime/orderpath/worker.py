"""The order worker: SQS in, broker out, exactly-once state in DynamoDB.

One process runs one receive loop (batched long polls), a thread pool that handles orders
(``worker_concurrency`` at once), a heartbeat (:mod:`.heartbeats`), the broker health monitor, an
in-doubt resolver, the void watch (:mod:`.voids`) and the sweeper for orders that never got a
message (:mod:`.sweep`). What each broker answer does to an order is decided in one place,
:func:`.answers.decide`; this module makes the calls and writes what it decides.

Latency first: the loop never waits for a batch to fill. It receives again as soon as the last
batch is handled, so batches come from the backlog (what arrived meanwhile, up to 10, as many as
there are free threads), and a batch that is not handled within ``worker_batch_wait_ms`` (an
order stuck on a silent broker until the read timeout) does not hold up the orders behind it.
What a linger used to save on receives at low rates is saved on deletes instead: a handled
message's order is already final, so its delete can wait a little and go out with others
(``worker_delete_flush_ms``) without any customer waiting for it. What happens to each message
after handling (done, retry, poison) is :mod:`.settling`'s.

Any number of these processes may share the queue: every state change is a conditional write
on the order's version, and a claim carries a lease that expires if its worker dies — the next
worker then asks the broker named in the order before doing anything.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from tradeops.runtime.orderpath.answers import Call, Decision, Execution, decide, lease_left, park, release
from tradeops.runtime.orderpath.flags import FlagCache, Flags, FlagValues
from tradeops.runtime.orderpath.heartbeats import heartbeat_item
from tradeops.runtime.orderpath.messages import order_message, parse_order_message
from tradeops.runtime.orderpath.orders import OrderStore, StaleOrder
from tradeops.runtime.orderpath.providers import BrokerOrder, ask
from tradeops.runtime.orderpath.router import Router, open_providers
from tradeops.runtime.orderpath.settling import DONE, POISON, RETRY, Handled, Settler
from tradeops.runtime.orderpath.states import (
    ACCEPTED,
    FILLED,
    FINAL,
    IN_DOUBT,
    REJECTED,
    SUBMITTING,
)
from tradeops.runtime.orderpath.sweep import due_for_sweep, last_touched, sweep_interval, sweep_wait
from tradeops.runtime.orderpath.voids import VoidWatch
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import TradeopsError
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.logs import FORMATS, bound, configure
from tradeops.runtime.platform.names import names_for, worker_id
from tradeops.runtime.platform.settings import Settings, load_settings

log = logging.getLogger("tradeops.worker")
# LogRecord attributes a fact may not overwrite (a fact named so is logged with a trailing _).
_RESERVED = frozenset({"message", "msg", "args", "name", "levelname", "created", "module", "lineno"})

__all__ = ["Worker", "account_ref", "broker_order"]

RESOLVER_IDLE_SECONDS = 5.0  # the resolver's wait after a round with nothing in doubt (see _resolver_loop)


# What each write of an answer's decision counts as, in the heartbeat's counters.
_COUNTED = {FILLED: "filled", REJECTED: "rejected", IN_DOUBT: "in_doubt", ACCEPTED: "retried"}


def account_ref(account_id: str, salt: str) -> str:
    """An opaque, stable reference for the broker: never the customer's identity itself."""
    return hashlib.sha256(f"{salt}:{account_id}".encode()).hexdigest()[:24]


def broker_order(order: dict[str, Any], salt: str) -> BrokerOrder:
    return BrokerOrder(order_id=order["order_id"], symbol=order["symbol"], side=order["side"],
                       quantity=int(order["quantity"]), order_type=order["order_type"],
                       limit_price=order.get("limit_price"), account_ref=account_ref(order["account_id"], salt))


class Worker:
    """One worker process's state and loops."""

    def __init__(self, settings: Settings, *, worker_id: str, aws: Aws | None = None,
                 router: Router | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.aws = aws or Aws(settings, max_pool=64)
        self.names = names_for(settings)
        self.store = OrderStore(self.aws, self.names)
        # In the background: a breaker transition inside a submit must cost the order no AWS request.
        self.events = EventLog(self.aws, source=worker_id, names=self.names, background=True)
        self.flags = FlagCache(Flags(self.aws, self.names), settings.flag_refresh_seconds)
        self.router = router or Router(settings, open_providers(settings, self.aws), self.events)
        self.queue_url = self.aws.queue_url(self.names.order_queue)
        self.pool = ThreadPoolExecutor(max_workers=settings.worker_concurrency, thread_name_prefix="order")
        self._idle = threading.Condition()
        self._handling = 0  # messages received and not yet settled
        self.stop_event = threading.Event()
        self._resolve_soon = threading.Event()  # set when this worker parks an order IN_DOUBT
        # Set when what the fleet's readers wait for changes here: a flag seen, taking stopped, the last order let go.
        self._beat_soon = threading.Event()
        self.resolver_looked_at = 0  # orders the resolver's last round looked at
        self.settler = Settler(self.aws, self.queue_url, store=self.store, events=self.events, actor=worker_id,
                               max_receive_count=settings.max_receive_count,
                               delete_within=settings.worker_delete_flush_ms / 1000, log=self._log)
        self.deletes = self.settler.deletes
        self.voids = VoidWatch(self.store, self.router, self.events, actor=worker_id)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.taking = False
        self.counters: dict[str, int] = {"received": 0, "filled": 0, "rejected": 0, "in_doubt": 0,
                                         "retried": 0, "poison": 0, "resolved": 0, "swept": 0}
        self._next_check: dict[str, float] = {}
        self._last_flags: FlagValues | None = None
        self.salt = settings.name_prefix

    # ---- the loops ---------------------------------------------------------------------------
    def run(self) -> None:
        self.router.start_monitor()
        sweep_every = sweep_interval(self.settings.sweep_age_seconds)
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._resolver_loop, name="resolver", daemon=True),
            # Ask brokers that answer again about the orders declared void there (double executions).
            threading.Thread(target=self._repeat, name="void-watch", daemon=True,
                             args=(lambda: self.settings.void_watch_seconds + random.uniform(0, 0.2),
                                   self.voids.sweep, "void_watch_failed")),
            threading.Thread(target=self._repeat, name="sweeper", daemon=True,
                             args=(lambda: sweep_every + random.uniform(0, sweep_every / 4), self.sweep_unsent,
                                   "sweep_failed")),
            threading.Thread(target=self.deletes.run, args=(self.stop_event,), name="deleter", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            while not self.stop_event.is_set():
                self.poll_once()
        finally:
            self.taking = False
            self.pool.shutdown(wait=True)
            self.deletes.flush(everything=True)
            self._beat()
            self.router.stop()
            self.events.flush(timeout=5)

    def poll_once(self) -> int:
        """One receive, its orders handed to the pool. Returns the number of messages received.

        It waits for them only as long as a batch normally takes (``worker_batch_wait_ms``): an order
        sent into a silent broker holds its thread until the read timeout, and nothing that arrives
        meanwhile may wait that long behind it. It receives only as many messages as it has free
        threads (``worker_concurrency``), so none waits in the pool either.
        """
        flags = self._flags()
        if flags.processing != "running":
            # Quiesced: take nothing new; what this worker holds finishes on its threads.
            if self.taking:
                self.taking = False
                self._beat_soon.set()
            self.stop_event.wait(0.2)
            return 0
        self.taking = True
        with self._idle:
            free = self.settings.worker_concurrency - self._handling
            if free <= 0:
                self._idle.wait(0.2)
                return 0
        try:
            got = self.aws.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.settings.worker_batch_size, free),
                WaitTimeSeconds=self.settings.worker_wait_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as exc:  # a broken receive must not kill the worker; the queue keeps the messages
            self._log("receive_failed", error=str(exc)[:200])
            self.stop_event.wait(1.0)
            return 0
        messages = got.get("Messages", [])
        if not messages:
            return 0
        with self._lock:
            self.in_flight += len(messages)
            self.counters["received"] += len(messages)
        with self._idle:
            self._handling += len(messages)
        try:
            orders = self._load_orders(messages)
        except Exception:
            self._done(len(messages))  # the messages come back after their visibility timeout
            raise
        batch = [len(messages)]  # messages of this batch not yet settled
        for message in messages:
            self.pool.submit(self._handle_and_settle, message, orders, batch)
        # Receive again once this batch is handled, which is when a backlog has had the batch's own
        # handling time to gather (no linger: a shallow queue makes no order wait for a fuller batch).
        # A batch still not handled after worker_batch_wait_ms has an order stuck on a slow or silent
        # broker: the orders behind it are received without waiting for that.
        with self._idle:
            self._idle.wait_for(lambda: batch[0] == 0, self.settings.worker_batch_wait_ms / 1000)
        return len(messages)

    def _handle_and_settle(self, message: dict[str, Any], orders: dict[str, dict[str, Any]],
                           batch: list[int]) -> None:
        try:
            self._settle([message], [self._safe_handle(message, orders)])
        except Exception as exc:  # settling is best effort: the message comes back after its visibility timeout
            self._log("settle_failed", error=str(exc)[:200])
        finally:
            self._done(1, batch)

    def _done(self, count: int, batch: list[int] | None = None) -> None:
        with self._lock:
            self.in_flight -= count
            drained = self.in_flight == 0 and not self.taking
        if drained:  # paused and holding nothing now: a quiesce waiting on the fleet hears it at once
            self._beat_soon.set()
        with self._idle:
            self._handling -= count
            if batch is not None:
                batch[0] -= count
            self._idle.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every received message has been handled and settled (tests, benchmarks)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._handling == 0, timeout)

    def _flags(self) -> FlagValues:
        flags = self.flags.get()
        last = self._last_flags
        self._last_flags = flags
        if last is not None and (last.mode, last.active, last.processing) != (flags.mode, flags.active,
                                                                               flags.processing):
            self._log("flags_seen", **flags.as_dict())
            self._beat_soon.set()  # the fleet reports a flag change in a beat as soon as this worker has seen it
        return flags

    def _choose(self, order: dict[str, Any], flags: FlagValues, *, exclude: set[str] | None = None) -> str | None:
        """The broker routing sends ``order`` to now (None: none may take it)."""
        return self.router.choose(order["order_id"], mode=flags.mode, active=flags.active, trickle=flags.trickle,
                                  exclude=exclude or ())

    # ---- messages ----------------------------------------------------------------------------
    @staticmethod
    def _order_id(message: dict[str, Any]) -> str | None:
        return parse_order_message(message.get("Body"))

    def _load_orders(self, messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """All orders of the batch in one BatchGetItem (strongly consistent)."""
        return self.store.get_many(oid for m in messages if (oid := self._order_id(m)))

    def _safe_handle(self, message: dict[str, Any], orders: dict[str, dict[str, Any]]) -> Handled:
        with bound(order_id=self._order_id(message)):  # every line while handling it names the order
            handled = self._handle_logged(message, orders)
            log.info("order handled: %s", handled.outcome,
                     extra={"outcome": handled.outcome, "reason": handled.reason})
            return handled

    def _handle_logged(self, message: dict[str, Any], orders: dict[str, dict[str, Any]]) -> Handled:
        try:
            return self.handle(message, orders)
        except TradeopsError as exc:
            self._log("handle_failed", error=str(exc)[:300])
            return Handled(RETRY, str(exc), delay=2)
        except Exception as exc:  # an unexpected bug must cost one message, not the worker
            self._log("handle_crashed", error=f"{type(exc).__name__}: {exc}"[:300])
            return Handled(POISON, f"{type(exc).__name__}: {exc}", delay=2)

    def handle(self, message: dict[str, Any], orders: dict[str, dict[str, Any]]) -> Handled:
        order_id = self._order_id(message)
        if order_id is None:
            return Handled(POISON, "message body is not an order reference", delay=1)
        order = orders.get(order_id)
        if order is None:
            return Handled(POISON, f"no order {order_id} in the orders table", delay=1)
        status = order["status"]
        if status in FINAL or status == IN_DOUBT:
            # Final: a duplicate delivery. IN_DOUBT: parked, the resolver owns it.
            return Handled(DONE)
        flags = self._flags()
        if status == SUBMITTING:
            held_for = lease_left(order, utcnow().timestamp())
            if held_for > 0:
                return Handled(RETRY, "another worker holds the order", delay=max(1, int(held_for) + 1))
            # Its worker died mid-call: take it over, then ask the broker it went to.
            try:
                order = self._claim(order, order["provider"], note="lease expired; taken over")
            except StaleOrder:
                return Handled(RETRY, "lost the take-over race", delay=1)
            return self._recover(order, flags, from_queue=True)
        # ACCEPTED
        target = self._choose(order, flags)
        if target is None:
            return Handled(RETRY, "no broker can take orders now", delay=2, no_broker=True)
        try:
            order = self._claim(order, target)
        except StaleOrder:
            return Handled(RETRY, "another worker claimed it", delay=1)
        return self._place(order, flags)

    # ---- state changes -----------------------------------------------------------------------
    def _claim(self, order: dict[str, Any], provider: str, *, note: str = "") -> dict[str, Any]:
        """Write-ahead: record the broker (and our lease) before anything is sent to it."""
        lease = utcnow().timestamp() + self.settings.worker_lease_seconds
        return self.store.transition(order, SUBMITTING, actor=self.worker_id, count_attempt=True, note=note,
                                     set_fields={"provider": provider, "lease_owner": self.worker_id,
                                                 "lease_until": int(lease) + 1})

    def _write(self, order: dict[str, Any], decision: Decision) -> None:
        """Write a decided move (raises StaleOrder if the order changed since it was read) and count it."""
        if decision.status is None:
            return
        self.store.apply(order, decision, actor=self.worker_id)
        with self._lock:
            self.counters[_COUNTED[decision.status]] += 1
            if decision.status == FILLED and order.get("provider"):
                # Per broker too: a drill's live panel shows the orders a second each broker fills.
                key = f"filled_{order['provider']}"
                self.counters[key] = self.counters.get(key, 0) + 1

    def _apply(self, order: dict[str, Any], decision: Decision, *, resolved: bool = False) -> Handled:
        """Write what an answer decided (the outcome, or IN_DOUBT): either way this message is done with.

        ``resolved``: the answer was to a status query (counted apart: the resolver's and take-overs' work).
        """
        if decision.parks:
            self._resolve_soon.set()  # the resolver looks again on its next round, idle or not
        if resolved and decision.settles:
            with self._lock:
                self.counters["resolved"] += 1
        with contextlib.suppress(StaleOrder):
            # Someone moved the order while we held it (our lease ran out): they will ask the same
            # broker, which deduplicates on order_id, so the outcome is the same either way.
            self._write(order, decision)
        return Handled(DONE)

    def _release(self, order: dict[str, Any], note: str) -> Handled:
        """Back to ACCEPTED: no broker holds it (each one asked proved it did not), and none can take it now."""
        try:
            self._write(order, release(note))
        except StaleOrder:
            return Handled(RETRY, "order changed while releasing", delay=1)
        return Handled(RETRY, note, delay=2, no_broker=True)

    # ---- talking to brokers ------------------------------------------------------------------
    def _ask(self, call: Call, order: dict[str, Any]) -> Decision:
        """Make one call about ``order`` to the broker named in it, and decide what the answer does to it."""
        held_at, order_id = order["provider"], order["order_id"]
        send: Callable[[], Execution | None]
        if call is Call.SUBMIT:
            send = partial(self.router.submit, held_at, broker_order(order, self.salt))
        elif call is Call.STATUS:
            send = partial(self.router.status, held_at, order_id)
        else:
            send = partial(self.router.cancel, held_at, order_id)
        return decide(order, ask(call, held_at, send), now=utcnow())

    def _place(self, order: dict[str, Any], flags: FlagValues) -> Handled:
        """Send a claimed order to its broker; when a broker proves it did not take it, fail over (auto mode only)."""
        tried: set[str] = set()
        while True:
            decision = self._ask(Call.SUBMIT, order)
            if not decision.may_send_elsewhere:
                return self._apply(order, decision)
            tried.add(order["provider"])
            alt = self._choose(order, flags, exclude=tried) if flags.mode == "auto" else None
            if alt is None:
                return self._release(order, decision.note)
            try:
                order = self._claim(order, alt, note=decision.note)
            except StaleOrder:
                return Handled(RETRY, "order changed during fail-over", delay=1)

    def _recover(self, order: dict[str, Any], flags: FlagValues, *, from_queue: bool) -> Handled:
        """Settle a claimed order whose outcome at its broker is unknown, by asking that broker."""
        decision = self._ask(Call.STATUS, order)
        if not decision.may_send_elsewhere:
            return self._apply(order, decision, resolved=True)
        target = self._choose(order, flags) if flags.processing == "running" else None
        return self._move_on(order, decision, target, flags, release=from_queue)

    def _move_on(self, order: dict[str, Any], decision: Decision, target: str | None, flags: FlagValues, *,
                 release: bool) -> Handled:
        """The order's broker proved it does not hold it (``decision``): send it to ``target``.

        With no ``target`` (no broker can take it now) it is released to ACCEPTED when ``release``
        (its message brings it back), else it waits IN_DOUBT for the resolver.
        """
        if decision.cancel_first and target != order["provider"]:
            # Make sure a late copy can never fill there before the order goes anywhere else.
            cancelled = self._ask(Call.CANCEL, order)
            if not cancelled.may_send_elsewhere:
                return self._apply(order, cancelled)  # it filled after all, or the cancel went unanswered
        if target is None:
            if release:
                return self._release(order, f"{decision.note}; no broker can take it now")
            return self._apply(order, park(f"{decision.note}; waiting for a broker"))
        try:
            order = self._claim(order, target, note=decision.note)
        except StaleOrder:
            return Handled(RETRY, "order changed during recovery", delay=1)
        return self._place(order, flags)

    # ---- after a batch -----------------------------------------------------------------------
    def _settle(self, messages: list[dict[str, Any]], results: list[Handled]) -> None:
        poison = self.settler.settle(messages, results)
        with self._lock:
            self.counters["poison"] += poison

    # ---- background loops --------------------------------------------------------------------
    def _resolver_loop(self) -> None:
        """Settle IN_DOUBT orders by asking the broker that may hold them (never a blind resend).

        A round that finds nothing to settle makes the next look wait RESOLVER_IDLE_SECONDS, unless this
        worker parks an order meanwhile: each look is two index queries, which on DynamoDB read only the
        few matching items but in the local emulator scan the whole orders table, every worker, every
        second. Orders another worker parked and then died holding are found within the idle wait.
        """
        idle_until = 0.0
        while not self.stop_event.wait(self.settings.heartbeat_seconds + random.uniform(0, 0.5)):
            if time.monotonic() < idle_until and not self._resolve_soon.is_set():
                continue
            self._resolve_soon.clear()
            try:
                self.resolve_in_doubt()
            except Exception as exc:  # keep resolving on the next round
                self._log("resolver_failed", error=str(exc)[:200])
                continue
            idle_until = time.monotonic() + RESOLVER_IDLE_SECONDS if not self.resolver_looked_at else 0.0

    def resolve_in_doubt(self, *, limit: int = 50) -> int:
        flags = self._flags()
        now = utcnow().timestamp()
        settled = 0
        # SUBMITTING orders whose lease ran out have lost their worker; if their message is gone
        # too (a resolver's claim has none), nobody else will ever look at them.
        stranded = (o for o in self.store.by_status(SUBMITTING)
                    if lease_left(o, now) + self.settings.queue_visibility_seconds < 0)
        self.resolver_looked_at = 0
        for order in itertools.chain(self.store.by_status(IN_DOUBT), stranded):
            if settled >= limit or self.stop_event.is_set():
                break
            self.resolver_looked_at += 1
            order_id = order["order_id"]
            if self._next_check.get(order_id, 0) > now:
                continue
            with bound(order_id=order_id):  # the router's and store's lines while resolving name the order
                result = self._try_resolve(order, flags)
            attempts = int(order.get("attempts", 1))
            if result is None:
                self._next_check[order_id] = now + min(2 ** min(attempts, 4), 10)
            else:
                self._next_check.pop(order_id, None)
                settled += 1
        return settled

    def _try_resolve(self, order: dict[str, Any], flags: FlagValues) -> Handled | None:
        """One attempt; None when nothing changed. Writes only what it learns: the outcome, or that the
        broker does not hold the order and another one can take it now (an unanswered query leaves
        the order as it is: parking it IN_DOUBT again would tell nobody anything)."""
        if not order.get("provider"):
            return None
        decision = self._ask(Call.STATUS, order)
        if decision.settles:
            return self._apply(order, decision, resolved=True)
        movable = decision.may_send_elsewhere and flags.processing == "running"
        target = self._choose(order, flags) if movable else None
        if target is None:
            return None
        try:
            order = self._claim(order, order["provider"], note=f"resolver: {decision.note}")
        except StaleOrder:
            return None
        with self._lock:
            self.in_flight += 1
        try:
            return self._move_on(order, decision, target, flags, release=False)
        finally:
            with self._lock:
                self.in_flight -= 1

    def sweep_unsent(self, *, limit: int = 100) -> list[str]:
        """One pass: re-enqueue the ACCEPTED orders due for a sweep (:mod:`.sweep`); returns their ids.

        Nothing is swept while processing is paused: orders are meant to wait then, and those that lost
        their message are found once processing runs again. Every worker sweeps, with no leader: the mark
        that grants a re-enqueue is a conditional write (:meth:`OrderStore.mark_swept`), so two sweepers
        finding the same order send one message, and even two messages would be harmless because the claim
        is conditional too. A thread of the workers rather than a process of its own because the workers
        already run wherever orders are processed (here and on AWS), with the queue, the table and the flags
        at hand: nothing new to deploy, supervise or page on.
        """
        if self._flags().processing != "running":
            return []
        now = utcnow()
        age = self.settings.sweep_age_seconds
        candidates = {o["order_id"]: o for o in self.store.accepted_untouched_since(now - sweep_wait(age, 0))}
        swept = []
        for order_id in due_for_sweep(candidates.values(), now=now, age=age, limit=limit):
            if self.stop_event.is_set():
                break
            order = candidates[order_id]
            if not self.store.mark_swept(order, actor=self.worker_id, now=now):
                continue  # another worker swept it, or it moved on: either way it has its message
            self.aws.sqs.send_message(QueueUrl=self.queue_url, MessageBody=order_message(order_id))
            swept.append(order_id)
            with self._lock:
                self.counters["swept"] += 1
            self.events.emit("order_swept", stream="orders", order_id=order_id,
                             waited_seconds=round((now - last_touched(order)).total_seconds(), 3),
                             sweeps=int(order.get("sweeps") or 0) + 1)
        return swept

    def _repeat(self, every: Callable[[], float], job: Callable[[], object], failed: str) -> None:
        """Run ``job`` every ``every()`` seconds until the worker stops; a failed round is logged as ``failed``."""
        while not self.stop_event.wait(every()):
            try:
                job()
            except Exception as exc:  # keep going on the next round
                self._log(failed, error=str(exc)[:200])

    def _heartbeat_loop(self) -> None:
        """A beat every ``heartbeat_seconds``, and one at once when a flag changes, when this worker stops taking
        orders, or when it lets go of its last order while not taking: whoever waits on the fleet (a quiesce
        waiting for it to drain, a flag change waiting to reach every worker) hears of it within milliseconds,
        not a beat's interval later."""
        while not self.stop_event.is_set():
            self._beat_soon.wait(self.settings.heartbeat_seconds)
            self._beat_soon.clear()
            if self.stop_event.is_set():
                return  # the run's own last beat says it stopped
            try:
                self._beat()
            except Exception as exc:  # keep beating on the next round
                self._log("heartbeat_failed", error=str(exc)[:200])

    def _beat(self) -> None:
        flags = self._last_flags
        with self._lock:
            counters = dict(self.counters)
            in_flight, taking = self.in_flight, self.taking
        # The event queue's figures ride along: events dropped when the queue was full show in status.
        counters.update({f"events_{k}": v for k, v in self.events.stats().items()})
        item = heartbeat_item(self.worker_id, at=utcnow().timestamp(), in_flight=in_flight, taking=taking,
                              processing=flags.processing if flags else "unknown",
                              routing=(flags.mode, flags.active) if flags else ("unknown", "unknown"),
                              breakers={name: snap["state"] for name, snap in self.router.snapshot().items()},
                              probes=self.router.last_probe, suspect=self.router.suspects(), counters=counters,
                              aws_requests=self.aws.counter.snapshot())
        with contextlib.suppress(Exception):
            self.aws.dynamodb.put_item(TableName=self.names.heartbeats_table, Item=item)

    def _log(self, what: str, **facts: Any) -> None:
        """One line (platform/logs.py); ``what`` names it, the facts ride along as fields."""
        level = logging.INFO if what == "flags_seen" else logging.WARNING
        fields = {k if k not in _RESERVED else f"{k}_": v for k, v in facts.items()}
        log.log(level, what, extra={"what": what, **fields})


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.orderpath.worker")
    parser.add_argument("--id", default=worker_id(socket.gethostname(), os.getpid()))
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    args = parser.parse_args(argv)
    configure(args.id, fmt=args.log_format)
    try:
        settings = load_settings()
        worker = Worker(settings, worker_id=args.id)
    except TradeopsError as exc:
        log.error("worker failed to start: %s", exc)
        return 2

    def _stop(signum: int, _frame: Any) -> None:
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
