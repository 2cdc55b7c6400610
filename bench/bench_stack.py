"""The local stack's start and stop: `tradeops up` until it returns (every component answering), and `tradeops down`
until it returns (nothing of the stack running).

Run:  python bench/bench_stack.py [--runs 5] [--cli PATH ...]

Each run starts a stack in a fresh state directory with `tradeops up`, waits two seconds, and stops it with
`tradeops down`, timing both commands from outside. With several ``--cli`` (the `tradeops` of another checkout's
venv, say, as a baseline) the runs go round them in turn, so that each sees the same load on the machine. Prints,
for each CLI, the median of `up` and `down`, and when each component answered after the start, from the state file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path


def _seconds(stamp: str, since: datetime) -> float:
    return (datetime.fromisoformat(stamp.replace("Z", "+00:00")) - since).total_seconds()


def one_run(cli: str) -> dict[str, object]:
    """Start and stop one stack with ``cli``; the two times and each component's time to ready."""
    state = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_"))}
    env["TRADEOPS_STATE_DIR"] = str(state / "state")
    try:
        began = time.perf_counter()
        up = subprocess.run([cli, "up"], env=env, cwd=state, capture_output=True, text=True, timeout=120)
        up_s = time.perf_counter() - began
        if up.returncode != 0:
            raise SystemExit(f"{cli} up failed: {up.stderr.strip()[-500:]}")
        stack = json.loads((state / "state" / "stack.json").read_text())
        started = datetime.fromisoformat(stack["started_at"].replace("Z", "+00:00"))
        ready = {name: _seconds(c["ready_at"], started) for name, c in stack["components"].items()}
        time.sleep(2)
        began = time.perf_counter()
        down = subprocess.run([cli, "down"], env=env, cwd=state, capture_output=True, text=True, timeout=60)
        down_s = time.perf_counter() - began
        if down.returncode != 0:
            raise SystemExit(f"{cli} down failed: {down.stderr.strip()[-500:]}")
        return {"up": up_s, "down": down_s, "ready": ready}
    finally:
        subprocess.run([cli, "down"], env=env, cwd=state, capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cli", action="append", help="a tradeops executable (repeatable; default: tradeops)")
    args = parser.parse_args()
    clis = args.cli or ["tradeops"]
    results: dict[str, list[dict[str, object]]] = {cli: [] for cli in clis}
    for n in range(args.runs):
        for cli in clis:
            results[cli].append(one_run(cli))
            print(f"run {n + 1}/{args.runs} {cli}: up {results[cli][-1]['up']:.2f} s, "
                  f"down {results[cli][-1]['down']:.2f} s", flush=True)
    for cli, runs in results.items():
        print(f"\n{cli} (median of {len(runs)})")
        print(f"  tradeops up    {statistics.median(r['up'] for r in runs):6.2f} s")  # type: ignore[misc]
        print(f"  tradeops down  {statistics.median(r['down'] for r in runs):6.2f} s")  # type: ignore[misc]
        names = sorted(runs[0]["ready"], key=lambda c: runs[0]["ready"][c])  # type: ignore[index]
        for name in names:
            at = statistics.median(r["ready"][name] for r in runs)  # type: ignore[index]
            print(f"    {name:18} ready {at:5.2f} s after the start")


if __name__ == "__main__":
    main()
