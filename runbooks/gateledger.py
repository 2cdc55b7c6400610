"""The approval gate's ledger: the decisions table (DynamoDB), the only module doing its I/O.

Only the gate's role writes this table (deploy/template.yaml, ``GateRole``); people's roles read it.
Its items, keyed ``(execution_id, item)``:

- ``step#<step_id>``: one step's :class:`~tradeops.runbooks.gate.StepLedger`: who requested it,
  under which roster and runbook text, the action and the arguments approvers see, the decisions
  (``decisions.<identity>``), ``decision_seq`` (bumped by every decision or withdrawal) and
  ``acted`` once the gate let the action through;
- ``restore#<step_id>``: a rollback's restore of the value the gate's act on that step replaced
  (``acted``: who, when, the value; then its ``outcome``), its own change under its own key, written
  once (:func:`~tradeops.runbooks.gate.restore_refusal` says when);
- ``nonce#<nonce>``: a request already seen (a second one with that nonce is a replay), with
  ``request_expires_at`` (the request's own expiry) and ``expires_at`` (:data:`EXPIRES_AT`, epoch seconds: the
  table's TTL, a day past the longest a request can be valid, :func:`~tradeops.runbooks.gate.nonce_expiry`), so
  nonces do not pile up forever; a step's item has no ``expires_at`` and is kept.

The guarantees the executions table gives a run's four-eyes (:mod:`.store`) hold here the same way,
with single-item conditional writes only: a decision lands only once the step was requested,
before it was acted on, under the roster it was requested under, once per identity; the move to
acted lands only if the decisions are exactly the ones the gate just counted (``decision_seq``), so
a rejection or withdrawal that lands first wins, and once it has landed every decision is refused.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from tradeops.runbooks.approvals import Approval, identity_key
from tradeops.runbooks.changes import plain, python
from tradeops.runbooks.gate import StepLedger
from tradeops.runbooks.store import approval_record, decisions_of
from tradeops.runtime.platform.aws import Aws, aws_errors, condition_failed
from tradeops.runtime.platform.errors import Refused
from tradeops.runtime.platform.names import names_for

__all__ = ["EXPIRES_AT", "GateLedger"]

EXPIRES_AT = "expires_at"
"""The decisions table's TTL attribute (deploy/template.yaml, ``TimeToLiveSpecification``): only nonces carry it."""

_ser = TypeSerializer()
_de = TypeDeserializer()


def _step(step_id: str) -> str:
    return f"step#{step_id}"


def _restore(step_id: str) -> str:
    return f"restore#{step_id}"


