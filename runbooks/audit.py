"""The audit log: an append-only, hash-chained record of every runbook decision.

Records live in the audit table under one ``chain`` (default ``audit``), numbered ``seq`` 1, 2,
3, ... Each record's body is canonical JSON (sorted keys, no spaces) carrying the SHA-256 of the
previous record (``prev_sha256``); the record's own ``sha256`` is taken over that body. Item
``seq = 0`` is the chain head (last seq and its digest), so a deleted *last* record is caught too.

Appending writes the next record after the last one this log knows of (read once, then remembered
from its own appends), conditional on ``attribute_not_exists(seq)``: of two writers that chain after
the same record only one can take the next seq, so the chain never forks; the loser reads the last
record again and chains after the winner. Then the head moves forward (conditional on it only ever
growing). Each is a single-item conditional write, which DynamoDB applies atomically, and so does the
local stack's emulator (a concurrency test proves it); a two-item transaction is not atomic there, so
none is used.

A record holds one event, or (kind ``events``) several events of one execution in the order they
happened: a run holds its events (:class:`AuditObserver` with ``hold``) and writes them as one
record at each checkpoint, before it acts, asks, waits or ends (:mod:`.runner`). Digests, the chain
and anchors are over records whatever they hold; :meth:`AuditLog.entries` and
:meth:`AuditLog.timeline` show each event of a record as an entry of its own, with its own time and
the record's seq and digests.

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

**Anchors.** Everything above holds against someone who edits a record; it does not hold against
someone who can *write* the table, who can rewrite a record, recompute the digest of it and of every
later record, and move the head to match. So the head is also written outside the table, where no
one can change it: an *anchor* (chain, seq, head digest, and the digest of every record since the
previous anchor; when, by whom, why) is an object in an S3 bucket under Object Lock in compliance
mode (``AuditAnchorBucket`` in the template), written at the end of every runbook execution (the
observer) and on a schedule (:mod:`tradeops.runbooks.anchor`, a process of the stack).
``verify`` checks the chain against *every* anchor (:func:`verify_anchors`): a rewrite changes the
digest of the rewritten record and of every later one, so the first anchor after it disagrees, and it
names the exact record (the anchor lists each record's digest). A forged extra anchor does not help
the rewriter: the genuine ones cannot be removed. What no anchor covers: records appended after the
last anchor, for at most one anchoring period.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradeops.runbooks.eventkinds import ENDS, EVENTS, NOT_AUDITED
from tradeops.runbooks.events import Event
from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import AwsError, CheckFailed, TradeopsError
from tradeops.runtime.platform.names import names_for

__all__ = [
    "GENESIS",
    "QUERY_ATTRIBUTES",
    "AnchorStore",
    "AuditLog",
    "AuditObserver",
    "StoredRecord",
    "Verification",
    "anchor_body",
    "canonical_json",
    "digest",
    "query_attributes",
    "verify_anchors",
    "verify_chain",
]

GENESIS = "0" * 64
_APPEND_ATTEMPTS = 500
_HEAD = 0
_EVENT_FIELDS = ("at", "kind", "step_id", "actor", "identity_source", "data")
_ANCHOR_RECORDS_MAX = 5000  # digests one anchor lists (beyond them it names the span, not the record)

log = logging.getLogger("tradeops.audit")


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
    anchors: int = 0  # anchors checked
    last_good_anchor: int | None = None  # the seq of the last anchor the chain agrees with (0: none agrees)

    def summary(self) -> str:
        if self.ok:
            anchored = (f"; {self.anchors} anchors agree (the last at record {self.last_good_anchor})"
                        if self.anchors else "; no anchor yet")
            return f"audit chain {self.chain!r}: {self.records} records, intact{anchored}"
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


def anchor_body(chain: str, new: Sequence[StoredRecord], *, previous: tuple[int, str] | None, by: str,
                reason: str, at: str) -> dict[str, Any]:
    """The anchor of ``chain`` after ``new`` (the records since the ``previous`` anchor's (seq, digest)).

    Pure. CheckFailed when the new records do not form a chain from the previous anchor: an anchor must
    never bless a chain that is already broken.
    """
    ordered = sorted(new, key=lambda r: r.seq)
    if not ordered:
        raise CheckFailed(f"audit chain {chain!r}: nothing to anchor since record {previous[0] if previous else 0}")
    expected, prev_sha = (previous[0] + 1, previous[1]) if previous else (1, GENESIS)
    for rec in ordered:
        try:
            body = json.loads(rec.body)
        except ValueError:
            body = None
        if (rec.seq != expected or not isinstance(body, dict) or digest(body) != rec.sha256
                or body.get("prev_sha256") != prev_sha or body.get("seq") != rec.seq):
            raise CheckFailed(f"audit chain {chain!r}: record {rec.seq} does not follow the last anchor's chain; "
                              "not anchoring it (run `tradeops audit verify`)")
        expected, prev_sha = rec.seq + 1, rec.sha256
    listed = ordered[-_ANCHOR_RECORDS_MAX:]
    return {"chain": chain, "seq": ordered[-1].seq, "head_sha256": ordered[-1].sha256,
            "from_seq": listed[0].seq, "records": {str(r.seq): r.sha256 for r in listed},
            "at": at, "by": by, "reason": reason}


def verify_anchors(chain: str, records: Sequence[StoredRecord], anchors: Sequence[dict[str, Any]]) -> Verification:
    """Check the records against every anchor (pure); name the first record that disagrees with one.

    Anchors are checked oldest first (by seq); the records each lists must be in the chain with exactly
    the digest anchored. The first mismatch names that record, the last anchor before it is the last good one.
    """
    by_seq = {r.seq: r.sha256 for r in records}
    last = max(by_seq, default=0)
    good = 0
    for anchor in sorted(anchors, key=lambda a: (int(a["seq"]), str(a.get("at")))):
        seq = int(anchor["seq"])
        where = f"the anchor of record {seq} ({anchor.get('at')}, by {anchor.get('by')})"
        if seq > last:
            return Verification(chain, False, len(records), last + 1,
                                f"deleted: {where} shows {seq} records, the chain has {last}",
                                anchors=len(anchors), last_good_anchor=good)
        listed = {int(k): v for k, v in (anchor.get("records") or {}).items()}
        listed.setdefault(seq, anchor["head_sha256"])
        for n in sorted(listed):
            if by_seq.get(n) != listed[n]:
                return Verification(chain, False, len(records), n,
                                    f"rewritten: it is not the record {where} holds; the records and the head "
                                    f"agree with each other, so the table was rewritten after record {good} "
                                    "(the last good anchor)", anchors=len(anchors), last_good_anchor=good)
        good = seq
    return Verification(chain, True, len(records), anchors=len(anchors), last_good_anchor=good)


class AnchorStore:
    """The anchors of the audit chains: JSON objects in the Object Lock bucket, one per anchoring.

    Keys are ``anchors/<chain>/<seq, 12 digits>-<at>-<token>.json``, so a listing is in seq order.
    """

    def __init__(self, aws: Aws, *, bucket: str | None = None) -> None:
        self.aws = aws
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        if self._bucket is None:
            self._bucket = names_for(self.aws.settings).audit_anchor_bucket(self.aws.caller()["account"])
        return self._bucket

    def _keys(self, chain: str) -> list[str]:
        s3, keys = self.aws.client("s3"), []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"anchors/{chain}/"}
        with aws_errors(f"list the audit anchors in {self.bucket}"):
            while True:
                page = s3.list_objects_v2(**kwargs)
                keys += [o["Key"] for o in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    return sorted(keys)
                kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def latest(self, chain: str) -> dict[str, Any] | None:
        keys = self._keys(chain)
        return self._get(keys[-1]) if keys else None

    def all(self, chain: str) -> list[dict[str, Any]]:
        return [self._get(key) for key in self._keys(chain)]

    def _get(self, key: str) -> dict[str, Any]:
        with aws_errors(f"read audit anchor {key}"):
            body = self.aws.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        anchor: dict[str, Any] = json.loads(body)
        return anchor

    def put(self, anchor: dict[str, Any]) -> str:
        """Write one anchor; the bucket's default retention (compliance mode) locks it."""
        key = (f"anchors/{anchor['chain']}/{int(anchor['seq']):012d}-{anchor['at']}-{secrets.token_hex(4)}.json")
        with aws_errors(f"write audit anchor {key}"):
            # A checksum is required on every write to an Object Lock bucket.
            self.aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=canonical_json(anchor).encode(),
                                             ContentType="application/json", ChecksumAlgorithm="SHA256")
        return key


