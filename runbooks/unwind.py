"""Deciding a double execution: unwound or written off, with four-eyes above a notional.

A double execution (:mod:`tradeops.runtime.orderpath.double_executions`) stays ``open`` until people decide
what was done with the extra position: ``unwound`` (closed out) or ``written_off`` (accepted as a
loss). ``tradeops orders unwind ID --reason ...`` records one person's decision. The rules are the
runbooks' four-eyes rules (:mod:`.approvals`), not a rule set of their own:

- each decision is an approval bound to this order's double execution (execution
  ``double-execution:<order_id>``), to the outcome chosen (as the step), and to the digest of the
  fills it decides about, so a decision for another outcome, order or record counts for nothing;
- only identities holding one of :data:`UNWIND_ROLES` count, and one identity counts once;
- at or below ``unwind_dual_approval`` (GBP notional of the extra fill) one decision settles it;
  above it, two distinct people must choose the same outcome.

:func:`decide` is the pure rule over the record; :func:`unwind` reads the order, applies it and
writes the record back with a conditional write (a decision made meanwhile is never lost).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradeops.runbooks.approvals import (
    GRANTED,
    Approval,
    ApprovalContext,
    ApprovalRule,
    check_new_decision,
    evaluate,
)
from tradeops.runtime.orderpath.double_executions import DECISIONS, OPEN, watch_of
from tradeops.runtime.orderpath.orders import OrderStore, StaleOrder
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.events import EventLog

__all__ = ["UNWIND_ROLES", "decide", "unwind"]

UNWIND_ROLES = ("ops-manager", "risk")
"""Who may decide what happens to a double execution (roles of the operators file)."""


def _record_digest(record: Mapping[str, Any]) -> str:
    """What a decision is bound to: the fills and the void it is about (not its own state)."""
    core = {k: record.get(k) for k in ("fills", "voided_at", "void_declared_by", "found_at")}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()


def _approval_of(raw: Mapping[str, Any]) -> Approval:
    return Approval(execution_id=raw["execution_id"], step_id=raw["step_id"], runbook_sha256=raw["runbook_sha256"],
                    identity=raw["identity"], identity_source=raw.get("identity_source", ""),
                    decision=raw["decision"], binding=raw["binding"], roles=tuple(raw.get("roles") or ()),
                    reason=raw.get("reason", ""), at=raw.get("at", ""))


def decide(record: Mapping[str, Any], *, order_id: str, identity: str, source: str, outcome: str, reason: str,
           roles_of: Mapping[str, frozenset[str]], dual_above: Decimal, at: str) -> dict[str, Any]:
    """``record`` with one more decision; its ``state`` becomes ``outcome`` once enough people chose it.

    Raises BadInput (one line) when the record is already decided or the outcome or reason is missing,
    and Refused when the identity holds no deciding role or has decided already.
    """
    if record.get("state") != OPEN:
        who = ", ".join(record.get("decided_by") or []) or "someone"
        raise BadInput(f"order {order_id}: the double execution is already {record.get('state')} (by {who})")
    if outcome not in DECISIONS:
        raise BadInput(f"outcome must be one of {', '.join(DECISIONS)}, not {outcome!r}")
    if not reason.strip():
        raise BadInput("a decision needs a reason (--reason)")
    notional = Decimal(str(record.get("notional") or 0))
    rule = ApprovalRule(count=2 if notional > dual_above else 1, roles=UNWIND_ROLES)
    ctx = ApprovalContext(execution_id=f"double-execution:{order_id}", step_id=outcome,
                          runbook_sha256=_record_digest(record), executors=frozenset(), roles_of=roles_of)
    previous = [_approval_of(a) for a in record.get("decisions") or []]
    check_new_decision(rule, ctx, identity, source, [a for a in previous if a.step_id == outcome])
    mine = Approval.make(ctx, identity, source, "approve", reason=reason.strip(), at=at)
    decisions = [*previous, mine]
    verdict = evaluate(rule, ctx, [a for a in decisions if a.step_id == outcome])
    new = dict(record)
    new["decisions"] = [{"execution_id": a.execution_id, "step_id": a.step_id, "runbook_sha256": a.runbook_sha256,
                         "identity": a.identity, "identity_source": a.identity_source, "decision": a.decision,
                         "binding": a.binding, "roles": list(a.roles), "reason": a.reason, "at": a.at}
                        for a in decisions]
    new["approvals_needed"] = rule.count
    if verdict.state == GRANTED:
        new.update(state=outcome, decided_by=list(verdict.approved_by), decided_at=at,
                   decision_reason="; ".join(a.reason for a in decisions if a.step_id == outcome))
    return new


def unwind(aws: Aws, order_id: str, *, identity: str, source: str, outcome: str, reason: str,
           roles_of: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    """Record one person's decision on ``order_id``'s double execution; returns the record as written."""
    store = OrderStore(aws)
    order = store.require(order_id)
    record = order.get("double_execution")
    if not record:
        raise BadInput(f"order {order_id} has no double execution (see `tradeops orders duplicates`)")
    new = decide(record, order_id=order_id, identity=identity, source=source, outcome=outcome, reason=reason,
                 roles_of=roles_of, dual_above=aws.settings.unwind_dual_approval, at=iso(utcnow()))
    decided = new["state"] != OPEN
    note = (f"double execution {new['state']} (decided by {', '.join(new['decided_by'])}): {reason}" if decided
            else f"{identity} chose {outcome}; needs {new['approvals_needed']} people: {reason}")
    try:
        store.annotate(order, actor=identity, note=note[:300],
                       set_fields={"double_execution": new, "watch": watch_of(new["state"])})
    except StaleOrder:
        raise OperationFailed(f"order {order_id} changed while you decided (someone else did too?); "
                              "look again with `tradeops orders duplicates`") from None
    EventLog(aws, source=identity, echo=False).emit(
        "double_execution_decided" if decided else "double_execution_decision", stream="orders",
        order_id=order_id, actor=identity, outcome=outcome, state=new["state"], reason=reason,
        notional=str(new.get("notional")))
    return {"order_id": order_id, **new}
