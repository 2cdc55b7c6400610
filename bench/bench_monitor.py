"""Divergence monitor benchmark: ExposureBook against a naive full scan. Prints figures; not a test.

    python bench/bench_monitor.py [--quick]

What is measured, in one process on one core (the book is single-threaded):

- **book**: ``ExposureBook.on_tick`` with N pending orders over 5,000 symbols, after one warm-up
  tick per symbol (the first tick of a symbol also promotes its waiting orders). Throughput is
  ticks / wall time over a batch with no per-tick timer; "cpu t/s" is ticks / CPU time of this
  process over the same batch (what one core delivers when a busy box lets it run). Latency is
  ``perf_counter_ns`` around each call (timer overhead included). "+chg" is the same with
  ``result.changed`` materialised as OrderExposure objects, which is what the I/O layer pays
  when it handles every changed order of every tick.
- **naive**: what one writes first: on each tick, scan every pending order, recompute the ticked
  symbol's orders with the Decimal formula, and re-sum the total over all orders.

Each figure is the median over the repeats (fresh book, same seeded orders and ticks). Prices are
a seeded random walk of 0-0.2 % steps with 4 decimal places; quotes lie within 1 % of the start
price, so about half the orders are exposed at any time and most of them change on every tick.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradeops.runtime.liability.arithmetic import adverse_exposure
from tradeops.runtime.liability.exposurebook import ExposureBook
from tradeops.runtime.liability.orderexposure import PendingOrder

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
SYMBOLS = 5_000
SIZES = (1_000, 10_000, 100_000)
TARGET_TICKS_PER_SECOND = 50_000
TARGET_P99_US = 1_000.0


def make_orders(n: int, rng: random.Random, start: dict[str, Decimal]) -> list[PendingOrder]:
    orders = []
    symbols = list(start)
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        base = start[symbol]
        quote = (base * Decimal(1 + rng.uniform(-0.01, 0.01))).quantize(Decimal("0.0001"))
        orders.append(
            PendingOrder(
                order_id=f"ord-{i:07d}",
                symbol=symbol,
                side=rng.choice(("BUY", "SELL")),
                quantity=rng.randint(1, 2_000),
                quote_price=quote,
                placed_at=T0 - timedelta(seconds=rng.uniform(1, 600)),
            )
        )
    return orders


def make_ticks(count: int, rng: random.Random, start: dict[str, Decimal],
               first_at: datetime) -> list[tuple[str, Decimal, datetime]]:
    """One warm-up tick per symbol, then ``count`` ticks on random symbols, 20 µs apart."""
    price = {s: float(p) for s, p in start.items()}
    symbols = list(start)
    ticks = []
    moment = first_at
    step = timedelta(microseconds=20)
    for i in range(len(symbols) + count):
        symbol = symbols[i] if i < len(symbols) else rng.choice(symbols)
        price[symbol] *= 1 + rng.uniform(-0.002, 0.002)
        moment += step
        ticks.append((symbol, Decimal(f"{price[symbol]:.4f}"), moment))
    return ticks


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1_000  # µs


def run_book(orders: list[PendingOrder], warm: list, batch: list, timed: list) -> dict[str, float]:
    book = ExposureBook()
    t = time.perf_counter_ns()
    for order in orders:
        book.add(order)
    add_ns = time.perf_counter_ns() - t
    on_tick = book.on_tick
    for symbol, price, at in warm:
        on_tick(symbol, price, at)
    changed = 0
    cpu = time.process_time_ns()
    t = time.perf_counter_ns()
    for symbol, price, at in batch:
        changed += on_tick(symbol, price, at).changed_count
    elapsed = time.perf_counter_ns() - t
    cpu = time.process_time_ns() - cpu
    clock = time.perf_counter_ns
    half = len(timed) // 2
    lat, lat_changed = [], []
    for symbol, price, at in timed[:half]:
        t = clock()
        on_tick(symbol, price, at)
        lat.append(clock() - t)
    for symbol, price, at in timed[half:]:
        t = clock()
        on_tick(symbol, price, at).changed  # noqa: B018 - materialising is the point
        lat_changed.append(clock() - t)
    lat.sort()
    lat_changed.sort()
    return {
        "tps": len(batch) / (elapsed / 1e9),
        "tps_cpu": len(batch) / (cpu / 1e9),
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "max": lat[-1] / 1_000,
        "p99_changed": percentile(lat_changed, 0.99),
        "p50_changed": percentile(lat_changed, 0.50),
        "changed_per_tick": changed / len(batch),
        "adds_per_s": len(orders) / (add_ns / 1e9),
    }


class NaiveMonitor:
    """The baseline: every tick scans all pending orders and re-sums the total."""

    def __init__(self, orders: list[PendingOrder]) -> None:
        self.orders = list(orders)
        self.current = {o.order_id: Decimal(0) for o in orders}
        self.total = Decimal(0)

    def on_tick(self, symbol: str, price: Decimal, at: datetime) -> list[str]:
        changed = []
        current = self.current
        for o in self.orders:
            if o.symbol == symbol:
                value = adverse_exposure(o.side, o.quote_price, price, o.quantity)
                if value != current[o.order_id]:
                    current[o.order_id] = value
                    changed.append(o.order_id)
        self.total = sum(current.values(), Decimal(0))
        return changed


def run_naive(orders: list[PendingOrder], timed: list) -> dict[str, float]:
    monitor = NaiveMonitor(orders)
    clock = time.perf_counter_ns
    lat = []
    for symbol, price, at in timed:
        t = clock()
        monitor.on_tick(symbol, price, at)
        lat.append(clock() - t)
    total_ns = sum(lat)
    lat.sort()
    return {"tps": len(lat) / (total_ns / 1e9), "p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99)}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ticks and repeats (a smoke run)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    repeats, batch_n, timed_n = (3, 20_000, 20_000) if args.quick else (5, 200_000, 100_000)
    naive_budget = 2_000_000 if args.quick else 20_000_000  # order visits per naive run

    rng = random.Random(args.seed)
    start = {f"S{i:04d}.L": Decimal(f"{rng.uniform(0.5, 50):.4f}") for i in range(SYMBOLS)}
    ticks = make_ticks(batch_n + timed_n, rng, start, T0)
    warm, batch, timed = ticks[:SYMBOLS], ticks[SYMBOLS:SYMBOLS + batch_n], ticks[SYMBOLS + batch_n:]
    all_orders = make_orders(max(SIZES), rng, start)

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"gc {'on' if gc.isenabled() else 'off'}; {SYMBOLS:,} symbols; seed {args.seed}")
    print(f"book: {batch_n:,} ticks for throughput + {timed_n:,} timed ticks per repeat; "
          f"median of {repeats} repeats\n")
    columns = [
        ("pending", 8), ("per sym", 7), ("chg/tick", 8), ("|", 1), ("book t/s", 9), ("cpu t/s", 9),
        ("p50 µs", 7), ("p99 µs", 7), ("max µs", 8), ("p50+chg", 8), ("p99+chg", 8), ("adds/s", 8), ("|", 1),
        ("naive t/s", 9), ("p50 µs", 8), ("p99 µs", 8), ("ticks", 6), ("|", 1), ("speed-up", 8),
    ]
    header = " ".join(f"{name:>{width}}" for name, width in columns)
    print(header)
    print("-" * len(header))
    results = {}
    for size in SIZES:
        orders = all_orders[:size]
        book = median_of([run_book(orders, warm, batch, timed) for _ in range(repeats)])
        naive_ticks = max(30, min(len(timed), naive_budget // size))
        naive = median_of([run_naive(orders, timed[:naive_ticks]) for _ in range(repeats)])
        results[size] = book
        cells = [
            f"{size:,}", f"{size / SYMBOLS:.1f}", f"{book['changed_per_tick']:.1f}", "|",
            f"{book['tps']:,.0f}", f"{book['tps_cpu']:,.0f}", f"{book['p50']:.1f}", f"{book['p99']:.1f}",
            f"{book['max']:.0f}", f"{book['p50_changed']:.1f}", f"{book['p99_changed']:.1f}",
            f"{book['adds_per_s']:,.0f}", "|", f"{naive['tps']:,.0f}", f"{naive['p50']:.0f}", f"{naive['p99']:.0f}",
            f"{naive_ticks}", "|", f"{book['tps'] / naive['tps']:.0f}x",
        ]
        print(" ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True)))
    head = results[max(SIZES)]
    ok = head["tps"] >= TARGET_TICKS_PER_SECOND and head["p99"] < TARGET_P99_US
    print(f"\ntarget at {max(SIZES):,} pending: >= {TARGET_TICKS_PER_SECOND:,} ticks/s and p99 < "
          f"{TARGET_P99_US:.0f} µs -> {head['tps']:,.0f} ticks/s, p99 {head['p99']:.1f} µs: "
          f"{'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
