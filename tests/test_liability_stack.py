"""Liability management on the whole local stack: price feed, divergence monitor, alerts, ledger.

One scenario, in order (later tests build on the earlier ones' state): the order queue is paused
and 500 customer orders wait over the whole universe (the shipped LSE tickers); scripted moves and
malformed ticks go onto the price stream; the monitor's exposure is checked against what this module
computes itself from the ticks it reads from the Kinesis stream; the monitor is killed and restarted;
the queue resumes and every fill's ledger entry is checked against the formula; the fill events are
replayed; approvals run through the commands.

The feed and the monitor are the stack's own components (started and restarted by its
supervisor). The stack is shared with other modules: order ids are unique, flags are restored, and no
table is assumed empty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.support.orderflow import Flow
from tests.support.orderflow import wait_until as _wait
from tradeops.runtime.liability.exposuretable import ORDERS_CHECKPOINT_KEY
from tradeops.runtime.liability.prices import BATCH_SECONDS, Feed, parse_spike
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.universe import shipped_universe

REPO = Path(__file__).resolve().parent.parent
N_ORDERS = 500
# Symbols no other module trades (tests/orderflow.py trades ORDERFLOW_SYMBOLS), priced near 100 GBP.
SPIKE = "LSEG.L"  # the +5% move of the exposure and alert checks
FILL_SPIKE = "NXT.L"  # moved before the resume, so its waiting orders fill at a worse price
BAD_TICK_SYMBOL = "REL.L"
ORDER_PCT, ORDER_AMOUNT = Decimal(2), Decimal(500)  # the default thresholds the stack runs with
AUTO_APPROVE, DUAL_APPROVAL = Decimal(50), Decimal(1000)
PENNY = Decimal("0.01")
_de = TypeDeserializer()


# ---- the components under test ----------------------------------------------------------------


def _state(stack: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(stack["state_dir"]) / "stack.json").read_text())


class Components:
    """The stack's own price feed and divergence monitor (`tradeops up` starts and restarts them)."""

    def __init__(self, stack: dict[str, Any]) -> None:
        self.stack = stack
        self.env = dict(stack["env"])
        self.http = httpx.Client(timeout=10)
        state = _state(stack)
        self.prices_url = state["prices"]
        self.monitor_url = state["components"]["monitor"]["url"]
        self.env["TRADEOPS_PRICES_URL"] = self.prices_url

    def monitor_pid(self) -> int:
        return _state(self.stack)["components"]["monitor"]["pid"]

    def snapshot(self, **params: str) -> dict[str, Any]:
        """The monitor's live summary once it is rebuilt (``orders="all"`` adds every pending order)."""
        def ready() -> dict[str, Any] | None:
            try:
                r = self.http.get(f"{self.monitor_url}/snapshot", params=params)
            except httpx.HTTPError:
                return None
            return r.json() if r.status_code == 200 else None
        return _wait("the monitor's snapshot", ready, 60, every=0.05)

    def crash_monitor(self, before_restart: Any = None) -> None:
        """Kill the monitor outright (SIGKILL, no last flush); the stack's supervisor brings up a new one."""
        old = self.monitor_pid()
        os.kill(old, signal.SIGSTOP)  # frozen first, so that nothing it had in flight lands after `before_restart`
        time.sleep(0.3)
        if before_restart is not None:
            before_restart()
        os.kill(old, signal.SIGKILL)
        _wait("the supervisor to restart the monitor", lambda: self.monitor_pid() != old, 30)
        _wait("the new monitor", lambda: self.snapshot().get("pid") != old, 60)

    def close(self) -> None:
        self.http.close()


# ---- what this module computes itself from the stream -----------------------------------------


