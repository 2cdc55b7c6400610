"""Mechanical time of the `failover` runbook on the local stack. Prints figures; not a test.

    python bench/bench_failover.py [--runs 7]

Starts its own moto server (with ``deploy/template.yaml`` deployed, like the test fixture) and
the simulated *secondary* broker; the primary's address is a closed port, so the primary is
down (connection refused) as in a real outage. No workers run: the fleet is drained at once
and the queue is empty. Then it runs the shipped ``failover`` runbook end to end, ``--yes``,
with a scripted approver granting each four-eyes step the moment it is requested (the time
that remains is the engine's, AWS's and the brokers', not the humans'), and the canary step
disabled with ``--param verify_canary=false`` (a canary order needs live workers to fill).

Each run is timed from ``run_execution`` entry to its return; the flags are reset between runs.
Reported: median, min and max over the runs, AWS requests per run by service (botocore's
``before-send`` event), and the median time per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tradeops.runbooks import engine
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runbooks.testing import ScriptedApprover, write_operators
from tradeops.runtime.brokers.sim import API_KEY_ENV, sim_command
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws, RequestCounter
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.supervisor import free_port, stop_process

TARGET_SECONDS = 10.0
KEY = "bench-key"


def _wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


ROLES = {"bench-executor": ["duty-engineer"], "bench-ops-manager": ["ops-manager"], "bench-risk": ["risk"]}


@contextmanager
def failover_stage(prefix: str, counter: RequestCounter | None = None) -> Iterator[tuple[Settings, Aws, Operators]]:
    """Its own emulator with the template deployed, the simulated secondary broker, and a closed port as the
    primary (down: connection refused); settings, clients (counting into ``counter``) and the roster (ROLES)."""
    procs: list[subprocess.Popen] = []
    try:
        aws_port = free_port()
        moto = subprocess.Popen([sys.executable, "-m", "tradeops.runtime.stack.emulator", "-H", "127.0.0.1",
                                 "-p", str(aws_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(moto)
        endpoint = f"http://127.0.0.1:{aws_port}"
        _wait_http(f"{endpoint}/moto-api/", moto, "moto server")
        order_port, control_port, dead_port = free_port(), free_port(), free_port()
        sim = subprocess.Popen(sim_command(name="secondary", wire="beta", host="127.0.0.1", order_port=order_port,
                                           control_port=control_port, seed=1),
                               env={**os.environ, API_KEY_ENV: KEY}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        procs.append(sim)
        _wait_http(f"http://127.0.0.1:{control_port}/_sim/health", sim, "secondary broker")
        work = Path(tempfile.mkdtemp(prefix=prefix))
        operators = write_operators(work / "operators.yaml", ROLES)
        settings = load_settings(
            aws_endpoint_url=endpoint, name_prefix="bench", param_prefix="/bench", stack_name="bench",
            state_dir=work / "state", primary_url=f"http://127.0.0.1:{dead_port}", primary_api_key=KEY,
            secondary_url=f"http://127.0.0.1:{order_port}", secondary_api_key=KEY,
            operator="bench-executor", operators_file=work / "operators.yaml")
        aws = Aws(settings, counter=counter)
        deploy_stack(aws, settings)
        yield settings, aws, operators
    finally:
        for proc in reversed(procs):
            stop_process(proc, 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with failover_stage("bench-failover-") as (settings, aws, operators):
        flags = Flags(aws)
        approvers = [Identity("bench-ops-manager", "bench"), Identity("bench-risk", "bench")]
        approver = ScriptedApprover(settings, aws=aws, operators=operators, identities=approvers)
        requests: dict[str, int] = {}

        def count(event_name: str, **_: object) -> None:
            service = event_name.split(".")[1]
            requests[service] = requests.get(service, 0) + 1

        for service in ("dynamodb", "ssm", "sns", "sts", "secretsmanager", "sqs"):
            aws.client(service).meta.events.register("before-send", count)
        totals: list[float] = []
        per_step: dict[str, list[float]] = {}
        for run in range(args.runs + 1):  # the first run warms up clients and moto's tables
            flags.set("processing", "running")
            flags.set("active", "primary")
            flags.set("mode", "manual")
            start = time.perf_counter()
            outcome = engine.run_execution(
                settings, "failover", aws=aws, params={"verify_canary": "false"}, assume_yes=True,
                identity=Identity("bench-executor", "bench"), operators=operators, on_approval_wait=approver,
                poll_seconds=0.05)
            elapsed = time.perf_counter() - start
            if not outcome.ok:
                raise SystemExit(f"failover did not complete: {outcome.status}: {outcome.reason}")
            if run == 0:
                requests.clear()
                continue
            totals.append(elapsed)
            for rec in outcome.steps:
                per_step.setdefault(rec["step_id"], []).append(float(rec.get("duration") or 0.0))
        median = statistics.median(totals)
        print(f"failover runbook, mechanical part ({args.runs} runs after 1 warm-up; approvals scripted, "
              f"canary off)")
        print(f"  median {median:.2f} s   min {min(totals):.2f} s   max {max(totals):.2f} s   "
              f"target < {TARGET_SECONDS:.0f} s: {'met' if median < TARGET_SECONDS else 'MISSED'}")
        per_run = ", ".join(f"{svc} {n / args.runs:.0f}" for svc, n in sorted(requests.items()))
        print(f"  AWS requests per run: {per_run}")
        print("  median per step (s):")
        for step_id, durations in per_step.items():
            print(f"    {step_id:<22} {statistics.median(durations):6.3f}")
        return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
