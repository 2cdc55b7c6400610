"""Execution state in the shared executions table (DynamoDB): the only module doing its I/O.

One partition per execution (``execution_id``), items by ``item``:

- ``meta`` — runbook name, SHA-256 and text, parameters, status, executors, and the *lease*
  (token, owner host/pid, expiry) held by the one process driving the execution;
- ``step#0003`` — the record of step 3: ``{status, start, end, duration, output, error}`` plus
  its phase, how many times its action ran, and its rollback record;
- ``approval#<step>#<identity>`` — one decision; written with ``attribute_not_exists`` so an
  identity can decide once per step.

Step records are written in a transaction with a condition on the meta item's lease token, so a
process that lost the execution to another can never record (or act on) a step.
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
from tradeops.runtime.platform.errors import BadInput, NotFound, OperationFailed
from tradeops.runtime.platform.names import names_for

__all__ = ["FINAL_STATUSES", "LEASE_SECONDS", "RENEW_SECONDS", "ExecutionAborted", "ExecutionStore", "Lease",
           "LeaseLost"]

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
                 "current_step", "reason")
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
        """Take the lease if it is free, expired, or held by ``steal_from`` (a dead owner)."""
        now = time.time()
        condition = "attribute_not_exists(lease_token) OR lease_until < :now"
        values: dict[str, Any] = {":now": {"N": repr(now)}, ":tok": {"S": token},
                                  ":until": {"N": repr(now + ttl)}, ":owner": _ser.serialize(_plain(owner))}
        if steal_from:
            condition += " OR lease_token = :old"
            values[":old"] = {"S": steal_from}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, "meta"),
                UpdateExpression="SET lease_token = :tok, lease_until = :until, lease_owner = :owner",
                ConditionExpression=f"attribute_exists(execution_id) AND ({condition})",
                ExpressionAttributeValues=values)
        except Exception as exc:
            if condition_failed(exc):
                meta = self.meta(execution_id)
                owner_ = meta.get("lease_owner") or {}
                raise BadInput(f"execution {execution_id} is being run by pid {owner_.get('pid')} on "
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
                raise BadInput(f"execution {execution_id} is already {now.get('status')}; nothing to abort") from None
            with aws_errors(f"abort execution {execution_id}"):
                raise
        return meta

    # ---- steps ----

    def steps(self, execution_id: str) -> dict[int, dict[str, Any]]:
        return {int(r["index"]): r for r in self._items(execution_id, "step#")}

    def put_step(self, execution_id: str, index: int, record: dict[str, Any], *, lease_token: str | None) -> None:
        """Write a step record; with a lease token only while that lease is held and not aborted."""
        item = _to_item({**record, "execution_id": execution_id, "item": step_key(index), "index": index})
        if lease_token is None:
            with aws_errors("record the step"):
                self.aws.dynamodb.put_item(TableName=self.table, Item=item)
            return
        try:
            self.aws.dynamodb.transact_write_items(TransactItems=[
                {"ConditionCheck": {"TableName": self.table, "Key": self._key(execution_id, "meta"),
                                    "ConditionExpression": "lease_token = :tok AND #st <> :aborted",
                                    "ExpressionAttributeNames": {"#st": "status"},
                                    "ExpressionAttributeValues": {":tok": {"S": lease_token},
                                                                  ":aborted": {"S": "aborted"}}}},
                {"Put": {"TableName": self.table, "Item": item}},
            ])
        except Exception as exc:
            if condition_failed(exc):
                raise self._why_refused(execution_id, lease_token) from None
            with aws_errors("record the step"):
                raise

    # ---- approvals ----

    def put_approval(self, approval: Approval) -> None:
        item = _to_item({**approval.__dict__, "roles": list(approval.roles),
                         "execution_id": approval.execution_id,
                         "item": f"approval#{approval.step_id}#{approval.identity}"})
        try:
            self.aws.dynamodb.put_item(TableName=self.table, Item=item,
                                       ConditionExpression="attribute_not_exists(#i)",
                                       ExpressionAttributeNames={"#i": "item"})
        except Exception as exc:
            if condition_failed(exc):
                raise BadInput(f"refused: {approval.identity} has already decided on step {approval.step_id} "
                               f"of {approval.execution_id}; one identity counts once") from None
            with aws_errors("record the approval"):
                raise

    def approvals(self, execution_id: str, step_id: str) -> list[Approval]:
        out = []
        for r in self._items(execution_id, f"approval#{step_id}#"):
            out.append(Approval(
                execution_id=str(r.get("execution_id", "")), step_id=str(r.get("step_id", "")),
                runbook_sha256=str(r.get("runbook_sha256", "")), identity=str(r.get("identity", "")),
                identity_source=str(r.get("identity_source", "")),
                decision="reject" if r.get("decision") == "reject" else "approve",
                binding=str(r.get("binding", "")), roles=tuple(r.get("roles") or ()),
                reason=str(r.get("reason", "")), at=str(r.get("at", ""))))
        return out

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
