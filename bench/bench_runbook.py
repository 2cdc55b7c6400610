"""AWS requests per runbook step and the failover runbook's mechanical time, idle and under load. Not a test.

    python bench/bench_runbook.py [--runs 5] [--only idle|loaded] [--rate 20] [--json FILE]

Runs the shipped ``failover`` runbook end to end, ``--yes``, its four-eyes steps approved by
``tradeops.runbooks.testing.ScriptedApprover`` the moment they ask (so no time is a person's), the
canary step off (``verify_canary=false``, as bench_failover.py), one warm-up run and then ``--runs``
counted runs, on two stacks:

- **idle**: as bench_failover.py: its own emulator with ``deploy/template.yaml`` deployed, the
  simulated secondary broker, the primary's address a closed port (down, connection refused), no
  workers and no load;
- **loaded**: for each run a fresh private local stack (``tradeops up``: emulator, both brokers,
  intake, 2 workers, monitor, price feed, canary, anchorer), routing manual, and
  ``tradeops load run steady --rate 20`` in its own process: ``--warmup`` seconds with the primary
  healthy (and no backlog: the oldest pending order under 5 s), then the primary is faulted ``down``
  (connection refused) and the failover starts at once, as an operator answering the outage would,
  while the load goes on until it ends (the rate it ran under is counted from the orders placed
  meanwhile; the load is stopped, not reconciled). Every run pauses and drains live workers, switches them,
  resumes them and waits for the backlog. A fresh stack each time, because 20 orders/s is close to
  what this box's stack sustains: a backlog one run leaves would slow the next.

Every AWS request the run sends (the engine, its lease, the audit log and anchor, the probes and
actions, the scripted approvers) is counted by the ``Aws`` request counter (botocore's
``before-send``). A step's requests are those sent between its ``step.started`` event and the next
step's (``(start)``: before the first step; ``(end)``: after the last, through the lease's release).
Reported per stack: the median, min and max mechanical time (``run_execution`` entry to return), the
median requests per run by service and by operation, and the median requests per step by service.

The script uses only what the engine offered before issue 21 (observers, the request counter), so the
same file measures an older checkout: copy it there and run it with that checkout's install.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_failover import ROLES, failover_stage

from tradeops.runbooks import engine
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runbooks.testing import ScriptedApprover, install_roster
from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.states import STATES
from tradeops.runtime.platform.aws import Aws, RequestCounter
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.platform.statefile import read_state, resolve_target
from tradeops.runtime.stack import supervisor

try:
    from tradeops.runtime.orderpath.figures import oldest_pending_age
except ImportError:  # a checkout before issue 21 split the operator's operations out of ops.py
    from tradeops.runtime.orderpath.ops import oldest_pending_age  # type: ignore[import-not-found,no-redef]

EXECUTOR = Identity("bench-executor", "bench")
APPROVERS = [Identity("bench-ops-manager", "bench"), Identity("bench-risk", "bench")]
PARAMS = {"verify_canary": "false"}
# Event kinds spelled here, not imported: the same file runs against checkouts older than their names.
STEP_STARTED = "step.started"
START, END = "(start)", "(end)"
LOAD_LIMIT = 900.0
"""Seconds the load may go on after the warm-up; it is stopped as soon as the failover ends."""
SETTLED_SECONDS = 5.0
"""Before a loaded run, the oldest pending order must be younger than this: orders flow, no backlog."""


class StepMeter:
    """An observer of the run: the requests counted between one step's start and the next's go to that step."""

    def __init__(self, counter: RequestCounter) -> None:
        self.counter = counter
        self.by_step: dict[str, dict[str, int]] = {}
        self._step = START
        self._mark = counter.snapshot()

    def _close(self, next_step: str) -> None:
        now = self.counter.snapshot()
        spent = {k: n - self._mark.get(k, 0) for k, n in now.items() if n - self._mark.get(k, 0)}
        into = self.by_step.setdefault(self._step, {})
        for key, n in spent.items():
            into[key] = into.get(key, 0) + n
        self._step, self._mark = next_step, now

    def notify(self, event: Any) -> None:
        if event.kind == STEP_STARTED:
            self._close(str(event.step_id))

    def finish(self) -> dict[str, dict[str, int]]:
        self._close(END)
        return self.by_step


def pending_orders(aws: Aws, shown: int = 10) -> str:
    """The oldest orders still pending, with where they are: what a failover that did not complete left."""
    store = OrderStore(aws)
    pending = sorted((o for status in ("ACCEPTED", "SUBMITTING", "IN_DOUBT") for o in store.by_status(status)),
                     key=lambda o: str(o.get("placed_at")))
    lines = [f"  {o.get('order_id')} {o.get('status')} at {o.get('provider')} placed {o.get('placed_at')}: "
             f"{(o.get('history') or [{}])[-1]}" for o in pending[:shown]]
    return f"{len(pending)} orders pending, the oldest:\n" + "\n".join(lines)


def by_service(counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in counts.items():
        service = key.split(".", 1)[0]
        out[service] = out.get(service, 0) + n
    return out


def one_run(settings: Settings, aws: Aws, operators: Operators, approver: ScriptedApprover) -> dict[str, Any]:
    """One failover from the primary to the secondary; its time, its requests and its steps."""
    flags = Flags(aws)
    flags.set("mode", "manual")
    flags.set("active", "primary")
    flags.set("processing", "running")
    meter = StepMeter(aws.counter)
    before = aws.counter.snapshot()
    start = time.perf_counter()
    outcome = engine.run_execution(settings, "failover", aws=aws, params=PARAMS, assume_yes=True, identity=EXECUTOR,
                                   operators=operators, on_approval_wait=approver, poll_seconds=0.05,
                                   observers=[meter])
    elapsed = time.perf_counter() - start
    steps = meter.finish()
    if not outcome.ok:
        raise SystemExit(f"failover did not complete: {outcome.status}: {outcome.reason}\n{pending_orders(aws)}")
    after = aws.counter.snapshot()
    return {"seconds": elapsed, "requests": {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)},
            "steps": steps, "durations": {r["step_id"]: float(r.get("duration") or 0.0) for r in outcome.steps}}


def measure(runs: int, settings: Settings, aws: Aws, operators: Operators) -> dict[str, Any]:
    """One warm-up run (clients, emulator tables), then ``runs`` counted ones."""
    approver = ScriptedApprover(settings, aws=aws, operators=operators, identities=APPROVERS)
    results = []
    for n in range(runs + 1):
        result = one_run(settings, aws, operators, approver)
        print(f"  run {n}{' (warm-up)' if n == 0 else ''}: {result['seconds']:.2f} s, "
              f"{sum(by_service(result['requests']).get(s, 0) for s in ('dynamodb',))} DynamoDB requests", flush=True)
        if n:
            results.append(result)
    return summarise(results)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["seconds"] for r in results]
    operations = sorted({k for r in results for k in r["requests"]})
    services = sorted({k.split(".", 1)[0] for k in operations})
    step_ids = list(dict.fromkeys(s for r in results for s in r["steps"]))
    return {
        "runs": len(results),
        "seconds": {"median": round(_median(times), 3), "min": round(min(times), 3), "max": round(max(times), 3),
                    "all": [round(t, 3) for t in times]},
        "requests_by_service": {s: _median([by_service(r["requests"]).get(s, 0) for r in results]) for s in services},
        "requests_by_operation": {k: _median([r["requests"].get(k, 0) for r in results]) for k in operations},
        "steps": {sid: {"requests": {s: _median([by_service(r["steps"].get(sid, {})).get(s, 0) for r in results])
                                     for s in services},
                        "seconds": round(_median([r["durations"].get(sid, 0.0) for r in results]), 3)}
                  for sid in step_ids},
    }


def idle(runs: int) -> dict[str, Any]:
    """The failover on a quiet emulator with the secondary broker only (no workers, no load)."""
    with failover_stage("bench-runbook-", RequestCounter()) as (settings, aws, operators):
        return measure(runs, settings, aws, operators)


def settled(aws: Aws, timeout: float = 120.0) -> None:
    """Wait until orders fill without a backlog (the oldest pending order younger than SETTLED_SECONDS)."""
    deadline = time.monotonic() + timeout
    age: float | None = None
    while time.monotonic() < deadline:
        age = oldest_pending_age(aws)
        if age is not None and float(age) < SETTLED_SECONDS:
            return
        time.sleep(0.5)
    raise SystemExit(f"the stack did not settle within {timeout:.0f} s (oldest pending order {age} s)\n"
                     f"{pending_orders(aws)}")


def placed_between(aws: Aws, since: str, until: str) -> int:
    """Customer orders placed in [since, until] (the load's, not the canaries')."""
    store = OrderStore(aws)
    ids = {o["order_id"] for status in STATES for o in store.by_status(status)
           if since <= str(o.get("placed_at")) <= until and not o.get("synthetic")}
    return len(ids)


def loaded_run(rate: float, warmup: float) -> dict[str, Any]:
    """One failover on a fresh private stack with live workers under steady load: ``warmup`` seconds of load with
    the primary healthy, then the primary goes down and the failover starts while the load goes on."""
    state_dir = Path(tempfile.mkdtemp(prefix="bench-runbook-stack-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env["TRADEOPS_STATE_DIR"] = str(state_dir)
    base = load_settings(state_dir=state_dir)
    supervisor.launch(base, workers=2, local=True, ports={})
    load: subprocess.Popen | None = None
    try:
        settings, _ = resolve_target(base)
        aws = Aws(settings, counter=RequestCounter())
        control = Aws(settings, counter=RequestCounter())  # the bench's own requests, not counted as the run's
        operators = install_roster(control, Operators(roles={k: frozenset(v) for k, v in ROLES.items()}))
        state = read_state(settings.state_file) or {}
        primary = SimControl(state["brokers"]["primary"]["control"])
        flags = Flags(control)
        for flag, value in (("mode", "manual"), ("active", "primary"), ("processing", "running")):
            flags.set(flag, value)
        # Its own session: the load and the Locust processes it starts are stopped together.
        errors = state_dir / "load.err"
        load = subprocess.Popen(["tradeops", "load", "run", "steady", "--rate", f"{rate:g}", "--duration",
                                 f"{warmup + LOAD_LIMIT:.0f}s", "--out", str(state_dir / "load"), "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=errors.open("w"), start_new_session=True)
        time.sleep(warmup)
        settled(control)
        primary.set_fault("down")
        approver = ScriptedApprover(settings, aws=aws, operators=operators, identities=APPROVERS)
        since = iso()
        result = one_run(settings, aws, operators, approver)
        until = iso()
        if load.poll() is not None:
            raise SystemExit(f"the load ended before the failover did: {errors.read_text()[-500:]}")
        # How much load the failover ran under: the orders the intake took meanwhile, counted from the table.
        placed = placed_between(control, since, until)
        result["load"] = {"placed": placed, "rate": round(placed / result["seconds"], 2)}
        return result
    finally:
        if load is not None and load.poll() is None:
            os.killpg(load.pid, signal.SIGTERM)  # the load was only the failover's weather: no reconciliation
            load.wait(60)
        supervisor.stop(base)


def loaded(runs: int, rate: float, warmup: float) -> dict[str, Any]:
    """One warm-up and ``runs`` counted failovers, each on a fresh stack (a backlog left by one run never
    slows the next: 20 orders/s is close to what this box's stack sustains)."""
    results = []
    for n in range(runs + 1):
        result = loaded_run(rate, warmup)
        print(f"  run {n}{' (warm-up)' if n == 0 else ''}: {result['seconds']:.2f} s, "
              f"{by_service(result['requests']).get('dynamodb', 0)} DynamoDB requests; load {result['load']}",
              flush=True)
        if n:
            results.append(result)
    summary = summarise(results)
    summary["load"] = {"target_rate": rate, "rates_during_runs": [r["load"]["rate"] for r in results]}
    return summary


def show(name: str, result: dict[str, Any]) -> None:
    secs = result["seconds"]
    print(f"\n{name}: failover runbook, mechanical part, median of {result['runs']} runs: {secs['median']:.2f} s "
          f"(min {secs['min']:.2f}, max {secs['max']:.2f})")
    print("  AWS requests per run: " + ", ".join(f"{s} {n:g}" for s, n in result["requests_by_service"].items()))
    print("  by operation: " + ", ".join(f"{k} {n:g}" for k, n in result["requests_by_operation"].items()))
    services = list(result["requests_by_service"])
    print(f"  {'step':<22}{'s':>7}" + "".join(f"{s:>16}" for s in services))
    for sid, row in result["steps"].items():
        print(f"  {sid:<22}{row['seconds']:>7.3f}" + "".join(f"{row['requests'].get(s, 0):>16g}" for s in services))
    if "load" in result:
        print(f"  load: {result['load']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("idle", "loaded"))
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the primary goes down")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.only in (None, "idle"):
        print("idle stack ...", flush=True)
        results["idle"] = idle(args.runs)
        show("idle", results["idle"])
    if args.only in (None, "loaded"):
        print("loaded stack ...", flush=True)
        results["loaded"] = loaded(args.runs, args.rate, args.warmup)
        show(f"under steady load at {args.rate:g} orders/s", results["loaded"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
