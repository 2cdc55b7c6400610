"""The local stack with IAM enforced (`tradeops up --enforce`): a person's own credentials cannot make a guarded
change, whatever tool they use; the same change through a shipped runbook with two valid approvals is made by the
approval gate, audited once; with the gate stopped the run stops with one line and completes once it is back.

One stack for the whole module (`enforced_stack`): every check here runs on it, in order."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import httpx
import pytest

from tests.support.stack import run_cli, running_stack, stack_environment
from tradeops.runbooks.audit import AuditLog
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.platform.aws import Aws, error_code
from tradeops.runtime.platform.settings import load_settings

ACCOUNT = "123456789012"
OPERATORS = """\
operators:
  alice: [duty-engineer]
  bob: [ops-manager]
  carol: [risk]
  dave: [auditor]
break_glass: [ops-manager]
"""
FAILOVER = ["--param", "verify_canary=false", "--param", "drain_timeout=20", "--param", "backlog_age_limit=600"]


def _arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


@pytest.fixture(scope="module")
def enforced_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A whole local stack started with `tradeops up` and IAM enforced, its people from an operators file; the
    commands run as alice unless a test says otherwise, and wait 3 s for the gate before calling it down."""
    state_dir = tmp_path_factory.mktemp("enforced-stack")
    operators = state_dir.parent / f"{state_dir.name}-operators.yaml"
    operators.write_text(OPERATORS, encoding="utf-8")
    env = stack_environment(state_dir)
    env.update(TRADEOPS_ENFORCE="true", TRADEOPS_OPERATORS_FILE=str(operators), TRADEOPS_OPERATOR="alice",
               TRADEOPS_GATE_TIMEOUT_SECONDS="3")
    with running_stack(env) as info:
        state = json.loads((state_dir / "stack.json").read_text(encoding="utf-8"))
        info["keys"] = json.loads(Path(state["keys_file"]).read_text(encoding="utf-8"))
        info["stack_state"] = state
        yield info


def test_up_enforce_needs_the_people_and_the_local_stack(processes, tmp_path):
    """`tradeops up --enforce` with no operators file, or with --aws, stops with one line (exit 2), starting nothing."""
    env = dict(stack_environment(tmp_path), TRADEOPS_OPERATORS_FILE=str(tmp_path / "missing.yaml"))
    for argv in (["up", "--enforce"], ["up", "--enforce", "--aws"]):
        got = run_cli(*argv, env=env)
        assert got.returncode == 2 and got.stderr.strip().count("\n") == 0, got.stdout + got.stderr
    assert not (tmp_path / "stack.json").exists()


