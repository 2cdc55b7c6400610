"""Execution state in the shared executions table (DynamoDB): the only module doing its I/O.

One item per execution (``execution_id``, ``item = "meta"``) holds all of it:

- runbook name, SHA-256 and text, parameters, status, executors, the roster digest, and the *lease*
  (token, owner host/pid, expiry, and an epoch that grows with every take-over) held by the one
  process driving the execution;
- the four-eyes state of its steps: ``requests.<step>`` (the approval request the run published),
  ``decisions.<step>.<identity>`` (one approval or rejection each), ``decision_seq.<step>`` (bumped
  by every decision or withdrawal) and ``acting.<step>`` (written when the step's action starts);
- ``step#0003``, the record of step 3: ``{status, start, end, duration, output, error}`` plus its
  phase, how many times its action ran, and its rollback. Executions written before these records
  moved into the meta item keep them as items of their own (``item = "step#0003"``); reads merge
  both. The runbook text is at most 64 KiB, which leaves an execution's records most of DynamoDB's
  400 KB item.

**Single-item conditional writes only.** The local stack's emulator does not apply a multi-item
transaction atomically (it snapshots the table, applies the items one by one and, when a condition
fails, restores the snapshot, erasing whatever other writers committed meanwhile), while it does
apply a conditional write on one item atomically; so does DynamoDB. Everything that must be
decided together therefore lives in the one meta item:

- a decision is recorded only if the step's approval was requested, its action has not started,
  the execution is not finished and the identity has not decided before;
- the move to acting is recorded only while this process holds the lease, nobody aborted, and the
  step's decisions are exactly the ones the engine just counted (``decision_seq``). A rejection,
  withdrawal or abort that lands first makes it fail; once it has landed, decisions are refused;
- every write of the driver (status, step records, the approval request, the move to acting) is
  conditional on its lease and on nobody having aborted: a process that lost the execution, or
  whose execution was aborted, can never record anything for it again.

**Moves are checked before they are written.** Status, step status and step phase change only along
the tables of :mod:`.states`: the driver's changes are kept in :class:`Changes`, which refuses a move
the tables do not allow as it is made, and :meth:`ExecutionStore.put_step` checks a record against
the one stored. The driver writes what it holds in one conditional write at each checkpoint (before
an action, before waiting for or asking a person, after an action, at the end; :mod:`.runner`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from tradeops.runbooks.approvals import Approval
from tradeops.runbooks.changes import STEP_PREFIX, Changes, is_step, plain, python
from tradeops.runbooks.states import ABORTED, FINAL, check_execution_move
from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.errors import BadInput, NotFound, OperationFailed, Refused
from tradeops.runtime.platform.names import names_for

__all__ = ["LEASE_SECONDS", "RENEW_SECONDS", "DecisionsChanged", "ExecutionAborted", "ExecutionStore", "Lease",
           "LeaseLost", "approval_record", "decisions_of"]

LEASE_SECONDS = 30.0
"""How long a lease on an execution lasts without renewal (a killed driver's lease then runs out)."""
RENEW_SECONDS = 5.0
_META = "meta"
_RECORDS_HERE = "step_records_in_meta"
"""Set on executions whose step records all live in the meta item: no older items of their own to read."""
_ser = TypeSerializer()
_de = TypeDeserializer()


class LeaseLost(OperationFailed):
    """Another process now drives this execution; this one must stop touching it."""


class ExecutionAborted(OperationFailed):
    """The execution was aborted (by `runbook abort`) while this process drove it."""


class DecisionsChanged(OperationFailed):
    """A decision landed on a step between counting its approvals and starting its action: count again."""


def _to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in plain(data).items()}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: python(_de.deserialize(v)) for k, v in item.items()}


