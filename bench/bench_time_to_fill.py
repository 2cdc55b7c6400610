"""Time to fill (placement to FILLED) and SQS requests per order: the old 150 ms linger against latency first.

Run:  python bench/bench_time_to_fill.py [--repeats 1] [--orders-10 150] [--orders-60 300]

Starts a private local stack (moto server, both brokers, the intake API; no worker processes, no
canaries, the price feed at 0 ticks/s),
then for each rate (10 and 60 orders/s) runs one ``Worker`` in this process, three ways, one after
the other on the same stack:

- ``linger 150 ms``: the worker as it was before (each batch handled to the end, then after a
  short batch a 150 ms wait before the next receive; deletes right after each batch);
- ``no linger``: the same, without the wait (the issue's "linger set to 0");
- ``latency first``: the worker of this branch (receives again at once without waiting for the
  batch to finish, as many as it has free threads; deletes batched up to 10 and sent at the latest
  250 ms later, which costs no order any time: their orders are already final).

Orders are posted to the intake API over HTTP at a steady rate, from a process of their own.
Time to fill is taken from each order's own record (``placed_at`` to the history entry that made
it FILLED); SQS requests are the worker's own, counted by botocore's ``before-send`` event.
Figures: p50/p90/p99 in ms, SQS and DynamoDB requests per filled order.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from bench_order_cost import counted

from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.worker import Worker
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import parse_iso
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import resolve_settings
from tradeops.runtime.platform.universe import shipped_universe
from tradeops.runtime.stack import supervisor

# The orders' symbols: twenty of the shipped universe, each quoted at its start price.
SYMBOLS = [(i.ticker, str(i.start_price)) for i in shipped_universe()[:20]]

LINGER_SECONDS = 0.150  # the worker's default before this change (TRADEOPS_WORKER_LINGER_MS=150)


class SerialWorker(Worker):
    """The worker's receive loop as it was before this change (copied): each batch handled to the end,
    settled together (one delete request per batch), then, after a short batch, ``linger`` seconds."""

    linger = 0.0

    def poll_once(self) -> int:
        flags = self._flags()
        if flags.processing != "running":
            self.taking = False
            self.stop_event.wait(0.2)
            return 0
        self.taking = True
        got = self.aws.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.settings.worker_batch_size,
            WaitTimeSeconds=self.settings.worker_wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = got.get("Messages", [])
        if not messages:
            return 0
        with self._lock:
            self.in_flight += len(messages)
            self.counters["received"] += len(messages)
        try:
            orders = self._load_orders(messages)
            results = list(self.pool.map(lambda m: self._safe_handle(m, orders), messages))
            self._settle(messages, results)
        finally:
            with self._lock:
                self.in_flight -= len(messages)
        if len(messages) < self.settings.worker_batch_size and self.linger:
            self.stop_event.wait(self.linger)
        return len(messages)


class LingeringWorker(SerialWorker):
    """The worker as it was by default: after a batch shorter than the batch size, wait before receiving again."""

    linger = LINGER_SECONDS


def post_steady(intake: str, token: str, prefix: str, count: int, rate: float) -> list[str]:
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    start = time.monotonic()
    with httpx.Client(timeout=10) as http, ThreadPoolExecutor(8) as pool:
        def post(n: int) -> None:
            body = {"order_id": f"{prefix}-{n}", "account_id": f"acc-{n % 50}", "symbol": SYMBOLS[n % len(SYMBOLS)][0],
                    "side": "BUY", "quantity": 1 + n % 5, "quote_price": SYMBOLS[n % len(SYMBOLS)][1]}
            r = http.post(f"{intake}/orders", json=body, headers=headers)
            assert r.status_code == 202, r.text
        futures = []
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(post, n))
            ids.append(f"{prefix}-{n}")
        for f in futures:
            f.result()
    return ids


def fill_times(worker: Worker, store: OrderStore, ids: list[str], timeout: float = 180) -> list[float]:
    """Milliseconds from placement to FILLED for each order, from its own history.

    Waits on the worker's own counter, then reads each order once: polling the orders table meanwhile
    would load the emulator the worker is being measured against.
    """
    deadline = time.monotonic() + timeout
    while worker.counters["filled"] < len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    times = []
    for oid in ids:
        order = store.get(oid, consistent=False) or {}
        if order.get("status") == "FILLED":
            filled = next(h["at"] for h in order["history"] if h["status"] == "FILLED")
            times.append((parse_iso(filled) - parse_iso(order["placed_at"])).total_seconds() * 1000)
    return times


def quantile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q * len(ranked)) - 1))]


def run(settings: Any, intake: str, token: str, variant: str, rate: float, count: int, tag: str) -> dict[str, Any]:
    worker_cls = {"linger 150 ms": LingeringWorker, "no linger": SerialWorker}.get(variant, Worker)
    flush = 250 if variant == "latency first" else 0
    local = settings.model_copy(update={"worker_delete_flush_ms": flush})
    aws = counted(local)
    worker = worker_cls(local, worker_id=f"bench-{tag}", aws=aws)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    time.sleep(2.0)  # the worker's first receives and health probes
    before = Counter(aws.counter.snapshot())
    # The poster runs in a process of its own: its threads must not take the GIL from the worker measured.
    poster = multiprocessing.get_context("fork").Process(target=post_steady, args=(intake, token, tag, count, rate))
    poster.start()
    poster.join()
    ids = [f"{tag}-{n}" for n in range(count)]
    times = fill_times(worker, OrderStore(Aws(settings)), ids)
    time.sleep(0.5)  # the last batched deletes
    worker.stop_event.set()
    thread.join(30)
    filled = len(times)
    # The counter's keys are "<service>.<Operation>"; only what the worker sent while the orders flowed.
    counts = Counter({tuple(key.split(".", 1)): n for key, n in (Counter(aws.counter.snapshot()) - before).items()})
    sqs = sum(n for (service, _), n in counts.items() if service == "sqs")
    ddb = sum(n for (service, _), n in counts.items() if service == "dynamodb")
    return {"variant": variant, "rate": rate, "filled": filled, "orders": count,
            "p50": quantile(times, 0.50), "p90": quantile(times, 0.90), "p99": quantile(times, 0.99),
            "sqs_per_order": sqs / filled, "dynamodb_per_order": ddb / filled,
            "sqs_ops": {op: n for (service, op), n in sorted(counts.items()) if service == "sqs"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--orders-10", type=int, default=150, help="orders in each run at 10/s")
    parser.add_argument("--orders-60", type=int, default=300, help="orders in each run at 60/s")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="bench-ttf-"))
    # No canaries, and no price feed ticks: the emulator's capacity goes to the order path being measured.
    os.environ["TRADEOPS_CANARY_SECONDS"] = "0"
    os.environ["TRADEOPS_PRICE_TICKS_PER_SECOND"] = "0"
    settings = load_settings(state_dir=state, canary_seconds=0)
    launched = supervisor.launch(settings, workers=0, local=True, ports={})
    results: list[dict[str, Any]] = []
    try:
        settings = resolve_settings(settings)
        token = settings.intake_token or ""
        for repeat in range(args.repeats):
            for rate, count in ((10.0, args.orders_10), (60.0, args.orders_60)):
                for variant in ("linger 150 ms", "no linger", "latency first"):
                    tag = f"r{repeat}-{int(rate)}-{variant.split()[0]}"
                    result = run(settings, launched["intake"], token, variant, rate, count, tag)
                    results.append(result)
                    print(f"{variant:>14} @ {rate:>3.0f}/s: p50 {result['p50']:6.1f}  p90 {result['p90']:6.1f}  "
                          f"p99 {result['p99']:6.1f} ms   SQS/order {result['sqs_per_order']:.3f}  "
                          f"DynamoDB/order {result['dynamodb_per_order']:.2f}  ({result['filled']}/{count} filled) "
                          f"{result['sqs_ops']}", flush=True)
    finally:
        supervisor.stop(settings)
    print("\nmedians over repeats:")
    print(f"{'':>14}   rate    p50     p90     p99   SQS/order")
    for rate in (10.0, 60.0):
        for variant in ("linger 150 ms", "no linger", "latency first"):
            rows = [r for r in results if r["rate"] == rate and r["variant"] == variant]
            med = {k: statistics.median(r[k] for r in rows) for k in ("p50", "p90", "p99", "sqs_per_order")}
            print(f"{variant:>14}  {rate:>4.0f}/s {med['p50']:6.1f}  {med['p90']:6.1f}  {med['p99']:6.1f}"
                  f"   {med['sqs_per_order']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
