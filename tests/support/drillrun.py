"""Drills as a test runs them: `tradeops drill run` with its JSON answer, and what a drill must leave as it found."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.orderflow import Flow
from tests.support.stack import run_cli

RUN_FOLDER = ("result.json", "journal.json", "timeline.json", "events.json", "audit.json", "experiment.yaml",
              "load/summary.json", "load/reconciliation.json", "orders.json", "evidence.json", "report.html",
              "report.md")
SHORT = ("--rate", "5", "--duration", "3s", "--recover", "8s", "--drain", "30s")
"""A drill as short as it can be and still be judged (test time; full-length figures are in bench/)."""
# Per scenario, on top of SHORT. Time back on the primary needs 20 submissions after the breakers close
# (3 s open, then probes): at 5/s on a busy box 8 s of recovery can end before that. The manual failover
# holds orders for as long as its runbook takes, which on a saturated test box has reached 100 s; this test
# judges the run and its folder, not that pace (the stop condition has a test of its own).
EXTRA = {"primary-outage": ("--recover", "12s"), "manual-failover": ("--stop-oldest-pending", "300s")}
# The drills whose fault is a path that refuses or never answers run through the fault proxies rather than the
# simulators (the same faults: bench/bench_fault_backends.py compares the two); the rest through the simulators.
PROXIED = ("primary-outage", "primary-blackhole")
RUNBOOK_SCENARIOS = ("manual-failover", "failback")
"""The scenarios that run runbooks: drilled by tests/test_drill_examples.py, the others by tests/test_drills_stack.py
(two drill stacks side by side on the suite's two workers)."""


def drill(env: dict[str, str], out: Path, *args: str, timeout: float = 240,
          quiet: bool = True) -> subprocess.CompletedProcess[str]:
    """`tradeops drill run ARGS --out OUT --json` on the stack of ``env``."""
    return run_cli("drill", "run", *args, "--out", str(out), "--json", *(("--quiet",) if quiet else ()), env=env,
                   timeout=timeout)


def routing_state(flow: Flow) -> dict[str, Any]:
    """The brokers' and their proxies' faults and the routing flags: what a drill must leave as it found them."""
    brokers = flow.stack["brokers"]
    faults = {p: flow.http.get(f"{brokers[p]['control']}/_sim/fault").json()["mode"] for p in ("primary", "secondary")}
    faults |= {f"proxy-{p}": flow.http.get(f"{brokers[p]['proxy']}/_proxy/fault").json()["mode"]
               for p in ("primary", "secondary")}
    flags = {name: flow.ssm.get_parameter(Name=f"/tradeops/{name}")["Parameter"]["Value"]
             for name in ("processing", "routing/mode", "routing/active")}
    return {"faults": faults, "flags": flags}


def passes_through_drill_run(drill_stack: dict[str, Any], flow: Flow, tmp_path: Path, scenario: str) -> Path:
    """`tradeops drill run SCENARIO` (short) on the drill stack exits 0 with the verdict passed; the run folder
    holds the journal, load summary, timeline (sampled about once a second), events, audit excerpt and result.json;
    piped, with --json and without --quiet, it prints nothing but the result; 0 lost, 0 filled twice; faults and
    flags as they were; the backend the scenario breaks through (:data:`PROXIED`: the fault proxies) is the one
    recorded. Returns the run folder."""
    before = routing_state(flow)
    out = tmp_path / scenario
    backend = "proxy" if scenario in PROXIED else "sim"
    done = drill(drill_stack["env"], out, scenario, *SHORT, *EXTRA.get(scenario, ()),
                  *(("--backend", backend) if scenario in PROXIED else ()), quiet=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stderr == ""
    result = json.loads(done.stdout)
    assert result["passed"] and result["verdict"] == "passed" and result["run_dir"] == str(out)
    for name in RUN_FOLDER:
        assert (out / name).is_file(), name
    assert not (out / "report-error.txt").exists(), (out / "report-error.txt").read_text()
    assert json.loads((out / "result.json").read_text()) == result
    samples = json.loads((out / "timeline.json").read_text())["samples"]
    span = (len(samples) - 1) or 1
    assert len(samples) >= 5 and all("flags" in s and "queue" in s and "workers" in s for s in samples[:3])
    from tradeops.runtime.platform.clock import parse_iso

    seconds = (parse_iso(samples[-1]["at"]) - parse_iso(samples[0]["at"])).total_seconds()
    assert seconds / span <= 1.5  # about once a second (each sample takes a few AWS reads)
    assert result["journal"]["steady_state_before"] and result["journal"]["steady_state_after"]
    figures = result["figures"]
    assert figures["orders_lost"] == 0 and figures["orders_filled_twice"] == 0 and figures["orders_placed"] > 0
    assert routing_state(flow) == before
    used = result["fault_backend"]
    assert used["name"] == backend and result["target"]["kind"] == "local"
    assert result["reconciliation"] == {"method": "the brokers' fill ledgers", "note": None, "not_checked": []}
    assert {i["output"]["backend"] for i in used["injections"] if "backend" in (i["output"] or {})} <= {backend}
    if scenario in PROXIED:
        seen = used["observed"]["proxies"]
        assert seen["primary"]["upstream_lost"] == [] and seen["secondary"]["upstream_lost"] == []
        injected = {i["output"]["fault"]["mode"] for i in used["injections"] if "fault" in (i["output"] or {})}
        assert {"down" if scenario == "primary-outage" else "blackhole", "none"} <= injected
        if scenario == "primary-blackhole":
            assert seen["primary"]["counters"]["blackholed"] > 0  # the workers' requests were held by the proxy
    if scenario == "primary-latency":
        # Zero double fills by the brokers' own ledgers, not only by our records.
        ids = set((out / "load" / "orders").glob("*.accepted").__next__().read_text().split())
        fills = Counter(f["order_id"] for p in ("primary", "secondary") for f in flow.fills(p) if f["order_id"] in ids)
        assert fills and max(fills.values()) == 1
        assert figures["orders_in_doubt_unresolved"] == 0
    if scenario == "price-shock":
        assert figures["exposure_alerts"] >= 1 and float(figures["reimbursements_owed_gbp"]) > 0
    return out