def _client(stack: dict[str, Any], service: str, who: str) -> Any:
    """A boto3 client signing with ``who``'s key from the stack's keys file (``admin``: the deployer's)."""
    key = stack["keys"]["admin"] if who == "admin" else stack["keys"]["people"][who]
    return boto3.client(service, endpoint_url=stack["aws_endpoint"], region_name=stack["region"],
                        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"])


def _flag(stack: dict[str, Any], name: str) -> str:
    return str(_client(stack, "ssm", "dave").get_parameter(Name=f"/tradeops/{name}")["Parameter"]["Value"])


def _reset(stack: dict[str, Any]) -> None:
    """Routing as a fresh stack has it, the primary failing (what a failover is for), written as the deployer."""
    ssm = _client(stack, "ssm", "admin")
    for name, value in (("processing", "running"), ("routing/mode", "manual"), ("routing/active", "primary")):
        ssm.put_parameter(Name=f"/tradeops/{name}", Value=value, Type="String", Overwrite=True)
    httpx.post(f"{stack['brokers']['primary']['control']}/_sim/fault", json={"mode": "down"}).raise_for_status()


def _aws(stack: dict[str, Any], who: str) -> Aws:
    """An Aws signing with ``who``'s key from the stack's keys file (``admin``: the deployer's)."""
    key = stack["keys"]["admin"] if who == "admin" else stack["keys"]["people"][who]
    return Aws(load_settings(aws_endpoint_url=stack["aws_endpoint"], region=stack["region"], enforce=True,
                             emulator_access_key_id=key["access_key_id"],
                             emulator_secret_access_key=key["secret_access_key"]))


def _acted(stack: dict[str, Any], execution: str, step: str) -> list[dict[str, Any]]:
    """The gate's `gate.acted` records of one step, as an auditor (dave) reads the audit log."""
    return [e for e in AuditLog(_aws(stack, "dave")).entries(execution) if e["kind"] == "gate.acted"
            and e.get("step_id") == step]


def _in_doubt_at_primary(stack: dict[str, Any]) -> str:
    """An order sent to the primary whose outcome nobody knows (IN_DOUBT there), as the deployer writes it."""
    store = OrderStore(_aws(stack, "admin"))
    order, _ = store.create(new_order(OrderRequest(order_id=f"es-{uuid.uuid4().hex[:10]}", account_id="acc-es",
                                                   symbol="VOD.L", side="BUY", quantity=5,
                                                   quote_price=Decimal("101.5"))))
    order = store.transition(order, "SUBMITTING", actor="test", set_fields={"provider": "primary"})
    return str(store.transition(order, "IN_DOUBT", actor="test")["order_id"])


def _approvers(env: dict[str, str], execution: str, steps: tuple[str, ...], stop: threading.Event) -> threading.Thread:
    """bob and carol approving each of ``steps`` from their own terminals until each decision lands (the run must
    have requested it first)."""
    def approve() -> None:
        pending = {(who, step) for who in ("bob", "carol") for step in steps}
        while pending and not stop.is_set():
            for who, step in sorted(pending):
                got = run_cli("runbook", "approve", execution, step, "--reason", "enforced stack", "--yes",
                              env=dict(env, TRADEOPS_OPERATOR=who))
                if got.returncode == 0:
                    pending.discard((who, step))
            time.sleep(0.3)

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def _run(env: dict[str, str], argv: list[str], execution: str, *approve: str) -> subprocess.CompletedProcess:
    """``tradeops runbook ...`` as alice, with bob and carol approving the steps ``approve`` meanwhile."""
    stop = threading.Event()
    thread = _approvers(env, execution, approve, stop) if approve else None
    try:
        return subprocess.run(["tradeops", "runbook", *argv, "--yes", "--poll", "0.2"], env=env, capture_output=True,
                              text=True, timeout=180)
    finally:
        stop.set()
        if thread:
            thread.join(30)


def test_an_operators_own_key_is_refused_the_routing_flag_and_the_roster_by_aws(enforced_stack):
    """alice's own credentials, straight to SSM (what the aws CLI sends): putting routing/active or the roster is
    AccessDenied from AWS itself, and neither changes; the trickle flag, not guarded, she may set."""
    ssm = _client(enforced_stack, "ssm", "alice")
    roster_before = ssm.get_parameter(Name="/tradeops/roster/current")["Parameter"]["Value"]
    active_before = _flag(enforced_stack, "routing/active")
    for name, value in (("routing/active", "secondary"), ("roster/current", '{"roster": {"operators": {}}}')):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            ssm.put_parameter(Name=f"/tradeops/{name}", Value=value, Type="String", Overwrite=True)
        assert error_code(refused.value) == "AccessDenied", name
    assert _flag(enforced_stack, "routing/active") == active_before
    assert ssm.get_parameter(Name="/tradeops/roster/current")["Parameter"]["Value"] == roster_before
    ssm.put_parameter(Name="/tradeops/routing/trickle", Value="0.05", Type="String", Overwrite=True)


def test_an_operator_cannot_write_another_identitys_decision_or_an_orders_state(enforced_stack):
    """bob writing an approval under carol's name into the decisions table, or an order's state, is AccessDenied."""
    dynamodb = _client(enforced_stack, "dynamodb", "bob")
    forged = {"execution_id": {"S": f"failover-{uuid.uuid4().hex[:8]}"}, "item": {"S": "step#toggle-to-secondary"},
              "decisions": {"S": json.dumps([{"identity": _arn("carol"), "decision": "approve"}])}}
    writes = [lambda: dynamodb.put_item(TableName="tradeops-decisions", Item=forged),
              lambda: dynamodb.update_item(TableName="tradeops-decisions",
                                           Key={k: forged[k] for k in ("execution_id", "item")},
                                           UpdateExpression="SET decisions = :d",
                                           ExpressionAttributeValues={":d": forged["decisions"]}),
              lambda: dynamodb.update_item(TableName="tradeops-orders", Key={"order_id": {"S": "any-order"}},
                                           UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                                           ExpressionAttributeValues={":s": {"S": "CANCELLED"}})]
    for write in writes:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            write()
        assert error_code(refused.value) == "AccessDenied"


def test_the_keys_are_readable_only_by_the_user_and_a_person_without_one_is_refused_with_one_line(enforced_stack):
    """The keys file is mode 0600 in the state directory; `tradeops status` as someone not in the operators file
    exits 2 with one line naming the people it has keys for."""
    keys_file = Path(enforced_stack["stack_state"]["keys_file"])
    assert keys_file.parent == Path(enforced_stack["state_dir"]) and stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    got = run_cli("status", env=dict(enforced_stack["env"], TRADEOPS_OPERATOR="mallory"))
    assert got.returncode == 2, got.stdout + got.stderr
    assert got.stderr.strip().count("\n") == 0 and "no key for operator 'mallory'" in got.stderr
    assert "alice, bob, carol, dave" in got.stderr


def test_the_roster_names_the_operators_files_people_as_the_users_sts_names_and_the_file_still_matches(
        enforced_stack):
    """The seeded roster lists alice as her IAM user's ARN (what STS answers for her key, and the identity the CLI
    reports); the operators file, by local names, is no difference from it, for `operators diff` and `doctor`."""
    env = enforced_stack["env"]
    shown = run_cli("operators", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["operators"][_arn("alice")] == ["duty-engineer"]
    diff = run_cli("operators", "diff", env["TRADEOPS_OPERATORS_FILE"], env=env)
    assert diff.returncode == 0 and diff.stdout.strip().endswith("no difference"), diff.stdout + diff.stderr
    doctor = run_cli("doctor", "--json", env=dict(env, TRADEOPS_OPERATOR="bob"))
    checks = {f["check"]: f for f in json.loads(doctor.stdout)["checks"]}
    assert _arn("bob") in checks["identity"]["detail"] and "differs" not in checks["roster"]["detail"]


def test_the_failover_runbook_switches_the_active_broker_through_the_gate_audited_once(enforced_stack):
    """`tradeops runbook run failover` as alice, an order in doubt at the (down) primary, approved by bob and carol
    with `tradeops runbook approve`: the gate asks the primary about the order with its own key (alice may read
    none), leaves it in doubt, releases it at declare-void, and switches routing/active to the secondary; the audit
    log holds exactly one gate.acted for each of those steps."""
    _reset(enforced_stack)
    env, execution = enforced_stack["env"], f"failover-{uuid.uuid4().hex[:8]}"
    order_id = _in_doubt_at_primary(enforced_stack)
    try:
        done = _run(env, ["run", "failover", "--execution-id", execution, *FAILOVER], execution, "declare-void",
                    "toggle-to-secondary")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        (resolved,) = _acted(enforced_stack, execution, "resolve-in-flight")
        assert resolved["actor"] == _arn("alice") and resolved["data"]["op"] == "resolve"
        assert order_id in resolved["data"]["in_doubt_ids"] and resolved["data"]["resolved"] == 0
        (voided,) = _acted(enforced_stack, execution, "declare-void")
        assert sorted(voided["data"]["approved_by"]) == [_arn("bob"), _arn("carol")]
        assert _flag(enforced_stack, "routing/active") == "secondary"
        (acted,) = _acted(enforced_stack, execution, "toggle-to-secondary")
        assert acted["actor"] == _arn("alice")
        assert sorted(acted["data"]["approved_by"]) == [_arn("bob"), _arn("carol")]
        assert acted["data"]["args"] == {"provider": "secondary"}
    finally:
        httpx.post(f"{enforced_stack['brokers']['primary']['control']}/_sim/fault", json={"mode": "none"})


def test_with_the_gate_stopped_a_run_stops_with_one_line_and_completes_once_it_is_back(enforced_stack):
    """The gate's process stopped (SIGSTOP: alive, not answering): the failover stops at its first guarded step
    with one line and nothing changed; resumed once the gate runs again, it completes through the gate."""
    _reset(enforced_stack)
    env, execution = enforced_stack["env"], f"failover-{uuid.uuid4().hex[:8]}"
    gate = int(enforced_stack["stack_state"]["components"]["gate"]["pid"])
    os.kill(gate, signal.SIGSTOP)
    try:
        stopped = _run(env, ["run", "failover", "--execution-id", execution, *FAILOVER], execution)
        assert _flag(enforced_stack, "processing") == "running"
        assert _flag(enforced_stack, "routing/active") == "primary"
    finally:
        os.kill(gate, signal.SIGCONT)
    try:
        assert stopped.returncode == 1, stopped.stdout[-3000:] + stopped.stderr[-2000:]
        error = stopped.stderr.strip()
        assert error.count("\n") == 0 and "does not answer" in error, error
        assert re.search(rf"tradeops runbook resume {execution}", error)
        resumed = _run(env, ["resume", execution], execution, "toggle-to-secondary")
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
        assert _flag(enforced_stack, "routing/active") == "secondary"
        assert _flag(enforced_stack, "processing") == "running"
        assert len(_acted(enforced_stack, execution, "toggle-to-secondary")) == 1
    finally:
        httpx.post(f"{enforced_stack['brokers']['primary']['control']}/_sim/fault", json={"mode": "none"})
