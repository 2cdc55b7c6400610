"""The simulated market-data publisher: seeded random walks on the Kinesis price stream.

Run as ``python -m tradeops.runtime.liability.prices --host 127.0.0.1 --port P`` (``tradeops up`` starts it).

Ticks
    One JSON record per tick, ``{"symbol": "VOD.L", "price": "0.72", "at": "...Z", "seq": 17}``
    (price a decimal string with 2 places, GBP; ``at`` UTC; ``seq`` counts that symbol's ticks
    since the publisher started), put with PutRecords, partition key = symbol, so every tick of a
    symbol lands on one shard in order. This is exactly what :func:`tradeops.runtime.liability.ticks.parse_tick`
    reads.

Rate
    The feed publishes one batch every ``BATCH_SECONDS`` (its tick interval). The first batch holds
    every symbol of ``settings.symbol_list`` once, so the stream and the brokers know every price
    from the start; after that the symbols take turns (round robin) so that the feed as a whole
    publishes ``settings.price_ticks_per_second`` ticks a second (0 stops the walks). Each walk
    starts at the symbol's price in the shipped universe (:mod:`tradeops.runtime.platform.universe`;
    a ticker it does not list starts between 95.00 and 105.00) and moves by -0.1 %..+0.1 % per tick,
    seeded per symbol from ``settings.price_seed``, so a run is reproducible. The walk itself is exact;
    what is published is it to the penny (the brokers deal in pennies), so a cheap share's price
    moves by a penny now and then, as a real one moves by its tick size. A restarted feed resumes from the prices the
    brokers hold (the last ones it published), so that its restart is not a market move.

Scripted moves (``POST /spike``)
    A spike moves the symbol's price linearly from its current value by ``pct`` percent over
    ``over_seconds``, *instead of* its walk (so a drill knows the exact target): while it runs the
    symbol ticks in every batch, on top of the round robin, and its last tick is exactly the
    target; afterwards the walk resumes from there. A new spike on the same symbol replaces the
    running one, starting from the current price.

Brokers
    After each batch the new prices of the ticks the stream accepted are pushed to both simulated
    brokers' control addresses (``POST /_sim/prices``), and every ``FULL_PUSH_SECONDS`` all prices,
    so the brokers fill MARKET orders at the feed's latest price (a delayed order really fills at a
    different price). A broker whose control address does not answer is skipped and counted.

Control API (stdlib HTTP server, quiet): ``GET /health``, ``GET /prices``, ``POST /spike
{"symbol", "pct", "over_seconds"}`` (400 on an unknown symbol or a bad number). SIGTERM stops it.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, TradeopsError
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.retries import put_records_all
from tradeops.runtime.platform.service import JsonHandler, service_main
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.universe import start_price

__all__ = [
    "BATCH_SECONDS",
    "FULL_PUSH_SECONDS",
    "Feed",
    "Publisher",
    "Spike",
    "parse_spike",
    "serve",
]

log = logging.getLogger("tradeops.prices")

BATCH_SECONDS = 0.5
"""The feed's tick interval: one PutRecords batch this often."""
FULL_PUSH_SECONDS = 5.0
"""How often every price (not just the changed ones) is pushed to the brokers (a restarted broker re-learns)."""
MAX_PCT = Decimal(1000)
MAX_OVER_SECONDS = Decimal(3600)
_CENT = Decimal("0.01")
_STEP = Decimal("0.0001")  # one step of a walk: 0.01 % of its level; a tick moves -10..+10 steps
_LEVEL = Decimal("0.000001")  # the walk's own precision (what is published is rounded to the penny)
_PUT_LIMIT = 500  # records per PutRecords call


@dataclass(frozen=True)
class Spike:
    """A scripted linear move of one symbol from ``start`` to ``target`` over ``over`` seconds."""

    symbol: str
    start: Decimal
    target: Decimal
    pct: Decimal
    over: float
    began: float  # time.monotonic() when it began
    ends_at: datetime

    def price(self, now: float) -> tuple[Decimal, bool]:
        """The price at monotonic time ``now`` and whether the move is complete."""
        if self.over <= 0 or now - self.began >= self.over:
            return self.target, True
        share = Decimal(repr((now - self.began) / self.over))
        moved = self.start + (self.target - self.start) * share
        return max(_CENT, moved.quantize(_CENT, rounding=ROUND_HALF_EVEN)), False

    def describe(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "from": str(self.start), "to": str(self.target), "pct": str(self.pct),
                "over_seconds": self.over, "ends_at": iso(self.ends_at)}


