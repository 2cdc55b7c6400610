"""The audit log: an append-only, hash-chained record of every runbook decision.

Records live in the audit table under one ``chain`` (default ``audit``), numbered ``seq`` 1, 2,
3, ... Each record's body is canonical JSON (sorted keys, no spaces) carrying the SHA-256 of the
previous record (``prev_sha256``); the record's own ``sha256`` is taken over that body. Item
``seq = 0`` is the chain head (last seq and its digest), so a deleted *last* record is caught too.

Appending reads the last record, then writes the next one conditional on
``attribute_not_exists(seq)``: of two writers that read the same last record only one can take the
next seq, so the chain never forks; the loser reads again and chains after the winner. Then the
head moves forward (conditional on it only ever growing). Each is a single-item conditional write,
which DynamoDB applies atomically, and so does the local stack's emulator (a concurrency test proves
it); a two-item transaction is not atomic there, so none is used.

``verify_chain`` (pure) walks the records and names the first broken one: edited (its digest no
longer matches), deleted (a gap in seq, or the head is ahead of the last record), reordered
(a record holds another position's content, or no longer follows its predecessor) or tampered
(an attribute used to query it, ``execution_id`` or ``kind``, disagrees with its body).

Every byte of a record counts: the execution id, step id, kind, actor, identity source and time are
inside the hashed body, and the item's query attributes are copies derived from it. A copy cannot be
trusted, so ``verify`` re-derives them from the body, and an execution's timeline is selected by the
body (:meth:`AuditLog.timeline`), which reports any record whose attributes disagree with it. Records
written by older code have the same shape and verify the same way.

The audit log observes runs (``AuditObserver``); the engine never calls it from inside a step.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import AwsError
from tradeops.runtime.platform.names import names_for

__all__ = [
    "GENESIS",
    "QUERY_ATTRIBUTES",
    "AuditLog",
    "AuditObserver",
    "StoredRecord",
    "Verification",
    "canonical_json",
    "digest",
    "query_attributes",
    "verify_chain",
]

GENESIS = "0" * 64
_APPEND_ATTEMPTS = 500
_HEAD = 0
# Display-only events the audit does not need (the decisions they show are recorded elsewhere).
_NOT_AUDITED = frozenset({"approval.progress"})


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def canonical_json(value: Any) -> str:
    """The one serialisation that digests are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


QUERY_ATTRIBUTES = ("execution_id", "kind")
"""Item attributes copied out of the body so records can be found; never trusted, always re-derived."""


def query_attributes(body: dict[str, Any]) -> dict[str, str]:
    """The attributes an item stores beside a body: exactly the body's non-empty values of QUERY_ATTRIBUTES."""
    return {name: str(body[name]) for name in QUERY_ATTRIBUTES if body.get(name)}


def attributes_disagree(body: dict[str, Any], attributes: dict[str, str]) -> str | None:
    """Why an item's query attributes are not the ones its body gives (None when they agree)."""
    expected = query_attributes(body)
    for name in QUERY_ATTRIBUTES:
        if attributes.get(name) != expected.get(name):
            return (f"tampered: its {name} attribute is {attributes.get(name)!r} but its body says "
                    f"{expected.get(name)!r}")
    return None


@dataclass(frozen=True)
class StoredRecord:
    """One record as stored: its seq key, its body text, the digest stored with it, and its query attributes."""

    seq: int
    body: str
    sha256: str
    attributes: dict[str, str] | None = None  # None: not read (a pure test of the chain alone)


@dataclass(frozen=True)
class Verification:
    chain: str
    ok: bool
    records: int
    broken_seq: int | None = None
    reason: str | None = None

    def summary(self) -> str:
        if self.ok:
            return f"audit chain {self.chain!r}: {self.records} records, intact"
        return f"audit chain {self.chain!r} is broken at record {self.broken_seq}: {self.reason}"