class GateLedger:
    def __init__(self, aws: Aws, *, table: str | None = None) -> None:
        self.aws = aws
        self.table = table or names_for(aws.settings).decisions_table

    def _key(self, execution_id: str, item: str) -> dict[str, Any]:
        return {"execution_id": {"S": execution_id}, "item": {"S": item}}

    def _update(self, what: str, execution_id: str, step_id: str, expression: str, condition: str,
                names: dict[str, str], values: dict[str, Any], *, item: str | None = None) -> bool:
        """One conditional UpdateItem on a step's item (or ``item``); False when its condition failed."""
        try:
            self.aws.dynamodb.update_item(
                TableName=self.table, Key=self._key(execution_id, item or _step(step_id)), UpdateExpression=expression,
                ConditionExpression=condition, ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: _ser.serialize(plain(v)) for k, v in values.items()})
        except Exception as exc:
            if condition_failed(exc):
                return False
            with aws_errors(what):
                raise
        return True

    def _read(self, execution_id: str, item: str) -> dict[str, Any]:
        with aws_errors(f"read the gate's ledger of {execution_id}"):
            found = self.aws.dynamodb.get_item(TableName=self.table, Key=self._key(execution_id, item),
                                               ConsistentRead=True).get("Item") or {}
        return {k: python(_de.deserialize(v)) for k, v in found.items()}

    def read(self, execution_id: str, step_id: str) -> StepLedger:
        """A step's ledger (an empty one before anything was recorded for it)."""
        data = self._read(execution_id, _step(step_id))
        return StepLedger(
            requested_by=str(data.get("requested_by") or ""), roster_digest=str(data.get("roster_digest") or ""),
            runbook_sha256=str(data.get("runbook_sha256") or ""), action=str(data.get("action") or ""),
            args=dict(data.get("args") or {}),
            decisions=tuple(decisions_of({"decisions": {step_id: data.get("decisions") or {}}}, step_id)),
            decision_seq=int(data.get("decision_seq") or 0), acted=data.get("acted"))

    def use_nonce(self, execution_id: str, nonce: str, *, at: str, request_expires_at: str, expires_at: int) -> None:
        """Record a request's nonce, forgotten after ``expires_at`` (epoch seconds); Refused if it was seen before
        (a replay)."""
        try:
            self.aws.dynamodb.put_item(
                TableName=self.table, ConditionExpression="attribute_not_exists(execution_id)",
                Item={**self._key(execution_id, f"nonce#{nonce}"), "at": {"S": at},
                      "request_expires_at": {"S": request_expires_at}, EXPIRES_AT: {"N": str(int(expires_at))}})
        except Exception as exc:
            if condition_failed(exc):
                raise Refused(f"request {nonce[:12]}… was seen before: a replay is refused") from None
            with aws_errors("record the request's nonce"):
                raise

    def open(self, execution_id: str, step_id: str, *, requested_by: str, at: str, roster_digest: str,
             runbook_sha256: str, action: str, args: dict[str, Any]) -> bool:
        """Open a step's ledger (decisions count from now); False if it was opened already."""
        return self._update(
            "open the step's ledger", execution_id, step_id,
            "SET requested_by = :by, requested_at = :at, roster_digest = :rd, runbook_sha256 = :sha, #ac = :action, "
            "args = :args, decisions = :none, decision_seq = :zero",
            "attribute_not_exists(requested_by)", {"#ac": "action"},
            {":by": requested_by, ":at": at, ":rd": roster_digest, ":sha": runbook_sha256, ":action": action,
             ":args": args, ":none": {}, ":zero": 0})

    def record_decision(self, approval: Approval, *, roster_digest: str) -> bool:
        """Record one decision; False unless the step is requested, not acted on, under ``roster_digest``, and
        this identity has not decided on it before."""
        return self._update(
            "record the decision", approval.execution_id, approval.step_id,
            "SET #d.#i = :dec, decision_seq = decision_seq + :one",
            "attribute_exists(requested_by) AND attribute_not_exists(acted) AND attribute_not_exists(#d.#i) "
            "AND roster_digest = :rd", {"#d": "decisions", "#i": identity_key(approval.identity)},
            {":dec": approval_record(approval), ":one": 1, ":rd": roster_digest})

    def withdraw(self, execution_id: str, step_id: str, identity: str, *, at: str, reason: str) -> bool:
        """Withdraw an approval before the step is acted on; False if there is none to withdraw any more."""
        return self._update(
            "withdraw the approval", execution_id, step_id,
            "SET #d.#i.#w = :w, decision_seq = decision_seq + :one",
            "#d.#i.#dec = :approve AND attribute_not_exists(#d.#i.#w) AND attribute_not_exists(acted)",
            {"#d": "decisions", "#i": identity_key(identity), "#w": "withdrawn", "#dec": "decision"},
            {":w": {"at": at, "reason": reason}, ":one": 1, ":approve": "approve"})

    def mark_acted(self, execution_id: str, step_id: str, acted: dict[str, Any], *,
                   decision_seq: int | None) -> bool:
        """The move to acted; False if the step was acted on already or (``decision_seq`` given) its decisions
        changed since they were counted."""
        condition = "attribute_not_exists(acted)"
        values: dict[str, Any] = {":acted": acted}
        if decision_seq is not None:
            condition += " AND decision_seq = :seq"
            values[":seq"] = decision_seq
        return self._update("record the act", execution_id, step_id, "SET acted = :acted", condition, {}, values)

    def record_outcome(self, execution_id: str, step_id: str, outcome: dict[str, Any]) -> None:
        """What the action returned (or why it failed), on a step already marked acted."""
        self._update("record the outcome", execution_id, step_id, "SET acted.outcome = :o",
                     "attribute_exists(acted)", {}, {":o": outcome})

    def restored(self, execution_id: str, step_id: str) -> dict[str, Any] | None:
        """The record of a rollback's restore of a step (with its ``outcome`` once made), or None."""
        acted = self._read(execution_id, _restore(step_id)).get("acted")
        return dict(acted) if acted is not None else None

    def mark_restored(self, execution_id: str, step_id: str, acted: dict[str, Any]) -> bool:
        """The move to a step's restore (one conditional write); False if it was restored already."""
        return self._update("record the restore", execution_id, step_id, "SET acted = :acted",
                            "attribute_not_exists(acted)", {}, {":acted": acted}, item=_restore(step_id))

    def record_restore_outcome(self, execution_id: str, step_id: str, outcome: dict[str, Any]) -> None:
        """What the restore returned (or why it failed), on a restore already marked."""
        self._update("record the restore's outcome", execution_id, step_id, "SET acted.outcome = :o",
                     "attribute_exists(acted)", {}, {":o": outcome}, item=_restore(step_id))
