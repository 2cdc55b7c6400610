"""The failover and failback runbooks driven from the terminal against live workers, with real approvers."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from tests.support.orderflow import Flow
from tests.support.stack import run_cli

ROSTER = {"ops-alice": ["duty-engineer"], "ops-bob": ["ops-manager"], "risk-carol": ["risk"]}


def _run_with_approvers(flow: Flow, env: dict, runbook: str, execution_id: str, params: list[str],
                        steps: list[str]) -> subprocess.CompletedProcess:
    """Run a runbook unattended as ops-alice while ops-bob and risk-carol approve from their own 'terminals'."""
    argv = ["tradeops", "runbook", "run", runbook, "--yes", "--poll", "0.2", "--execution-id", execution_id]
    for p in params:
        argv += ["--param", p]
    runner = subprocess.Popen(argv, env=dict(env, TRADEOPS_OPERATOR="ops-alice"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    approved: set[tuple[str, str]] = set()
    stop = threading.Event()

    def approvers() -> None:
        while not stop.is_set() and len(approved) < 2 * len(steps):
            for step in steps:
                for who in ("ops-bob", "risk-carol"):
                    if (step, who) in approved:
                        continue
                    got = run_cli("runbook", "approve", execution_id, step, "--reason", "e2e drill", "--yes",
                                  env=dict(env, TRADEOPS_OPERATOR=who))
                    if got.returncode == 0:
                        approved.add((step, who))
            time.sleep(0.3)

    thread = threading.Thread(target=approvers)
    thread.start()
    try:
        out, err = runner.communicate(timeout=240)
    finally:
        stop.set()
        thread.join()
    return subprocess.CompletedProcess(argv, runner.returncode, out, err)


def _flag_history(flow: Flow, since: str) -> list[tuple[str, str, str]]:
    items = flow.dynamodb.query(TableName="tradeops-events", KeyConditionExpression="#s = :s AND at_id >= :t",
                                ExpressionAttributeNames={"#s": "stream"},
                                ExpressionAttributeValues={":s": {"S": "routing"}, ":t": {"S": since}})["Items"]
    events = [json.loads(i["body"]["S"]) for i in items if i["kind"]["S"] == "flag_set"]
    return [(e["flag"], e["after"], e["actor"]) for e in events]


def test_failover_then_failback_with_two_approvers(flow, tmp_path):
    """`failover` run unattended with two approvers moves processing paused → secondary active → running;
    orders posted before, during and after fill exactly once (the after ones at the secondary); `failback`
    brings new orders back to the primary; `report incident` reports the failover and `report execution-quality`
    compares the two brokers on its orders."""
    flow.roster(ROSTER)
    env = dict(flow.stack["env"])
    prefix = flow.unique("fo")
    before = flow.post_many(prefix + "-before", 10)
    flow.wait_final(before, timeout=30)

    flow.fault("primary", "down")
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    during = flow.post_many(prefix + "-during", 10)
    execution = flow.unique("failover")
    result = _run_with_approvers(flow, env, "failover", execution,
                                 ["drain_timeout=30", "canary_timeout=20", "backlog_age_limit=600"],
                                 ["declare-void", "toggle-to-secondary"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    changes = [(f, v) for f, v, who in _flag_history(flow, since) if who == "ops-alice"]
    assert changes[:3] == [("processing", "paused"), ("active", "secondary"), ("processing", "running")]

    after = flow.post_many(prefix + "-after", 10)
    orders = flow.wait_final(before + during + after, timeout=60)
    by_provider = flow.reconcile(orders)
    assert all(orders[o]["provider"] == "secondary" for o in after)
    assert all(orders[o]["provider"] == "primary" for o in before)
    assert sum(len(c) for c in by_provider.values()) == 30

    history = run_cli("runbook", "history", "--json", execution, env=env)
    assert history.returncode == 0
    timeline = json.loads(history.stdout)
    assert "ops-bob" in history.stdout and "risk-carol" in history.stdout
    assert timeline
    _incident_report_of(execution, env, during, tmp_path)

    flow.fault("primary", "none")
    back = flow.unique("failback")
    result = _run_with_approvers(flow, env, "failback", back,
                                 ["healthy_seconds=2", "backlog_age_limit=600", "canary_timeout=20"],
                                 ["toggle-to-primary"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    later = flow.post_many(prefix + "-later", 10)
    orders = flow.wait_final(later, timeout=60)
    flow.reconcile(orders)
    assert {o["provider"] for o in orders.values()} == {"primary"}
    assert run_cli("audit", "verify", env=env).returncode == 0
    quality = run_cli("report", "execution-quality", "--since", time.strftime("%Y-%m-%d", time.gmtime()), "--json",
                      env=env)
    assert quality.returncode == 0, quality.stderr
    brokers = json.loads(quality.stdout)["brokers"]
    assert brokers["primary"]["fills"] >= 20 and brokers["secondary"]["fills"] >= 10  # before/later; during/after
    assert brokers["secondary"]["latency_ms"]["p50"] > 0 and brokers["secondary"]["slippage_bps"]["mean"] is not None


def _incident_report_of(execution: str, env: dict, during: list[str], tmp_path) -> None:
    """`tradeops report incident` on the failover just run: the timeline, the executor and the two human approvers
    with their identity source (human four-eyes, nothing automated), the orders of the window, and the verdict."""
    done = run_cli("report", "incident", execution, "--json", "--lookback", "2m",
                   env=dict(env, TRADEOPS_OPERATOR="compliance-dana", TRADEOPS_RUNS_DIR=str(tmp_path / "runs")))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = json.loads(done.stdout)
    assert built["kind"] == "incident" and built["id"] == execution
    assert built["folder"] == str(tmp_path / "runs" / "incidents" / execution)
    from pathlib import Path

    folder = Path(built["folder"])
    evidence = json.loads((folder / "evidence.json").read_text())
    people = evidence["people"]
    approvals = {(r["step"], r["identity"]) for r in people["rows"] if r["action"] == "approved"}
    # declare-void asks for approval only when orders are in doubt at the primary; the switch always does.
    assert {("toggle-to-secondary", "ops-bob"), ("toggle-to-secondary", "risk-carol")} <= approvals
    assert approvals <= {(s, who) for s in ("declare-void", "toggle-to-secondary") for who in ("ops-bob", "risk-carol")}
    assert people["human_four_eyes"] and not any(r["automated"] for r in people["rows"])
    assert {r["identity_source"] for r in people["rows"]} == {"TRADEOPS_OPERATOR"}
    assert any(r["identity"] == "ops-alice" and r["action"] == "started the runbook" for r in people["rows"])
    milestones = [r["milestone"] for r in evidence["timeline"] if r["milestone"]]
    assert {"detected", "runbook started", "failed over", "recovered"} <= set(milestones)
    assert milestones.index("runbook started") < milestones.index("failed over") < milestones.index("recovered")
    assert evidence["customer_impact"]["orders_placed"] >= len(during)
    assert evidence["customer_impact"]["longest_wait_seconds"] is not None
    # This failover's own figures are within tolerance; the verdict follows every metric, including figures of
    # other orders in the window (the session stack is shared: another test's double execution may fall in it).
    duration = evidence["results"][0]
    assert duration["tolerance"] == "<= 1800" and duration["passed"] is True
    outside = [r for r in evidence["results"] if r["passed"] is False]
    verdicts = {t["metric"]: t["verdict"] for t in evidence["tolerance"]}
    assert verdicts["time"] == "within tolerance", evidence["tolerance"]
    if outside:
        assert evidence["verdict"] == "outside tolerance", evidence["results"]
    expected = ("outside tolerance" if "outside tolerance" in verdicts.values() else "within tolerance"
                if set(verdicts.values()) == {"within tolerance"} else "not judged in full")
    assert evidence["verdict"] == expected, evidence["tolerance"]
    html = (folder / "report.html").read_text()
    assert "ops-bob" in html and "risk-carol" in html and "Human four-eyes: <strong>yes</strong>" in html
    assert {"execution.json", "events.json", "orders.json"} <= {f["path"] for f in evidence["evidence"]}