def verify_chain(chain: str, records: Sequence[StoredRecord], head: tuple[int, str] | None) -> Verification:
    """Check the whole chain (records in any order) and name the first broken record."""
    def broken(seq: int, reason: str) -> Verification:
        return Verification(chain, False, len(records), seq, reason)

    expected, prev_sha = 1, GENESIS
    for rec in sorted(records, key=lambda r: r.seq):
        if rec.seq > expected:
            gap = f"record {expected} is missing" if rec.seq == expected + 1 else \
                f"records {expected}..{rec.seq - 1} are missing"
            return broken(expected, f"deleted: {gap} (the chain jumps from {expected - 1} to {rec.seq})")
        try:
            body = json.loads(rec.body)
        except ValueError:
            return broken(rec.seq, "edited: its body is no longer JSON")
        if not isinstance(body, dict) or digest(body) != rec.sha256:
            return broken(rec.seq, "edited: its content no longer matches its SHA-256")
        if body.get("seq") != rec.seq or body.get("chain") != chain:
            return broken(rec.seq, f"reordered: it holds the content of record {body.get('seq')} "
                                   f"of chain {body.get('chain')!r}")
        if rec.attributes is not None:
            why = attributes_disagree(body, rec.attributes)
            if why:
                return broken(rec.seq, why)
        if body.get("prev_sha256") != prev_sha:
            if expected == 1:
                return broken(rec.seq, "reordered: the first record does not start the chain")
            return broken(expected - 1, f"edited or replaced: record {rec.seq} no longer links to it "
                                        "(prev_sha256 differs)")
        expected, prev_sha = rec.seq + 1, rec.sha256
    last = expected - 1
    if head is not None:
        head_seq, head_sha = head
        if head_seq > last:
            return broken(last + 1, f"deleted: the chain head says {head_seq} records but the chain ends at {last}")
        if head_seq < last:
            return Verification(chain, False, len(records), 0, f"the chain head (record 0) was edited or deleted: "
                                                                f"it says {head_seq} records, the chain has {last}")
        if last > 0 and head_sha != prev_sha:
            return broken(last, "edited or replaced: it does not match the chain head's digest")
    return Verification(chain, True, len(records))