def _number(body: dict[str, Any], name: str) -> Decimal:
    raw = body.get(name)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise BadInput(f"{name} must be a number")
    try:
        value = Decimal(raw if isinstance(raw, str) else repr(raw))
    except InvalidOperation:
        raise BadInput(f"{name} must be a number, got {str(raw)[:40]!r}") from None
    if not value.is_finite():
        raise BadInput(f"{name} must be finite")
    return value


def parse_spike(body: object, universe: Iterable[str]) -> tuple[str, Decimal, float]:
    """Validate a spike request ``{"symbol", "pct", "over_seconds"}``; BadInput says what is wrong."""
    if not isinstance(body, dict):
        raise BadInput('body must be a JSON object {"symbol", "pct", "over_seconds"}')
    unknown = set(body) - {"symbol", "pct", "over_seconds"}
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or symbol not in set(universe):
        raise BadInput(f"unknown symbol {str(symbol)[:40]!r}: the feed publishes only its configured symbols")
    pct = _number(body, "pct")
    if not -100 < pct <= MAX_PCT:
        raise BadInput(f"pct must be above -100 and at most {MAX_PCT}, got {pct}")
    over = _number(body, "over_seconds") if "over_seconds" in body else Decimal(0)
    if not 0 <= over <= MAX_OVER_SECONDS:
        raise BadInput(f"over_seconds must be between 0 and {MAX_OVER_SECONDS}, got {over}")
    return symbol, pct, float(over)


