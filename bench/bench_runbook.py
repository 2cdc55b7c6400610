"""AWS requests per runbook step and the failover runbook's mechanical time, idle and under load. Not a test.

    python bench/bench_runbook.py [--runs 5] [--only idle|loaded] [--rate 20] [--json FILE]

Runs the shipped ``failover`` runbook end to end, ``--yes``, its four-eyes steps approved by
``tradeops.runbooks.testing.ScriptedApprover`` the moment they ask (so no time is a person's), the
canary step off (``verify_canary=false``, as bench_failover.py), one warm-up run and then ``--runs``
counted runs, on two stacks:

- **idle**: as bench_failover.py: its own emulator with ``deploy/template.yaml`` deployed, the
  simulated secondary broker, the primary's address a closed port (down, connection refused), no
  workers and no load;
- **loaded**: a private local stack (``tradeops up``: emulator, both brokers, intake, 2 workers,
  monitor, price feed, canary, anchorer), routing manual, and ``tradeops load run steady --rate 20``
  in its own process the whole time. Before each run the primary is healed and active until the
  orders fill again without a backlog (the oldest pending order under 5 s), then faulted ``down``
  (connection refused) and the failover starts at once, as an operator answering the outage would:
  every run pauses and drains live workers, switches them, resumes them and waits for the backlog.

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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_failover import ROLES, failover_stage

from tradeops.runbooks import engine
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runbooks.testing import ScriptedApprover, install_roster
from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.orderpath import ops
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.aws import Aws, RequestCounter
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.platform.statefile import read_state, resolve_target
from tradeops.runtime.stack import supervisor

EXECUTOR = Identity("bench-executor", "bench")
APPROVERS = [Identity("bench-ops-manager", "bench"), Identity("bench-risk", "bench")]
PARAMS = {"verify_canary": "false"}
# Event kinds spelled here, not imported: the same file runs against checkouts older than their names.
STEP_STARTED = "step.started"
START, END = "(start)", "(end)"
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


def measure(runs: int, settings: Settings, aws: Aws, operators: Operators,
            between: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """One warm-up run (clients, emulator tables), then ``runs`` counted ones."""
    approver = ScriptedApprover(settings, aws=aws, operators=operators, identities=APPROVERS)
    results = []
    for n in range(runs + 1):
        between()
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


def settle(aws: Aws, primary: SimControl, timeout: float = 240.0) -> None:
    """The primary healthy and active until orders fill without a backlog; then the primary goes down."""
    primary.set_fault("none")
    flags = Flags(aws)
    flags.set("mode", "manual")
    flags.set("active", "primary")
    flags.set("processing", "running")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        age = ops.oldest_pending_age(aws)
        if age is not None and float(age) < SETTLED_SECONDS:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"the stack did not settle within {timeout:.0f} s (oldest pending order {age} s)\n"
                         f"{pending_orders(aws)}")
    primary.set_fault("down")


def loaded(runs: int, rate: float, load_seconds: float, warmup: float) -> dict[str, Any]:
    """The failover on a private local stack with live workers under steady load, the primary just gone down."""
    state_dir = Path(tempfile.mkdtemp(prefix="bench-runbook-stack-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env["TRADEOPS_STATE_DIR"] = str(state_dir)
    base = load_settings(state_dir=state_dir)
    print(f"starting a private stack in {state_dir} ...", flush=True)
    supervisor.launch(base, workers=2, local=True, ports={})
    load: subprocess.Popen | None = None
    try:
        settings, _ = resolve_target(base)
        aws = Aws(settings, counter=RequestCounter())
        control = Aws(settings, counter=RequestCounter())  # the bench's own requests, not counted as the run's
        operators = install_roster(control, Operators(roles={k: frozenset(v) for k, v in ROLES.items()}))
        state = read_state(settings.state_file) or {}
        primary = SimControl(state["brokers"]["primary"]["control"])
        Flags(control).set("mode", "manual")
        out = state_dir / "load"
        print(f"steady load at {rate:g} orders/s for {load_seconds:.0f} s (its own process) ...", flush=True)
        load = subprocess.Popen(["tradeops", "load", "run", "steady", "--rate", f"{rate:g}", "--duration",
                                 f"{load_seconds:.0f}s", "--drain", "60s", "--out", str(out), "--json", "--quiet"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(warmup)
        started = time.monotonic()

        def between() -> None:
            if load is not None and load.poll() is not None:
                why = load.stderr.read()[-2000:] if load.stderr else ""
                raise SystemExit(f"the load stopped before the runs ended: {why}")
            settle(control, primary)

        result = measure(runs, settings, aws, operators, between)
        result["under_load_seconds"] = round(time.monotonic() - started, 1)
        if load.poll() is not None:
            raise SystemExit("the load stopped before the last run ended: raise --load-seconds")
        primary.set_fault("none")
        stdout, stderr = load.communicate(timeout=load_seconds + 600)
        try:
            summary = json.loads(stdout)
            orders = summary["orders"]
            result["load"] = {"target_rate": rate, "achieved_rate": round(summary["rates"]["achieved"], 2),
                              **{k: orders.get(k) for k in ("placed", "filled", "lost", "filled_twice", "pending")}}
        except (ValueError, KeyError, TypeError):
            result["load"] = {"error": (stderr or stdout)[-500:]}
        return result
    finally:
        if load is not None and load.poll() is None:
            load.terminate()
            load.wait(60)
        supervisor.stop(base)


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
    parser.add_argument("--load-seconds", type=float, default=300.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.only in (None, "idle"):
        print("idle stack ...", flush=True)
        results["idle"] = idle(args.runs)
        show("idle", results["idle"])
    if args.only in (None, "loaded"):
        print("loaded stack ...", flush=True)
        results["loaded"] = loaded(args.runs, args.rate, args.load_seconds, args.warmup)
        show(f"under steady load at {args.rate:g} orders/s", results["loaded"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
