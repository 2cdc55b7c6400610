"""The foundation: `tradeops up/status/down`, the template deployed into the emulator, the CLI's errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import httpx
import pytest

from tests.support.stack import run_cli


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def _client(stack: dict, service: str):
    return boto3.client(service, endpoint_url=stack["aws_endpoint"], region_name=stack["region"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_status_json_names_every_address(shared_stack):
    """`status --json` gives the AWS endpoint, region, both brokers' order and control URLs, intake and health, and
    says the local stack's brokers and price feed are simulated."""
    assert shared_stack["aws_endpoint"].startswith("http://127.0.0.1:")
    assert shared_stack["region"] == "eu-west-2"
    for provider in ("primary", "secondary"):
        assert shared_stack["brokers"][provider]["url"].startswith("http://127.0.0.1:")
        assert shared_stack["brokers"][provider]["control"].startswith("http://127.0.0.1:")
        assert shared_stack["sources"][provider]["simulated"] is True
        assert shared_stack["sources"][provider]["endpoint"] == shared_stack["brokers"][provider]["url"]
    assert shared_stack["sources"]["prices"] == {"simulated": True, "endpoint": shared_stack["prices"],
                                                 "stream": "tradeops-prices"}
    assert shared_stack["intake"].startswith("http://127.0.0.1:")
    assert shared_stack["components"] and all(shared_stack["components"].values()), shared_stack["components"]


def test_template_resources_exist_in_the_emulator(shared_stack):
    """boto3 at the stack's endpoint finds the queue with its DLQ redrive, the tables, the stream, the flags and the
    alert and approvers' topics, and the orders table's two indexes (by status, by watch)."""
    sqs = _client(shared_stack, "sqs")
    url = sqs.get_queue_url(QueueName="tradeops-orders")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":tradeops-orders-dlq")
    assert int(redrive["maxReceiveCount"]) == 5
    assert attrs.get("KmsMasterKeyId")
    tables = set(_client(shared_stack, "dynamodb").list_tables()["TableNames"])
    assert {"tradeops-orders", "tradeops-exposure", "tradeops-reimbursements", "tradeops-executions",
            "tradeops-heartbeats", "tradeops-audit", "tradeops-events"} <= tables
    index = _client(shared_stack, "dynamodb").describe_table(TableName="tradeops-orders")["Table"][
        "GlobalSecondaryIndexes"]
    assert sorted(i["IndexName"] for i in index) == ["status-symbol-index", "watch-index"]
    assert "tradeops-prices" in _client(shared_stack, "kinesis").list_streams()["StreamNames"]
    params = _client(shared_stack, "ssm").get_parameters_by_path(Path="/tradeops", Recursive=True)["Parameters"]
    assert {p["Name"]: p["Value"] for p in params if "/roster/" not in p["Name"]} == {
        "/tradeops/processing": "running", "/tradeops/routing/mode": "manual",
        "/tradeops/routing/active": "primary", "/tradeops/routing/trickle": "0.05"}
    secrets = {s["Name"] for s in _client(shared_stack, "secretsmanager").list_secrets()["SecretList"]}
    assert {"tradeops/broker/primary", "tradeops/broker/secondary"} <= secrets
    topics = {t["TopicArn"].rsplit(":", 1)[-1] for t in _client(shared_stack, "sns").list_topics()["Topics"]}
    assert {"tradeops-alerts", "tradeops-approvals"} <= topics
    alarms = {a["AlarmName"] for a in _client(shared_stack, "cloudwatch").describe_alarms()["MetricAlarms"]}
    assert "tradeops-breaker-open" in alarms


def test_fault_down_closes_the_order_port_but_not_control(shared_stack):
    """Mode `down` makes the primary's order API refuse connections while its control stays up; `none` restores."""
    primary = shared_stack["brokers"]["primary"]
    assert httpx.post(f"{primary['control']}/_sim/fault", json={"mode": "down"}).status_code == 200
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{primary['url']}/v1/health", timeout=2)
        assert httpx.get(f"{primary['control']}/_sim/health", timeout=2).status_code == 200
    finally:
        assert httpx.post(f"{primary['control']}/_sim/fault", json={"mode": "none"}).status_code == 200
    assert httpx.get(f"{primary['url']}/v1/health", timeout=2).status_code in (200, 401)


def test_up_twice_says_already_up(shared_stack):
    """A second `up` finds the running stack, says so and changes nothing."""
    second = run_cli("up", env=shared_stack["env"])
    assert second.returncode == 0
    assert "already up" in second.stdout


