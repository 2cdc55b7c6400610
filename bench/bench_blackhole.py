"""Orders stranded by a blackholed primary, with the in-flight watch on and off, at 10, 50 and 100 orders/s.

Run:  python bench/bench_blackhole.py [--repeats 3] [--rates 10,50,100] [--workers 2]

Starts a private local stack with no workers (moto server, both brokers, intake, feed, monitor).
For each repeat, rate and setting of the in-flight watch (``TRADEOPS_BROKER_SUSPICION`` true /
false, interleaved so that both see the same machine), it starts ``--workers`` fresh worker
processes, sets auto mode (active primary, trickle 0), posts orders to the intake API over HTTP at
the rate, and after 4 s blackholes the primary (it accepts connections and never answers) for
5 s more of orders. Then it counts, from the orders' own histories:

- **in doubt**: orders that went IN_DOUBT at the primary (all of the run's orders: when the workers
  run behind the rate, the orders sent into the silence are ones placed before it began);
- **first fill**: seconds from the fault to the first fill at the secondary (the broker's own ledger).

Then it heals the primary, waits until every order is final, checks each filled exactly once
across both brokers' ledgers, and stops the workers. Defaults as shipped (read timeout 2 s).
Prints every run, then medians and the off/on ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import read_state
from tradeops.runtime.platform.universe import shipped_universe
from tradeops.runtime.stack import supervisor
from tradeops.runtime.stack.supervisor import stop_process

# The orders' symbols: twenty of the shipped universe, each quoted at its start price.
SYMBOLS = [(i.ticker, str(i.start_price)) for i in shipped_universe()[:20]]

FINAL = {"FILLED", "REJECTED", "CANCELLED", "DEAD_LETTERED"}


class Bench:
    def __init__(self, state: dict[str, Any], token: str) -> None:
        self.state = state
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64))
        self.headers = {"Authorization": f"Bearer {token}"}
        kw = dict(endpoint_url=state["aws_endpoint"], region_name=state["region"], aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        self.ssm = boto3.client("ssm", **kw)
        self.dynamodb = boto3.client("dynamodb", **kw)

    def flag(self, name: str, value: str) -> None:
        self.ssm.put_parameter(Name=f"/tradeops/{name}", Value=value, Type="String", Overwrite=True)

    def fault(self, provider: str, mode: str) -> None:
        self.http.post(f"{self.state['brokers'][provider]['control']}/_sim/fault", json={"mode": mode}
                       ).raise_for_status()

    def fills(self, provider: str) -> list[dict[str, Any]]:
        return self.http.get(f"{self.state['brokers'][provider]['control']}/_sim/fills").json()["fills"]

    def get(self, order_id: str) -> dict[str, Any]:
        for attempt in range(5):  # an intake flooded at 100/s on a shared box may drop a connection
            try:
                return self.http.get(f"{self.state['intake']}/orders/{order_id}", headers=self.headers).json()
            except httpx.TransportError:
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def workers(self, count: int, suspicion: bool, tag: str) -> list[subprocess.Popen]:
        env = {**os.environ, "TRADEOPS_AWS_ENDPOINT_URL": self.state["aws_endpoint"],
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "TRADEOPS_REGION": self.state["region"], "TRADEOPS_BROKER_SUSPICION": str(suspicion).lower()}
        for name, broker in self.state["brokers"].items():
            env[f"TRADEOPS_{name.upper()}_URL"] = broker["url"]
            env[f"TRADEOPS_{name.upper()}_WIRE"] = broker["wire"]
        log = open(Path(self.state["log_dir"]) / f"bench-workers-{tag}.log", "ab")
        procs = [subprocess.Popen([sys.executable, "-m", "tradeops.runtime.orderpath.worker", "--id", f"{tag}-{n}"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT) for n in range(count)]
        log.close()
        return procs

    def post_at(self, prefix: str, rate: float, stop: threading.Event, placed: dict[str, float]) -> None:
        start, n = time.monotonic(), 0
        with ThreadPoolExecutor(32) as pool:
            def post(i: int) -> None:
                symbol, quote = SYMBOLS[i % len(SYMBOLS)]
                body = {"order_id": f"{prefix}-{i}", "account_id": f"acc-{i % 50}", "symbol": symbol,
                        "side": "BUY", "quantity": 1 + i % 5, "quote_price": quote}
                r = self.http.post(f"{self.state['intake']}/orders", json=body, headers=self.headers)
                if r.status_code == 202:
                    placed[body["order_id"]] = time.time()
            while not stop.is_set():
                pool.submit(post, n)
                n += 1
                stop.wait(max(0.0, start + n / rate - time.monotonic()))

    def wait_final(self, ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        orders: dict[str, dict[str, Any]] = {}
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            with ThreadPoolExecutor(16) as pool:
                for order in pool.map(self.get, pending):
                    orders[order["order_id"]] = order
            pending = [i for i in pending if orders[i]["status"] not in FINAL]
            if pending:
                time.sleep(0.5)
        if pending:
            raise SystemExit(f"{len(pending)} orders not final after {timeout}s")
        return orders


def one_run(bench: Bench, rate: float, suspicion: bool, workers: int, tag: str) -> dict[str, Any]:
    bench.fault("primary", "none")
    for name, value in (("routing/mode", "auto"), ("routing/active", "primary"), ("routing/trickle", "0"),
                        ("processing", "running")):
        bench.flag(name, value)
    procs = bench.workers(workers, suspicion, tag)
    placed: dict[str, float] = {}
    stop = threading.Event()
    try:
        time.sleep(3.0)  # the workers start and probe the brokers
        poster = threading.Thread(target=bench.post_at, args=(tag, rate, stop, placed))
        poster.start()
        time.sleep(4.0)
        bench.fault("primary", "blackhole")
        fault_at = time.time()
        time.sleep(5.0)
        stop.set()
        poster.join()
        time.sleep(3.0)  # past the read timeout: every order sent into the silence is in doubt by now
        after = [oid for oid, at in placed.items() if at > fault_at]
        with ThreadPoolExecutor(16) as pool:
            seen = list(pool.map(bench.get, list(placed)))
        # Every order the silence stranded, whenever it was placed: when the workers run behind, orders placed
        # before the fault are the ones sent into it.
        in_doubt = sum(1 for o in seen if any(h["status"] == "IN_DOUBT" and h.get("provider") == "primary"
                                              for h in o["history"]))
        secondary = [datetime.fromisoformat(f["filled_at"]).timestamp() for f in bench.fills("secondary")
                     if f["order_id"].startswith(tag + "-")]
        first_fill = min((t for t in secondary if t > fault_at), default=float("nan")) - fault_at
        bench.fault("primary", "none")
        orders = bench.wait_final(list(placed))
        fills = Counter(f["order_id"] for p in ("primary", "secondary") for f in bench.fills(p)
                        if f["order_id"].startswith(tag + "-"))
        lost_or_twice = [oid for oid, o in orders.items() if o["status"] != "FILLED" or fills[oid] != 1]
        return {"rate": rate, "suspicion": suspicion, "after_fault": len(after), "in_doubt": in_doubt,
                "first_fill_s": first_fill, "bad": len(lost_or_twice), "placed": len(placed)}
    finally:
        stop.set()
        for proc in procs:
            stop_process(proc, 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", default="10,50,100")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    state_dir = Path(tempfile.mkdtemp(prefix="bench-blackhole-"))
    os.environ["TRADEOPS_CANARY_SECONDS"] = "0"
    settings = load_settings(state_dir=state_dir, canary_seconds=0)
    supervisor.launch(settings, workers=0, local=True, ports={})
    results: list[dict[str, Any]] = []
    try:
        state = read_state(settings.state_file)
        token = (state_dir / "intake-token").read_text().strip()
        bench = Bench(state, token)
        for repeat in range(args.repeats):
            for rate in rates:
                for suspicion in (True, False):
                    tag = f"bh{repeat}-{int(rate)}-{'on' if suspicion else 'off'}"
                    result = one_run(bench, rate, suspicion, args.workers, tag)
                    results.append(result)
                    print(f"watch {'on ' if suspicion else 'off'} @ {rate:>3.0f}/s: {result['in_doubt']:>3} orders "
                          f"left in doubt at the primary ({result['after_fault']} placed after the fault); first "
                          f"fill at the secondary {result['first_fill_s']:.2f} s after it; {result['bad']} lost or "
                          "doubled", flush=True)
    finally:
        supervisor.stop(settings)
    print(f"\nmedians of {args.repeats} runs ({args.workers} workers, read timeout 2 s):")
    print(f"{'rate':>6} {'in doubt on':>12} {'in doubt off':>13} {'ratio':>6} {'first fill on':>14} "
          f"{'first fill off':>15} {'ratio':>6}")
    for rate in rates:
        med = {}
        for suspicion in (True, False):
            rows = [r for r in results if r["rate"] == rate and r["suspicion"] is suspicion]
            med[suspicion] = (statistics.median(r["in_doubt"] for r in rows),
                              statistics.median(r["first_fill_s"] for r in rows))
        (d_on, f_on), (d_off, f_off) = med[True], med[False]
        print(f"{rate:>4.0f}/s {d_on:>12.1f} {d_off:>13.1f} {d_off / d_on if d_on else float('inf'):>5.1f}x "
              f"{f_on:>13.2f}s {f_off:>14.2f}s {f_off / f_on:>5.1f}x")
    print(f"lost or filled twice, all runs: {sum(r['bad'] for r in results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
