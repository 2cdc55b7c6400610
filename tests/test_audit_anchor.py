"""The audit chain's anchors (issue 13 item 4): a table writer's consistent rewrite is caught.

Someone who can write the audit table can rewrite a record, recompute its digest and every later one,
and move the head: the chain alone then verifies. The anchors, written outside the table under Object
Lock (compliance mode), do not move with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.policies import role_statements
from tradeops.runbooks import engine
from tradeops.runbooks.anchor import BY, anchor_once, run_anchoring
from tradeops.runbooks.audit import (
    GENESIS,
    AnchorStore,
    AuditLog,
    StoredRecord,
    anchor_body,
    canonical_json,
    digest,
    verify_anchors,
)
from tradeops.runbooks.identity import Identity
from tradeops.runbooks.testing import install_roster, isolated_flags, write_operators
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import CheckFailed
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import resolve_settings


def _fresh(aws_settings, records: int = 5) -> AuditLog:
    log = AuditLog(Aws(aws_settings), chain=f"anchor-{uuid.uuid4().hex[:8]}")
    for i in range(records):
        log.append("step.finished", execution_id="e-1", step_id=f"s{i}", actor="alice", identity_source="test",
                   data={"i": i})
    return log


def _rewrite_from(log: AuditLog, seq: int, **changes) -> None:
    """What a table writer can do: change record ``seq``, recompute its digest and every later record's
    (each links to the one before), and move the head to match. Only PutItem is used."""
    items = {int(i["seq"]["N"]): i for i in log.aws.dynamodb.query(
        TableName=log.table, ConsistentRead=True, KeyConditionExpression="#c = :c",
        ExpressionAttributeNames={"#c": "chain"}, ExpressionAttributeValues={":c": {"S": log.chain}})["Items"]}
    last = max(items)
    prev = json.loads(items[seq - 1]["body"]["S"]) if seq > 1 else None
    prev_sha = items[seq - 1]["sha256"]["S"] if prev is not None else GENESIS
    for n in range(seq, last + 1):
        body = json.loads(items[n]["body"]["S"])
        if n == seq:
            body.update(changes)
        body["prev_sha256"] = prev_sha
        prev_sha = digest(body)
        log.aws.dynamodb.put_item(TableName=log.table, Item=dict(items[n], body={"S": canonical_json(body)},
                                                                 sha256={"S": prev_sha}))
    log.aws.dynamodb.put_item(TableName=log.table, Item={
        "chain": {"S": log.chain}, "seq": {"N": "0"}, "last_seq": {"N": str(last)}, "last_sha256": {"S": prev_sha}})


def _cli(aws_settings, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_AWS_ENDPOINT_URL": aws_settings.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": "ut",
                "TRADEOPS_PARAM_PREFIX": "/ut", "TRADEOPS_STATE_DIR": str(tmp_path), "TRADEOPS_OPERATOR": "alice"})
    return subprocess.run(["tradeops", "audit", *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_consistent_rewrite_of_a_record_and_its_head_is_caught_and_named(aws_settings, tmp_path):
    """Records 1-5 anchored, 6-8 anchored; record 6 rewritten with every later digest and the head: the chain
    alone verifies, `audit verify` exits 1 naming record 6 (one line; --json says the last good anchor is 5)."""
    log = _fresh(aws_settings)
    assert log.anchor(by="test", reason="first")["seq"] == 5
    for i in range(3):
        log.append("step.finished", execution_id="e-2", step_id=f"t{i}", actor="alice", identity_source="test")
    assert log.anchor(by="test", reason="second")["seq"] == 8
    assert log.verify().ok

    _rewrite_from(log, 6, actor="mallory")
    assert log.verify(anchors=False).ok, "the rewrite is consistent: the chain alone cannot see it"
    result = log.verify()
    assert (result.ok, result.broken_seq, result.last_good_anchor) == (False, 6, 5)
    assert result.reason.startswith("rewritten")

    cli = _cli(aws_settings, tmp_path, "verify", "--chain", log.chain)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    assert f"audit chain '{log.chain}' is broken at record 6: rewritten" in cli.stderr
    assert "the last good anchor is at record 5" in cli.stdout
    as_json = _cli(aws_settings, tmp_path, "verify", "--chain", log.chain, "--json")
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and (doc["broken_seq"], doc["last_good_anchor"], doc["anchors"]) == (6, 5, 2)


def test_an_anchor_cannot_be_deleted_and_a_forged_one_does_not_hide_the_rewrite(aws_settings):
    """The anchor bucket is in compliance mode (deleting an anchor's version is refused); an extra anchor
    written after the rewrite agrees with it, but the genuine one still names the rewritten record."""
    log = _fresh(aws_settings, records=4)
    store = AnchorStore(log.aws)
    key = log.anchor(by="test", reason="genuine")["key"]
    s3 = log.aws.client("s3")
    head = s3.head_object(Bucket=store.bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(Exception, match=r"AccessDenied|Access Denied"):
        s3.delete_object(Bucket=store.bucket, Key=key, VersionId=head["VersionId"])

    _rewrite_from(log, 2, data={"i": 99})
    forged = anchor_body(log.chain, log.stored(), previous=None, by="mallory", reason="cover",
                         at="2099-01-01T00:00:00.000Z")
    store.put(forged)
    result = log.verify()
    assert (result.ok, result.broken_seq, result.last_good_anchor) == (False, 2, 0)


def test_records_deleted_back_behind_an_anchor_are_named(aws_settings):
    """Records removed after they were anchored (and the head moved back) fail verify as deleted."""
    log = _fresh(aws_settings, records=3)
    log.anchor(by="test", reason="r")
    for seq in (3,):
        log.aws.dynamodb.delete_item(TableName=log.table, Key={"chain": {"S": log.chain}, "seq": {"N": str(seq)}})
    second = log.stored()[-1]
    log.aws.dynamodb.put_item(TableName=log.table, Item={
        "chain": {"S": log.chain}, "seq": {"N": "0"}, "last_seq": {"N": "2"}, "last_sha256": {"S": second.sha256}})
    result = log.verify()
    assert (result.ok, result.broken_seq) == (False, 3) and result.reason.startswith("deleted")


def test_anchoring_refuses_a_chain_already_broken_and_skips_when_nothing_is_new():
    """anchor_body (pure) will not bless records that do not chain from the last anchor; verify_anchors with
    no anchors passes with last_good_anchor 0."""
    records, prev = [], GENESIS
    for seq in range(1, 4):
        body = {"chain": "c", "seq": seq, "prev_sha256": prev, "kind": "k", "data": {}}
        prev = digest(body)
        records.append(StoredRecord(seq, canonical_json(body), prev))
    good = anchor_body("c", records, previous=None, by="t", reason="r", at="2026-11-26T00:00:00.000Z")
    assert (good["seq"], good["head_sha256"], sorted(good["records"])) == (3, prev, ["1", "2", "3"])
    with pytest.raises(CheckFailed, match="record 3 does not follow"):
        anchor_body("c", records[2:], previous=(1, records[0].sha256), by="t", reason="r", at="x")
    with pytest.raises(CheckFailed, match="nothing to anchor"):
        anchor_body("c", [], previous=(3, prev), by="t", reason="r", at="x")
    assert verify_anchors("c", records, []).ok and verify_anchors("c", records, [good]).last_good_anchor == 3


def test_the_scheduled_anchorer_anchors_only_chains_that_moved(aws_settings):
    """One round of the schedule anchors a chain with new records, and writes nothing on the next round."""
    log = _fresh(aws_settings, records=2)
    assert anchor_once(log.aws, [log.chain]) == 1
    latest = AnchorStore(log.aws).latest(log.chain)
    assert (latest["seq"], latest["by"], latest["reason"]) == (2, BY, "schedule")
    assert anchor_once(log.aws, [log.chain]) == 0


def test_the_anchorer_anchors_what_was_appended_before_it_started_without_waiting_a_period(aws_settings):
    """Records appended while no anchorer ran (the stack was down) are anchored when it starts, not one
    period (5 min by default) later; once they are anchored, a further round writes nothing."""
    log = _fresh(aws_settings, records=3)
    stop = threading.Event()
    runner = threading.Thread(target=run_anchoring,
                              args=(aws_settings.model_copy(update={"audit_anchor_seconds": 300.0}), stop, [log.chain]))
    runner.start()
    try:
        store = AnchorStore(log.aws)
        deadline = time.monotonic() + 15
        while (latest := store.latest(log.chain)) is None:
            assert time.monotonic() < deadline, "the anchorer wrote nothing at its start"
            time.sleep(0.2)
        assert (latest["seq"], latest["by"]) == (3, BY)
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive(), "the anchorer did not stop when asked"
    assert anchor_once(log.aws, [log.chain]) == 0


def test_every_runbook_execution_ends_with_an_anchor(aws_settings, tmp_path):
    """A runbook execution's last audit record (execution.finished) is anchored, by the executor."""
    operators = write_operators(tmp_path / "operators.yaml", {"alice": ["duty-engineer"]})
    settings = isolated_flags(aws_settings, f"/anc{uuid.uuid4().hex[:8]}").model_copy(
        update={"operators_file": Path(operators.source), "operator": "alice"})
    aws = Aws(settings)
    roster = install_roster(aws, operators)
    Flags(aws).set("mode", "manual")
    path = tmp_path / "check.yaml"
    path.write_text("name: check\ntitle: Routing is manual\nversion: 1\nservice: Retail trade order execution\n"
                    "impact_tolerance: {max_outage_minutes: 30}\nsteps:\n  - id: manual\n    title: Routing is manual\n"
                    "    check: {probe: routing_mode, expect: manual}\n", encoding="utf-8")
    chain = f"anchor-run-{uuid.uuid4().hex[:8]}"
    outcome = engine.run_execution(settings, str(path), aws=aws, identity=Identity("alice", "test"),
                                   operators=roster, poll_seconds=0.05, assume_yes=True, audit_chain=chain)
    assert outcome.status == "completed", outcome.reason
    entries = AuditLog(aws, chain=chain).entries()
    anchor = AnchorStore(aws).latest(chain)
    assert entries[-1]["kind"] == "execution.finished"
    assert (anchor["seq"], anchor["head_sha256"], anchor["by"]) == (entries[-1]["seq"], entries[-1]["sha256"], "alice")
    assert outcome.execution_id in anchor["reason"]


def test_the_stack_anchors_the_audit_chain_on_its_schedule(shared_stack):
    """The stack's audit-anchor process anchors a record appended to the audit chain within its period (2 s in
    tests)."""
    settings = resolve_settings(load_settings(state_dir=Path(shared_stack["state_dir"])))
    log = AuditLog(Aws(settings))
    appended = log.append("test.scheduled-anchor", actor="test", data={"n": uuid.uuid4().hex})
    store = AnchorStore(log.aws)
    deadline = time.monotonic() + 20
    while True:
        latest = store.latest("audit")
        if latest and int(latest["seq"]) >= appended["seq"]:
            break
        assert time.monotonic() < deadline, f"no anchor covers record {appended['seq']}: {latest}"
        time.sleep(0.5)
    assert str(appended["seq"]) in latest["records"]


def test_the_operator_role_may_only_read_and_append_audit_records(aws_settings):
    """In the template, no operator statement grants UpdateItem/DeleteItem (or a wildcard) on the audit table;
    its PutItem carries the ReturnValues condition; the anchor bucket is locked in compliance mode and the
    role is denied deleting anchors."""
    from tradeops.runtime.stack.deploy import load_template

    _, doc = load_template(aws_settings.template)
    statements = role_statements(doc, "OperatorRole")
    audit_arn = {"Fn::GetAtt": ["AuditTable", "Arn"]}

    def resources(st):
        r = st["Resource"]
        return r if isinstance(r, list) else [r]

    on_audit = [st for st in statements if st["Effect"] == "Allow" and audit_arn in resources(st)]
    actions = {a for st in on_audit for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert actions == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"}
    put = next(st for st in on_audit if st["Action"] == "dynamodb:PutItem")
    assert put["Condition"] == {"StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"}}
    bucket = doc["Resources"]["AuditAnchorBucket"]["Properties"]
    assert bucket["ObjectLockEnabled"] is True
    assert bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    denied = [st for st in statements if st["Effect"] == "Deny"]
    assert denied and "s3:DeleteObjectVersion" in denied[0]["Action"]
