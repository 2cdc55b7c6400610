"""Time to detect and to recover from a broken primary: tradeops's router against one with a stock breaker.

Run:  python bench/bench_drills.py [--repeats 3] [--rates 10,20] [--workers 2]

Starts a private local stack with no workers (moto server, both brokers, intake, feed, monitor).
For each repeat, rate, fault and router (interleaved, so that both routers see the same machine)
it starts ``--workers`` fresh worker processes, either tradeops's as shipped or
``bench/pybreaker_worker.py`` (the same worker with pybreaker's ``CircuitBreaker()`` at its
defaults, 5 failures and a 60 s reset, and no in-flight watch), sets auto mode (active primary,
trickle 0), posts orders to the intake API over HTTP at the rate, and after 4 s breaks the primary
for 8 s: ``down`` (connection refused: the primary-outage drill) or ``blackhole`` (accepts
connections, never answers: primary-blackhole). Then it heals it and keeps posting for 12 s.

The figures are the drills' own (:func:`tradeops.drillresult.figures.compute_figures`, from
the routing events and the orders' histories): time to detect (fault to the first
``breaker_opened``/``broker_suspect`` of the primary), time to the first fill at the secondary,
time to 99 % of new orders at the secondary, and time back on the primary after the heal (90 % of
new orders there; "none" when that did not happen within the 12 s watched). Every order must end
filled exactly once across both brokers' ledgers. Prints every run, then medians and ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as a script, so bench/ is on the path: the same intake poster, flags and broker controls.
from bench_blackhole import Bench

from tradeops.drillresult.figures import compute_figures
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.events import read_events
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import read_state, resolve_settings
from tradeops.runtime.stack import supervisor
from tradeops.runtime.stack.supervisor import stop_process

FAULTS = {"down": "primary-outage", "blackhole": "primary-blackhole"}
ROUTERS = ("tradeops", "pybreaker")
FIGURES = ("time_to_detect", "time_to_first_secondary_fill", "time_to_99pct_secondary", "time_back_on_primary")
TARGETS = {"down": {"time_to_detect": 1.0, "time_to_99pct_secondary": 2.0, "time_back_on_primary": 10.0},
           "blackhole": {"time_to_detect": 2.1, "time_to_99pct_secondary": 2.0, "time_back_on_primary": 10.0}}
HERE = Path(__file__).resolve().parent


def _workers(bench: Bench, count: int, router: str, tag: str):
    import subprocess

    env = {**os.environ, "TRADEOPS_AWS_ENDPOINT_URL": bench.state["aws_endpoint"],
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "TRADEOPS_REGION": bench.state["region"],
           "TRADEOPS_BROKER_SUSPICION": "true" if router == "tradeops" else "false"}
    for name, broker in bench.state["brokers"].items():
        env[f"TRADEOPS_{name.upper()}_URL"] = broker["url"]
        env[f"TRADEOPS_{name.upper()}_WIRE"] = broker["wire"]
    argv = ([sys.executable, "-m", "tradeops.runtime.orderpath.worker"] if router == "tradeops"
            else [sys.executable, str(HERE / "pybreaker_worker.py")])
    log = open(Path(bench.state["log_dir"]) / f"bench-drills-{tag}.log", "ab")
    procs = [subprocess.Popen([*argv, "--id", f"{tag}-{n}"], env=env, stdout=log, stderr=subprocess.STDOUT)
             for n in range(count)]
    log.close()
    return procs


def one_run(bench: Bench, aws: Aws, fault: str, rate: float, router: str, workers: int, tag: str) -> dict[str, Any]:
    bench.fault("primary", "none")
    for name, value in (("routing/mode", "auto"), ("routing/active", "primary"), ("routing/trickle", "0"),
                        ("processing", "running")):
        bench.flag(name, value)
    procs = _workers(bench, workers, router, tag)
    placed: dict[str, float] = {}
    stop = threading.Event()
    try:
        time.sleep(3.0)  # the workers start and probe the brokers
        began = datetime.now(UTC)
        poster = threading.Thread(target=bench.post_at, args=(tag, rate, stop, placed))
        poster.start()
        time.sleep(4.0)
        bench.fault("primary", fault)
        fault_at = datetime.now(UTC)
        time.sleep(8.0)
        bench.fault("primary", "none")
        healed_at = datetime.now(UTC)
        time.sleep(12.0)
        stop.set()
        poster.join()
        finals = bench.wait_final(list(placed), timeout=180)
        fills = Counter(f["order_id"] for p in ("primary", "secondary") for f in bench.fills(p)
                        if f["order_id"].startswith(tag + "-"))
        bad = [oid for oid, o in finals.items() if o["status"] != "FILLED" or fills[oid] != 1]
        # The fault window as a drill's journal records it: inject_fault's end, then clear_fault's end.
        journal = {"run": [
            {"activity": {"provider": {"func": "inject_fault", "arguments": {"provider": "primary", "mode": fault}}},
             "end": iso(fault_at)},
            {"activity": {"provider": {"func": "clear_fault", "arguments": {"provider": "primary"}}},
             "end": iso(healed_at)}]}
        events = read_events(aws, stream="routing", since=began - timedelta(seconds=1))
        orders = OrderStore(aws).get_many(list(placed))
        figures = compute_figures(journal=journal, events=events, orders=orders, timeline=[], counts={})
        return {"fault": fault, "rate": rate, "router": router, "placed": len(placed), "bad": len(bad),
                **{k: figures[k] for k in FIGURES}}
    finally:
        stop.set()
        for proc in procs:
            stop_process(proc, 10)


def _show(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def _median(values: list[float | None]) -> float | None:
    """Median over runs; a run that never got there counts as later than any that did (None: most never did)."""
    mid = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(mid) else mid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", default="10,20")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    state_dir = Path(tempfile.mkdtemp(prefix="bench-drills-"))
    os.environ["TRADEOPS_CANARY_SECONDS"] = "0"
    settings = load_settings(state_dir=state_dir, canary_seconds=0)
    supervisor.launch(settings, workers=0, local=True, ports={})
    results: list[dict[str, Any]] = []
    try:
        state = read_state(settings.state_file)
        token = (state_dir / "intake-token").read_text().strip()
        bench = Bench(state, token)
        aws = Aws(resolve_settings(settings))
        for repeat in range(args.repeats):
            for rate in rates:
                for fault in FAULTS:
                    for router in ROUTERS:
                        tag = f"dr{repeat}-{int(rate)}-{fault}-{router}"
                        r = one_run(bench, aws, fault, rate, router, args.workers, tag)
                        results.append(r)
                        print(f"{FAULTS[fault]:<17} {rate:>3.0f}/s {router:<9} detect {_show(r['time_to_detect'])} s, "
                              f"first secondary fill {_show(r['time_to_first_secondary_fill'])} s, 99% secondary "
                              f"{_show(r['time_to_99pct_secondary'])} s, back on primary "
                              f"{_show(r['time_back_on_primary'])} s; {r['placed']} orders, {r['bad']} lost or "
                              "doubled", flush=True)
    finally:
        supervisor.stop(settings)
    print(f"\nmedians of {args.repeats} runs ({args.workers} workers; 'none' = not within the window watched):")
    for fault in FAULTS:
        for rate in rates:
            med = {router: {k: _median([r[k] for r in results if r["fault"] == fault and r["rate"] == rate
                                        and r["router"] == router]) for k in FIGURES} for router in ROUTERS}
            for k in FIGURES:
                ours, stock = med["tradeops"][k], med["pybreaker"][k]
                ratio = f"{stock / ours:.1f}x" if ours and stock else "-"
                target = TARGETS[fault].get(k)
                print(f"{FAULTS[fault]:<17} {rate:>3.0f}/s {k:<29} tradeops {_show(ours):>6}  pybreaker "
                      f"{_show(stock):>6}  pybreaker/tradeops {ratio:>6}  target {target if target else '-'}")
    print(f"lost or filled twice, all runs: {sum(r['bad'] for r in results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
