"""Direct flag changes are break-glass (issue 12): a role from the roster and a reason, the target shown first, a
confirmation, an audit record and an alert naming who and why; anyone else changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.identity import Operators
from tradeops.runbooks.testing import install_roster, isolated_flags
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.names import names_for

REASON = "primary down, failover runbook blocked by its canary (INC-4711)"


@pytest.fixture(scope="module")
def env(aws_settings, tmp_path_factory):
    """Flags and a roster of this module's own, and a queue subscribed to the alert topic."""
    prefix = f"/bg{uuid.uuid4().hex[:8]}"
    settings = isolated_flags(aws_settings, prefix)
    aws = Aws(settings)
    install_roster(aws, Operators(roles={"dave": frozenset({"customer-service"}), "olga": frozenset({"ops-manager"}),
                                         "pete": frozenset({"duty-engineer"})},
                                  break_glass=frozenset({"ops-manager"})))
    queue = aws.sqs.create_queue(QueueName=f"bg-alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.sns.subscribe(TopicArn=aws.topic_arn(names_for(settings).alert_topic), Protocol="sqs", Endpoint=arn)
    return {"settings": settings, "aws": aws, "queue": queue, "dir": tmp_path_factory.mktemp("bg"), "prefix": prefix}


def _cli(env, *args, operator="olga", **extra):
    s = env["settings"]
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    cli_env.update({"TRADEOPS_AWS_ENDPOINT_URL": s.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": s.name_prefix,
                    "TRADEOPS_PARAM_PREFIX": s.param_prefix, "TRADEOPS_STATE_DIR": str(env["dir"] / "state"),
                    "TRADEOPS_OPERATOR": operator, **extra})
    return subprocess.run(["tradeops", *args], env=cli_env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _alerts(env, wait: float = 5.0) -> list[dict]:
    found, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        got = env["aws"].sqs.receive_message(QueueUrl=env["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in got.get("Messages", []):
            found.append(json.loads(json.loads(m["Body"])["Message"]))
            env["aws"].sqs.delete_message(QueueUrl=env["queue"], ReceiptHandle=m["ReceiptHandle"])
        if found:
            break
    return found


def _break_glass_records(env, since: int) -> list[dict]:
    return [e for e in AuditLog(env["aws"]).entries() if e["seq"] > since and e["kind"].startswith("break_glass")]


def _last_seq(env) -> int:
    return max((e["seq"] for e in AuditLog(env["aws"]).entries()), default=0)


@pytest.fixture
def flags(env):
    f = Flags(env["aws"])
    f.set("active", "primary")
    _alerts(env, wait=0.5)  # drain what earlier tests left
    return f


def test_without_a_break_glass_role_nothing_changes(env, flags):
    """An identity without a break-glass role gets exit 1 and one line; no flag, audit record or alert changes."""
    since = _last_seq(env)
    for who in ("dave", "pete", "nobody"):
        done = _cli(env, "flags", "set", "active", "secondary", "--reason", REASON, "--yes", operator=who)
        assert done.returncode == 1, done.stderr
        assert "refused" in done.stderr and "break-glass role" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert flags.read().active == "primary"
    assert _break_glass_records(env, since) == [] and _alerts(env, wait=1.5) == []


def test_a_break_glass_change_needs_a_reason(env, flags):
    """Even with the role, no --reason means exit 1 and nothing changed."""
    done = _cli(env, "flags", "set", "mode", "auto", "--yes")
    assert done.returncode == 1 and "--reason" in done.stderr
    assert flags.read().mode == "manual"


def test_with_the_role_and_a_reason_it_changes_and_is_audited_and_alerted(env, flags):
    """olga (ops-manager, a break-glass role) changes the flag: the target is printed first, the audit log and an
    alert on the alert topic name her and the reason."""
    since = _last_seq(env)
    done = _cli(env, "flags", "set", "active", "secondary", "--reason", REASON, "--yes")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"target: the AWS endpoint {env['settings'].aws_endpoint_url} (TRADEOPS_AWS_ENDPOINT_URL, " \
                       f"region {env['settings'].region})"
    assert "active: primary -> secondary" in lines[1] and "break-glass" in lines[1]
    assert flags.read().active == "secondary"
    [record] = _break_glass_records(env, since)
    assert (record["kind"], record["actor"]) == ("break_glass.flag_set", "olga")
    assert record["data"]["reason"] == REASON and record["data"]["after"] == "secondary"
    alerts = [a for a in _alerts(env) if a.get("kind") == "break_glass"]
    assert alerts and alerts[0]["actor"] == "olga" and alerts[0]["reason"] == REASON
    assert alerts[0]["source"] == "olga" and "flag active" in alerts[0]["what"]


def test_json_and_no_terminal(env, flags):
    """--json prints the change and the target; without a terminal and without --yes it stops before changing."""
    asked = _cli(env, "flags", "set", "active", "secondary", "--reason", REASON)
    assert asked.returncode == 1 and "no terminal to ask on" in asked.stderr and "--yes" in asked.stderr
    assert flags.read().active == "primary"
    done = _cli(env, "flags", "set", "active", "secondary", "--reason", REASON, "-y", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["before"], result["after"], result["break_glass"], result["identity"]) == (
        "primary", "secondary", True, "olga")
    assert result["target"]["kind"] == "endpoint"


def test_trickle_is_lighter(env, flags):
    """The trickle share is not routing: no role and no reason needed (still confirmed, still an event)."""
    done = _cli(env, "flags", "set", "trickle", "0.1", "--yes", operator="dave")
    assert done.returncode == 0, done.stderr
    assert Flags(env["aws"]).read().trickle == pytest.approx(0.1)