class Feed:
    """The prices: one seeded walk per symbol, scripted spikes, round-robin scheduling. Thread-safe."""

    def __init__(self, symbols: list[str], *, seed: int, ticks_per_second: float) -> None:
        if not symbols:
            raise BadInput("the feed needs at least one symbol")
        self.symbols = list(dict.fromkeys(symbols))
        self.rate = ticks_per_second
        self._lock = threading.Lock()
        self._rngs: dict[str, random.Random] = {}
        self._prices: dict[str, Decimal] = {}
        self._seq: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._levels: dict[str, Decimal] = {}  # each walk's exact level; _prices holds it to the penny
        for symbol in self.symbols:
            # Seeded per symbol, so a symbol's path does not depend on the others.
            rng = random.Random(f"{seed}:{symbol}")
            self._rngs[symbol] = rng
            start = start_price(symbol)
            if start is None:
                start = Decimal(10_000 + rng.randint(-500, 500)) * _CENT
            self._prices[symbol] = max(_CENT, start.quantize(_CENT, rounding=ROUND_HALF_EVEN))
            self._levels[symbol] = start
        self._spikes: dict[str, Spike] = {}
        self._cursor = 0
        self._carry = 0.0
        self._started = False

    def prices(self) -> dict[str, str]:
        with self._lock:
            return {s: str(p) for s, p in self._prices.items()}

    def resume(self, prices: dict[str, str]) -> int:
        """Continue from earlier prices (before the first batch); returns how many symbols were resumed."""
        resumed = 0
        with self._lock:
            for symbol, raw in prices.items():
                if symbol not in self._prices:
                    continue
                try:
                    price = Decimal(str(raw)).quantize(_CENT, rounding=ROUND_HALF_EVEN)
                except InvalidOperation:
                    continue
                if price.is_finite() and price > 0:
                    self._prices[symbol] = self._levels[symbol] = price
                    resumed += 1
        return resumed

    def spikes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.describe() for s in self._spikes.values()]

    def spike(self, symbol: str, pct: Decimal, over: float, *, now: float | None = None) -> Spike:
        """Start a scripted move of ``symbol`` by ``pct`` percent over ``over`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if symbol not in self._prices:
                raise BadInput(f"unknown symbol {symbol!r}")
            start = self._prices[symbol]
            target = max(_CENT, (start * (1 + pct / 100)).quantize(_CENT, rounding=ROUND_HALF_EVEN))
            spike = Spike(symbol=symbol, start=start, target=target, pct=pct, over=over, began=now,
                          ends_at=datetime.fromtimestamp(time.time() + over, UTC))
            self._spikes[symbol] = spike
            return spike

    def next_batch(self, elapsed: float, *, now: float | None = None,
                   at: datetime | None = None) -> list[dict[str, Any]]:
        """The ticks of the next batch, ``elapsed`` seconds after the previous one (prices advance)."""
        now = time.monotonic() if now is None else now
        at = at or utcnow()
        with self._lock:
            opening = not self._started
            if opening:
                self._started = True
                chosen = list(self.symbols)
            else:
                due = self._carry + self.rate * max(0.0, elapsed)
                count = min(int(due), len(self.symbols))
                self._carry = min(due - count, 1.0)  # a stalled feed does not burst afterwards
                chosen = [self.symbols[(self._cursor + i) % len(self.symbols)] for i in range(count)]
                self._cursor = (self._cursor + count) % len(self.symbols)
                chosen += [s for s in self._spikes if s not in chosen]
            stamp = iso(at)
            ticks = []
            for symbol in chosen:
                spike = self._spikes.get(symbol)
                if spike is not None:
                    price, done = spike.price(now)
                    self._levels[symbol] = price  # the walk resumes from where the move left it
                    if done:
                        del self._spikes[symbol]
                elif opening:
                    price = self._prices[symbol]  # the opening tick publishes the start price
                else:
                    level = self._levels[symbol]
                    level = max(_CENT, (level * (1 + _STEP * self._rngs[symbol].randint(-10, 10))).quantize(_LEVEL))
                    self._levels[symbol] = level
                    price = max(_CENT, level.quantize(_CENT, rounding=ROUND_HALF_EVEN))
                self._prices[symbol] = price
                self._seq[symbol] += 1
                ticks.append({"symbol": symbol, "price": str(price), "at": stamp, "seq": self._seq[symbol]})
            return ticks


class Publisher:
    """Puts the feed's batches on the price stream and pins the brokers' fill prices."""

    def __init__(self, settings: Settings, feed: Feed, *, aws: Aws | None = None) -> None:
        self.settings = settings
        self.feed = feed
        self.aws = aws or Aws(settings)
        self.stream = names_for(settings).price_stream
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counters: dict[str, Any] = {"batches": 0, "published": 0, "put_failures": 0,
                                         "broker_push_failures": {"primary": 0, "secondary": 0}}
        self.controls: dict[str, Any] = {}
        for provider in ("primary", "secondary"):
            url = getattr(settings, f"{provider}_control_url")
            if url:
                # Short timeout: a broker that does not answer must not stall the feed.
                self.controls[provider] = SimControl(url, timeout=0.5)
        self._last_full_push = 0.0
        self.published: dict[str, str] = {}  # the latest price of each symbol the stream accepted

    def _count(self, key: str, n: int = 1, provider: str | None = None) -> None:
        with self.lock:
            if provider is None:
                self.counters[key] += n
            else:
                self.counters[key][provider] += n

    def put(self, ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put ticks on the stream (failed records retried, bounded: retries.put_records_all); the ticks accepted."""
        accepted: list[dict[str, Any]] = []
        for i in range(0, len(ticks), _PUT_LIMIT):
            try:
                ok, failed = put_records_all(self.aws.kinesis, self.stream, ticks[i:i + _PUT_LIMIT],
                                             lambda t: json.dumps(t, separators=(",", ":")).encode(),
                                             lambda t: t["symbol"])
            except Exception as exc:  # the feed keeps running while the stream is unreachable
                log.warning("put_records failed: %s", str(exc)[:200])
                ok, failed = [], ticks[i:i + _PUT_LIMIT]
            accepted += ok
            if failed:
                self._count("put_failures", len(failed))
        self._count("published", len(accepted))
        return accepted

    def resume_from_brokers(self) -> int:
        """Start from the prices a broker holds (the feed's last ones, if it ran before); 0 when none answer."""
        for control in self.controls.values():
            try:
                return self.feed.resume(control.prices())
            except TradeopsError:
                continue
        return 0

    def push_brokers(self, prices: dict[str, str]) -> None:
        """Pin the brokers' fill prices; a broker that does not answer is skipped and counted."""
        if not prices:
            return
        for provider, control in self.controls.items():
            try:
                control.set_prices(prices)
            except TradeopsError:
                self._count("broker_push_failures", provider=provider)

    def run_once(self, elapsed: float) -> list[dict[str, Any]]:
        """Publish one batch and pin the brokers to it; returns the ticks the stream accepted."""
        accepted = self.put(self.feed.next_batch(elapsed))
        changed = {t["symbol"]: t["price"] for t in accepted}
        self.published.update(changed)
        now = time.monotonic()
        if now - self._last_full_push >= FULL_PUSH_SECONDS:
            self._last_full_push = now
            changed = dict(self.published)
        # Only prices the stream has seen: a price the monitor never saw must not reach a fill.
        self.push_brokers(changed)
        self._count("batches")
        return accepted

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.run_once(started - last)
            except Exception as exc:  # never let one bad batch end the feed
                log.warning("batch failed: %s", str(exc)[:200])
            last = started
            self.stop.wait(max(0.0, BATCH_SECONDS - (time.monotonic() - started)))

    def health(self) -> dict[str, Any]:
        with self.lock:
            counters = json.loads(json.dumps(self.counters))
        return {"ok": True, "stream": self.stream, "symbols": len(self.feed.symbols),
                "ticks_per_second": self.feed.rate, "batch_seconds": BATCH_SECONDS, **counters,
                "aws_requests": self.aws.counter.snapshot()}


