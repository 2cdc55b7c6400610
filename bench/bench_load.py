"""The local stack's ceiling: a step load finds the highest sustained order rate, and what saturates first.

Run:  python bench/bench_load.py [--runs 3] [--stack-workers 1,2,4] [--rate 10 --step 5 --every 15s --peak 45]

For each number of order workers (``tradeops up --workers N``) it runs the ``step`` scenario
``--runs`` times through ``tradeops load run`` (the same code path as the CLI), each on a private
local stack of its own (a saturated stair leaves a backlog that would delay the next run). A stair
is sustained when it achieved 95% of its target, its orders' time-to-fill p99 stayed under 2 s, and
none of them was lost or left pending; the ceiling is the last stair of the unbroken run of
sustained stairs. While each run goes, once a second, it samples:

- CPU of every process of the stack (and of Locust) from /proc, as a share of one core;
- the order queue's depth and the age of the oldest pending order;
- moto's latency: the time of one small DynamoDB call (DescribeTable) from outside the stack.

Then, at the median ceiling, one ``steady`` run measures AWS requests per filled order by service.
Medians across runs are printed, with the JSON of every run in ``--out`` (default runs/bench-load/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tradeops.runtime.orderpath.figures import oldest_pending_age, queue_figures
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import parse_iso
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import read_state, resolve_settings
from tradeops.runtime.stack import supervisor

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _locust_pids(run_dir: Path) -> dict[str, int]:
    """Locust processes of this run (found by the run folder in their command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"locust" in b" ".join(cmd) and any(str(run_dir).encode() in c for c in cmd):
            found[f"locust-{entry.name}"] = int(entry.name)
        elif b"locust" in b" ".join(cmd) and b"--worker" in cmd:
            found[f"locust-worker-{entry.name}"] = int(entry.name)
    return found


class Sampler(threading.Thread):
    """Once a second: CPU per process, queue depth, oldest pending order, moto latency."""

    def __init__(self, settings: Any, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self.settings, self.run_dir = settings, run_dir
        self.stop = threading.Event()
        self.samples: list[dict[str, Any]] = []
        state = read_state(settings.state_file) or {}
        self.pids = {name: c["pid"] for name, c in state.get("components", {}).items() if c.get("pid")}
        self.aws = Aws(settings)
        self.names = names_for(settings)

    def run(self) -> None:
        last: dict[str, float] = {}
        last_at = time.monotonic()
        while not self.stop.wait(1.0):
            now = time.monotonic()
            pids = {**self.pids, **_locust_pids(self.run_dir)}
            cpu = {}
            for name, pid in pids.items():
                used = _cpu_seconds(pid)
                if used is None:
                    continue
                if name in last:
                    cpu[name] = (used - last[name]) / (now - last_at)
                last[name] = used
            last_at = now
            started = time.perf_counter()
            self.aws.dynamodb.describe_table(TableName=self.names.orders_table)
            moto_ms = (time.perf_counter() - started) * 1000
            try:
                depth = queue_figures(self.aws)["queue"]["visible"]
                oldest = oldest_pending_age(self.aws)
            except Exception:
                depth, oldest = None, None
            self.samples.append({"t": time.time(), "cpu": cpu, "moto_ms": moto_ms, "queue": depth,
                                 "oldest_pending_s": oldest})


def load_run(env: dict[str, str], out: Path, scenario: str, params: dict[str, str],
             locust_workers: int) -> dict[str, Any]:
    argv = ["tradeops", "load", "run", scenario, "--out", str(out), "--json", "--quiet",
            "--workers", str(locust_workers)]
    for name, value in params.items():
        argv += ["--param", f"{name}={value}"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode not in (0, 1):
        raise SystemExit(f"load run failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def per_stair(summary: dict[str, Any], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stair with the medians of what was sampled during it."""
    start = parse_iso(summary["started_at"]).timestamp()
    rows = []
    for stage in summary["stages"]:
        during = [s for s in samples if stage["start"] <= s["t"] - start < stage["end"]]
        cpu: dict[str, list[float]] = defaultdict(list)
        for s in during:
            for name, share in s["cpu"].items():
                cpu["locust" if name.startswith("locust") else name].append(share)
        rows.append({**stage,
                     "cpu": {n: round(statistics.median(v), 2) for n, v in sorted(cpu.items())},
                     "moto_ms_p50": round(statistics.median([s["moto_ms"] for s in during]), 1) if during else None,
                     "queue_max": max((s["queue"] or 0 for s in during), default=None),
                     "oldest_pending_max_s": max((s["oldest_pending_s"] or 0 for s in during), default=None)})
    return rows


def on_fresh_stack(workers: int, run_dir: Path, scenario: str, params: dict[str, str],
                   locust_workers: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One load run on a stack of its own, so that one run's backlog never delays the next."""
    state = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_STATE_DIR": str(state), "TRADEOPS_CANARY_SECONDS": "0"})
    os.environ["TRADEOPS_CANARY_SECONDS"] = "0"
    settings = load_settings(state_dir=state, canary_seconds=0)
    supervisor.launch(settings, workers=workers, local=True, ports={})
    try:
        settings = resolve_settings(settings)
        if run_dir.exists():
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        sampler = Sampler(settings, run_dir)
        sampler.start()
        try:
            summary = load_run(env, run_dir, scenario, params, locust_workers)
        finally:
            sampler.stop.set()
            sampler.join()
    finally:
        supervisor.stop(settings)
    return summary, sampler.samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stack-workers", default="1,2,4")
    parser.add_argument("--locust-workers", type=int, default=0, help="Locust worker processes (0: one process)")
    parser.add_argument("--rate", default="10")
    parser.add_argument("--step", default="5")
    parser.add_argument("--every", default="15s")
    parser.add_argument("--peak", default="45")
    parser.add_argument("--steady", default="30s", help="duration of the steady run at the ceiling")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-load"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stairs = int((float(args.peak) - float(args.rate)) / float(args.step)) + 1
    every = args.every.removesuffix("s")
    params = {"rate": args.rate, "step": args.step, "every": args.every, "peak": args.peak,
              "duration": f"{stairs * float(every):g}s", "drain": "60s"}
    results: dict[str, Any] = {"params": params, "configs": {}}
    for workers in [int(w) for w in args.stack_workers.split(",")]:
        config: dict[str, Any] = {"runs": []}
        for n in range(args.runs):
            run_dir = args.out / f"w{workers}-step-{n}"
            summary, samples = on_fresh_stack(workers, run_dir, "step", params, args.locust_workers)
            rows = per_stair(summary, samples)
            config["runs"].append({"ceiling": summary["highest_sustained_rate"], "stairs": rows,
                                   "aws_per_order": summary["aws_requests"].get("per_filled_order")})
            print(f"stack workers {workers}, run {n + 1}: ceiling {summary['highest_sustained_rate']}/s; "
                  + "; ".join(f"{r['target_rate']:g}/s→{r['achieved_rate']:.1f} p99 "
                              f"{(r['time_to_fill_p99'] or 0):.2f}s{'' if r['sustained'] else ' ✗'}"
                              for r in rows), flush=True)
        ceilings = [r["ceiling"] or 0 for r in config["runs"]]
        config["ceiling_median"] = statistics.median(ceilings)
        if config["ceiling_median"]:
            run_dir = args.out / f"w{workers}-steady"
            steady, samples = on_fresh_stack(workers, run_dir, "steady",
                                             {"rate": f"{config['ceiling_median']:g}", "duration": args.steady,
                                              "drain": "60s"}, args.locust_workers)
            cpu: dict[str, list[float]] = defaultdict(list)
            for sample in samples:
                for name, share in sample["cpu"].items():
                    cpu["locust" if name.startswith("locust") else name].append(share)
            config["steady"] = {
                "rate": config["ceiling_median"], "passed": steady["passed"], "breached": steady["breached"],
                "achieved": steady["rates"]["achieved"], "time_to_fill": steady["time_to_fill"],
                "aws_per_order": steady["aws_requests"].get("per_filled_order"),
                "aws_by_operation": steady["aws_requests"].get("by_operation"),
                "cpu_median": {n: round(statistics.median(v), 2) for n, v in sorted(cpu.items())},
                "moto_ms_p50": round(statistics.median([x["moto_ms"] for x in samples]), 1),
                "queue_max": max((x["queue"] or 0 for x in samples), default=None),
            }
            print(f"stack workers {workers}: steady at {config['ceiling_median']:g}/s: "
                  f"{json.dumps(config['steady'], default=str)}", flush=True)
        results["configs"][str(workers)] = config
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({w: {"ceiling_median": c["ceiling_median"],
                          "ceilings": [r["ceiling"] for r in c["runs"]]} for w, c in results["configs"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