class _Update:
    """One UpdateItem's SET clauses, names and values, built up."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, name: str) -> str:
        alias = f"#n{len(self.names)}"
        self.names[alias] = name
        return alias

    def value(self, value: Any) -> str:
        alias = f":v{len(self.values)}"
        self.values[alias] = _ser.serialize(plain(value))
        return alias

    def set(self, path: tuple[str, ...], value: Any) -> None:
        self.sets.append(f"{'.'.join(self.name(p) for p in path)} = {self.value(value)}")

    def set_all(self, attributes: Mapping[str, Any]) -> None:
        for name, value in attributes.items():
            self.set((name,), value)

    def expression(self) -> str:
        return "SET " + ", ".join(self.sets) + (" REMOVE " + ", ".join(self.removes) if self.removes else "")


class ExecutionStore:
    def __init__(self, aws: Aws, *, table: str | None = None) -> None:
        self.aws = aws
        self.table = table or names_for(aws.settings).executions_table

    def _key(self, execution_id: str, item: str = _META) -> dict[str, Any]:
        return {"execution_id": {"S": execution_id}, "item": {"S": item}}

    # ---- reads ----

    def _item(self, execution_id: str) -> dict[str, Any]:
        with aws_errors(f"read execution {execution_id}"):
            item = self.aws.dynamodb.get_item(TableName=self.table, Key=self._key(execution_id),
                                              ConsistentRead=True).get("Item")
        if not item:
            raise NotFound(f"no execution {execution_id!r} (`tradeops runbook history` lists them)")
        return _from_item(item)

    def meta(self, execution_id: str) -> dict[str, Any]:
        """The execution's meta item, without its step records."""
        return {k: v for k, v in self._item(execution_id).items() if not is_step(k)}

    def load(self, execution_id: str) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """The meta item and every step record (those of the meta item over any older items of their own)."""
        item = self._item(execution_id)
        older = [] if item.get(_RECORDS_HERE) else self._items(execution_id, STEP_PREFIX)
        records = {int(r["index"]): r for r in older}
        records.update({int(v["index"]): v for k, v in item.items() if is_step(k)})
        return {k: v for k, v in item.items() if not is_step(k)}, records

    def steps(self, execution_id: str) -> dict[int, dict[str, Any]]:
        """Every step record stored so far (none for an execution that does not exist yet)."""
        try:
            return self.load(execution_id)[1]
        except NotFound:
            return {}

    def list_executions(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "FilterExpression": "#item = :m",
            "ExpressionAttributeValues": {":m": {"S": _META}},
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

    def _why_refused(self, execution_id: str, token: str | None) -> OperationFailed:
        meta = self.meta(execution_id)
        if meta.get("status") == ABORTED:
            return ExecutionAborted(f"execution {execution_id} was aborted by {meta.get('aborted_by')}: "
                                    f"{meta.get('reason') or 'no reason given'}")
        return LeaseLost(f"execution {execution_id} is now driven by another process "
                         f"({meta.get('lease_owner')}); this one stopped")

    def check_live(self, execution_id: str, token: str) -> None:
        """Raise ExecutionAborted or LeaseLost unless this lease still drives a live execution (a read)."""
        meta = self.meta(execution_id)
        if meta.get("status") == ABORTED or meta.get("lease_token") != token:
            raise self._why_refused(execution_id, token)

    # ---- the driver's writes ----

    def create(self, meta: dict[str, Any]) -> None:
        """Write a new execution's meta item (with its lease); an existing id is refused."""
        meta = {"requests": {}, "decisions": {}, "decision_seq": {}, "acting": {}, "lease_epoch": 1,
                _RECORDS_HERE: True, **meta}
        try:
            self.aws.dynamodb.put_item(TableName=self.table, Item=_to_item({**meta, "item": _META}),
                                       ConditionExpression="attribute_not_exists(execution_id)")
        except Exception as exc:
            if condition_failed(exc):
                raise BadInput(f"execution {meta['execution_id']} already exists") from None
            with aws_errors("create the execution"):
                raise

    def _driver_write(self, eid: str, changes: Changes | None, update: _Update, *, lease_token: str, what: str,
                      seq_of: str | None = None, seq: int | None = None,
                      return_steps: bool = False) -> dict[int, dict[str, Any]] | None:
        """One conditional write of the lease holder: ``update`` and what it holds (``changes``), refused once the
        lease is lost or the execution aborted (what it holds is kept then). With ``seq_of``, also refused unless
        that step's decision sequence is ``seq`` (DecisionsChanged)."""
        if changes is not None:
            update.set_all(changes.attributes())
        condition = f"{update.name('lease_token')} = {update.value(lease_token)} AND " \
                    f"{update.name('status')} <> {update.value(ABORTED)}"
        if seq_of is not None:
            condition += f" AND {update.name('decision_seq')}.{update.name(seq_of)} = {update.value(seq)}"
        kwargs: dict[str, Any] = {"ReturnValues": "ALL_NEW"} if return_steps else {}
        try:
            answer = self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(eid), UpdateExpression=update.expression(),
                ConditionExpression=condition, ExpressionAttributeNames=update.names,
                ExpressionAttributeValues=update.values, **kwargs)
        except Exception as exc:
            if condition_failed(exc):
                refused = self._why_refused(eid, lease_token)
                if seq_of is not None and isinstance(refused, LeaseLost) and \
                        self.meta(eid).get("lease_token") == lease_token:
                    raise DecisionsChanged(f"the decisions on step {seq_of} changed while its action was about to "
                                           "start") from None
                raise refused from None
            with aws_errors(what):
                raise
        if changes is not None:
            changes.clear()
        if not return_steps:
            return None
        item = _from_item(answer.get("Attributes") or {})
        return {int(v["index"]): v for k, v in item.items() if is_step(k)}

    def write(self, changes: Changes, *, lease_token: str, release: bool = False,
              return_steps: bool = False) -> dict[int, dict[str, Any]] | None:
        """Write what the driver holds (one conditional write); with ``release``, give up the lease in the same
        write (the run is over); with ``return_steps``, answer the step records the meta item then holds."""
        update = _Update()
        if release:
            update.removes += [update.name(n) for n in ("lease_token", "lease_until", "lease_owner")]
        return self._driver_write(changes.execution_id, changes, update, lease_token=lease_token,
                                  return_steps=return_steps, what=f"update execution {changes.execution_id}")

    def request_approval(self, execution_id: str, step_id: str, request: dict[str, Any], *, lease_token: str,
                         changes: Changes | None = None) -> None:
        """Record that the run asked for approval of ``step_id`` (decisions are accepted from now on), with what
        the driver holds (``changes``)."""
        update = _Update()
        update.set(("requests", step_id), request)
        d, q, s = update.name("decisions"), update.name("decision_seq"), update.name(step_id)
        update.sets += [f"{d}.{s} = if_not_exists({d}.{s}, {update.value({})})",
                        f"{q}.{s} = if_not_exists({q}.{s}, {update.value(0)})"]
        self._driver_write(execution_id, changes, update, lease_token=lease_token, what="record the approval request")

    def start_action(self, execution_id: str, step_id: str, acting: dict[str, Any], *, lease_token: str,
                     decision_seq: int | None, changes: Changes | None = None) -> None:
        """The move to acting, with what the driver holds (``changes``), as one conditional write: refused unless
        this process holds the lease, nobody aborted, and (``decision_seq`` given) the step's decisions are exactly
        the ones just counted.

        Raises ExecutionAborted, LeaseLost, or DecisionsChanged (count again)."""
        update = _Update()
        update.set(("acting", step_id), acting)
        self._driver_write(execution_id, changes, update, lease_token=lease_token,
                           what="record the start of the action", seq_of=None if decision_seq is None else step_id,
                           seq=decision_seq)

    # ---- lease ----

    def acquire(self, execution_id: str, token: str, owner: dict[str, Any], ttl: float, *,
                steal_from: str | None = None) -> None:
        """Take the lease if it is free, expired, or held by ``steal_from`` (a dead owner); its epoch grows."""
        now = time.time()
        condition = "attribute_not_exists(lease_token) OR lease_until < :now"
        values: dict[str, Any] = {":now": {"N": repr(now)}, ":tok": {"S": token},
                                  ":until": {"N": repr(now + ttl)}, ":owner": _ser.serialize(plain(owner)),
                                  ":zero": {"N": "0"}, ":one": {"N": "1"}}
        if steal_from:
            condition += " OR lease_token = :old"
            values[":old"] = {"S": steal_from}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id),
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
                TableName=self.table, Key=self._key(execution_id),
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
                TableName=self.table, Key=self._key(execution_id),
                UpdateExpression="REMOVE lease_token, lease_until, lease_owner",
                ConditionExpression="lease_token = :tok", ExpressionAttributeValues={":tok": {"S": token}})

    # ---- writes outside a run ----

    def _final_values(self) -> dict[str, Any]:
        return {f":final{i}": {"S": s} for i, s in enumerate(sorted(FINAL))}

    def _not_final(self) -> str:
        return f"NOT #st IN ({', '.join(self._final_values())})"

    def put_step(self, execution_id: str, index: int, record: dict[str, Any], *, lease_token: str | None) -> None:
        """Write one step record, checked against the one stored (IllegalTransition before writing); with a
        lease token only while that lease is held and nobody aborted, without one unconditionally (a record of
        what already happened, e.g. a rollback)."""
        meta, records = self.load(execution_id)
        if lease_token is not None and (meta.get("lease_token") != lease_token or meta.get("status") == ABORTED):
            raise self._why_refused(execution_id, lease_token)
        changes = Changes(execution_id, str(meta.get("status")), records, int(meta.get("lease_epoch") or 0))
        changes.step(index, record)
        update = _Update()
        update.set_all(changes.attributes())
        kwargs: dict[str, Any] = {}
        if lease_token is not None:
            kwargs["ConditionExpression"] = f"{update.name('lease_token')} = {update.value(lease_token)} AND " \
                                            f"{update.name('status')} <> {update.value(ABORTED)}"
        try:
            self.aws.dynamodb.update_item(TableName=self.table, Key=self._key(execution_id),
                                          UpdateExpression=update.expression(), ExpressionAttributeNames=update.names,
                                          ExpressionAttributeValues=update.values, **kwargs)
        except Exception as exc:
            if condition_failed(exc):
                raise self._why_refused(execution_id, lease_token) from None
            with aws_errors("record the step"):
                raise

    def set_fields(self, execution_id: str, changes: dict[str, Any]) -> None:
        """Set meta fields unconditionally (records of what already happened, e.g. a rollback); never the status,
        which moves only along its table."""
        if "status" in changes or any(is_step(k) for k in changes):
            raise ValueError("set_fields records facts; the status and step records move only through the checked "
                             "writes")
        update = _Update()
        update.set_all(changes)
        with aws_errors(f"update execution {execution_id}"):
            self.aws.dynamodb.update_item(TableName=self.table, Key=self._key(execution_id),
                                          UpdateExpression=update.expression(), ExpressionAttributeNames=update.names,
                                          ExpressionAttributeValues=update.values)

    def mark_aborted(self, execution_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Set status aborted unless the execution already finished; answers the meta before."""
        meta = self.meta(execution_id)
        if meta.get("status") not in FINAL:
            check_execution_move(str(meta.get("status")), ABORTED)
        update = _Update()
        update.set(("status",), ABORTED)
        update.set_all(changes)
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id), UpdateExpression=update.expression(),
                ConditionExpression=self._not_final(), ExpressionAttributeNames={**update.names, "#st": "status"},
                ExpressionAttributeValues={**update.values, **self._final_values()})
        except Exception as exc:
            if condition_failed(exc):
                now = self.meta(execution_id)
                raise Refused(f"execution {execution_id} is already {now.get('status')}; nothing to abort") from None
            with aws_errors(f"abort execution {execution_id}"):
                raise
        return meta

    # ---- four-eyes: decisions ----

    def record_decision(self, approval: Approval, *, roster_digest: str) -> None:
        """Record one decision, refused (one line, exit 1) unless the step's approval was requested, its action
        has not started, the execution is not finished, the runbook text and roster are the execution's own,
        and this identity has not decided on this step before."""
        eid, sid, who = approval.execution_id, approval.step_id, approval.identity
        names = {"#r": "requests", "#d": "decisions", "#q": "decision_seq", "#a": "acting", "#s": sid, "#i": who,
                 "#st": "status"}
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(eid),
                UpdateExpression="SET #d.#s.#i = :dec, #q.#s = #q.#s + :one, updated_at = :now",
                ConditionExpression="attribute_exists(#r.#s) AND attribute_not_exists(#a.#s) "
                                    f"AND attribute_not_exists(#d.#s.#i) AND {self._not_final()} "
                                    "AND runbook_sha256 = :sha AND roster_digest = :rd",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":dec": _ser.serialize(plain(approval_record(approval))),
                                           ":one": {"N": "1"}, ":now": {"S": approval.at or ""},
                                           **self._final_values(),
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
                TableName=self.table, Key=self._key(execution_id),
                UpdateExpression="SET #d.#s.#i.#w = :w, #q.#s = #q.#s + :one, updated_at = :now",
                ConditionExpression="#d.#s.#i.#dec = :approve AND attribute_not_exists(#d.#s.#i.#w) "
                                    f"AND attribute_not_exists(#a.#s) AND {self._not_final()}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":w": _ser.serialize({"at": at, "reason": reason}), ":one": {"N": "1"},
                                           ":now": {"S": at}, ":approve": {"S": "approve"}, **self._final_values()})
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

    def _why_no_decision(self, execution_id: str, step_id: str, identity: str,
                         roster_digest: str | None) -> Refused:
        meta = self.meta(execution_id)
        status = meta.get("status")
        where = f"step {step_id} of {execution_id}"
        if status in FINAL:
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
        self.released = False  # given up by the run's last write: nothing left to release
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
        if not self.released:
            self.store.release(self.execution_id, self.token)
