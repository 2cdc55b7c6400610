"""The divergence monitor: what waiting is costing customers, live; and the reimbursement ledger's feeder.

Run as ``python -m tradeops.runtime.liability.monitor --host 127.0.0.1 --port P`` (``tradeops up`` starts it).
HTTP: ``GET /health`` and ``GET /snapshot`` (:mod:`.endpoint`).

What it keeps (the arithmetic is :mod:`.arithmetic`'s, the book :mod:`.exposurebook`'s, the thresholds
:mod:`.watches`'; this module only moves data to them):

- **Pending orders** (ACCEPTED, SUBMITTING, IN_DOUBT; synthetic excluded) in an ExposureBook. At
  start they come from the orders table's status/symbol index (a Query per status, never a Scan);
  from then on from the orders table's DynamoDB Stream: a pending image adds an order, any other
  image (or a delete) removes it, and a move into FILLED asks the ledger for the order's
  reimbursement entry (created once: a replayed event finds it there). No table read per tick.
- **Prices** from the Kinesis price stream, every shard through shard iterators. Each tick goes
  through ``parse_tick`` (:mod:`.ticks`; malformed ticks, unknown symbols included, are counted by
  their kind and skipped) and ``ExposureBook.on_tick``; the liability thresholds are evaluated on
  every tick's changes, so a crossing is never missed: each is recorded as an event the moment it
  happens (the exact timeline). Whether it pages a person is :mod:`.paging`'s decision
  (hysteresis, hold-down, grouping, repeats).
- **Open double executions** (orders under ``watch = double:open``,
  :mod:`tradeops.runtime.orderpath.double_executions`): the extra fill's notional and the price move
  since, in the summary (``tradeops exposure``).
- About once a second (``FLUSH_SECONDS``) the checks no event triggers (:func:`.checks.periodic`),
  then a flush: the orders whose *maximum* exposure rose, the live summary (:mod:`.facts`), the
  CloudWatch metrics TotalExposureGbp, MaxDivergencePct, OldestPendingOrderAgeSeconds and
  MalformedTicks (ticks skipped in that second), and the checkpoints (:mod:`.writer`).

Threads
    The stream follower (:meth:`Monitor.run`) reads both streams and takes every decision, under
    ``Monitor.lock``; the others only carry decisions out, so ticks keep flowing while AWS is slow:
    the writer (:mod:`.writer`), the alert thread (:class:`.alerts.AlertSender`), the HTTP
    endpoint (:mod:`.endpoint`) and the broker pager (:mod:`.pager`, its own decisions about brokers).
    Every moment is read from the clock module (:func:`tradeops.runtime.platform.clock.utcnow`).

Restart
    Checkpoints live in the exposure table (:mod:`.exposuretable`). A restarted monitor rebuilds
    the pending orders from the index, restores each order's maximum from the exposure table,
    restores the prices, and resumes each shard after its checkpoint (replaying what came after it;
    replays are harmless: a stale tick is ignored, an add is idempotent, a ledger entry is created
    once). So it reports the same totals as one that never stopped. Checkpoints are written after
    the writes they cover (one writer thread, in order), so a crash can only replay, never skip.
    Without a checkpoint the orders stream is read from its trim horizon (every fill gets its
    entry) and each price shard from ``PRICE_LOOKBACK_SECONDS`` ago (enough for every symbol's
    latest price at the feed's rate). While it catches up (rebuild and replay) the monitor records
    and pages nothing; once caught up it goes live (:func:`.checks.go_live`), so a restart never
    repeats a page, and a replayed order that has long filled raises none.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any

from tradeops.runtime.liability.alerts import AlertPublisher, AlertSender
from tradeops.runtime.liability.arithmetic import round_exposure
from tradeops.runtime.liability.checks import go_live, periodic
from tradeops.runtime.liability.endpoint import handler
from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.exposuretable import (
    ExposureTable,
    exposure_item,
    orders_checkpoint_item,
    price_checkpoint_item,
)
from tradeops.runtime.liability.facts import crossing_facts, doubles_summary, figures, page_facts
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.liability.orderexposure import PendingOrder, UnknownPrices
from tradeops.runtime.liability.pager import FleetPager
from tradeops.runtime.liability.paging import ExposurePaging, Page
from tradeops.runtime.liability.streams import DynamoStreamFollower, KinesisFollower
from tradeops.runtime.liability.ticks import BadTick, TickProblem, parse_tick
from tradeops.runtime.liability.watches import Alert, LiabilityWatch
from tradeops.runtime.liability.writer import Flush, Writer
from tradeops.runtime.orderpath.double_executions import WATCH_OPEN
from tradeops.runtime.orderpath.orders import OrderStore, from_item
from tradeops.runtime.orderpath.states import FILLED, PENDING
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, TradeopsError
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.service import service_main
from tradeops.runtime.platform.settings import Settings

__all__ = ["FLUSH_SECONDS", "Monitor", "serve"]

log = logging.getLogger("tradeops.monitor")

FLUSH_SECONDS = 1.0
POLL_SECONDS = 0.2  # Kinesis and DynamoDB Streams allow about 5 GetRecords a second per shard
PRICE_LOOKBACK_SECONDS = 300
SNAPSHOT_ORDER_LIMIT = 20_000


def _tick_data(record: dict[str, Any]) -> bytes:
    data = record.get("Data", b"")
    return bytes(data) if isinstance(data, bytes | bytearray) else str(data).encode()


def _pending_order(order: Mapping[str, Any]) -> PendingOrder:
    try:
        placed_at = datetime.fromisoformat(str(order["placed_at"]))
        return PendingOrder(
            order_id=order["order_id"], symbol=order["symbol"], side=order["side"],
            quantity=order["quantity"], quote_price=order["quote_price"], placed_at=placed_at,
            synthetic=bool(order.get("synthetic", False)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BadInput(f"order {order.get('order_id')!r} cannot be tracked: {exc}") from None


class Monitor:
    """State and stream-following loop of the divergence monitor (one per stack; see the module docstring)."""

    def __init__(self, settings: Settings, aws: Aws | None = None) -> None:
        self.settings = settings
        self.aws = aws or Aws(settings)
        self.names = names_for(settings)
        self.table = ExposureTable(self.aws, self.names)
        self.universe = frozenset(settings.symbol_list)
        self.book = ExposureBook(price_places=2)
        self.watch = LiabilityWatch.from_settings(settings)
        self.paging = ExposurePaging.from_settings(settings)
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.counters: Counter[str] = Counter()
        self.malformed_reasons: Counter[str] = Counter()
        publisher = AlertPublisher(self.aws, self.names, source=f"monitor-{os.getpid()}")
        self.alerts = AlertSender(publisher, self.table, lock=self.lock, counters=self.counters)
        self.writer = Writer(self.table, Ledger(self.aws, self.names), self.names.metric_namespace,
                             lock=self.lock, counters=self.counters, stop=self.stop)
        self.pager = FleetPager(self.aws, self.names, settings, publisher)
        self.pending: dict[str, PendingOrder] = {}
        self.restored_max: dict[str, Decimal] = {}
        self.written_max: dict[str, Decimal] = {}
        self.last_tick: dict[str, tuple[str, str, str]] = {}  # symbol -> (price, at, shard)
        self.positions: dict[str, dict[str, str]] = {"prices": {}, "orders": {}}
        self._saved_paging: dict[str, Any] = {}  # restored from #alerts, applied once caught up
        self._pages: list[Page] = []  # decided under the lock, sent by the alert thread
        self.doubles: dict[str, dict[str, Any]] = {}  # open double executions: order_id -> the extra fill
        self.ready = False
        self.started_at = utcnow()
        self.orders_arn: str | None = None
        self.prices: KinesisFollower | None = None
        self.orders: DynamoStreamFollower | None = None
        self._malformed_published = 0
        self._final_writes: list[dict[str, Any]] = []  # maxima of orders that left before the next flush
        self._threads: list[threading.Thread] = []

    # ---- start ---------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Pending orders from the index, their maxima, prices and alert state from the checkpoints."""
        with aws_errors("describe the orders table"):
            table = self.aws.dynamodb.describe_table(TableName=self.names.orders_table)["Table"]
        self.orders_arn = table.get("LatestStreamArn")
        if not self.orders_arn:
            raise BadInput(f"table {self.names.orders_table} has no stream (the template enables one)")
        positions = self.table.orders_positions(self.orders_arn)
        orders = DynamoStreamFollower(self.aws, self.orders_arn, positions)
        with aws_errors("list the orders stream's shards"):
            orders.refresh()

        store = OrderStore(self.aws, self.names)
        now = utcnow()
        doubles = list(store.by_watch(WATCH_OPEN))
        with self.lock:
            for status in sorted(PENDING):
                for order in store.by_status(status):
                    self._track(order, now, evaluate=False)
            for order in doubles:
                self._track_double(order)
            self.positions["orders"] = dict(positions)
        maxima = self.table.maxima(list(self.pending))
        with self.lock:
            self.restored_max.update(maxima)
            self.written_max.update(maxima)

        prices = KinesisFollower(self.aws, self.names.price_stream, {},
                                 since=now - timedelta(seconds=PRICE_LOOKBACK_SECONDS))
        with aws_errors("list the price stream's shards"):
            prices.refresh()
        restored: list[tuple[str, str, str, str]] = []
        for shard, sequence_number, symbols in self.table.price_checkpoints(prices.shards):
            prices.positions[shard] = sequence_number
            for symbol, (price, at) in symbols.items():
                restored.append((at, symbol, price, shard))
        saved_paging = self.table.paging_state()
        with self.lock:
            self._saved_paging = saved_paging
            self.positions["prices"] = dict(prices.positions)
            for at, symbol, price, shard in sorted(restored):
                if symbol in self.universe:  # alerts are settled once caught up (see _go_live)
                    self._apply_tick_values(symbol, Decimal(price), datetime.fromisoformat(at), shard)
        self.orders, self.prices = orders, prices
        log.info("rebuilt: %d pending orders, %d maxima, %d prices restored, %d paging groups open",
                 len(self.pending), len(self.restored_max), len(restored), len(self._saved_paging))

    # ---- orders --------------------------------------------------------------------------------
    def _track(self, order: Mapping[str, Any], now: datetime, *, evaluate: bool = True) -> list[Alert]:
        if order.get("synthetic"):
            return self._untrack(order["order_id"], now)
        try:
            pending = _pending_order(order)
        except BadInput as exc:
            self.counters["bad_orders"] += 1
            log.warning("%s", exc)
            return []
        known = self.pending.get(pending.order_id)
        if known == pending:
            return []
        if known is not None:  # details changed (should not happen): track the new ones
            self.book.remove(pending.order_id)
        try:
            self.book.add(pending)
        except BadInput as exc:
            self.counters["bad_orders"] += 1
            log.warning("order %s cannot be tracked: %s", pending.order_id, exc, extra={"order_id": pending.order_id})
            self.pending.pop(pending.order_id, None)
            return []
        self.pending[pending.order_id] = pending
        self.counters["orders_added"] += 1
        view = self.book.get(pending.order_id)
        # An order added after its symbol's latest tick is evaluated at once (not by a TickResult).
        if not (evaluate and view is not None and view.exposure):
            return []
        alerts = self.watch.on_orders([view], now)
        if self.ready:
            self._pages += self.paging.on_orders([view], alerts, now)
        return alerts

    def _untrack(self, order_id: str, now: datetime) -> list[Alert]:
        if order_id not in self.pending:
            return []
        view = self.book.get(order_id)
        if view is not None:  # take_changes() forgets departed orders: keep a maximum reached since the last flush
            peak = round_exposure(self._max_of(order_id, view.max_exposure))
            if peak > self.written_max.get(order_id, Decimal(0)):
                self._final_writes.append(exposure_item(view, peak, iso(now)))
        self.book.remove(order_id)
        del self.pending[order_id]
        self.restored_max.pop(order_id, None)
        self.written_max.pop(order_id, None)
        self.counters["orders_removed"] += 1
        if self.ready:
            self._pages += self.paging.on_order_left(order_id, now)
        return self.watch.on_order_left(order_id, now)

    def _track_double(self, order: Mapping[str, Any]) -> None:
        """Keep the extra fill of an open double execution (the money at risk until it is unwound)."""
        record = order.get("double_execution") or {}
        if order.get("watch") != WATCH_OPEN or record.get("state") != "open":
            self.doubles.pop(order["order_id"], None)
            return
        extra = next((f for f in record.get("fills") or [] if not f.get("recorded")), None)
        if extra is None or extra.get("price") is None:
            return
        self.doubles[order["order_id"]] = {"symbol": order.get("symbol"), "side": order.get("side"),
                                           "quantity": extra.get("quantity"), "price": Decimal(extra["price"]),
                                           "provider": extra.get("provider"), "at": extra.get("at")}

    def apply_order_event(self, shard: str, seq: str, record: dict[str, Any]) -> list[Alert]:
        """One orders-table change: track, untrack, and queue the ledger entry of a new fill."""
        self.counters["order_events"] += 1
        ddb = record.get("dynamodb", {})
        now = utcnow()
        new, old = ddb.get("NewImage"), ddb.get("OldImage")
        alerts: list[Alert] = []
        if new is None:
            order_id = ddb.get("Keys", {}).get("order_id", {}).get("S")
            if order_id:
                alerts = self._untrack(order_id, now)
        else:
            order = from_item(new)
            self._track_double(order)
            status = order.get("status")
            if status in PENDING and not order.get("synthetic"):
                alerts = self._track(order, now)
            else:
                alerts = self._untrack(order["order_id"], now)
            was = old.get("status", {}).get("S") if old else None
            if status == FILLED and was != FILLED and not order.get("synthetic"):
                self.counters["fills_seen"] += 1
                stamp = ddb.get("ApproximateCreationDateTime")
                self.writer.ledger_entry(order, stamp if isinstance(stamp, datetime) else now)
        self.positions["orders"][shard] = seq
        return alerts

    # ---- prices --------------------------------------------------------------------------------
    def _apply_tick_values(self, symbol: str, price: Decimal, at: datetime, shard: str) -> list[Alert]:
        result = self.book.on_tick(symbol, price, at)
        if result.stale:
            self.counters["stale_ticks"] += 1
            return []
        self.last_tick[symbol] = (str(price), iso(at), shard)
        alerts = self.watch.on_tick(result)
        if self.ready:
            self._pages += self.paging.on_tick(result, alerts, utcnow())
        return alerts

    def apply_tick(self, shard: str, seq: str, data: bytes) -> list[Alert]:
        """One record of the price stream: a tick applied, or a malformed one counted and skipped."""
        self.counters["ticks"] += 1
        self.positions["prices"][shard] = seq
        try:
            tick = parse_tick(data, self.universe)
            return self._apply_tick_values(tick.symbol, tick.price, tick.at, shard)
        except BadInput as exc:  # BadTick, or the book refused it: still a bad tick
            self.counters["malformed_ticks"] += 1
            self.malformed_reasons[(exc.kind if isinstance(exc, BadTick) else TickProblem.OTHER).value] += 1
            return []

    # ---- alerts --------------------------------------------------------------------------------
    def _publish_if_live(self, crossings: Iterable[Alert]) -> None:
        """Hand the crossings, and the pages decided since the last call, to the alert thread (lock held).

        Until the monitor is live it is replaying history: the crossings are dropped (and no page is
        decided); what is open then is settled once, as it goes live (:meth:`_go_live`).
        """
        if not self.ready:
            return
        facts = [crossing_facts(a, self.book, self.watch) for a in crossings]
        if facts:
            self.counters["crossings"] += len(facts)
            self.alerts.crossings(facts)
        if self._pages:
            pages, self._pages = self._pages, []
            self.counters["pages"] += len(pages)
            self.alerts.pages([page_facts(p, self.paging, self.book) for p in pages], self.paging.snapshot())

    def _go_live(self, now: datetime) -> None:
        """Caught up with both streams: from now on crossings are recorded and pages sent (:func:`.checks.go_live`)."""
        decided = go_live(self.book, self.watch, self.paging, self._saved_paging, now)
        self.ready = True
        self._pages += decided.pages
        self._publish_if_live([])

    # ---- reporting -----------------------------------------------------------------------------
    def _max_of(self, order_id: str, peak: Decimal) -> Decimal:
        restored = self.restored_max.get(order_id)
        return peak if restored is None or peak >= restored else restored

    def _last_price(self, symbol: str) -> str | None:
        tick = self.last_tick.get(symbol)
        return None if tick is None else tick[0]

    def summary(self, now: datetime | None = None, *, orders: str | None = None,
                unknown: tuple[UnknownPrices, UnknownPrices] | None = None) -> dict[str, Any]:
        """The live picture (call with the lock held): :func:`.facts.figures`, open double executions, counters
        and stream positions; with ``orders`` (``"all"`` or an order id prefix), the exact exposure of those."""
        now = now or utcnow()
        unknown = unknown if unknown is not None else self.watch.unknown(self.book, now)
        body: dict[str, Any] = {
            "updated_at": iso(now), "started_at": iso(self.started_at), "pid": os.getpid(), "ready": self.ready,
            **figures(self.book, self.watch, self.paging, now, self._max_of, unknown),
            "double_executions": doubles_summary(self.doubles, self._last_price),
            "counters": {**dict(sorted(self.counters.items())), "malformed_reasons": dict(self.malformed_reasons)},
            "positions": {"prices": dict(self.positions["prices"]), "orders": dict(self.positions["orders"])},
        }
        if orders is not None:
            ids = [oid for oid in self.pending if orders == "all" or oid.startswith(orders)][:SNAPSHOT_ORDER_LIMIT]
            listed = {}
            for oid in ids:
                exposure = self.book.get(oid)
                if exposure is None:
                    continue
                listed[oid] = {"symbol": exposure.symbol, "side": exposure.side, "exposure": str(exposure.exposure),
                               "max_exposure": str(self._max_of(oid, exposure.max_exposure)),
                               "price": None if exposure.price is None else str(exposure.price),
                               "at": None if exposure.at is None else iso(exposure.at)}
            body["orders"] = listed
        return body

    def snapshot(self, orders: str | None = None) -> dict[str, Any] | None:
        """The summary ``GET /snapshot`` serves (see :meth:`summary`), or None until the monitor is live."""
        if not self.ready:
            return None
        with self.lock:
            return self.summary(orders=orders)

    def health(self) -> dict[str, Any]:
        """Cheap liveness and progress: readiness, counters and the stream positions applied so far."""
        with self.lock:
            return {"ok": True, "ready": self.ready, "pending_orders": len(self.pending),
                    "counters": {**dict(self.counters), "broker_pages": self.pager.pages_sent},
                    "broker_paging": {name: g.state for name, g in self.pager.paging.groups.items()},
                    "aws_requests": self.aws.counter.snapshot(),
                    "positions": {"prices": dict(self.positions["prices"]), "orders": dict(self.positions["orders"])}}

    # ---- flush ---------------------------------------------------------------------------------
    def _take_flush(self) -> Flush:
        """The checks no event triggers, then everything one flush writes: one consistent moment, under the lock."""
        with self.lock:
            now = utcnow()
            decided = periodic(self.book, self.watch, self.paging, now, live=self.ready)
            self._pages += decided.pages
            self._publish_if_live(decided.crossings)
            return self._flush_task(now, decided.unknown)

    def _flush_task(self, now: datetime, unknown: tuple[UnknownPrices, UnknownPrices]) -> Flush:
        """What one flush writes (lock held): the maxima that rose, the summary, the checkpoints, the metrics."""
        stamp = iso(now)
        writes, self._final_writes = self._final_writes, []
        for view in self.book.take_changes():
            peak = round_exposure(self._max_of(view.order_id, view.max_exposure))
            if peak > self.written_max.get(view.order_id, Decimal(0)):
                self.written_max[view.order_id] = peak
                writes.append(exposure_item(view, peak, stamp))
        writes = list({w["order_id"]["S"]: w for w in writes}.values())  # a batch may not repeat a key
        summary = self.summary(now, unknown=unknown)
        checkpoints = [price_checkpoint_item(shard, seq, {s: [p, at] for s, (p, at, sh) in self.last_tick.items()
                                                           if sh == shard}, stamp)
                       for shard, seq in self.positions["prices"].items()]
        if self.orders_arn and self.positions["orders"]:
            checkpoints.append(orders_checkpoint_item(self.orders_arn, self.positions["orders"], stamp))
        malformed = self.counters["malformed_ticks"]
        metrics = [
            ("TotalExposureGbp", float(self.book.total_exposure()), "None"),
            ("MaxDivergencePct", float(self.book.max_divergence_pct()), "Percent"),
            ("OldestPendingOrderAgeSeconds", float(summary["oldest_pending_seconds"]), "Seconds"),
            ("MalformedTicks", float(malformed - self._malformed_published), "Count"),
        ]
        self._malformed_published = malformed
        return Flush(writes=writes, summary=summary, checkpoints=checkpoints, metrics=metrics, at=now)

    # ---- loop ----------------------------------------------------------------------------------
    def step(self) -> bool:
        """Read both streams once and apply what came; True when a full page says there is more right away."""
        assert self.prices is not None and self.orders is not None
        order_records = self.orders.poll()
        price_records = self.prices.poll()
        with self.lock:
            alerts: list[Alert] = []
            for shard, seq, record in order_records:
                alerts += self.apply_order_event(shard, seq, record)
            for shard, seq, record in price_records:
                alerts += self.apply_tick(shard, seq, _tick_data(record))
            if self.ready:
                self._pages += self.paging.tick(utcnow())  # a hold-down, recovery hold or repeat fell due
            self._publish_if_live(alerts)
            if not self.ready and self.orders.caught_up and self.prices.caught_up:
                self._go_live(utcnow())
                log.info("ready: %d pending orders, total exposure %s GBP", len(self.pending),
                         round_exposure(self.book.total_exposure()))
        return self.orders.full or self.prices.full

    def start_threads(self) -> None:
        self._threads = [threading.Thread(target=self.writer.run, name="writer", daemon=True),
                         threading.Thread(target=self.alerts.run, name="alerts", daemon=True),
                         threading.Thread(target=self.pager.run, args=(self.stop,), name="broker-pager", daemon=True)]
        for thread in self._threads:
            thread.start()

    def run(self) -> None:
        """Follow both streams until ``stop`` is set, flushing about once a second; then a last flush."""
        # The monotonic clock paces the loop (intervals, not moments: it never jumps).
        next_flush = time.monotonic() + FLUSH_SECONDS
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                more = self.step()
            except Exception as exc:  # AWS unreachable for a moment: keep the state, try again
                self.counters["read_errors"] += 1
                log.warning("read failed: %s", str(exc)[:200])
                self.stop.wait(1.0)
                continue
            if time.monotonic() >= next_flush:
                self.writer.flush(self._take_flush)
                next_flush = time.monotonic() + FLUSH_SECONDS
            if not more:
                self.stop.wait(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        self.writer.final_flush(self._take_flush)

    def shutdown(self, timeout: float = 4.0) -> None:
        """Let the writer and the alert thread finish their queues within ``timeout`` (a restart replays the rest)."""
        self.writer.close()
        self.alerts.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------------------- process


def serve(settings: Settings, host: str, port: int) -> int:
    """Run the monitor and its HTTP endpoint until SIGTERM/SIGINT. Returns the exit code."""
    monitor = Monitor(settings)
    server = ThreadingHTTPServer((host, port), handler(monitor.health, monitor.snapshot))
    server.daemon_threads = True

    def _on_signal(signum: int, _frame: Any) -> None:
        monitor.stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    http = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    http.start()
    try:
        while not monitor.stop.is_set():
            try:
                monitor.rebuild()
                break
            except TradeopsError as exc:  # the stack may still be coming up: keep trying
                log.warning("rebuild failed, retrying: %s", exc)
                monitor.stop.wait(2.0)
        if not monitor.stop.is_set():
            monitor.start_threads()
            monitor.run()
    finally:
        monitor.shutdown()
        server.shutdown()
        server.server_close()
    return 0


def _main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="python -m tradeops.runtime.liability.monitor", label="monitor",
                        description=__doc__.splitlines()[0], serve=serve)


if __name__ == "__main__":
    raise SystemExit(_main())
