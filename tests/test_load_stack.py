"""`tradeops load run`, `tradeops env` and plain `locust` against the session's local stack.

Locust always runs as its own process (the CLI starts it; these tests start the CLI), so gevent
never enters pytest. Rates and durations are short; full-length figures are in bench/.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest

from tests.support.orderflow import fresh_flow
from tests.support.stack import REPO, run_cli, running_stack, stack_environment

SUMMARY_SCHEMA = json.loads((REPO / "experiments" / "load-summary.schema.json").read_text())


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory: pytest.TempPathFactory):
    """A local stack of the load tests' own (same `tradeops up` as the shared stack).

    20 orders a second is near what moto serves on two cores, and the shared stack's moto has served
    every stack test: its streams and tables hold their records, and moto's reads grow with them. A
    fresh stack measures the load run, not the suite's history, and the shared stack is spared the
    paused flag and the hundreds of orders these runs place. The load tests run in the drill tier,
    after the shared stack has stopped, so that its background work is not measured either.
    """
    env = stack_environment(tmp_path_factory.mktemp("load-stack"))
    # The platform's own timeouts and leases, not the crash tests' short ones: a 1 s broker read
    # timeout on a busy box parks orders IN_DOUBT, which is not what a load run is meant to measure.
    for name in ("TRADEOPS_WORKER_LEASE_SECONDS", "TRADEOPS_QUEUE_VISIBILITY_SECONDS", "TRADEOPS_BROKER_READ_TIMEOUT"):
        env.pop(name)
    with running_stack(env) as info:
        yield info


@pytest.fixture
def flow(load_stack):
    """A Flow on the load stack, with routing flags and broker faults reset before and after the test."""
    with fresh_flow(load_stack) as f:
        yield f


def _table(stack: dict[str, Any]):
    return boto3.client("dynamodb", endpoint_url=stack["aws_endpoint"], region_name=stack["region"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _orders_with_prefix(stack: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Every order in the orders table whose id starts with ``prefix`` (a filtered Scan: the test's own
    count, independent of the ids the load run recorded)."""
    client = _table(stack)
    kwargs: dict[str, Any] = {"TableName": "tradeops-orders", "FilterExpression": "begins_with(order_id, :p)",
                              "ExpressionAttributeValues": {":p": {"S": prefix}},
                              "ProjectionExpression": "order_id, #s", "ExpressionAttributeNames": {"#s": "status"}}
    items = []
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _load(env: dict[str, str], out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_cli("load", "run", *args, "--out", str(out), "--json", "--quiet", env=env, timeout=timeout)


def test_steady_20_a_second_for_30s_passes_and_every_placed_order_is_in_the_table(load_stack, flow, tmp_path):
    """`load run steady --rate 20 --duration 30s` exits 0; 0 lost, 0 filled twice; placed == the orders in
    the table carrying the run id; the run folder holds Locust's CSV/HTML, the reconciliation and the summary."""
    out = tmp_path / "steady"
    done = _load(load_stack["env"], out, "steady", "--rate", "20", "--duration", "30s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    summary = json.loads(done.stdout)
    jsonschema.validate(summary, SUMMARY_SCHEMA)
    assert summary["passed"] and summary["breached"] == []
    orders = summary["orders"]
    assert orders["lost"] == 0 and orders["filled_twice"] == 0 and orders["wrong_broker"] == 0
    assert orders["placed"] >= 0.95 * 600
    in_table = _orders_with_prefix(load_stack, summary["run_id"] + "-")
    assert orders["placed"] == len(in_table)
    assert orders["filled"] + orders["rejected"] == orders["placed"]
    assert summary["reconciliation"]["fills_checked"] and summary["reconciliation"]["drained"]
    ttf = summary["time_to_fill"]
    assert ttf["count"] == orders["filled"] and 0 < ttf["p50"] <= ttf["p90"] <= ttf["p99"] <= ttf["max"]
    assert sum(b["placed"] for b in summary["timeline"]) == orders["placed"]
    assert sum(sum(b["filled"].values()) for b in summary["timeline"]) == orders["filled"]
    per_order = summary["aws_requests"]["per_filled_order"]
    assert per_order["total"] > 2 and {"dynamodb", "sqs"} <= set(per_order["by_service"])
    for name in ("locust.html", "locust_stats.csv", "locust.json", "reconciliation.json", "summary.json",
                 "scenario.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    recon = json.loads((out / "reconciliation.json").read_text())
    assert sorted(recon["ids"]["filled"] + recon["ids"]["rejected"]) == sorted(i["order_id"]["S"] for i in in_table)


def test_an_impossible_threshold_fails_the_run_and_names_the_measured_value(load_stack, flow, tmp_path):
    """--threshold "time_to_fill p99 < 1ms" exits 1; the output names that threshold and what was measured."""
    done = _load(load_stack["env"], tmp_path / "tight", "steady", "--rate", "20", "--duration", "10s",
                 "--threshold", "time_to_fill p99 < 1ms")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    assert "time_to_fill p99 < 1ms: measured " in done.stderr and "BREACHED" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    verdict = next(t for t in summary["thresholds"] if t["metric"] == "time_to_fill p99")
    assert verdict["source"] == "command line" and not verdict["passed"] and verdict["measured"] > 0.001
    assert summary["orders"]["lost"] == 0


def test_with_processing_paused_for_the_whole_run_the_load_run_fails_on_unfilled_orders(load_stack, flow, tmp_path):
    """Processing paused throughout: exit 1 naming the pending-after-drain and time-to-fill thresholds."""
    flow.flag("processing", "paused")
    time.sleep(1.0)  # workers read the flags at most every half second
    done = _load(load_stack["env"], tmp_path / "paused", "steady", "--rate", "5", "--duration", "5s", "--drain", "2s")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    assert "orders pending after drain == 0: measured" in done.stderr
    assert "time_to_fill p99 < 2s: measured nothing (not measured)" in done.stderr
    summary = json.loads(done.stdout)
    assert not summary["passed"]
    assert summary["orders"]["filled"] == 0 and summary["orders"]["pending"] == summary["orders"]["placed"] > 0


def test_two_locust_workers_produce_the_same_kind_of_summary(load_stack, flow, tmp_path):
    """--workers 2 runs a master and two Locust workers; both place orders and the summary is complete.

    (Speed is not what this proves: the time-to-fill and rate thresholds are widened so that a busy
    machine does not decide it; nothing lost, doubled or left pending still must hold.)"""
    out = tmp_path / "distributed"
    done = _load(load_stack["env"], out, "steady", "--rate", "10", "--duration", "8s", "--workers", "2",
                 "--threshold", "time_to_fill p99 < 60s", "--threshold", "achieved rate >= 50% of target",
                 "--drain", "60s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    summary = json.loads(done.stdout)
    jsonschema.validate(summary, SUMMARY_SCHEMA)
    assert summary["parameters"]["workers"] == 2
    per_worker = [len(p.read_text().split()) for p in (out / "orders").glob("worker-*.accepted")]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker)
    assert summary["orders"]["placed"] == sum(per_worker) == len(_orders_with_prefix(load_stack,
                                                                                      summary["run_id"] + "-"))
    assert summary["orders"]["lost"] == 0 and summary["orders"]["filled_twice"] == 0
    assert (out / "locust-worker-1.log").is_file() and (out / "locust-worker-2.log").is_file()


def test_plain_locust_after_tradeops_env_places_orders_that_fill(load_stack, flow, tmp_path):
    """eval "$(tradeops env)" then `locust -f loadtests/locustfile.py --headless -u 5 -r 5 -t 10s` places orders
    through the intake that fill."""
    run_id = f"plain-{uuid.uuid4().hex[:8]}"
    env = {**load_stack["env"], "TRADEOPS_LOAD_RUN_ID": run_id}
    command = ('eval "$(tradeops env)" && locust -f ' + shlex.quote(str(REPO / "loadtests" / "locustfile.py"))
               + " --headless -u 5 -r 5 -t 10s")
    done = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "POST /orders" in done.stderr  # Locust prints its stats tables on stderr
    deadline = time.monotonic() + 30
    while True:
        orders = _orders_with_prefix(load_stack, run_id + "-")
        statuses = {o["status"]["S"] for o in orders}
        if orders and statuses <= {"FILLED", "REJECTED"}:
            break
        assert time.monotonic() < deadline, f"orders not settled: {statuses}"
        time.sleep(0.5)
    assert len(orders) >= 40  # 5 customers, one order a second each, for 10 s
    assert sum(o["status"]["S"] == "FILLED" for o in orders) >= 0.7 * len(orders)


def test_tradeops_env_prints_the_exports_for_the_running_stack(load_stack):
    """`tradeops env` exports the intake URL, token file, AWS endpoint and region of the running stack."""
    done = run_cli("env", env=load_stack["env"])
    assert done.returncode == 0, done.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
    assert exports["TRADEOPS_INTAKE_URL"] == load_stack["intake"]
    assert exports["AWS_ENDPOINT_URL"] == load_stack["aws_endpoint"]
    assert exports["AWS_REGION"] == load_stack["region"] == exports["AWS_DEFAULT_REGION"]
    assert Path(exports["TRADEOPS_INTAKE_TOKEN_FILE"]).is_file()
    assert json.loads(run_cli("env", "--json", env=load_stack["env"]).stdout) == exports


def test_tradeops_env_without_a_stack_says_so_in_one_line(processes, tmp_path):
    """No stack: `tradeops env` exits 1 with one line, no exports."""
    done = run_cli("env", env={"PATH": __import__("os").environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path)})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == "error: the stack is not up (run `tradeops up`)"


@pytest.mark.parametrize("args,needle", [
    (("no-such-scenario",), "unknown scenario 'no-such-scenario'"),
    (("steady", "--threshold", "time_to_fill p99 < soon"), "is not a duration like 2s or 500ms"),
    (("steady", "--threshold", "latency p99 < 2s"), "unknown metric 'latency p99'"),
    (("steady", "--rate", "lots"), "--param rate='lots': not a number"),
    (("steady", "--param", "every"), "--param expects NAME=VALUE"),
    (("steady", "--drain", "forever"), "not a duration"),
])
def test_bad_usage_exits_2_with_one_line_and_writes_nothing(processes, tmp_path, args, needle):
    """An unknown scenario or a malformed threshold or parameter: exit 2, one line on stderr, no run folder."""
    env = {"PATH": __import__("os").environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path / "state")}
    out = tmp_path / "run"
    done = run_cli("load", "run", *args, "--out", str(out), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not out.exists()


def test_load_list_and_show_describe_the_scenarios_without_a_stack(processes, tmp_path):
    """`load list` names the four shipped scenarios; `load show` gives the stairs and the thresholds in force."""
    env = {"PATH": __import__("os").environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path)}
    listed = json.loads(run_cli("load", "list", "--json", env=env).stdout)
    assert [s["name"] for s in listed] == ["market-open", "spike", "steady", "step"]
    shown = run_cli("load", "show", "step", "--param", "every=10s", "--param", "duration=30s", "--json", env=env)
    info = json.loads(shown.stdout)
    assert [s["rate"] for s in info["stages"]] == [10, 20, 30]
    assert info["expected_orders"] == 600
    sources = {t["threshold"]: t["source"] for t in info["thresholds"]}
    assert sources["orders lost == 0"] == "built-in" and sources["time_to_fill p99 < 2s"] == "scenario"
