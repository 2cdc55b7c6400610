"""Execution state in the shared executions table (DynamoDB): the only module doing its I/O.

One partition per execution (``execution_id``), items by ``item``:

- ``meta`` — runbook name, SHA-256 and text, parameters, status, executors, the roster digest, the
  *lease* (token, owner host/pid, expiry, and an epoch that grows with every take-over) held by the
  one process driving the execution, and the four-eyes state of its steps:
  ``requests.<step>`` (the approval request the run published), ``decisions.<step>.<identity>`` (one
  approval or rejection each), ``decision_seq.<step>`` (bumped by every decision or withdrawal) and
  ``acting.<step>`` (written when the step's action starts);
- ``step#0003`` — the record of step 3: ``{status, start, end, duration, output, error}`` plus
  its phase, how many times its action ran, and its rollback record.

**Single-item conditional writes only.** The local stack's emulator does not apply a multi-item
transaction atomically (it snapshots the table, applies the items one by one and, when a condition
fails, restores the snapshot, erasing whatever other writers committed meanwhile), while it does
apply a conditional write on one item atomically; so does DynamoDB. Everything that must be
decided together therefore lives in the one meta item:

- a decision is recorded only if the step's approval was requested, its action has not started,
  the execution is not finished and the identity has not decided before;
- the move to acting is recorded only while this process holds the lease, nobody aborted, and the
  step's decisions are exactly the ones the engine just counted (``decision_seq``). A rejection,
  withdrawal or abort that lands first makes it fail; once it has landed, decisions are refused.

Step records are written after checking the lease, and fenced by the lease epoch: a process that
lost the execution can never overwrite what its successor recorded.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from tradeops.runbooks.approvals import Approval
from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.errors import BadInput, NotFound, OperationFailed, Refused
from tradeops.runtime.platform.names import names_for

__all__ = ["FINAL_STATUSES", "LEASE_SECONDS", "RENEW_SECONDS", "DecisionsChanged", "ExecutionAborted",
           "ExecutionStore", "Lease", "LeaseLost", "approval_record", "decisions_of"]

FINAL_STATUSES = ("completed", "failed", "aborted")
LEASE_SECONDS = 30.0
"""How long a lease on an execution lasts without renewal (a killed driver's lease then runs out)."""
RENEW_SECONDS = 5.0
_ser = TypeSerializer()
_de = TypeDeserializer()


class LeaseLost(OperationFailed):
    """Another process now drives this execution; this one must stop touching it."""


class ExecutionAborted(OperationFailed):
    """The execution was aborted (by `runbook abort`) while this process drove it."""


class DecisionsChanged(OperationFailed):
    """A decision landed on a step between counting its approvals and starting its action: count again."""


def _plain(value: Any) -> Any:
    """JSON-able Python → DynamoDB-able (floats as Decimal)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _py(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _py(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_py(v) for v in value]
    return value


def _to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in _plain(data).items()}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _py(_de.deserialize(v)) for k, v in item.items()}


def step_key(index: int) -> str:
    return f"step#{index:04d}"


class ExecutionStore:
    def __init__(self, aws: Aws, *, table: str | None = None) -> None:
        self.aws = aws
        self.table = table or names_for(aws.settings).executions_table

    def _key(self, execution_id: str, item: str) -> dict[str, Any]:
        return {"execution_id": {"S": execution_id}, "item": {"S": item}}

    # ---- meta and lease ----

    def create(self, meta: dict[str, Any]) -> None:
        """Write a new execution's meta item (with its lease); an existing id is refused."""
        meta = {"requests": {}, "decisions": {}, "decision_seq": {}, "acting": {}, "lease_epoch": 1, **meta}
        try:
            self.aws.dynamodb.put_item(TableName=self.table, Item=_to_item({**meta, "item": "meta"}),
                                       ConditionExpression="attribute_not_exists(execution_id)")
        except Exception as exc:
            if condition_failed(exc):
                raise BadInput(f"execution {meta['execution_id']} already exists") from None
            with aws_errors("create the execution"):
                raise

    def meta(self, execution_id: str) -> dict[str, Any]:
        with aws_errors(f"read execution {execution_id}"):
            item = self.aws.dynamodb.get_item(TableName=self.table, Key=self._key(execution_id, "meta"),
                                              ConsistentRead=True).get("Item")
        if not item:
            raise NotFound(f"no execution {execution_id!r} (`tradeops runbook history` lists them)")
        return _from_item(item)

    def list_executions(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "FilterExpression": "#item = :m",
            "ExpressionAttributeValues": {":m": {"S": "meta"}},
        }
        shown = ("item", "execution_id", "runbook", "title", "status", "executor", "created_at", "updated_at",
                 "current_step", "reason", "waiting_since")
        # Every name aliased: several (status, title, ...) are DynamoDB reserved words.
        kwargs["ExpressionAttributeNames"] = {f"#{n}": n for n in shown}
        kwargs["ProjectionExpression"] = ", ".join(f"#{n}" for n in shown)
        out: list[dict[str, Any]] = []
        while True:
            with aws_errors("list executions"):
                page = self.aws.dynamodb.scan(**kwargs)
            out += [{k: v for k, v in _from_item(i).items() if k != "item"} for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(out, key=lambda m: m.get("created_at", ""))

    def _why_refused(self, execution_id: str, token: str | None) -> OperationFailed:
        meta = self.meta(execution_id)
        if meta.get("status") == "aborted":
            return ExecutionAborted(f"execution {execution_id} was aborted by {meta.get('aborted_by')}: "
                                    f"{meta.get('reason') or 'no reason given'}")
        return LeaseLost(f"execution {execution_id} is now driven by another process "
                         f"({meta.get('lease_owner')}); this one stopped")

    def update_meta(self, execution_id: str, changes: dict[str, Any], *, lease_token: str) -> None:
        """Change meta fields while holding the lease and while nobody has aborted the execution."""
        names = {f"#f{i}": k for i, k in enumerate(changes)}
        values = {f":v{i}": _ser.serialize(_plain(v)) for i, v in enumerate(changes.values())}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(changes)))
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"), UpdateExpression=f"SET {sets}",
                ConditionExpression="lease_token = :tok AND #st <> :aborted",
                ExpressionAttributeNames={**names, "#st": "status"},
                ExpressionAttributeValues={**values, ":tok": {"S": lease_token}, ":aborted": {"S": "aborted"}})
        except Exception as exc:
            if condition_failed(exc):
                raise self._why_refused(execution_id, lease_token) from None
            with aws_errors(f"update execution {execution_id}"):
                raise

    def set_fields(self, execution_id: str, changes: dict[str, Any]) -> None:
        """Set meta fields unconditionally (records of what already happened, e.g. a rollback)."""
        names = {f"#f{i}": k for i, k in enumerate(changes)}
        values = {f":v{i}": _ser.serialize(_plain(v)) for i, v in enumerate(changes.values())}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(changes)))
        with aws_errors(f"update execution {execution_id}"):
            self.aws.dynamodb.update_item(TableName=self.table, Key=self._key(execution_id, "meta"),
                                          UpdateExpression=f"SET {sets}", ExpressionAttributeNames=names,
                                          ExpressionAttributeValues=values)

    def acquire(self, execution_id: str, token: str, owner: dict[str, Any], ttl: float, *,
                steal_from: str | None = None) -> None:
        """Take the lease if it is free, expired, or held by ``steal_from`` (a dead owner); its epoch grows."""
        now = time.time()
        condition = "attribute_not_exists(lease_token) OR lease_until < :now"
        values: dict[str, Any] = {":now": {"N": repr(now)}, ":tok": {"S": token},
                                  ":until": {"N": repr(now + ttl)}, ":owner": _ser.serialize(_plain(owner)),
                                  ":zero": {"N": "0"}, ":one": {"N": "1"}}
        if steal_from:
            condition += " OR lease_token = :old"
            values[":old"] = {"S": steal_from}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression="SET lease_token = :tok, lease_until = :until, lease_owner = :owner, "
                                 "lease_epoch = if_not_exists(lease_epoch, :zero) + :one",
                ConditionExpression=f"attribute_exists(execution_id) AND ({condition})",
                ExpressionAttributeValues=values)
        except Exception as exc:
            if condition_failed(exc):
                meta = self.meta(execution_id)
                owner_ = meta.get("lease_owner") or {}
                raise Refused(f"execution {execution_id} is being run by pid {owner_.get('pid')} on "
                               f"{owner_.get('host')} (lease for another {meta.get('lease_until', 0) - now:.0f} s);"
                               " wait for it, or stop that process") from None
            with aws_errors(f"take execution {execution_id}"):
                raise

    def renew(self, execution_id: str, token: str, ttl: float) -> bool:
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression="SET lease_until = :until", ConditionExpression="lease_token = :tok",
                ExpressionAttributeValues={":tok": {"S": token}, ":until": {"N": repr(time.time() + ttl)}})
        except Exception as exc:
            if condition_failed(exc):
                return False
            return True  # a transient error: the next renewal tries again, the lease outlives it
        return True

    def release(self, execution_id: str, token: str) -> None:
        # Best effort: a lease that cannot be released (lost, or AWS unreachable) simply expires.
        with contextlib.suppress(Exception):
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression="REMOVE lease_token, lease_until, lease_owner",
                ConditionExpression="lease_token = :tok", ExpressionAttributeValues={":tok": {"S": token}})

    def mark_aborted(self, execution_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Set status aborted unless the execution already finished; answers the meta before."""
        meta = self.meta(execution_id)
        names = {f"#f{i}": k for i, k in enumerate(changes)}
        values = {f":v{i}": _ser.serialize(_plain(v)) for i, v in enumerate(changes.values())}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(changes)))
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression=f"SET #st = :aborted, {sets}",
                ConditionExpression="NOT #st IN (:c, :f, :a)",
                ExpressionAttributeNames={**names, "#st": "status"},
                ExpressionAttributeValues={**values, ":aborted": {"S": "aborted"}, ":c": {"S": "completed"},
                                           ":f": {"S": "failed"}, ":a": {"S": "aborted"}})
        except Exception as exc:
            if condition_failed(exc):
                now = self.meta(execution_id)
                raise Refused(f"execution {execution_id} is already {now.get('status')}; nothing to abort") from None
            with aws_errors(f"abort execution {execution_id}"):
                raise
        return meta

    # ---- steps ----

    def steps(self, execution_id: str) -> dict[int, dict[str, Any]]:
        return {int(r["index"]): r for r in self._items(execution_id, "step#")}

    def put_step(self, execution_id: str, index: int, record: dict[str, Any], *, lease_token: str | None) -> None:
        """Write a step record; with a lease token only while that lease is held and nobody aborted.

        Two single-item writes (a guarded read, then a fenced put) rather than a transaction: see the
        module docstring. The put carries the lease epoch and is refused over a record a later lease
        holder wrote.
        """
        record = {k: v for k, v in record.items() if k != "lease_epoch"}
        item_data = {**record, "execution_id": execution_id, "item": step_key(index), "index": index}
        if lease_token is None:
            with aws_errors("record the step"):
                self.aws.dynamodb.put_item(TableName=self.table, Item=_to_item(item_data))
            return
        meta = self.meta(execution_id)
        if meta.get("lease_token") != lease_token or meta.get("status") == "aborted":
            raise self._why_refused(execution_id, lease_token)
        epoch = int(meta.get("lease_epoch") or 0)
        try:
            self.aws.dynamodb.put_item(
                TableName=self.table, Item=_to_item({**item_data, "lease_epoch": epoch}),
                ConditionExpression="attribute_not_exists(lease_epoch) OR lease_epoch <= :e",
                ExpressionAttributeValues={":e": {"N": str(epoch)}})
        except Exception as exc:
            if condition_failed(exc):
                raise self._why_refused(execution_id, lease_token) from None
            with aws_errors("record the step"):
                raise

    # ---- four-eyes: requests, decisions, the move to acting ----

    def request_approval(self, execution_id: str, step_id: str, request: dict[str, Any], *, lease_token: str) -> None:
        """Record that the run asked for approval of ``step_id`` (decisions are accepted from now on)."""
        names = {"#r": "requests", "#d": "decisions", "#q": "decision_seq", "#s": step_id, "#st": "status"}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression="SET #r.#s = :req, #d.#s = if_not_exists(#d.#s, :empty), "
                                 "#q.#s = if_not_exists(#q.#s, :zero)",
                ConditionExpression="lease_token = :tok AND #st <> :aborted",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":req": _ser.serialize(_plain(request)), ":empty": {"M": {}},
                                           ":zero": {"N": "0"}, ":tok": {"S": lease_token},
                                           ":aborted": {"S": "aborted"}})
        except Exception as exc:
            if condition_failed(exc):
                raise self._why_refused(execution_id, lease_token) from None
            with aws_errors("record the approval request"):
                raise

    def record_decision(self, approval: Approval, *, roster_digest: str) -> None:
        """Record one decision, refused (one line, exit 1) unless the step's approval was requested, its action
        has not started, the execution is not finished, the runbook text and roster are the execution's own,
        and this identity has not decided on this step before."""
        eid, sid, who = approval.execution_id, approval.step_id, approval.identity
        names = {"#r": "requests", "#d": "decisions", "#q": "decision_seq", "#a": "acting", "#s": sid, "#i": who,
                 "#st": "status"}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(eid, "meta"),
                UpdateExpression="SET #d.#s.#i = :dec, #q.#s = #q.#s + :one, updated_at = :now",
                ConditionExpression="attribute_exists(#r.#s) AND attribute_not_exists(#a.#s) "
                                    "AND attribute_not_exists(#d.#s.#i) AND NOT #st IN (:c, :f, :x) "
                                    "AND runbook_sha256 = :sha AND roster_digest = :rd",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":dec": _ser.serialize(_plain(approval_record(approval))),
                                           ":one": {"N": "1"}, ":now": {"S": approval.at or ""},
                                           ":c": {"S": "completed"}, ":f": {"S": "failed"}, ":x": {"S": "aborted"},
                                           ":sha": {"S": approval.runbook_sha256}, ":rd": {"S": roster_digest}})
        except Exception as exc:
            if condition_failed(exc):
                raise self._why_no_decision(eid, sid, who, roster_digest) from None
            with aws_errors("record the decision"):
                raise

    def withdraw(self, execution_id: str, step_id: str, identity: str, *, at: str, reason: str) -> None:
        """Withdraw ``identity``'s approval of a step whose action has not started (it no longer counts)."""
        names = {"#d": "decisions", "#q": "decision_seq", "#a": "acting", "#s": step_id, "#i": identity,
                 "#st": "status", "#dec": "decision", "#w": "withdrawn"}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression="SET #d.#s.#i.#w = :w, #q.#s = #q.#s + :one, updated_at = :now",
                ConditionExpression="#d.#s.#i.#dec = :approve AND attribute_not_exists(#d.#s.#i.#w) "
                                    "AND attribute_not_exists(#a.#s) AND NOT #st IN (:c, :f, :x)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":w": _ser.serialize({"at": at, "reason": reason}), ":one": {"N": "1"},
                                           ":now": {"S": at}, ":approve": {"S": "approve"},
                                           ":c": {"S": "completed"}, ":f": {"S": "failed"}, ":x": {"S": "aborted"}})
        except Exception as exc:
            if condition_failed(exc):
                meta = self.meta(execution_id)
                mine = ((meta.get("decisions") or {}).get(step_id) or {}).get(identity)
                if mine and mine.get("decision") == "approve" and not mine.get("withdrawn"):
                    raise self._why_no_decision(execution_id, step_id, identity, None) from None
                raise Refused(f"{identity} has no approval of step {step_id} of {execution_id} to withdraw") from None
            with aws_errors("withdraw the approval"):
                raise

    def approvals(self, execution_id: str, step_id: str) -> tuple[list[Approval], int]:
        """The decisions on a step, and the decision sequence they were read at."""
        meta = self.meta(execution_id)
        return decisions_of(meta, step_id), int((meta.get("decision_seq") or {}).get(step_id) or 0)

    def start_action(self, execution_id: str, step_id: str, acting: dict[str, Any], *, lease_token: str,
                     decision_seq: int | None) -> None:
        """The move to acting, as one conditional write: refused unless this process holds the lease, nobody
        aborted, and (``decision_seq`` given) the step's decisions are exactly the ones just counted.

        Raises ExecutionAborted, LeaseLost, or DecisionsChanged (count again)."""
        names = {"#a": "acting", "#s": step_id, "#st": "status"}
        values: dict[str, Any] = {":act": _ser.serialize(_plain(acting)), ":tok": {"S": lease_token},
                                  ":aborted": {"S": "aborted"}}
        condition = "lease_token = :tok AND #st <> :aborted"
        if decision_seq is not None:
            names["#q"] = "decision_seq"
            values[":seq"] = {"N": str(decision_seq)}
            condition += " AND #q.#s = :seq"
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"), UpdateExpression="SET #a.#s = :act",
                ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except Exception as exc:
            if condition_failed(exc):
                meta = self.meta(execution_id)
                if meta.get("status") == "aborted" or meta.get("lease_token") != lease_token:
                    raise self._why_refused(execution_id, lease_token) from None
                raise DecisionsChanged(f"the decisions on step {step_id} changed while its action was about to "
                                       "start") from None
            with aws_errors("record the start of the action"):
                raise

    def _why_no_decision(self, execution_id: str, step_id: str, identity: str,
                         roster_digest: str | None) -> Refused:
        meta = self.meta(execution_id)
        status = meta.get("status")
        where = f"step {step_id} of {execution_id}"
        if status in FINAL_STATUSES:
            return Refused(f"execution {execution_id} is {status}; there is nothing left to decide")
        acting = (meta.get("acting") or {}).get(step_id)
        if acting:
            return Refused(f"{where} is already executing (its action started at {acting.get('at')}); a decision "
                           "now would change nothing")
        if step_id not in (meta.get("requests") or {}):
            return Refused(f"{where} is not yet requested: the run has not reached it and asked for approval, so "
                           "there is nothing to approve yet (approvers are told when it asks)")
        if roster_digest is not None and meta.get("roster_digest") != roster_digest:
            return Refused(f"execution {execution_id} runs under the roster with digest "
                           f"{str(meta.get('roster_digest'))[:12]}…, not this one ({roster_digest[:12]}…); "
                           "decisions under another roster are refused")
        mine = ((meta.get("decisions") or {}).get(step_id) or {}).get(identity)
        if mine:
            verb = "approved" if mine.get("decision") == "approve" else "rejected"
            return Refused(f"{identity} has already {verb} {where}; one identity counts once")
        return Refused(f"{where}: the decision was refused (the runbook text changed?)")

    def _items(self, execution_id: str, prefix: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "execution_id = :e AND begins_with(#i, :p)",
            "ExpressionAttributeNames": {"#i": "item"},
            "ExpressionAttributeValues": {":e": {"S": execution_id}, ":p": {"S": prefix}},
        }
        out: list[dict[str, Any]] = []
        while True:
            with aws_errors(f"read execution {execution_id}"):
                page = self.aws.dynamodb.query(**kwargs)
            out += [_from_item(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def approval_record(approval: Approval) -> dict[str, Any]:
    """How a decision is stored in the meta item."""
    return {**approval.__dict__, "roles": list(approval.roles)}


def decisions_of(meta: dict[str, Any], step_id: str) -> list[Approval]:
    """The decisions recorded on a step of an execution's meta item."""
    out = []
    for r in ((meta.get("decisions") or {}).get(step_id) or {}).values():
        withdrawn = r.get("withdrawn") or {}
        out.append(Approval(
            execution_id=str(r.get("execution_id", "")), step_id=str(r.get("step_id", "")),
            runbook_sha256=str(r.get("runbook_sha256", "")), identity=str(r.get("identity", "")),
            identity_source=str(r.get("identity_source", "")),
            decision="reject" if r.get("decision") == "reject" else "approve",
            binding=str(r.get("binding", "")), roles=tuple(r.get("roles") or ()),
            reason=str(r.get("reason", "")), at=str(r.get("at", "")),
            withdrawn_at=str(withdrawn.get("at", "")) if isinstance(withdrawn, dict) else ""))
    return out


class Lease:
    """Keeps this process's lease on an execution alive from a background thread."""

    def __init__(self, store: ExecutionStore, execution_id: str, token: str) -> None:
        self.store, self.execution_id, self.token = store, execution_id, token
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{execution_id}", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            if not self.store.renew(self.execution_id, self.token, LEASE_SECONDS):
                self.lost = True
                return

    def start(self) -> Lease:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.store.release(self.execution_id, self.token)
