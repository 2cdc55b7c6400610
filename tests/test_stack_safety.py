"""Operator safety on the running local stack (issue 12): plans that decide, approvers told on their topic,
the target in `status`, and `doctor`."""

from __future__ import annotations

import json
import time
import uuid

import boto3

from tests.support.orderflow import Flow
from tests.support.stack import run_cli

FOUR_EYES = """\
name: four-eyes-notice
title: One step under four-eyes
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
steps:
  - id: toggle-to-secondary
    title: Make the secondary the active broker
    approval: {count: 2, roles: [ops-manager, risk], timeout: 1}
    action: {name: set_active_broker, args: {provider: secondary}}
    rollback: restore
"""


ROSTER = {"ops-alice": ["duty-engineer"], "ops-bob": ["ops-manager"], "risk-carol": ["risk"]}


def _plan(flow: Flow):
    return run_cli("runbook", "plan", "failover", env=flow.stack["env"])


def test_plan_failover_decides(flow):
    """With the primary healthy `runbook plan failover` exits 1 naming step 2 (the primary-down check);
    with it down, exit 0. Verifications read "after the action", never as failures."""
    flow.roster(ROSTER)  # the approval counts the plan checks need a roster that can supply them
    healthy = _plan(flow)
    assert healthy.returncode == 1, healthy.stdout + healthy.stderr
    last = healthy.stdout.strip().splitlines()[-1]
    assert last == "a run would stop at step 2 (primary-unhealthy): broker_healthy now true, expected false"
    assert "after the action: expect workers_drained() true" in healthy.stdout
    assert "= False" not in healthy.stdout and "True" not in healthy.stdout
    flow.fault("primary", "down")
    try:
        down = _plan(flow)
    finally:
        flow.fault("primary", "none")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.strip().splitlines()[-1].startswith("a run would pass its checks up to step 4 (notify-start)")
    verdict = json.loads(run_cli("runbook", "plan", "failover", "--json", env=flow.stack["env"]).stdout)["verdict"]
    assert (verdict["passes"], verdict["step"], verdict["step_id"]) == (False, 2, "primary-unhealthy")


def test_a_four_eyes_step_tells_the_approvers_on_their_topic(flow, tmp_path):
    """A run that reaches a four-eyes step publishes one approval request on the approvers' topic, read here
    from an SQS queue subscribed to it: runbook, step, action, executor, the approve command, how long it waits."""
    flow.roster(ROSTER)
    kw = dict(endpoint_url=flow.stack["aws_endpoint"], region_name=flow.stack["region"],
              aws_access_key_id="testing", aws_secret_access_key="testing")
    sns, sts = boto3.client("sns", **kw), boto3.client("sts", **kw)
    queue = flow.sqs.create_queue(QueueName=f"approvers-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = flow.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = f"arn:aws:sns:{flow.stack['region']}:{sts.get_caller_identity()['Account']}:tradeops-approvals"
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
    path = tmp_path / "four-eyes.yaml"
    path.write_text(FOUR_EYES, encoding="utf-8")
    eid = f"notice-{uuid.uuid4().hex[:8]}"
    try:
        done = run_cli("runbook", "run", str(path), "--yes", "--execution-id", eid, "--poll", "0.2",
                       env=dict(flow.stack["env"], TRADEOPS_OPERATOR="ops-alice"))
        assert done.returncode == 1 and "approval-timed-out" in done.stderr, done.stdout + done.stderr
        messages, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline and not messages:
            got = flow.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages += [json.loads(m["Body"]) for m in got.get("Messages", [])]
    finally:
        sns.unsubscribe(SubscriptionArn=subscription)
    mine = [m for m in messages if m["MessageAttributes"]["execution_id"]["Value"] == eid]
    assert len(mine) == 1
    body = mine[0]["Message"]
    for fact in ("Runbook four-eyes-notice v1", "step:      toggle-to-secondary (Make the secondary the active broker)",
                 "action:    set_active_broker(provider=secondary)", "executor:  ops-alice", "waits:     1 s",
                 f"tradeops runbook approve {eid} toggle-to-secondary", "2 approval(s) from: ops-manager, risk"):
        assert fact in body, (fact, body)
    assert mine[0]["Subject"] == "tradeops: approval needed: four-eyes-notice / toggle-to-secondary"


def test_status_shows_the_target(shared_stack):
    """`status` names the target (the local stack's endpoint) in its output and its JSON."""
    shown = run_cli("status", env=shared_stack["env"])
    endpoint = shared_stack["aws_endpoint"]
    assert shown.stdout.splitlines()[0] == f"target: the local stack at {endpoint} (region eu-west-2)"
    assert "healthy" in shown.stdout and "True" not in shown.stdout
    info = json.loads(run_cli("status", "--json", env=shared_stack["env"]).stdout)
    assert info["target"]["kind"] == "local" and info["target"]["endpoint"] == shared_stack["aws_endpoint"]


def test_doctor_checks_everything_and_exits_1_on_any_problem(flow):
    """`doctor` reports each check (target, stack, operators file, roster, identity, brokers, flags, dead letters,
    audit chain, clock) as ok or a problem with its fix, and exits 1 exactly when there is a problem."""
    flow.roster({"ops-alice": ["duty-engineer"]})
    env = dict(flow.stack["env"], TRADEOPS_OPERATOR="ops-alice")
    done = run_cli("doctor", "--json", env=env)
    report = json.loads(done.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert list(checks) == ["target", "stack", "operators file", "roster", "identity", "brokers", "flags",
                            "dead letters", "audit chain", "clock"]
    assert all(c["ok"] or c["fix"] for c in checks.values())
    assert checks["target"]["ok"] and checks["stack"]["ok"] and checks["clock"]["ok"] and checks["brokers"]["ok"]
    assert "ops-alice" in checks["identity"]["detail"] and "duty-engineer" in checks["identity"]["detail"]
    assert done.returncode == (0 if report["ok"] else 1)
    flow.fault("primary", "down")
    try:
        broken = run_cli("doctor", env=env)
    finally:
        flow.fault("primary", "none")
    assert broken.returncode == 1
    line = next(x for x in broken.stdout.splitlines() if "brokers" in x)
    assert line.startswith("PROBLEM") and "primary" in line and "fix:" in line