class AuditLog:
    """One audit chain in the audit table."""

    def __init__(self, aws: Aws, *, chain: str = "audit", table: str | None = None) -> None:
        self.aws = aws
        self.chain = chain
        self.table = table or names_for(aws.settings).audit_table
        # The seq and digest of the last record this log appended: the next one chains after it without
        # reading the chain first (a writer that got in between makes the append read it again).
        self._last_known: tuple[int, str] | None = None

    def others_appended(self) -> None:
        """Someone else has appended to the chain since this log last did (an approver's decision): the next append
        reads where the chain ends first, rather than try a seq that is taken and then read it."""
        self._last_known = None

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
        """Move the head to ``seq`` unless a later append has moved it further already.

        A conditional PutItem, not UpdateItem: the operator role may only put audit items (template).
        """
        try:
            self.aws.dynamodb.put_item(
                TableName=self.table,
                Item={"chain": {"S": self.chain}, "seq": {"N": str(_HEAD)}, "last_seq": {"N": str(seq)},
                      "last_sha256": {"S": sha}},
                ConditionExpression="attribute_not_exists(last_seq) OR last_seq < :n",
                ExpressionAttributeValues={":n": {"N": str(seq)}})
        except Exception as exc:
            if not condition_failed(exc):
                with aws_errors("move the audit chain head"):
                    raise

    def append(self, kind: str, *, execution_id: str | None = None, step_id: str | None = None,
               actor: str | None = None, identity_source: str | None = None,
               data: dict[str, Any] | None = None, at: str | None = None) -> dict[str, Any]:
        """Append one record and return its body (with ``sha256``)."""
        return self._append({"at": at or iso(), "kind": kind, "execution_id": execution_id, "step_id": step_id,
                             "actor": actor, "identity_source": identity_source,
                             "data": json.loads(canonical_json(data or {}))})

    def append_events(self, events: Sequence[Event]) -> dict[str, Any]:
        """Append one execution's events, in order, as one record (one event: a record of its own, as
        :meth:`append` writes it); returns its body (with ``sha256``)."""
        if len(events) == 1:
            e = events[0]
            return self.append(e.kind, execution_id=e.execution_id, step_id=e.step_id, actor=e.actor,
                               identity_source=e.identity_source, data=e.data, at=e.at)
        if len({e.execution_id for e in events}) != 1:
            raise ValueError("one record holds the events of one execution")
        held = [{"at": e.at, "kind": e.kind, "step_id": e.step_id, "actor": e.actor,
                 "identity_source": e.identity_source, "data": e.data} for e in events]
        return self._append({"at": iso(), "kind": EVENTS, "execution_id": events[0].execution_id,
                             "events": json.loads(canonical_json(held))})

    def _append(self, fields: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(_APPEND_ATTEMPTS):
            last_seq, last_sha = self._last_known if self._last_known and not attempt else self._last()
            seq = last_seq + 1
            body = {"chain": self.chain, "seq": seq, **fields, "prev_sha256": last_sha}
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
                self._last_known = None
                if attempt:
                    time.sleep(random.uniform(0, 0.005 * min(attempt, 10)))
                continue
            self._last_known = (seq, sha)
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
        return [entry for item in self._query() for entry in _entries(item)[0]]

    def timeline(self, execution_id: str) -> tuple[list[dict[str, Any]], list[str]]:
        """One execution's records, chosen by their hashed bodies, and every record whose query attributes
        disagree with its body (tampering: e.g. an execution_id removed to hide a record from this view)."""
        out, problems = [], []
        for item in self._query(execution_id):
            entries, body = _entries(item)
            attributes = {k: item[k]["S"] for k in QUERY_ATTRIBUTES if "S" in item.get(k, {})}
            why = attributes_disagree(body, attributes) if body else "tampered: its body is unreadable"
            if why:
                problems.append(f"audit record {entries[0].get('seq')}: {why}")
            if body.get("execution_id") == execution_id:
                out += entries
        return out, problems

    def _after(self, seq: int) -> list[StoredRecord]:
        """The records after ``seq``, oldest first."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True, "KeyConditionExpression": "#c = :c AND #s > :z",
            "ExpressionAttributeNames": {"#c": "chain", "#s": "seq"},
            "ExpressionAttributeValues": {":c": {"S": self.chain}, ":z": {"N": str(max(seq, _HEAD))}}}
        out: list[StoredRecord] = []
        while True:
            with aws_errors("read the audit log"):
                page = self.aws.dynamodb.query(**kwargs)
            out += [StoredRecord(int(i["seq"]["N"]), i.get("body", {}).get("S", ""), i.get("sha256", {}).get("S", ""))
                    for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def anchor(self, *, by: str, reason: str, store: AnchorStore | None = None) -> dict[str, Any] | None:
        """Anchor the chain head outside the table (see the module doc); None when nothing is new since the
        last anchor. CheckFailed when the records since the last anchor are already broken."""
        store = store or AnchorStore(self.aws)
        previous = store.latest(self.chain)
        new = self._after(int(previous["seq"]) if previous else 0)
        if not new:
            return None
        body = anchor_body(self.chain, new, previous=(int(previous["seq"]), previous["head_sha256"]) if previous
                           else None, by=by, reason=reason, at=iso())
        body["key"] = store.put(body)
        log.info("audit chain %s anchored at record %d (%s)", self.chain, body["seq"], reason)
        return body

    def verify(self, *, anchors: bool = True, store: AnchorStore | None = None) -> Verification:
        """The chain on its own (:func:`verify_chain`), then against every anchor (:func:`verify_anchors`)."""
        # Anchors first: records only grow, so every anchor read now covers records the read below sees
        # (read the other way round, an append and its anchor landing in between would look like a deletion).
        anchored = (store or AnchorStore(self.aws)).all(self.chain) if anchors else []
        # An honest append writes its record, then moves the head: a head out of step with the
        # records read just before it is an append in flight, which a re-read settles.
        for _attempt in range(20):
            records = self.stored()
            head = self._head()
            if head[0] == max((r.seq for r in records), default=0):
                break
            time.sleep(0.05)
        result = verify_chain(self.chain, records, head)
        if not result.ok or not anchors:
            return result
        return verify_anchors(self.chain, records, anchored)


def _entries(item: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A record as shown: an entry per event it holds (its body plus digest), and its body ({} when unreadable)."""
    sha = item.get("sha256", {}).get("S")
    try:
        body = json.loads(item["body"]["S"])
        if not isinstance(body, dict):
            raise ValueError
    except (KeyError, ValueError):
        return [{"seq": int(item["seq"]["N"]), "kind": "unreadable", "sha256": sha}], {}
    if body.get("kind") != EVENTS or not isinstance(body.get("events"), list):
        return [{**body, "sha256": sha}], body
    shared = {k: body.get(k) for k in ("chain", "seq", "execution_id", "prev_sha256")}
    return [{**shared, **{k: e.get(k) for k in _EVENT_FIELDS}, "sha256": sha} for e in body["events"]
            if isinstance(e, dict)], body


class AuditObserver:
    """Appends run events to the audit log (an observer of the engine).

    With ``hold`` (a run's), events are kept until :meth:`flush` writes them as one record: the run
    flushes before it acts, asks, waits or ends, and an event that ends the execution flushes too.
    Without, each event is appended as it comes (a decision, an abort). Either way the chain head is
    anchored after an execution ends or pauses.
    """

    def __init__(self, log: AuditLog, *, hold: bool = False) -> None:
        self.log = log
        self.hold = hold
        self._held: list[Event] = []

    def notify(self, event: Event) -> None:
        if event.kind in NOT_AUDITED:
            return
        self._held.append(event)
        if not self.hold or event.kind in ENDS:
            self.flush()
        if event.kind in ENDS:
            try:
                self.log.anchor(by=event.actor or "runbook engine", reason=f"{event.kind} {event.execution_id}")
            except TradeopsError as exc:  # the execution is over either way; the schedule anchors later
                log.error("audit chain %s not anchored after %s: %s", self.log.chain, event.execution_id, exc)

    def flush(self) -> None:
        """Write the events held (one record); nothing when none are."""
        if self._held:
            # Taken first: a failed append stops the run (fail closed), and is never retried into a duplicate.
            held, self._held = self._held, []
            self.log.append_events(held)