def _handler(publisher: Publisher) -> type[BaseHTTPRequestHandler]:
    universe = frozenset(publisher.feed.symbols)

    class Handler(JsonHandler):
        server_version = "tradeops-prices"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self.reply(200, publisher.health())
            elif path == "/prices":
                self.reply(200, {"prices": publisher.feed.prices(), "spikes": publisher.feed.spikes(),
                                  "ticks_per_second": publisher.feed.rate, "batch_seconds": BATCH_SECONDS})
            else:
                self.reply(404, {"error": f"no such path {path}"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/spike":
                self.reply(404, {"error": f"no such path {path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= 65536:
                    raise BadInput("a JSON body of at most 64 KiB is required")
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    raise BadInput("body is not JSON") from None
                symbol, pct, over = parse_spike(body, universe)
                spike = publisher.feed.spike(symbol, pct, over)
            except (BadInput, ValueError) as exc:
                self.reply(400, {"error": str(exc)})
                return
            log.info("spike %s", spike.describe())
            self.reply(200, spike.describe())

    return Handler


def serve(settings: Settings, host: str, port: int) -> int:
    """Run the publisher and its control API until SIGTERM/SIGINT. Returns the exit code."""
    feed = Feed(settings.symbol_list, seed=settings.price_seed, ticks_per_second=settings.price_ticks_per_second)
    publisher = Publisher(settings, feed)
    resumed = publisher.resume_from_brokers()
    server = ThreadingHTTPServer((host, port), _handler(publisher))
    server.daemon_threads = True
    done = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    threads = [threading.Thread(target=server.serve_forever, name="http", daemon=True),
               threading.Thread(target=publisher.run, name="publisher", daemon=True)]
    for thread in threads:
        thread.start()
    log.info("price feed on %s:%d: %d symbols (%d resumed from a broker), %s ticks/s, stream %s", host, port,
             len(feed.symbols), resumed, feed.rate, publisher.stream)
    done.wait()
    publisher.stop.set()
    server.shutdown()
    server.server_close()
    threads[1].join(5)
    return 0


def _main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="python -m tradeops.runtime.liability.prices", label="price feed",
                        description=__doc__.splitlines()[0], serve=serve)


if __name__ == "__main__":
    raise SystemExit(_main())