def tick_of(data: bytes, universe: frozenset[str]) -> tuple[str, Decimal, datetime] | None:
    """A tick as this module reads it independently of tradeops.runtime.liability.ticks: None when malformed."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("symbol") not in universe or not isinstance(doc.get("price"), str):
        return None
    try:
        price = Decimal(doc["price"])
        at = datetime.fromisoformat(doc["at"])
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not price.is_finite() or price <= 0 or at.tzinfo is None:
        return None
    return doc["symbol"], price, at


@dataclass
class Tape:
    """Every record of the price stream, read by this module through the Kinesis API (all shards)."""

    kinesis: Any
    stream: str
    universe: frozenset[str]
    records: dict[str, list[tuple[int, bytes, datetime]]] = field(default_factory=dict)
    iterators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            sid = shard["ShardId"]
            self.records[sid] = []
            self.iterators[sid] = self.kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def pull(self) -> None:
        for sid, iterator in self.iterators.items():
            while True:
                got = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                iterator = got["NextShardIterator"]
                self.records[sid] += [(int(r["SequenceNumber"]), r["Data"], r["ApproximateArrivalTimestamp"])
                                      for r in got["Records"]]
                if not got["Records"]:
                    break
            self.iterators[sid] = iterator

    def upto(self, positions: dict[str, str]) -> None:
        """Read until the tape holds every record up to ``positions`` (a monitor's applied positions)."""
        def enough() -> bool:
            self.pull()
            return all(self.records[s] and self.records[s][-1][0] >= int(seq) for s, seq in positions.items())
        _wait("the tape to reach the monitor's position", enough, 10)

    def timelines(self, positions: dict[str, str]) -> dict[str, list[tuple[Decimal, datetime]]]:
        """Per symbol, the valid ticks up to ``positions`` in stream order, a tick older than the latest skipped."""
        out: dict[str, list[tuple[Decimal, datetime]]] = defaultdict(list)
        for sid, records in self.records.items():
            limit = int(positions.get(sid, 0))
            for seq, data, _arrival in records:
                if seq > limit:
                    break
                tick = tick_of(data, self.universe)
                if tick is None:
                    continue
                symbol, price, at = tick
                if out[symbol] and at < out[symbol][-1][1]:
                    continue
                out[symbol].append((price, at))
        return out

    def find(self, symbol: str, price: Decimal, after: datetime) -> tuple[str, int, datetime]:
        """(shard, seq, arrival) of the first tick of ``symbol`` at exactly ``price`` published after ``after``."""
        def seen() -> tuple[str, int, datetime] | None:
            self.pull()
            for sid, records in self.records.items():
                for seq, data, arrival in records:
                    tick = tick_of(data, self.universe)
                    if tick and tick[0] == symbol and tick[1] == price and tick[2] >= after:
                        return sid, seq, arrival
            return None
        return _wait(f"{symbol} at {price} on the stream", seen, 15, every=0.02)


@dataclass(frozen=True)
class Order:
    order_id: str
    symbol: str
    side: str
    quantity: int
    quote: Decimal
    placed_at: datetime

    def exposure(self, price: Decimal) -> Decimal:
        diff = price - self.quote if self.side == "BUY" else self.quote - price
        return max(Decimal(0), diff * self.quantity)

    def pct(self, price: Decimal) -> Decimal:
        diff = price - self.quote if self.side == "BUY" else self.quote - price
        return max(Decimal(0), diff * 100 / self.quote)

    def seen(self, timelines: dict[str, list[tuple[Decimal, datetime]]]) -> list[Decimal]:
        """The prices this order has been evaluated at: its symbol's ticks at or after it was placed."""
        return [p for p, at in timelines.get(self.symbol, []) if at >= self.placed_at]

    def current(self, timelines: dict[str, list[tuple[Decimal, datetime]]]) -> Decimal:
        ticks = timelines.get(self.symbol, [])
        if not ticks or ticks[-1][1] < self.placed_at:
            return Decimal(0)
        return self.exposure(ticks[-1][0])


def order_of(item: dict[str, Any]) -> Order:
    raw = {k: _de.deserialize(v) for k, v in item.items()}
    return Order(raw["order_id"], raw["symbol"], raw["side"], int(raw["quantity"]), raw["quote_price"],
                 datetime.fromisoformat(raw["placed_at"]))


def crossings(values: list[Decimal], threshold: Decimal) -> tuple[int, int]:
    """(up, down) crossings of ``threshold`` by ``values``, starting from not above it."""
    above, up, down = False, 0, 0
    for value in values:
        if (value > threshold) != above:
            above = not above
            up, down = up + above, down + (not above)
    return up, down


def _wait_paging_idle(parts: Components, *names: str) -> None:
    """Until no liability threshold (of ``names``, default all) has a paging episode open (a recovery to come)."""
    _wait("the paging episodes to end", lambda: all(
        g["state"] == "idle" for n, g in parts.snapshot()["paging"].items() if not names or n in names), 40,
        every=0.5)


# ---- the scenario -------------------------------------------------------------------------------


@dataclass
class Scenario:
    stack: dict[str, Any]
    flow: Flow
    parts: Components
    tape: Tape
    aws: dict[str, Any]
    universe: frozenset[str]
    prefix: str
    alert_queue: str
    orders: dict[str, Order] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    saved: dict[str, Any] = field(default_factory=dict)
    big_medium: tuple[str, str] = ("", "")  # FILL_SPIKE's first two BUYs: made large enough to need approvers

    def batch_get(self, table: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 100):
            request = {table: {"Keys": [{"order_id": {"S": k}} for k in ids[i:i + 100]], "ConsistentRead": True}}
            while request:
                got = self.aws["dynamodb"].batch_get_item(RequestItems=request)
                for item in got["Responses"].get(table, []):
                    found[item["order_id"]["S"]] = item
                request = got.get("UnprocessedKeys") or {}
        return found

    def check_exposure(self, snap: dict[str, Any]) -> dict[str, list[tuple[Decimal, datetime]]]:
        """The monitor's per-order and total exposure equal this module's computation at the same position."""
        positions = snap["positions"]["prices"]
        self.tape.upto(positions)
        timelines = self.tape.timelines(positions)
        listed = snap["orders"]
        assert set(self.orders) <= set(listed), "some of our waiting orders are not tracked"
        for order in self.orders.values():
            assert Decimal(listed[order.order_id]["exposure"]) == order.current(timelines), order
        # The total covers every pending order (other modules' too): details read from the orders table.
        others = self.batch_get("tradeops-orders", [o for o in listed if o not in self.orders])
        everyone = [*self.orders.values(), *(order_of(item) for item in others.values())]
        assert len(everyone) == snap["pending_orders"]
        expected = sum((o.current(timelines) for o in everyone), Decimal(0))
        assert Decimal(snap["total_exposure_exact"]) == expected
        assert Decimal(snap["total_exposure"]) == expected.quantize(PENNY, rounding=ROUND_HALF_UP)
        return timelines

    def drain_alerts(self) -> list[dict[str, Any]]:
        sqs = self.aws["sqs"]
        while True:
            got = sqs.receive_message(QueueUrl=self.alert_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return self.alerts
            for m in messages:
                body = json.loads(m["Body"])
                kind = body.get("MessageAttributes", {}).get("kind", {}).get("Value", "")
                if kind.startswith("exposure_"):
                    self.alerts.append({"subject": body.get("Subject"), **json.loads(body["Message"])})
            sqs.delete_message_batch(QueueUrl=self.alert_queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])

    def events(self, stream: str) -> list[dict[str, Any]]:
        """Every event of ``stream`` since this scenario began (the exact timeline drills read)."""
        items, kwargs = [], {"TableName": "tradeops-events", "KeyConditionExpression": "#s = :s AND at_id > :a",
                             "ExpressionAttributeNames": {"#s": "stream"},
                             "ExpressionAttributeValues": {":s": {"S": stream}, ":a": {"S": self.saved["began"]}}}
        while True:
            page = self.aws["dynamodb"].query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return [json.loads(i["body"]["S"]) for i in items]
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def cli(self, *args: str, operator: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.parts.env)
        if args[:2] in (("reimbursements", "approve"), ("reimbursements", "reject")):
            args = (*args, "--yes")  # no terminal to confirm on
        if operator:
            env["TRADEOPS_OPERATOR"] = operator
        return subprocess.run(["tradeops", *args], env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.fixture(scope="module")
def scenario(shared_stack: dict[str, Any]) -> Any:
    flow = Flow(shared_stack)
    flow.reset()
    parts = Components(shared_stack)
    kw = dict(endpoint_url=shared_stack["aws_endpoint"], region_name=shared_stack["region"],
              aws_access_key_id="testing", aws_secret_access_key="testing")
    aws = {name: boto3.client(name, **kw) for name in ("kinesis", "dynamodb", "sqs", "sns", "sts")}
    # Our own subscriber on the alert topic, to count what reaches a human.
    queue_url = aws["sqs"].create_queue(QueueName=f"liability-alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    account = aws["sts"].get_caller_identity()["Account"]
    topic = f"arn:aws:sns:{shared_stack['region']}:{account}:tradeops-alerts"
    subscription = aws["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    flow.roster({"fiona": ["finance"], "gary": ["finance"], "hank": ["ops-manager"], "tradeops-monitor": ["finance"]})
    universe = frozenset(parts.http.get(f"{parts.prices_url}/prices").json()["prices"])
    tape = Tape(aws["kinesis"], "tradeops-prices", universe)
    sc = Scenario(shared_stack, flow, parts, tape, aws, universe, flow.unique("liab"), queue_url)
    sc.saved["began"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        yield sc
    finally:
        flow.reset()
        aws["sns"].unsubscribe(SubscriptionArn=subscription)
        aws["sqs"].delete_queue(QueueUrl=queue_url)
        parts.close()


# ---- the feed's schedule and moves (no stack needed) -------------------------------------------


SYMS = [f"SYM{n}" for n in range(10)]


def test_feed_is_seeded_and_opens_with_every_symbol():
    """The same seed gives the same ticks; the first batch carries every symbol once, the next ones the rate."""
    one, two = Feed(SYMS, seed=7, ticks_per_second=4), Feed(SYMS, seed=7, ticks_per_second=4)
    at = datetime(2026, 11, 25, tzinfo=UTC)
    batches = [[one.next_batch(0.5, now=float(i), at=at) for i in range(6)],
               [two.next_batch(0.5, now=float(i), at=at) for i in range(6)]]
    assert batches[0] == batches[1]
    opening, rest = batches[0][0], batches[0][1:]
    assert [t["symbol"] for t in opening] == SYMS and {t["seq"] for t in opening} == {1}
    assert all(Decimal("95.00") <= Decimal(t["price"]) <= Decimal("105.00") for t in opening)
    assert [len(b) for b in rest] == [2, 2, 2, 2, 2]  # 4 ticks/s in 0.5 s batches, round robin
    assert [t["symbol"] for b in rest for t in b] == SYMS
    other = Feed(SYMS, seed=8, ticks_per_second=4).next_batch(0.5, at=at)
    assert [t["price"] for t in other] != [t["price"] for t in opening]


def test_spike_moves_linearly_to_its_exact_target_then_the_walk_resumes():
    """A spike replaces the walk: it ticks every batch, moves linearly, ends exactly at the target."""
    feed = Feed(SYMS, seed=7, ticks_per_second=0)
    at = datetime(2026, 11, 25, tzinfo=UTC)
    start = Decimal(feed.next_batch(0, now=0.0, at=at)[3]["price"])
    spike = feed.spike("SYM3", Decimal(10), 2.0, now=100.0)
    assert spike.target == (start * Decimal("1.1")).quantize(PENNY)
    path = [feed.next_batch(0.5, now=100.0 + t, at=at) for t in (0.5, 1.0, 1.5, 2.0, 2.5)]
    assert [len(b) for b in path] == [1, 1, 1, 1, 0]  # rate 0: only the move ticks, until it is done
    prices = [Decimal(b[0]["price"]) for b in path[:4]]
    assert prices[1] == (start + (spike.target - start) / 2).quantize(PENNY) and prices[-1] == spike.target
    assert prices == sorted(prices) and feed.spikes() == []
    assert Decimal(feed.prices()["SYM3"]) == spike.target


@pytest.mark.parametrize("body", [
    {"symbol": "SYM99", "pct": 5}, {"symbol": "SYM1", "pct": "x"}, {"symbol": "SYM1", "pct": -100},
    {"symbol": "SYM1", "pct": 5, "over_seconds": 3601}, {"symbol": "SYM1", "pct": True},
    {"symbol": "SYM1", "pct": 5, "extra": 1}, {"symbol": "SYM1", "pct": "Infinity"}, "SYM1",
])
def test_spike_requests_are_validated(body):
    """A spike request names a published symbol and sane numbers, or it is refused with a reason."""
    with pytest.raises(BadInput):
        parse_spike(body, SYMS)
    assert parse_spike({"symbol": "SYM1", "pct": "-2.5", "over_seconds": 10}, SYMS) == ("SYM1", Decimal("-2.5"), 10.0)


# ---- the scenario on the stack ------------------------------------------------------------------


def test_price_feed_control_api_refuses_bad_moves(scenario: Scenario):
    """POST /spike answers 400 with a reason for an unknown symbol or bad numbers; /health and /prices answer."""
    http, url = scenario.parts.http, scenario.parts.prices_url
    for body in ({"symbol": "NOPE", "pct": 5, "over_seconds": 1}, {"symbol": SPIKE, "pct": "abc"},
                 {"symbol": SPIKE, "pct": -100}, {"symbol": SPIKE, "pct": 5, "over_seconds": -1},
                 {"symbol": SPIKE, "pct": "NaN"}, [1, 2]):
        r = http.post(f"{url}/spike", json=body)
        assert r.status_code == 400 and r.json()["error"], body
    assert http.post(f"{url}/spike", content=b"{not json", headers={"Content-Type": "application/json"}
                     ).status_code == 400
    health = http.get(f"{url}/health").json()
    assert health["ok"] and health["published"] > 0 and health["put_failures"] == 0
    assert set(http.get(f"{url}/prices").json()["prices"]) == scenario.universe
    assert scenario.universe == {i.ticker for i in shipped_universe()}
    bad = scenario.cli("prices", "spike", "NOPE", "--pct", "5")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown symbol")


def test_paused_orders_are_tracked_with_exact_exposure(scenario: Scenario):
    """500 orders waiting in a paused queue over the whole universe are tracked, each at the exposure the ticks
    give."""
    flow, parts = scenario.flow, scenario.parts
    flow.flag("processing", "paused")
    time.sleep(1.5)  # workers see the flag within flag_refresh_seconds and stop taking messages
    prices = parts.http.get(f"{parts.prices_url}/prices").json()["prices"]
    symbols = sorted(scenario.universe)

    def side(n: int) -> str:
        return "BUY" if (n // len(symbols)) % 2 == 0 else "SELL"

    big, medium = [n for n in range(N_ORDERS) if symbols[n % len(symbols)] == FILL_SPIKE and side(n) == "BUY"][:2]
    scenario.big_medium = (f"{scenario.prefix}-{big}", f"{scenario.prefix}-{medium}")

    def body(n: int) -> dict[str, Any]:
        symbol = symbols[n % len(symbols)]
        quantity = 1 + (n * 7) % 13
        if n in (big, medium):  # big enough to need one and two approvers after the move
            quantity = 1000 if n == big else 30
        return {"order_id": f"{scenario.prefix}-{n}", "account_id": f"acc-{n % 23}", "symbol": symbol,
                "side": side(n), "quantity": quantity,
                "quote_price": prices[symbol]}  # what the customer was shown: the feed's price now

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: flow.post(body(n)), range(N_ORDERS)))
    items = scenario.batch_get("tradeops-orders", [f"{scenario.prefix}-{n}" for n in range(N_ORDERS)])
    assert {_de.deserialize(i["status"]) for i in items.values()} == {"ACCEPTED"}
    scenario.orders = {oid: order_of(item) for oid, item in items.items()}
    assert {o.symbol for o in scenario.orders.values()} == set(symbols)
    _wait("the monitor to track all our orders", lambda: all(
        o in parts.snapshot(prefix=scenario.prefix)["orders"] for o in scenario.orders), 30, every=0.3)
    scenario.check_exposure(parts.snapshot(orders="all"))


def test_spike_exposure_is_exact_within_one_tick_interval(scenario: Scenario):
    """A scripted +5% move in one symbol: per-order and total exposure equal the independent computation,
    and the monitor reflects the move within one tick interval of it reaching the stream."""
    parts = scenario.parts
    samples: list[tuple[float, dict[str, str]]] = []
    stop = threading.Event()

    def watch_positions() -> None:  # when did the monitor first show each position?
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                samples.append((time.time(), http.get(f"{parts.monitor_url}/health").json()["positions"]["prices"]))
                time.sleep(0.02)

    watcher = threading.Thread(target=watch_positions, daemon=True)
    watcher.start()
    try:
        started = datetime.now(UTC)
        moved = scenario.cli("prices", "spike", SPIKE, "--pct", "5", "--over", "1s", "--json")
        assert moved.returncode == 0, moved.stderr
        target = Decimal(json.loads(moved.stdout)["to"])
        shard, seq, arrival = scenario.tape.find(SPIKE, target, started)
        _wait("the monitor to apply the move", lambda: any(int(p.get(shard, 0)) >= seq for _, p in samples), 10)
    finally:
        stop.set()
        watcher.join(5)
    applied = min(t for t, p in samples if int(p.get(shard, 0)) >= seq)
    latency = applied - arrival.timestamp()
    assert latency <= BATCH_SECONDS, f"the monitor took {latency:.3f}s (tick interval {BATCH_SECONDS}s)"

    snap = parts.snapshot(orders="all")
    timelines = scenario.check_exposure(snap)
    moved_orders = [o for o in scenario.orders.values() if o.symbol == SPIKE and o.side == "BUY"]
    assert moved_orders and all(Decimal(snap["orders"][o.order_id]["exposure"]) > 0 for o in moved_orders)
    for order in moved_orders:  # the per-order maximum follows the move too
        assert Decimal(snap["orders"][order.order_id]["max_exposure"]) == max(
            order.exposure(p) for p in order.seen(timelines))
    breached = {t["name"]: t["breached"] for t in snap["thresholds"]}
    assert breached["order_pct"] is True


def test_every_crossing_is_recorded_and_the_moved_orders_page_once(scenario: Scenario):
    """While a move stays above the per-order threshold over many ticks and then comes back, every crossing and
    recovery is recorded as an event exactly as the independent computation has them (nothing damped), while
    the pages are one breach naming every moved order and, after the recovery hold, one recovery."""
    parts, tape = scenario.parts, scenario.tape
    started = datetime.now(UTC)
    # Keep the symbol above the threshold for several more ticks (a spike ticks every batch).
    scenario.cli("prices", "spike", SPIKE, "--pct", "0.5", "--over", "2s")
    time.sleep(2.5)
    current = Decimal(parts.http.get(f"{parts.prices_url}/prices").json()["prices"][SPIKE])
    moved_orders = [o for o in scenario.orders.values() if o.symbol == SPIKE and o.side == "BUY"]
    back_to = min(o.quote for o in moved_orders)
    back = scenario.cli("prices", "spike", SPIKE, "--pct", str(((back_to / current - 1) * 100).quantize(
        Decimal("0.0001"))), "--over", "1s", "--json")
    assert back.returncode == 0, back.stderr
    shard, seq, _ = tape.find(SPIKE, Decimal(json.loads(back.stdout)["to"]), started)
    _wait("the monitor to apply the way back", lambda: int(parts.snapshot()["positions"]["prices"][shard]) >= seq, 10)
    time.sleep(2.0)  # events are recorded off the tick path; let them land

    snap = parts.snapshot(orders="all")
    timelines = scenario.check_exposure(snap)
    got: Counter[tuple[str, str, str]] = Counter()
    for event in scenario.events("exposure"):
        if event["kind"] in ("exposure_breach", "exposure_recovery"):
            for oid in event.get("order_ids") or [event.get("order_id")]:
                if oid in scenario.orders:
                    got[(event["threshold"], oid, event["kind"].removeprefix("exposure_"))] += 1
    expected: Counter[tuple[str, str, str]] = Counter()
    for order in scenario.orders.values():
        prices = order.seen(timelines)
        for name, values, limit in (("order_pct", [order.pct(p) for p in prices], ORDER_PCT),
                                    ("order_amount", [order.exposure(p) for p in prices], ORDER_AMOUNT)):
            up, down = crossings(values, limit)
            if up:
                expected[(name, order.order_id, "breach")] = up
            if down:
                expected[(name, order.order_id, "recovery")] = down
    assert got == expected
    ticks_above = [len([p for p in o.seen(timelines) if o.pct(p) > ORDER_PCT]) for o in moved_orders]
    assert min(ticks_above) >= 3, "the move should have stayed above the threshold for several ticks"

    def pages() -> list[dict[str, Any]]:
        return [a for a in scenario.drain_alerts() if a.get("threshold") == "order_pct"
                and {o.order_id for o in moved_orders} & {*(a.get("orders") or []), *(a.get("new_orders") or [])}]
    _wait("the recovery page", lambda: "exposure_recovery" in {a["kind"] for a in pages()}, 20, every=0.5)
    assert [a["kind"] for a in pages()] == ["exposure_breach", "exposure_recovery"]
    breach, recovery = pages()
    assert set(breach["new_orders"]) >= {o.order_id for o in moved_orders} and breach["orders_breached"] >= 2
    assert set(recovery["orders"]) >= {o.order_id for o in moved_orders}
    assert breach["subject"].startswith("tradeops exposure breach: order_pct (")
    assert {"symbol", "side", "quote_price", "price", "exposure", "divergence_pct"} <= set(breach["worst"][0])
    assert breach["dedup_key"] == recovery["dedup_key"] == "tradeops/exposure/order_pct"
    assert breach["began_at"] == recovery["began_at"] and breach["limit"] == str(ORDER_PCT)
    _wait_paging_idle(parts, "order_pct")


def test_malformed_ticks_are_counted_skipped_and_change_nothing(scenario: Scenario):
    """Ticks with no symbol, a negative or non-numeric price, an unknown symbol, or no JSON at all are counted
    and skipped: the monitor stays up and exposure is still exactly what the valid ticks give."""
    parts = scenario.parts
    before = parts.snapshot()["counters"]
    now = datetime.now(UTC).isoformat()
    bad = [
        (BAD_TICK_SYMBOL, {"price": "101.00", "at": now}),
        (BAD_TICK_SYMBOL, {"symbol": BAD_TICK_SYMBOL, "price": "-5.00", "at": now}),
        (BAD_TICK_SYMBOL, {"symbol": BAD_TICK_SYMBOL, "price": "abc", "at": now}),
        (BAD_TICK_SYMBOL, {"symbol": BAD_TICK_SYMBOL, "price": "0", "at": now}),
        ("NOPE", {"symbol": "NOPE", "price": "100.00", "at": now}),
        (BAD_TICK_SYMBOL, "not json at all"),
    ]
    put = scenario.aws["kinesis"].put_records(StreamName="tradeops-prices", Records=[
        {"PartitionKey": key, "Data": (body if isinstance(body, str) else json.dumps(body)).encode()}
        for key, body in bad])
    assert put["FailedRecordCount"] == 0
    last: dict[str, int] = {}
    for record in put["Records"]:
        last[record["ShardId"]] = max(last.get(record["ShardId"], 0), int(record["SequenceNumber"]))
    _wait("the monitor to read the bad ticks", lambda: all(
        int(parts.snapshot()["positions"]["prices"].get(s, 0)) >= q for s, q in last.items()), 10)
    snap = parts.snapshot(orders="all")
    after = snap["counters"]
    assert after["malformed_ticks"] - before.get("malformed_ticks", 0) == len(bad)
    grew = Counter(after["malformed_reasons"]) - Counter(before.get("malformed_reasons", {}))
    assert {"missing symbol", "positive", "not a number", "unknown symbol", "not JSON"} <= set(grew)
    assert parts.http.get(f"{parts.monitor_url}/health").json()["ok"]
    scenario.check_exposure(snap)


def test_exposure_command_shows_the_live_picture(scenario: Scenario):
    """`exposure --json` gives the monitor's published summary; `exposure` and `--watch` render it."""
    def published() -> dict[str, Any] | None:
        done = scenario.cli("exposure", "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        return summary if summary["pending_orders"] >= N_ORDERS and not summary["stale"] else None
    summary = _wait("the summary to include our orders", published, 10, every=0.5)
    assert summary["currency"] == "GBP" and len(summary["worst"]) <= 20
    assert {t["name"] for t in summary["thresholds"]} == {"order_pct", "order_amount", "total_amount",
                                                          "oldest_age_seconds", "unpriced_amount", "stale_amount"}
    # Every order of the scenario has a fresh price: none is unpriced or priced stale.
    assert summary["unpriced"]["orders"] == 0 and summary["stale_price"]["orders"] == 0
    assert {"order_id", "symbol", "side", "quote_price", "price", "divergence_pct", "exposure",
            "waited_seconds"} <= set(summary["worst"][0])
    shown = scenario.cli("exposure", "--top", "5")
    assert shown.returncode == 0 and "Total exposure" in shown.stdout and "order_pct" in shown.stdout
    watched = scenario.cli("exposure", "--watch", "--refreshes", "1")
    assert watched.returncode == 0 and "Total exposure" in watched.stdout, watched.stderr
    assert scenario.cli("exposure", "--watch", "--json").returncode == 2


def test_monitor_restarted_mid_run_reports_the_same_totals(scenario: Scenario):
    """Killed without warning and restarted, the monitor rebuilds pending orders, maxima and prices and
    reports exactly the exposure the ticks give, with no order's maximum lost and no alert repeated."""
    parts = scenario.parts
    before = parts.snapshot(orders="all")
    scenario.check_exposure(before)
    alerts_before = len(scenario.drain_alerts())
    parts.crash_monitor()
    after = parts.snapshot(orders="all")
    assert after["pid"] != before["pid"]
    assert set(after["orders"]) == set(before["orders"])
    timelines = scenario.check_exposure(after)
    for oid, row in before["orders"].items():
        assert Decimal(after["orders"][oid]["max_exposure"]) >= Decimal(row["max_exposure"])
    for order in scenario.orders.values():
        if order.symbol == SPIKE and order.side == "BUY":
            peak = max(order.exposure(p) for p in order.seen(timelines))
            assert Decimal(after["orders"][order.order_id]["max_exposure"]).quantize(PENNY) == peak.quantize(
                PENNY, rounding=ROUND_HALF_UP)
    time.sleep(1.5)
    assert len(scenario.drain_alerts()) == alerts_before, "a restart must not announce a breach again"


def test_after_resume_every_fill_has_its_ledger_entry(scenario: Scenario):
    """Resumed, every waiting order fills at the feed's price, and each has one ledger entry equal to
    the formula (adverse difference x quantity, rounded up to the penny, GBP) with the time it waited."""
    parts, flow = scenario.parts, scenario.flow
    started = datetime.now(UTC)
    moved = scenario.cli("prices", "spike", FILL_SPIKE, "--pct", "5", "--over", "0.5s", "--json")
    target = Decimal(json.loads(moved.stdout)["to"])
    scenario.tape.find(FILL_SPIKE, target, started)
    time.sleep(BATCH_SECONDS * 2)  # the brokers are pinned after the batch that carried it
    checkpoint = scenario.aws["dynamodb"].get_item(TableName="tradeops-exposure",
                                                   Key={"order_id": {"S": ORDERS_CHECKPOINT_KEY}})["Item"]
    scenario.saved["orders_checkpoint"] = checkpoint
    flow.flag("processing", "running")
    finals = flow.wait_final(list(scenario.orders), timeout=150)
    assert {o["status"] for o in finals.values()} == {"FILLED"}
    ids = list(scenario.orders)
    entries = _wait("a ledger entry for every fill", lambda: (
        found if len(found := scenario.batch_get("tradeops-reimbursements", ids)) == len(ids) else None),
        60, every=1.0)
    filled = scenario.batch_get("tradeops-orders", ids)
    statuses = Counter()
    for oid, item in filled.items():
        order = {k: _de.deserialize(v) for k, v in item.items()}
        entry = {k: _de.deserialize(v) for k, v in entries[oid].items()}
        quote, fill, qty = order["quote_price"], order["fill_price"], int(order["quantity"])
        diff = fill - quote if order["side"] == "BUY" else quote - fill
        amount = max(Decimal(0), diff * qty).quantize(PENNY, rounding=ROUND_UP)
        assert entry["amount"] == amount, (oid, entry["amount"], amount)
        assert (entry["fill_price"], entry["quote_price"], entry["currency"]) == (fill, quote, "GBP")
        waited = datetime.fromisoformat(order["filled_at"]) - datetime.fromisoformat(order["placed_at"])
        assert abs(entry["waited_seconds"] - Decimal(str(waited.total_seconds()))) < Decimal("0.002")
        status = ("NOTHING_DUE" if amount == 0 else "APPROVED" if amount <= AUTO_APPROVE else "PENDING_APPROVAL")
        assert entry["status"] == status
        assert int(entry["required_approvals"]) == (2 if amount > DUAL_APPROVAL else 1 if amount > AUTO_APPROVE
                                                    else 0)
        statuses[status] += 1
    # The brokers fill at prices the feed published: every fill price is one of its symbol's ticks.
    scenario.tape.pull()
    published = scenario.tape.timelines({s: str(r[-1][0]) for s, r in scenario.tape.records.items() if r})
    for oid, item in filled.items():
        order = scenario.orders[oid]
        assert _de.deserialize(item["fill_price"]) in {p for p, _ in published[order.symbol]}, oid
    big, medium = scenario.big_medium
    # A delayed order really fills at a different price: the moved symbol's waiting BUYs paid the move.
    assert _de.deserialize(entries[big]["amount"]) > DUAL_APPROVAL
    assert AUTO_APPROVE < _de.deserialize(entries[medium]["amount"]) <= DUAL_APPROVAL
    assert statuses["APPROVED"] and statuses["NOTHING_DUE"]
    # The exposure table keeps each order's maximum while it waited (the moved symbol's BUYs: the move's peak).
    maxima = scenario.batch_get("tradeops-exposure", list(scenario.orders))
    for order in (o for o in scenario.orders.values() if o.symbol == SPIKE and o.side == "BUY"):
        filled_at = datetime.fromisoformat(_de.deserialize(filled[order.order_id]["filled_at"]))
        seen = [p for p, at in published.get(order.symbol, []) if order.placed_at <= at <= filled_at]
        peak = max((order.exposure(p) for p in seen), default=Decimal(0)).quantize(PENNY, rounding=ROUND_HALF_UP)
        assert _de.deserialize(maxima[order.order_id]["max_exposure"]) == peak, order
    scenario.saved["entries"] = entries
    assert parts.snapshot(prefix=scenario.prefix)["orders"] == {}


def test_replayed_fill_events_create_no_second_entry(scenario: Scenario):
    """Restarted from a checkpoint before the fills, the monitor replays every fill event: none pays twice,
    and the replayed history of orders that have long filled raises no alert."""
    parts = scenario.parts
    table = "tradeops-exposure"
    _wait_paging_idle(parts)  # the moved orders filled: their recovery is paged after the recovery hold
    time.sleep(1.5)
    alerts_before = len(scenario.drain_alerts())

    def rewind() -> None:
        scenario.aws["dynamodb"].put_item(TableName=table, Item=scenario.saved["orders_checkpoint"])

    parts.crash_monitor(before_restart=rewind)

    def replayed() -> dict[str, Any] | None:
        counters = parts.snapshot()["counters"]
        done = counters.get("ledger_created", 0) + counters.get("ledger_replayed", 0) + counters.get(
            "ledger_errors", 0)
        return counters if counters.get("fills_seen", 0) >= N_ORDERS and done >= counters["fills_seen"] else None
    counters = _wait("the replay to reach the ledger", replayed, 60, every=0.5)
    assert counters.get("ledger_replayed", 0) >= N_ORDERS and counters.get("ledger_errors", 0) == 0
    now = scenario.batch_get("tradeops-reimbursements", list(scenario.orders))
    assert now == scenario.saved["entries"]
    time.sleep(1.5)
    assert len(scenario.drain_alerts()) == alerts_before


def test_approvals_enforce_limits_and_distinct_approvers(scenario: Scenario):
    """On the real entries: no finance role, the requester, or a repeated approver are refused (exit 2);
    one approver settles a single-approval entry, two distinct ones a dual-approval entry."""
    big, medium = scenario.big_medium
    refused = [
        scenario.cli("reimbursements", "approve", medium, operator="hank"),              # not finance
        scenario.cli("reimbursements", "approve", medium, operator="tradeops-monitor"),  # the requester
    ]
    for done in refused:
        assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "requested" in refused[1].stderr
    assert scenario.cli("reimbursements", "approve", medium, operator="fiona").returncode == 0
    first = scenario.cli("reimbursements", "approve", big, "--json", operator="fiona")
    assert first.returncode == 0 and json.loads(first.stdout)["status"] == "PENDING_APPROVAL"
    again = scenario.cli("reimbursements", "approve", big, operator="fiona")
    assert again.returncode == 2 and "already approved" in again.stderr
    second = scenario.cli("reimbursements", "approve", big, "--json", operator="gary")
    assert second.returncode == 0 and json.loads(second.stdout)["status"] == "APPROVED"
    listed = scenario.cli("reimbursements", "list", "--status", "APPROVED", "--json")
    approved = {e["order_id"]: e for e in json.loads(listed.stdout)}
    assert [a["approver"] for a in approved[big]["approvals"]] == ["fiona", "gary"]
    assert [a["approver"] for a in approved[medium]["approvals"]] == ["fiona"]
    exported = scenario.cli("reimbursements", "export", "--csv", "-")
    assert exported.returncode == 0
    rows = [line for line in exported.stdout.splitlines() if line.startswith(scenario.prefix)]
    assert len(rows) == N_ORDERS
