"""The hash-chained audit log on the local AWS stage: appends never fork, tampering is found and named."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from tradeops.runbooks.audit import GENESIS, AuditLog, StoredRecord, canonical_json, digest, verify_chain
from tradeops.runbooks.events import Event
from tradeops.runtime.platform.aws import Aws, RequestCounter
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import load_settings


@pytest.fixture
def chain(aws_settings):
    """A fresh chain of five records, private to the test (the session's 'audit' chain is shared)."""
    log = AuditLog(Aws(aws_settings), chain=f"test-{uuid.uuid4().hex[:8]}")
    for i in range(5):
        log.append("step.finished", execution_id="e-1", step_id=f"s{i}", actor="alice", identity_source="test",
                   data={"i": i, "output": {"value": 1.5}})
    return log


def _item(log, seq):
    return log.aws.dynamodb.get_item(TableName=log.table, Key={"chain": {"S": log.chain},
                                                               "seq": {"N": str(seq)}})["Item"]


def _put(log, item):
    log.aws.dynamodb.put_item(TableName=log.table, Item=item)


def _cli_verify(aws_settings, log, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_AWS_ENDPOINT_URL": aws_settings.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": "ut",
                "TRADEOPS_PARAM_PREFIX": "/ut", "TRADEOPS_STATE_DIR": str(tmp_path)})
    return subprocess.run(["tradeops", "audit", "verify", "--chain", log.chain],
                          env=env, capture_output=True, text=True, timeout=60)


def test_appended_records_chain_and_verify(chain):
    """Each record carries the previous one's SHA-256 and its own over canonical JSON; the chain verifies."""
    entries = chain.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev_sha256"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev_sha256"] == before["sha256"]
    body = {k: v for k, v in entries[2].items() if k != "sha256"}
    assert digest(body) == entries[2]["sha256"]
    result = chain.verify()
    assert result.ok and result.records == 5


def test_edited_record_is_named(chain, aws_settings, tmp_path):
    """Changing one field of record 3 makes verify fail naming record 3 as edited (CLI: one line, exit 1)."""
    item = _item(chain, 3)
    body = json.loads(item["body"]["S"])
    body["actor"] = "mallory"
    _put(chain, dict(item, body={"S": canonical_json(body)}))
    result = chain.verify()
    assert not result.ok and result.broken_seq == 3 and result.reason.startswith("edited")
    cli = _cli_verify(aws_settings, chain, tmp_path)
    assert cli.returncode == 1
    assert f"audit chain '{chain.chain}' is broken at record 3: edited" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1


def test_edited_and_rehashed_record_is_named(chain):
    """Editing record 2 and recomputing its own digest still breaks the link record 3 holds to it."""
    item = _item(chain, 2)
    body = json.loads(item["body"]["S"])
    body["data"]["i"] = 99
    _put(chain, dict(item, body={"S": canonical_json(body)}, sha256={"S": digest(body)}))
    result = chain.verify()
    assert (result.ok, result.broken_seq) == (False, 2)
    assert "record 3 no longer links to it" in result.reason


def test_deleted_record_is_named(chain):
    """Deleting record 2 leaves a gap in seq: verify names record 2 as deleted."""
    chain.aws.dynamodb.delete_item(TableName=chain.table, Key={"chain": {"S": chain.chain}, "seq": {"N": "2"}})
    result = chain.verify()
    assert (result.ok, result.broken_seq) == (False, 2) and result.reason.startswith("deleted")


def test_deleted_last_record_is_named(chain):
    """Deleting the newest record is caught by the chain head, which names it."""
    chain.aws.dynamodb.delete_item(TableName=chain.table, Key={"chain": {"S": chain.chain}, "seq": {"N": "5"}})
    result = chain.verify()
    assert (result.ok, result.broken_seq) == (False, 5) and result.reason.startswith("deleted")


def test_reordered_records_are_named(chain, aws_settings, tmp_path):
    """Swapping records 3 and 4 makes verify fail at record 3, saying it holds record 4's content."""
    three, four = _item(chain, 3), _item(chain, 4)
    _put(chain, dict(four, seq={"N": "3"}))
    _put(chain, dict(three, seq={"N": "4"}))
    result = chain.verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert result.reason == f"reordered: it holds the content of record 4 of chain {chain.chain!r}"
    cli = _cli_verify(aws_settings, chain, tmp_path)
    assert cli.returncode == 1 and "broken at record 3: reordered" in cli.stderr


def _eight_writers(settings) -> AuditLog:
    """8 threads, each with its own clients, append 15 records each to one fresh chain at once."""
    log = AuditLog(Aws(settings), chain=f"test-{uuid.uuid4().hex[:8]}")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            own = AuditLog(Aws(settings), chain=log.chain)
            for i in range(15):
                own.append("x", data={"writer": n, "i": i})
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    return log


