"""The divergence monitor: what waiting is costing customers, live; and the reimbursement ledger's feeder.

Run as ``python -m tradeops.runtime.liability.monitor --host 127.0.0.1 --port P`` (``tradeops up`` starts it).
HTTP: ``GET /health``; ``GET /snapshot`` (the live summary, 503 until rebuilt; ``?orders=all`` or
``?prefix=ID`` adds the exact per-order exposure of pending orders, for drills and tests).

What it keeps (the arithmetic is :mod:`tradeops.runtime.liability.book`'s; this module only moves data):

- **Pending orders** (ACCEPTED, SUBMITTING, IN_DOUBT; synthetic excluded) in an ExposureBook. At
  start they come from the orders table's status/symbol index (a Query per status, never a Scan);
  from then on from the orders table's DynamoDB Stream: a pending image adds an order, any other
  image (or a delete) removes it, and a move into FILLED asks the ledger for the order's
  reimbursement entry (created once: a replayed event finds it there). No table read per tick.
- **Prices** from the Kinesis price stream, every shard through shard iterators. Each tick goes
  through ``parse_tick`` (malformed ticks, unknown symbols included, are counted and skipped) and
  ``ExposureBook.on_tick``; the liability thresholds are evaluated on every tick's changes, so a
  crossing is never missed: each is recorded as an event the moment it happens (the exact timeline).
  Whether it pages a person is :mod:`.paging`'s decision (hysteresis, hold-down, grouping, repeats).
- **Open double executions** (orders under ``watch = double:open``,
  :mod:`tradeops.runtime.orderpath.double_executions`): the extra fill's notional and the price move
  since, in the summary (``tradeops exposure``).
- About once a second (``FLUSH_SECONDS``), on a writer thread so ticks keep flowing: the orders
  whose *maximum* exposure rose are written to the exposure table (BatchWriteItem), the live
  summary to the reserved item ``#summary`` (read by ``tradeops exposure``), the CloudWatch metrics
  TotalExposureGbp, MaxDivergencePct, OldestPendingOrderAgeSeconds and MalformedTicks (ticks
  skipped in that second), and the checkpoints.

Restart
    Checkpoints live in the exposure table under reserved keys (order ids cannot start with '#'):
    per price shard, the last sequence number applied *and* the last price of every symbol of that
    shard, in one item, so the two always agree; for the orders stream, the last sequence number
    per shard. A restarted monitor rebuilds the pending orders from the index, restores each
    order's maximum from the exposure table, restores the prices, and resumes each shard after its
    checkpoint (replaying what came after it; replays are harmless: a stale tick is ignored, an add
    is idempotent, a ledger entry is created once). So it reports the same totals as one that never
    stopped. Checkpoints are written after the writes they cover (one writer thread, in order), so a
    crash can only replay, never skip. Without a checkpoint the orders stream is read from its trim
    horizon (every fill gets its entry) and each price shard from ``PRICE_LOOKBACK_SECONDS`` ago
    (enough for every symbol's latest price at the feed's rate).
    The paging state of every breach that has paged is kept in the reserved item ``#alerts``. While
    it catches up (rebuild and replay) the monitor records and pages nothing; once caught up it
    restores that state and feeds it the breaches open now: one that had paged goes on silently (or
    pages its recovery if it is over), a new one pages by the rules. So a restart never repeats a
    page, and a replayed order that has long filled raises none.

Alerts
    Crossings are decided here (``LiabilityWatch`` of :mod:`.book`), pages by :mod:`.paging`, and
    both published by :mod:`.alerts` on a thread of their own. The broker pages of the fleet are
    :mod:`.pager`'s (its own thread in this process). The stream followers are :mod:`.streams`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tradeops.runtime.liability.alerts import AlertPublisher
from tradeops.runtime.liability.book import (
    Alert,
    BadTick,
    ExposureBook,
    LiabilityWatch,
    OrderExposure,
    PendingOrder,
    UnknownPrices,
    parse_tick,
    round_exposure,
)
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.liability.pager import FleetPager
from tradeops.runtime.liability.paging import KEYED, ExposurePaging, Page
from tradeops.runtime.liability.streams import DynamoStreamFollower, KinesisFollower
from tradeops.runtime.orderpath.double_executions import WATCH_OPEN, money_at_risk
from tradeops.runtime.orderpath.orders import OrderStore, from_item
from tradeops.runtime.orderpath.states import PENDING
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, TradeopsError
from tradeops.runtime.platform.logs import bound
from tradeops.runtime.platform.metrics import publish
from tradeops.runtime.platform.names import Names, names_for
from tradeops.runtime.platform.retries import batch_get_all, batch_write_all, until_done
from tradeops.runtime.platform.service import JsonHandler, service_main
from tradeops.runtime.platform.settings import Settings

__all__ = [
    "ALERTS_KEY",
    "FLUSH_SECONDS",
    "ORDERS_CHECKPOINT_KEY",
    "SUMMARY_KEY",
    "Monitor",
    "price_checkpoint_key",
    "read_summary",
    "serve",
]

log = logging.getLogger("tradeops.monitor")

SUMMARY_KEY = "#summary"
ALERTS_KEY = "#alerts"
ORDERS_CHECKPOINT_KEY = "#checkpoint#orders"
_PRICE_CHECKPOINT_PREFIX = "#checkpoint#prices#"

FLUSH_SECONDS = 1.0
POLL_SECONDS = 0.2  # Kinesis and DynamoDB Streams allow about 5 GetRecords a second per shard
PRICE_LOOKBACK_SECONDS = 300
WORST = 20
SNAPSHOT_ORDER_LIMIT = 20_000
_PCT_PLACES = Decimal("0.0001")
_UNITS = {"order_pct": "%", "order_amount": "GBP", "total_amount": "GBP", "oldest_age_seconds": "s",
          "unpriced_amount": "GBP", "stale_amount": "GBP"}


def _page_subject(facts: dict[str, Any]) -> str:
    """The subject line of an exposure page: what, which threshold, how many orders."""
    kind, threshold = facts["kind"], facts["threshold"]
    count = facts.get("orders_breached")
    return f"tradeops exposure {kind}: {threshold}" + (f" ({count} orders)" if count and count > 1 else "")


def price_checkpoint_key(shard_id: str) -> str:
    return f"{_PRICE_CHECKPOINT_PREFIX}{shard_id}"


# --------------------------------------------------------------------------------------- monitor


def _tick_data(record: dict[str, Any]) -> bytes:
    data = record.get("Data", b"")
    return bytes(data) if isinstance(data, bytes | bytearray) else str(data).encode()


def _reason_kind(reason: str) -> str:
    """A short, bounded label for a malformed tick's reason (counters must not grow per input)."""
    for label in ("missing symbol", "unknown symbol", "not JSON", "not a JSON object", "missing price",
                  "not a number", "NaN", "infinite", "positive", "out of range", "decimal places",
                  "timestamp", "seq", "symbol must"):
        if label in reason:
            return label
    return "other"


