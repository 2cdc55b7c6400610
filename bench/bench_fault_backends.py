"""The same drills through the sim and the proxy fault backends: verdicts and figures side by side. Not a test.

Run:  python bench/bench_fault_backends.py [--repeats 3] [--rate 5] [--duration 3s]

Starts a private local stack with a fault proxy in front of each simulated broker
(``TRADEOPS_FAULT_PROXY=true``: the workers call the brokers through the proxies in every run), then
runs ``tradeops drill run SCENARIO --backend B`` for primary-outage and primary-blackhole, the two
backends interleaved within each repeat so that both see the same machine. ``sim`` breaks the
simulator behind the proxy (``/_sim/fault``); ``proxy`` breaks the path (``/_proxy/fault``): ``down``
closes the proxy's port, ``blackhole`` holds requests unanswered. Prints every run, then the median,
min and max of each figure per scenario and backend, and the verdicts, lost and filled-twice counts
over all runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCENARIOS = {"primary-outage": ("--recover", "12s"), "primary-blackhole": ("--recover", "8s")}
BACKENDS = ("sim", "proxy")
FIGURES = ("time_to_detect", "time_to_first_secondary_fill", "time_to_99pct_secondary", "time_back_on_primary",
           "max_oldest_pending_seconds", "orders_placed", "orders_lost", "orders_filled_twice",
           "orders_in_doubt_unresolved")


def _tradeops(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tradeops", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _show(values: list[Any]) -> str:
    numbers = [v for v in values if isinstance(v, int | float)]
    if not numbers:
        return "none"
    return f"{statistics.median(numbers):.3f} [{min(numbers):.3f}, {max(numbers):.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", default="5")
    parser.add_argument("--duration", default="3s")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fault-backends-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_STATE_DIR": str(root / "state"), "TRADEOPS_FAULT_PROXY": "true",
                "TRADEOPS_CANARY_SECONDS": "0", "TRADEOPS_BROKER_READ_TIMEOUT": "1.0"})
    up = _tradeops("up", "--workers", "2", env=env)
    if up.returncode != 0:
        print(up.stdout + up.stderr, file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    try:
        for repeat in range(args.repeats):
            for scenario, extra in SCENARIOS.items():
                for backend in BACKENDS:
                    out = root / f"{repeat}-{scenario}-{backend}"
                    done = _tradeops("drill", "run", scenario, "--backend", backend, "--rate", args.rate,
                                     "--duration", args.duration, "--drain", "30s", *extra, "--out", str(out),
                                     "--json", "--quiet", env=env)
                    result = json.loads(done.stdout) if done.stdout.strip() else {"verdict": "none", "figures": {}}
                    row = {"scenario": scenario, "backend": backend, "verdict": result.get("verdict"),
                           **{k: result["figures"].get(k) for k in FIGURES}}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        _tradeops("down", env=env)
    print(f"\nmedian [min, max] over {args.repeats} runs, rate {args.rate}/s, fault {args.duration}:")
    for scenario in SCENARIOS:
        for k in FIGURES:
            cells = [f"{b} {_show([r[k] for r in results if r['scenario'] == scenario and r['backend'] == b])}"
                     for b in BACKENDS]
            print(f"{scenario:<18} {k:<29} " + "   ".join(f"{c:<34}" for c in cells))
        for b in BACKENDS:
            verdicts = [r["verdict"] for r in results if r["scenario"] == scenario and r["backend"] == b]
            print(f"{scenario:<18} verdicts {b}: {', '.join(verdicts)}")
    bad = sum((r["orders_lost"] or 0) + (r["orders_filled_twice"] or 0) for r in results)
    print(f"lost or filled twice, all runs: {bad}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