def test_concurrent_writers_never_fork_the_chain(aws_settings):
    """8 writers x 15 appends at once on the emulator leave 120 records in one chain that verifies."""
    log = _eight_writers(aws_settings)
    result = log.verify()
    assert result.ok and result.records == 120
    assert sorted((e["data"]["writer"], e["data"]["i"]) for e in log.entries()) == [
        (n, i) for n in range(8) for i in range(15)]


def test_verify_chain_is_pure_and_names_the_first_break():
    """verify_chain on plain records: the first broken record is reported, later ones are not."""
    records, prev = [], GENESIS
    for seq in range(1, 4):
        body = {"chain": "c", "seq": seq, "prev_sha256": prev, "kind": "k", "data": {}}
        prev = digest(body)
        records.append(StoredRecord(seq, canonical_json(body), prev))
    assert verify_chain("c", records, (3, prev)).ok
    broken = [records[0], StoredRecord(2, records[1].body.replace('"k"', '"x"'), records[1].sha256),
              StoredRecord(3, "not json", records[2].sha256)]
    result = verify_chain("c", broken, (3, prev))
    assert (result.ok, result.broken_seq) == (False, 2)
    head_lost = verify_chain("c", records, (0, GENESIS))
    assert (head_lost.ok, head_lost.broken_seq) == (False, 0)


def test_audit_table_name_comes_from_settings(aws_settings):
    """The audit log writes to <prefix>-audit."""
    assert AuditLog(Aws(aws_settings)).table == names_for(aws_settings).audit_table == "ut-audit"


# ---- every byte counts: the query attributes are derived from the body and re-checked -------------

@pytest.mark.parametrize("tamper", ["remove", "change"])
def test_removing_or_changing_the_execution_id_attribute_is_tampering(chain, aws_settings, tmp_path, tamper):
    """An audit record whose execution_id attribute was removed (hiding it from the run's history) or changed
    no longer verifies: `audit verify` exits 1 naming it, and the execution's timeline reports it."""
    item = _item(chain, 3)
    if tamper == "remove":
        chain.aws.dynamodb.update_item(TableName=chain.table, Key={"chain": item["chain"], "seq": item["seq"]},
                                       UpdateExpression="REMOVE execution_id")
    else:
        _put(chain, dict(item, execution_id={"S": "e-2"}))
    result = chain.verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert result.reason.startswith("tampered: its execution_id attribute")
    cli = _cli_verify(aws_settings, chain, tmp_path)
    assert cli.returncode == 1 and "broken at record 3: tampered" in cli.stderr
    entries, problems = chain.timeline("e-1")
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]  # chosen by the hashed body, so still shown
    assert problems and problems[0].startswith("audit record 3: tampered")


def test_a_changed_kind_attribute_is_tampering(chain):
    """The kind attribute is a copy of the body's too: a record relabelled in the table fails verify."""
    item = _item(chain, 2)
    _put(chain, dict(item, kind={"S": "approval.approved"}))
    result = chain.verify()
    assert (result.ok, result.broken_seq) == (False, 2) and "kind attribute" in result.reason


def test_records_written_by_older_code_still_verify(aws_settings):
    """A record in the shape the earlier audit code wrote (same body, kind and execution_id attributes)
    verifies like a new one, and the execution, step, kind, actor and time are all in its hashed body."""
    log = AuditLog(Aws(aws_settings), chain=f"test-{uuid.uuid4().hex[:8]}")
    body = {"chain": log.chain, "seq": 1, "at": "2026-11-01T09:00:00.000Z", "kind": "step.finished",
            "execution_id": "old-1", "step_id": "s1", "actor": "alice", "identity_source": "test", "data": {},
            "prev_sha256": GENESIS}
    item = {"chain": {"S": log.chain}, "seq": {"N": "1"}, "body": {"S": canonical_json(body)},
            "sha256": {"S": digest(body)}, "kind": {"S": "step.finished"}, "execution_id": {"S": "old-1"}}
    log.aws.dynamodb.put_item(TableName=log.table, Item=item)
    log._advance_head(1, digest(body))
    assert log.verify().ok
    new = log.append("step.finished", execution_id="new-1", step_id="s2", actor="bob", identity_source="test")
    assert {"execution_id", "step_id", "kind", "actor", "at"} <= set(new) and log.verify().ok


def test_concurrent_writers_on_the_running_stack(shared_stack):
    """8 writers x 15 appends against the running local stack leave 120 records in one chain that verifies."""
    settings = load_settings(aws_endpoint_url=shared_stack["aws_endpoint"], region=shared_stack["region"],
                             state_dir=Path(shared_stack["state_dir"]))
    result = _eight_writers(settings).verify()
    assert result.ok and result.records == 120