def test_unknown_command_is_a_usage_error(processes):
    """An unknown command or option exits 2 with typer's usage message."""
    assert run_cli("frobnicate", env=dict(os.environ)).returncode == 2
    assert run_cli("up", "--no-such-option", env=dict(os.environ)).returncode == 2


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env["TRADEOPS_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_down_with_nothing_up_exits_zero(processes, tmp_path):
    """`down` with no stack is not an error."""
    result = run_cli("down", env=_fresh_env(tmp_path))
    assert result.returncode == 0
    assert "no stack" in result.stdout


def test_status_without_stack_is_one_line_error(processes, tmp_path):
    """`status` with no stack exits 1 with one line and no traceback."""
    result = run_cli("status", env=_fresh_env(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not up" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_then_down_leaves_no_process(own_stack, tmp_path):
    """A separate `up` (showing each component as it becomes ready), `status --json` and `down --json` cycle:
    afterwards none of the stack's processes is alive."""
    env = _fresh_env(tmp_path)
    env["TRADEOPS_NAME_PREFIX"] = "cycle"
    env["TRADEOPS_PARAM_PREFIX"] = "/cycle"
    started = run_cli("up", "--workers", "1", env=env, timeout=180)
    try:
        assert started.returncode == 0
        # Progress component by component while it starts (piped: one line each, no spinner).
        for component in ("aws", "broker-primary", "broker-secondary", "intake", "worker-1"):
            assert f"✓ {component} ready" in started.stdout, started.stdout
        assert started.stdout.index("✓ aws ready") < started.stdout.index("✓ worker-1 ready")
        again = run_cli("up", "--json", env=env)
        assert again.returncode == 0 and json.loads(again.stdout)["already_up"] is True
        state = json.loads((tmp_path / "state" / "stack.json").read_text())
        pids = [state["supervisor_pid"]] + [c["pid"] for c in state["components"].values()]
        status = run_cli("status", "--json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["components"]["worker-1"] is True
    finally:
        stopped = run_cli("down", "--json", env=env)  # whatever failed above, leave nothing running
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["stopped"] is True
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
    assert not (tmp_path / "state" / "stack.json").exists()
    # `down` stops the callers while what they call still answers: no component's last words are
    # connection errors against an emulator or a broker that had already gone.
    for log in (tmp_path / "state" / "logs").glob("*.log"):
        assert "Could not connect" not in log.read_text(), f"{log.name} outlived a service it calls"


def test_port_in_use_fails_up_naming_the_component(own_stack, tmp_path):
    """`up` with a fixed port that is taken exits 1 naming the component and the port, and leaves nothing running."""
    env = _fresh_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("up", "--port", f"primary={port}", env=env, timeout=180)
    assert result.returncode == 1
    assert "broker-primary" in result.stderr and str(port) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "stack.json").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_template_that_fails_to_deploy_stops_everything(own_stack, tmp_path):
    """A template the emulator refuses makes `up` exit 1 with the reason and leaves nothing running."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      DelaySeconds: not-a-number\n")
    env = _fresh_env(tmp_path)
    env["TRADEOPS_TEMPLATE_PATH"] = str(bad)
    result = run_cli("up", env=env, timeout=180)
    assert result.returncode == 1
    assert "deploy" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "stack.json").exists()


def test_invalid_setting_is_bad_input(processes, tmp_path):
    """A malformed TRADEOPS_ setting is reported in one line with exit code 2."""
    env = _fresh_env(tmp_path)
    env["TRADEOPS_BREAKER_WINDOW"] = "many"
    result = run_cli("status", env=env)
    assert result.returncode == 2
    assert "breaker_window" in result.stderr and "Traceback" not in result.stderr


def test_down_stops_a_foreground_stack_and_spares_the_script_that_started_it(own_stack, tmp_path):
    """A script without job control runs `up --foreground &` (the stack shares the script's process group);
    `down` stops every component of the stack and signals nothing else of that group."""
    env = _fresh_env(tmp_path)
    env["TRADEOPS_NAME_PREFIX"] = "script"
    env["TRADEOPS_PARAM_PREFIX"] = "/script"
    script = subprocess.Popen(["bash", "-c", "tradeops up --foreground --workers 1 >/dev/null 2>&1 & wait; sleep 300"],
                              env=env, start_new_session=True)
    try:
        state_file = tmp_path / "state" / "stack.json"
        deadline = time.monotonic() + 120
        state: dict = {}
        while time.monotonic() < deadline and state.get("status") != "ready":
            time.sleep(0.2)
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
        assert state.get("status") == "ready" and state["pgid"] == script.pid != state["supervisor_pid"]
        pids = [state["supervisor_pid"]] + [c["pid"] for c in state["components"].values()]
        stopped = run_cli("down", "--json", env=env, timeout=60)
        assert stopped.returncode == 0 and json.loads(stopped.stdout)["stopped"] is True
        assert not [p for p in pids if _alive(p)]
        assert script.poll() is None, "down signalled the script that started the stack"
    finally:
        os.killpg(script.pid, signal.SIGKILL)
        script.wait()


def test_foreground_up_stops_everything_on_ctrl_c(own_stack, tmp_path):
    """`up --foreground` stays attached; Ctrl-C (SIGINT to its process group) stops every component, exit 0."""
    env = _fresh_env(tmp_path)
    env["TRADEOPS_NAME_PREFIX"] = "fg"
    env["TRADEOPS_PARAM_PREFIX"] = "/fg"
    proc = subprocess.Popen(["tradeops", "up", "--foreground", "--workers", "1"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state_file = tmp_path / "state" / "stack.json"
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline:
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state.get("status") == "ready":
                break
        time.sleep(0.2)
    assert state and state["status"] == "ready"
    pids = [c["pid"] for c in state["components"].values()]
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "stack is up" in out and "stack stopped" in out
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
    assert not state_file.exists()