def _exposure_item(view: OrderExposure, max_exposure: Decimal, stamp: str) -> dict[str, Any]:
    """An order's item in the exposure table: its maximum exposure while it waited (GBP, to the penny)."""
    return {"order_id": {"S": view.order_id}, "symbol": {"S": view.symbol}, "side": {"S": view.side},
            "quantity": {"N": str(view.quantity)}, "quote_price": {"N": str(view.quote_price)},
            "max_exposure": {"N": str(max_exposure)}, "currency": {"S": "GBP"}, "updated_at": {"S": stamp}}


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
    """State and loop of the divergence monitor (one per stack; see the module docstring)."""

    def __init__(self, settings: Settings, aws: Aws | None = None) -> None:
        self.settings = settings
        self.aws = aws or Aws(settings)
        self.names = names_for(settings)
        self.table = self.names.exposure_table
        self.universe = frozenset(settings.symbol_list)
        self.book = ExposureBook(price_places=2)
        self.watch = LiabilityWatch.from_settings(settings)
        self.ledger = Ledger(self.aws, self.names)
        self.alerts = AlertPublisher(self.aws, self.names, source=f"monitor-{os.getpid()}")
        self.pager = FleetPager(self.aws, self.names, settings, self.alerts)
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.pending: dict[str, PendingOrder] = {}
        self.restored_max: dict[str, Decimal] = {}
        self.written_max: dict[str, Decimal] = {}
        self.last_tick: dict[str, tuple[str, str, str]] = {}  # symbol -> (price, at, shard)
        self.positions: dict[str, dict[str, str]] = {"prices": {}, "orders": {}}
        self.counters: Counter[str] = Counter()
        self.malformed_reasons: Counter[str] = Counter()
        self.paging = ExposurePaging.from_settings(settings)
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
        self._flush_pending = threading.Event()
        self._outbox: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._alert_queue: queue.Queue[tuple[str, list[dict[str, Any]], dict[str, Any]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    # ---- start ---------------------------------------------------------------------------------
    def _get(self, key: str) -> dict[str, Any] | None:
        with aws_errors(f"read {key} from {self.table}"):
            got = self.aws.dynamodb.get_item(TableName=self.table, Key={"order_id": {"S": key}}, ConsistentRead=True)
        return got.get("Item")

    def _batch_get(self, keys: list[str], projection: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for i in range(0, len(keys), 100):
            request: dict[str, Any] = {self.table: {
                "Keys": [{"order_id": {"S": k}} for k in keys[i:i + 100]], "ConsistentRead": True,
                "ProjectionExpression": projection, "ExpressionAttributeNames": {"#k": "order_id"}}}
            with aws_errors("read the exposure table"):
                items += batch_get_all(self.aws.dynamodb, request, what="read the exposure table").get(self.table, [])
        return items

    def rebuild(self) -> None:
        """Pending orders from the index, their maxima, prices and alert state from the checkpoints."""
        with aws_errors("describe the orders table"):
            table = self.aws.dynamodb.describe_table(TableName=self.names.orders_table)["Table"]
        self.orders_arn = table.get("LatestStreamArn")
        if not self.orders_arn:
            raise BadInput(f"table {self.names.orders_table} has no stream (the template enables one)")
        checkpoint = self._get(ORDERS_CHECKPOINT_KEY)
        positions: dict[str, str] = {}
        if checkpoint and checkpoint.get("stream_arn", {}).get("S") == self.orders_arn:
            positions = json.loads(checkpoint["positions"]["S"])
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
        maxima = self._batch_get(list(self.pending), "#k, max_exposure")
        with self.lock:
            for item in maxima:
                if "max_exposure" in item:
                    value = Decimal(item["max_exposure"]["N"])
                    self.restored_max[item["order_id"]["S"]] = value
                    self.written_max[item["order_id"]["S"]] = value

        prices = KinesisFollower(self.aws, self.names.price_stream, {},
                                 since=now - timedelta(seconds=PRICE_LOOKBACK_SECONDS))
        with aws_errors("list the price stream's shards"):
            prices.refresh()
        restored: list[tuple[str, str, str, str]] = []
        for item in self._batch_get([price_checkpoint_key(s) for s in prices.shards], "#k, sequence_number, prices"):
            shard = item["order_id"]["S"][len(_PRICE_CHECKPOINT_PREFIX):]
            prices.positions[shard] = item["sequence_number"]["S"]
            for symbol, (price, at) in json.loads(item["prices"]["S"]).items():
                restored.append((at, symbol, price, shard))
        alerts_item = self._get(ALERTS_KEY)
        with self.lock:
            if alerts_item and "paging" in alerts_item:
                self._saved_paging = json.loads(alerts_item["paging"]["S"])
            self.positions["prices"] = dict(prices.positions)
            for at, symbol, price, shard in sorted(restored):
                if symbol in self.universe:  # alerts are settled once caught up (see _gate)
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
            self._pages += self.paging.on_orders([view], alerts, now.timestamp())
        return alerts

    def _untrack(self, order_id: str, now: datetime) -> list[Alert]:
        if order_id not in self.pending:
            return []
        view = self.book.get(order_id)
        if view is not None:  # take_changes() forgets departed orders: keep a maximum reached since the last flush
            peak = round_exposure(self._max_of(order_id, view.max_exposure))
            if peak > self.written_max.get(order_id, Decimal(0)):
                self._final_writes.append(_exposure_item(view, peak, iso(now)))
        self.book.remove(order_id)
        del self.pending[order_id]
        self.restored_max.pop(order_id, None)
        self.written_max.pop(order_id, None)
        self.counters["orders_removed"] += 1
        if self.ready:
            self._pages += self.paging.on_order_left(order_id, now.timestamp())
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

    def _doubles_summary(self) -> dict[str, Any]:
        """Open double executions: the extra fills' notional, and the price move since (GBP)."""
        rows = []
        notional = move = at_risk = Decimal(0)
        for order_id, extra in sorted(self.doubles.items()):
            price, qty = extra["price"], Decimal(extra["quantity"] or 0)
            notional += price * qty
            row = {"order_id": order_id, "symbol": extra["symbol"], "side": extra["side"],
                   "quantity": str(extra["quantity"]), "fill_price": str(price), "provider": extra["provider"],
                   "filled_at": extra["at"], "notional": str(round_exposure(price * qty)), "price": None,
                   "price_move": None, "at_risk": None}
            tick = self.last_tick.get(extra["symbol"])
            if tick is not None:
                moved, risk = money_at_risk(extra["side"], price, qty, Decimal(tick[0]))
                move += moved
                at_risk += risk
                row.update(price=tick[0], price_move=str(round_exposure(moved)), at_risk=str(round_exposure(risk)))
            rows.append(row)
        return {"open": len(rows), "notional": str(round_exposure(notional)),
                "price_move": str(round_exposure(move)), "at_risk": str(round_exposure(at_risk)),
                "orders": rows[:WORST]}

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
            if status == "FILLED" and was != "FILLED" and not order.get("synthetic"):
                self.counters["fills_seen"] += 1
                stamp = ddb.get("ApproximateCreationDateTime")
                fallback = stamp if isinstance(stamp, datetime) else now
                self._outbox.put(("ledger", (order, fallback)))
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
            self._pages += self.paging.on_tick(result, alerts, time.time())
        return alerts

    def apply_tick(self, shard: str, seq: str, data: bytes) -> list[Alert]:
        """One record of the price stream: a tick applied, or a malformed one counted and skipped."""
        self.counters["ticks"] += 1
        self.positions["prices"][shard] = seq
        try:
            tick = parse_tick(data, self.universe)
            return self._apply_tick_values(tick.symbol, tick.price, tick.at, shard)
        except BadTick as exc:
            self.counters["malformed_ticks"] += 1
            self.malformed_reasons[_reason_kind(exc.reason)] += 1
            return []
        except BadInput as exc:  # the book refused it (e.g. too many places): still a bad tick
            self.counters["malformed_ticks"] += 1
            self.malformed_reasons[_reason_kind(str(exc))] += 1
            return []

    # ---- alerts --------------------------------------------------------------------------------
    def _facts(self, alert: Alert) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "kind": alert.kind, "threshold": alert.name, "limit": str(alert.threshold),
            "unit": _UNITS.get(alert.name, ""), "value": None if alert.value is None else str(alert.value),
            "at": iso(alert.at),
        }
        if alert.reason:
            facts["reason"] = alert.reason
        if alert.key is not None:
            facts["order_id"] = alert.key
            view = self.book.get(alert.key)
            if view is not None:
                facts.update(symbol=view.symbol, side=view.side, quantity=str(view.quantity),
                             quote_price=str(view.quote_price), price=None if view.price is None else str(view.price),
                             exposure=str(round_exposure(view.exposure)),
                             divergence_pct=str(view.adverse_pct.quantize(_PCT_PLACES, rounding=ROUND_HALF_UP)))
        else:
            facts.update(total_exposure=str(round_exposure(self.book.total_exposure())),
                         pending_orders=len(self.pending), currency="GBP")
            if alert.name in ("unpriced_amount", "stale_amount"):
                unpriced, stale = self.watch.unknown(self.book, alert.at)
                facts["orders"] = (unpriced if alert.name == "unpriced_amount" else stale).orders
        return facts

    def _gate(self, alerts: Iterable[Alert]) -> None:
        """Record each crossing, and queue the pages decided since the last call (lock held).

        Until the monitor is ready it is replaying history (a checkpoint's tail, the rebuild): the
        watches follow along, but nothing is recorded or paged; what is open is settled once, when it
        is ready (``_reconcile``), so a replayed order that has long filled raises nothing.
        """
        if not self.ready:
            return
        crossings = [self._facts(a) for a in alerts]
        if crossings:
            self.counters["crossings"] += len(crossings)
            self._alert_queue.put(("crossings", crossings, {}))
        if self._pages:
            pages, self._pages = self._pages, []
            self.counters["pages"] += len(pages)
            self._alert_queue.put(("pages", [self._page_facts(p) for p in pages], self.paging.snapshot()))

    def _page_facts(self, page: Page) -> dict[str, Any]:
        """What one page says (lock held): the threshold, when its breach began, the worst orders, the total."""
        name = page.group
        limit = self.paging.groups[name].rules.threshold
        facts: dict[str, Any] = {
            "kind": page.kind, "threshold": name, "dedup_key": page.dedup_key, "limit": str(limit),
            "unit": _UNITS.get(name, ""), "began_at": iso(datetime.fromtimestamp(page.began_at, UTC)),
            "at": iso(datetime.fromtimestamp(page.at, UTC)), "transitions": page.transitions,
        }
        if name in KEYED:
            views = [(key, value, self.book.get(key) if key is not None else None) for key, value in page.values]
            total = sum((v.exposure for _, _, v in views if v is not None), Decimal(0))
            worst = []
            for key, value, view in views[:10]:
                row: dict[str, Any] = {"order_id": key, "value": str(value)}
                if view is not None:
                    row.update(symbol=view.symbol, side=view.side, quantity=str(view.quantity),
                               quote_price=str(view.quote_price), price=None if view.price is None else str(view.price),
                               exposure=str(round_exposure(view.exposure)),
                               divergence_pct=str(view.adverse_pct.quantize(_PCT_PLACES, rounding=ROUND_HALF_UP)))
                worst.append(row)
            facts.update(orders_breached=page.count, new_orders=list(page.new_keys)[:200], worst=worst,
                         orders=list(page.announced)[:200], total_exposure=str(round_exposure(total)),
                         currency="GBP")
            if page.count == 1 and worst:
                facts.update({k: v for k, v in worst[0].items() if k != "value"}, value=worst[0]["value"])
        else:
            facts.update(value=str(page.values[0][1]) if page.values else None,
                         total_exposure=str(round_exposure(self.book.total_exposure())),
                         pending_orders=len(self.pending), currency="GBP")
        return facts

    def _reconcile(self, now: datetime) -> None:
        """Become ready: restore the paging state of breaches that had paged, and feed it what is breached now
        (a breach that had paged goes on silently, or pages its recovery if it is over; a new one pages by
        the rules)."""
        unknown = self.watch.unknown(self.book, now)
        self.watch.on_book(self.book, now, unknown)
        self.ready = True
        stamp = now.timestamp()
        self.paging.restore(self._saved_paging, stamp)
        w = self.watch
        for keyed, value_of in ((w.order_pct, lambda v: v.adverse_pct), (w.order_amount, lambda v: v.exposure)):
            views = [v for key in sorted(keyed.breached) if (v := self.book.get(key)) is not None]
            self._pages += self.paging.groups[keyed.name].observe_many(
                [(v.order_id, value_of(v)) for v in views], stamp, transitions=0)
        self._pages += self.paging.on_book(self.book, stamp, now, unknown)
        self._gate([])

    # ---- reporting -----------------------------------------------------------------------------
    def _max_of(self, order_id: str, peak: Decimal) -> Decimal:
        restored = self.restored_max.get(order_id)
        return peak if restored is None or peak >= restored else restored

    def summary(self, now: datetime | None = None, *, orders: str | None = None,
                unknown: tuple[UnknownPrices, UnknownPrices] | None = None) -> dict[str, Any]:
        """The live picture (call with the lock held): totals, thresholds, worst orders, counters, and the
        pending orders it cannot price (``unpriced``) or prices from a stale tick (``stale_price``)."""
        now = now or utcnow()
        snap = self.book.snapshot(now)
        unpriced, stale = unknown if unknown is not None else self.watch.unknown(self.book, now)
        worst = self.book.worst(WORST)
        top_exposure = round_exposure(worst[0].exposure) if worst else Decimal("0.00")
        rows = []
        for view in worst:
            rows.append({
                "order_id": view.order_id, "symbol": view.symbol, "side": view.side, "quantity": str(view.quantity),
                "quote_price": str(view.quote_price), "price": None if view.price is None else str(view.price),
                "divergence_pct": str(view.adverse_pct.quantize(_PCT_PLACES, rounding=ROUND_HALF_UP)),
                "exposure": str(round_exposure(view.exposure)),
                "max_exposure": str(round_exposure(self._max_of(view.order_id, view.max_exposure))),
                "waited_seconds": round((now - view.placed_at).total_seconds(), 1),
            })
        w = self.watch
        thresholds = [
            {"name": "order_pct", "limit": str(w.order_pct.threshold), "unit": "%",
             "value": str(snap["max_divergence_pct"]), "breached": bool(w.order_pct.breached),
             "orders_breached": len(w.order_pct.breached)},
            {"name": "order_amount", "limit": str(w.order_amount.threshold), "unit": "GBP",
             "value": str(top_exposure), "breached": bool(w.order_amount.breached),
             "orders_breached": len(w.order_amount.breached)},
            {"name": "total_amount", "limit": str(w.total_amount.threshold), "unit": "GBP",
             "value": str(snap["total_exposure"]), "breached": w.total_amount.above},
            {"name": "oldest_age_seconds", "limit": str(w.oldest_age.threshold), "unit": "s",
             "value": str(round(snap.get("oldest_pending_seconds", 0.0), 1)), "breached": w.oldest_age.above},
            {"name": "unpriced_amount", "limit": str(w.unpriced_amount.threshold), "unit": "GBP",
             "value": str(round_exposure(unpriced.notional)), "breached": w.unpriced_amount.above,
             "orders_breached": unpriced.orders},
            {"name": "stale_amount", "limit": str(w.stale_amount.threshold), "unit": "GBP",
             "value": str(round_exposure(stale.notional)), "breached": w.stale_amount.above,
             "orders_breached": stale.orders},
        ]
        body: dict[str, Any] = {
            "updated_at": iso(now), "started_at": iso(self.started_at), "pid": os.getpid(), "ready": self.ready,
            "currency": "GBP",
            "rounding": "exposure exact in Decimal, reported rounded half-up to the penny; percentages to 4 places",
            "total_exposure": str(snap["total_exposure"]), "total_exposure_exact": str(self.book.total_exposure()),
            "max_divergence_pct": str(snap["max_divergence_pct"]),
            "oldest_pending_seconds": round(snap.get("oldest_pending_seconds", 0.0), 3),
            "pending_orders": snap["pending_orders"], "exposed_orders": snap["exposed_orders"],
            # Not zeros: orders whose exposure is unknown (no price at all) or rests on an old price. Notional
            # at the quote; `stale` (below) is about this summary's own age, hence `stale_price`.
            "unpriced": unpriced.as_json(),
            "stale_price": {**stale.as_json(), "after_seconds": self.watch.stale_after.total_seconds()},
            "thresholds": thresholds, "worst": rows, "double_executions": self._doubles_summary(),
            # What the pager (not the figures) is doing: idle, pending (held down) or firing (paged).
            "paging": {name: {"state": g.state, "began_at": None if g.began_at is None else iso(
                datetime.fromtimestamp(g.began_at, UTC))} for name, g in self.paging.groups.items()},
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

    def _flush_task(self, now: datetime) -> dict[str, Any]:
        """Everything one flush writes, taken under the lock so it is one consistent moment."""
        stamp = iso(now)
        writes, self._final_writes = self._final_writes, []
        for view in self.book.take_changes():
            peak = round_exposure(self._max_of(view.order_id, view.max_exposure))
            if peak > self.written_max.get(view.order_id, Decimal(0)):
                self.written_max[view.order_id] = peak
                writes.append(_exposure_item(view, peak, stamp))
        writes = list({w["order_id"]["S"]: w for w in writes}.values())  # a batch may not repeat a key
        unknown = self.watch.unknown(self.book, now)
        crossings = self.watch.on_book(self.book, now, unknown)
        if self.ready:
            self._pages += self.paging.on_book(self.book, now.timestamp(), now, unknown)
        self._gate(crossings)
        summary = self.summary(now, unknown=unknown)
        checkpoints = []
        for shard, seq in self.positions["prices"].items():
            prices = {s: [p, at] for s, (p, at, sh) in self.last_tick.items() if sh == shard}
            checkpoints.append({"order_id": {"S": price_checkpoint_key(shard)}, "sequence_number": {"S": seq},
                                "prices": {"S": json.dumps(prices, sort_keys=True)}, "updated_at": {"S": stamp}})
        if self.orders_arn and self.positions["orders"]:
            checkpoints.append({"order_id": {"S": ORDERS_CHECKPOINT_KEY}, "stream_arn": {"S": self.orders_arn},
                                "positions": {"S": json.dumps(self.positions["orders"], sort_keys=True)},
                                "updated_at": {"S": stamp}})
        malformed = self.counters["malformed_ticks"]
        metrics = [
            ("TotalExposureGbp", float(self.book.total_exposure()), "None"),
            ("MaxDivergencePct", float(self.book.max_divergence_pct()), "Percent"),
            ("OldestPendingOrderAgeSeconds", float(summary["oldest_pending_seconds"]), "Seconds"),
            ("MalformedTicks", float(malformed - self._malformed_published), "Count"),
        ]
        self._malformed_published = malformed
        return {"writes": writes, "summary": summary, "checkpoints": checkpoints, "metrics": metrics, "at": now}

    # ---- writer --------------------------------------------------------------------------------
    def _batch_write(self, items: list[dict[str, Any]]) -> None:
        for i in range(0, len(items), 25):
            puts = [{"PutRequest": {"Item": item}} for item in items[i:i + 25]]
            batch_write_all(self.aws.dynamodb, {self.table: puts}, what=f"write {self.table}")

    def _retrying(self, what: str, action: Callable[[], Any]) -> Any:
        """Retry an AWS write until it works (a checkpoint must not pass what it covers).

        Unbounded on purpose, but jittered and capped at 5 s between attempts (stamina). Once the
        monitor is stopping it does not retry (the stack may be going down with it): the checkpoint
        then stays behind this write and the next start replays it. Bad input is never retried.
        """
        def retry(exc: Exception) -> bool:
            if isinstance(exc, BadInput):
                return False
            with self.lock:
                self.counters["write_errors"] += 1
            if self.stop.is_set():
                return False
            log.warning("%s failed, retrying: %s", what, str(exc)[:200])
            return True

        return until_done(action, retry=retry)

    def _write(self, task: dict[str, Any]) -> None:
        self._retrying("write maxima", lambda: self._batch_write(task["writes"]))
        summary = json.dumps(task["summary"], sort_keys=True)
        self._retrying("write summary", lambda: self.aws.dynamodb.put_item(
            TableName=self.table, Item={"order_id": {"S": SUMMARY_KEY}, "body": {"S": summary},
                                        "updated_at": {"S": task["summary"]["updated_at"]}}))
        self._retrying("write checkpoints", lambda: self._batch_write(task["checkpoints"]))
        # An EMF log line (platform/metrics.py), not PutMetricData: no request, nothing to stall on.
        publish(self.names.metric_namespace, task["metrics"], at=task["at"])

    def _ledger(self, order: dict[str, Any], fallback: datetime) -> None:
        with bound(order_id=order.get("order_id")):  # every line about this fill names the order
            self._ledger_entry(order, fallback)

    def _ledger_entry(self, order: dict[str, Any], fallback: datetime) -> None:
        try:
            _, created = self._retrying(f"ledger entry for {order.get('order_id')}",
                                        lambda: self.ledger.record_fill(order, filled_at_fallback=fallback))
        except BadInput as exc:
            with self.lock:
                self.counters["ledger_errors"] += 1
            log.error("no ledger entry for order %s: %s", order.get("order_id"), exc)
            return
        with self.lock:
            self.counters["ledger_created" if created else "ledger_replayed"] += 1
        log.info("ledger entry %s for filled order %s", "created" if created else "already there",
                 order.get("order_id"))

    def _outbox_loop(self) -> None:
        failed = False
        while True:
            task = self._outbox.get()
            if task is None:
                return
            kind, payload = task
            try:
                if failed:
                    continue  # nothing after a lost write may be written: a checkpoint would skip it
                if kind == "ledger":
                    self._ledger(*payload)
                else:
                    self._write(payload)
            except Exception as exc:  # only when stopping: the checkpoint stays behind, a restart replays
                failed = True
                log.error("%s not written: %s", kind, str(exc)[:200])
            finally:
                if kind == "flush":
                    self._flush_pending.clear()

    def _alert_loop(self) -> None:
        while True:
            item = self._alert_queue.get()
            if item is None:
                return
            what, facts, paging = item
            try:
                if what == "crossings":
                    self.alerts.record_crossings(facts)
                    continue
                sent = sum(self.alerts.page(f, kind=f"exposure_{f['kind']}", stream="exposure", event="exposure_paged",
                                            subject=_page_subject(f)) for f in facts)
            except Exception as exc:  # this thread must outlive any one bad alert
                log.error("alerts not published: %s", str(exc)[:200])
                continue
            with self.lock:
                self.counters["alert_messages"] += sent
            with contextlib.suppress(Exception):
                self.aws.dynamodb.put_item(TableName=self.table, Item={
                    "order_id": {"S": ALERTS_KEY}, "paging": {"S": json.dumps(paging, default=str)},
                    "updated_at": {"S": iso(utcnow())}})

    # ---- loop ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._flush_pending.is_set():
            return  # the writer is behind; the next flush carries these changes too
        self._flush_pending.set()
        with self.lock:
            task = self._flush_task(utcnow())
        self._outbox.put(("flush", task))

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
                self._pages += self.paging.tick(time.time())  # a hold-down, recovery hold or repeat fell due
            self._gate(alerts)
            if not self.ready and self.orders.caught_up and self.prices.caught_up:
                self._reconcile(utcnow())
                log.info("ready: %d pending orders, total exposure %s GBP", len(self.pending),
                         round_exposure(self.book.total_exposure()))
        return self.orders.full or self.prices.full

    def start_threads(self) -> None:
        self._threads = [threading.Thread(target=self._outbox_loop, name="writer", daemon=True),
                         threading.Thread(target=self._alert_loop, name="alerts", daemon=True),
                         threading.Thread(target=self.pager.run, args=(self.stop,), name="broker-pager", daemon=True)]
        for thread in self._threads:
            thread.start()

    def run(self) -> None:
        """Follow both streams until ``stop`` is set, flushing about once a second; then a last flush."""
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
                self._flush()
                next_flush = time.monotonic() + FLUSH_SECONDS
            if not more:
                self.stop.wait(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        self._flush_pending.clear()
        self._flush()

    def shutdown(self, timeout: float = 4.0) -> None:
        """Let the writer and the alert thread finish their queues within ``timeout`` (a restart replays the rest)."""
        self._outbox.put(None)
        self._alert_queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def health(self) -> dict[str, Any]:
        """Cheap liveness and progress: readiness, counters and the stream positions applied so far."""
        with self.lock:
            return {"ok": True, "ready": self.ready, "pending_orders": len(self.pending),
                    "counters": {**dict(self.counters), "broker_pages": self.pager.pages_sent},
                    "broker_paging": {name: g.state for name, g in self.pager.paging.groups.items()},
                    "aws_requests": self.aws.counter.snapshot(),
                    "positions": {"prices": dict(self.positions["prices"]), "orders": dict(self.positions["orders"])}}


def read_summary(aws: Aws, names: Names | None = None) -> dict[str, Any] | None:
    """The monitor's last published summary (the ``#summary`` item), or None when there is none."""
    names = names or names_for(aws.settings)
    with aws_errors("read the exposure summary"):
        got = aws.dynamodb.get_item(TableName=names.exposure_table, Key={"order_id": {"S": SUMMARY_KEY}},
                                    ConsistentRead=True)
    item = got.get("Item")
    return json.loads(item["body"]["S"]) if item else None


# --------------------------------------------------------------------------------------- process


def _handler(monitor: Monitor) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        server_version = "tradeops-monitor"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/health":
                self.reply(200, monitor.health())
            elif url.path == "/snapshot":
                if not monitor.ready:
                    self.reply(503, {"ready": False, "error": "rebuilding"})
                    return
                orders = query.get("orders", [None])[0]
                prefix = query.get("prefix", [None])[0]
                with monitor.lock:
                    body = monitor.summary(orders="all" if orders == "all" else prefix)
                self.reply(200, body)
            else:
                self.reply(404, {"error": f"no such path {url.path}"})

    return Handler


def serve(settings: Settings, host: str, port: int) -> int:
    """Run the monitor and its HTTP endpoint until SIGTERM/SIGINT. Returns the exit code."""
    monitor = Monitor(settings)
    server = ThreadingHTTPServer((host, port), _handler(monitor))
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