def _event(kind, step_id, n):
    return Event(kind, "e-grouped", step_id, "alice", "test", {"n": n}, at=f"2026-11-01T09:00:0{n}.000Z")


def test_a_runs_events_written_together_are_one_record_shown_as_each_event(aws_settings):
    """Several events of one execution appended as one record: one seq and one digest in the chain, which
    verifies; entries and the timeline show each event with its own kind, step and time, in order."""
    log = AuditLog(Aws(aws_settings), chain=f"test-{uuid.uuid4().hex[:8]}")
    log.append("roster.seeded", actor="alice", identity_source="test")
    events = [_event("step.started", "s1", 1), _event("check.evaluated", "s1", 2), _event("step.finished", "s1", 3)]
    body = log.append_events(events)
    assert (body["seq"], body["kind"], len(body["events"])) == (2, "events", 3)
    result = log.verify()
    assert result.ok and result.records == 2
    shown = log.entries("e-grouped")
    assert [(e["kind"], e["step_id"], e["at"], e["seq"]) for e in shown] == [
        ("step.started", "s1", "2026-11-01T09:00:01.000Z", 2), ("check.evaluated", "s1", "2026-11-01T09:00:02.000Z", 2),
        ("step.finished", "s1", "2026-11-01T09:00:03.000Z", 2)]
    assert all(e["execution_id"] == "e-grouped" and e["sha256"] == body["sha256"] for e in shown)
    assert log.timeline("e-grouped") == (shown, [])


def test_an_event_edited_inside_a_grouped_record_breaks_the_chain_there(aws_settings):
    """Changing one event of a grouped record (its step) is caught as an edit of that record."""
    log = AuditLog(Aws(aws_settings), chain=f"test-{uuid.uuid4().hex[:8]}")
    log.append_events([_event("step.started", "s1", 1), _event("step.finished", "s1", 2)])
    log.append("roster.seeded", actor="alice", identity_source="test")
    item = _item(log, 1)
    body = json.loads(item["body"]["S"])
    body["events"][1]["step_id"] = "s9"
    item["body"] = {"S": canonical_json(body)}
    _put(log, item)
    result = log.verify()
    assert (result.ok, result.broken_seq) == (False, 1) and "edited" in result.reason


def test_an_append_after_its_own_costs_two_writes_and_another_writer_in_between_costs_a_read(aws_settings):
    """A log remembers its last record: its next append is the record and the head (no read of the chain);
    when another writer appended meanwhile, the conditional put fails, it reads the chain again and chains
    after it; every record stays in one chain."""
    chain = f"test-{uuid.uuid4().hex[:8]}"
    counter = RequestCounter()
    mine, other = AuditLog(Aws(aws_settings, counter=counter), chain=chain), AuditLog(Aws(aws_settings), chain=chain)
    mine.append("roster.seeded", actor="alice", identity_source="test")
    before = counter.snapshot()
    mine.append("step.started", execution_id="e-1", actor="alice", identity_source="test")
    spent = {k: n - before.get(k, 0) for k, n in counter.snapshot().items() if n - before.get(k, 0)}
    assert spent == {"dynamodb.PutItem": 2}
    other.append("step.started", execution_id="e-2", actor="bob", identity_source="test")
    third = mine.append("step.finished", execution_id="e-1", actor="alice", identity_source="test")
    assert third["seq"] == 4
    result = mine.verify()
    assert result.ok and result.records == 4


def test_a_log_told_others_appended_reads_the_chain_end_first_and_tries_no_taken_seq(aws_settings):
    """After an approver's decision (another writer), the run's next append reads where the chain ends and
    writes once: one Query and the record and head, never a conditional put on a seq that is taken."""
    chain = f"test-{uuid.uuid4().hex[:8]}"
    counter = RequestCounter()
    mine, other = AuditLog(Aws(aws_settings, counter=counter), chain=chain), AuditLog(Aws(aws_settings), chain=chain)
    mine.append("roster.seeded", actor="alice", identity_source="test")
    other.append("approval.approved", execution_id="e-1", actor="bob", identity_source="test")
    mine.others_appended()
    before = counter.snapshot()
    record = mine.append("step.started", execution_id="e-1", actor="alice", identity_source="test")
    spent = {k: n - before.get(k, 0) for k, n in counter.snapshot().items() if n - before.get(k, 0)}
    assert spent == {"dynamodb.Query": 1, "dynamodb.PutItem": 2} and record["seq"] == 3
    assert mine.verify().ok