class AuditLog:
    """One audit chain in the audit table."""

    def __init__(self, aws: Aws, *, chain: str = "audit", table: str | None = None) -> None:
        self.aws = aws
        self.chain = chain
        self.table = table or names_for(aws.settings).audit_table

    def _head(self) -> tuple[int, str]:
        with aws_errors("read the audit chain head"):
            item = self.aws.dynamodb.get_item(TableName=self.table, ConsistentRead=True,
                                              Key={"chain": {"S": self.chain}, "seq": {"N": str(_HEAD)}}).get("Item")
        if not item or "last_seq" not in item:
            return 0, GENESIS
        return int(item["last_seq"]["N"]), item["last_sha256"]["S"]

    def _last(self) -> tuple[int, str]:
        """The seq and digest of the last record in the chain (0 and GENESIS when it is empty)."""
        with aws_errors("read the audit chain"):
            items = self.aws.dynamodb.query(
                TableName=self.table, ConsistentRead=True, ScanIndexForward=False, Limit=1,
                KeyConditionExpression="#c = :c AND #s > :z", ExpressionAttributeNames={"#c": "chain", "#s": "seq"},
                ExpressionAttributeValues={":c": {"S": self.chain}, ":z": {"N": str(_HEAD)}}).get("Items", [])
        if not items:
            return 0, GENESIS
        return int(items[0]["seq"]["N"]), items[0].get("sha256", {}).get("S", "")

    def _advance_head(self, seq: int, sha: str) -> None:
        """Move the head to ``seq`` unless a later append has moved it further already."""
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key={"chain": {"S": self.chain}, "seq": {"N": str(_HEAD)}},
                UpdateExpression="SET last_seq = :n, last_sha256 = :h",
                ConditionExpression="attribute_not_exists(last_seq) OR last_seq < :n",
                ExpressionAttributeValues={":n": {"N": str(seq)}, ":h": {"S": sha}})
        except Exception as exc:
            if not condition_failed(exc):
                with aws_errors("move the audit chain head"):
                    raise

    def append(self, kind: str, *, execution_id: str | None = None, step_id: str | None = None,
               actor: str | None = None, identity_source: str | None = None,
               data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one record and return its body (with ``sha256``)."""
        for attempt in range(_APPEND_ATTEMPTS):
            last_seq, last_sha = self._last()
            seq = last_seq + 1
            body = {"chain": self.chain, "seq": seq, "at": iso(), "kind": kind, "execution_id": execution_id,
                    "step_id": step_id, "actor": actor, "identity_source": identity_source,
                    "data": json.loads(canonical_json(data or {})), "prev_sha256": last_sha}
            text = canonical_json(body)
            sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
            item = {"chain": {"S": self.chain}, "seq": {"N": str(seq)}, "body": {"S": text}, "sha256": {"S": sha},
                    **{k: {"S": v} for k, v in query_attributes(body).items()}}
            try:
                self.aws.dynamodb.put_item(TableName=self.table, Item=item,
                                           ConditionExpression="attribute_not_exists(seq)")
            except Exception as exc:
                if not condition_failed(exc):
                    with aws_errors("append to the audit log"):
                        raise
                # Another writer took this seq first: chain after its record instead.
                time.sleep(random.uniform(0, 0.005 * min(attempt + 1, 10)))
                continue
            self._advance_head(seq, sha)
            return {**body, "sha256": sha}
        raise AwsError(f"could not append to audit chain {self.chain!r}: too many concurrent writers")

    def _query(self, execution_id: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "#c = :c AND #s > :z",
            "ExpressionAttributeNames": {"#c": "chain", "#s": "seq"},
            "ExpressionAttributeValues": {":c": {"S": self.chain}, ":z": {"N": str(_HEAD)}},
        }
        if execution_id:
            # The attribute, or the body's own words: a record whose attribute was removed or changed is
            # still found through its body (canonical JSON spells the id exactly so), and reported.
            kwargs["FilterExpression"] = "execution_id = :e OR contains(body, :b)"
            kwargs["ExpressionAttributeValues"][":e"] = {"S": execution_id}
            kwargs["ExpressionAttributeValues"][":b"] = {"S": '"execution_id":' + canonical_json(execution_id)}
        while True:
            with aws_errors("read the audit log"):
                page = self.aws.dynamodb.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def stored(self) -> list[StoredRecord]:
        return [StoredRecord(int(i["seq"]["N"]), i.get("body", {}).get("S", ""), i.get("sha256", {}).get("S", ""),
                             {k: i[k]["S"] for k in QUERY_ATTRIBUTES if "S" in i.get(k, {})})
                for i in self._query()]

    def entries(self, execution_id: str | None = None) -> list[dict[str, Any]]:
        """Record bodies (with their digest), oldest first; only one execution's when given (see timeline)."""
        if execution_id:
            return self.timeline(execution_id)[0]
        return [_entry(item)[0] for item in self._query()]

    def timeline(self, execution_id: str) -> tuple[list[dict[str, Any]], list[str]]:
        """One execution's records, chosen by their hashed bodies, and every record whose query attributes
        disagree with its body (tampering: e.g. an execution_id removed to hide a record from this view)."""
        out, problems = [], []
        for item in self._query(execution_id):
            entry, body = _entry(item)
            attributes = {k: item[k]["S"] for k in QUERY_ATTRIBUTES if "S" in item.get(k, {})}
            why = attributes_disagree(body, attributes) if body else "tampered: its body is unreadable"
            if why:
                problems.append(f"audit record {entry.get('seq')}: {why}")
            if body.get("execution_id") == execution_id:
                out.append(entry)
        return out, problems

    def verify(self) -> Verification:
        # An honest append writes its record, then moves the head: a head out of step with the
        # records read just before it is an append in flight, which a re-read settles.
        for _attempt in range(20):
            records = self.stored()
            head = self._head()
            if head[0] == max((r.seq for r in records), default=0):
                break
            time.sleep(0.05)
        return verify_chain(self.chain, records, head)


def _entry(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A record as shown (its body plus digest), and its body ({} when unreadable)."""
    try:
        body = json.loads(item["body"]["S"])
        if not isinstance(body, dict):
            raise ValueError
    except (KeyError, ValueError):
        return {"seq": int(item["seq"]["N"]), "kind": "unreadable", "sha256": item.get("sha256", {}).get("S")}, {}
    return {**body, "sha256": item.get("sha256", {}).get("S")}, body


class AuditObserver:
    """Appends every run event to the audit log (an observer of the engine)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def notify(self, event: Any) -> None:
        if event.kind in _NOT_AUDITED:
            return
        self.log.append(event.kind, execution_id=event.execution_id, step_id=event.step_id, actor=event.actor,
                        identity_source=event.identity_source, data=event.data)
