"""The approval gate's decisions, as pure functions over plain values (no I/O, no clock).

The gate (:mod:`.gateservice`) is the one principal allowed to make a guarded change: a routing
flag (``processing``, ``mode``, ``active``), the roster, releasing in-doubt orders. A person asks it
to act on one step of one execution; it acts only if the rules here say so. What it must never
trust is what the asker could have written, so every input here comes from somewhere the asker
cannot reach:

- **who asks** is the identity STS answered for the caller's signed proof (:mod:`.gateproof`),
  never a name in the request;
- **the runbook** (its steps, actions, approval rules) is the gate's own shipped copy whose SHA-256
  is the execution's; an execution of any other text is refused;
- **the decisions and the acting mark** are the gate's own step ledger (:class:`StepLedger`, in a
  table only the gate's role writes), not the executions table the runner writes;
- **the roster** is the one in force (the gate reads it; only the gate writes it), and must be the
  one the step was requested under.

The four-eyes rules themselves are :mod:`.approvals`' (:func:`~.approvals.evaluate`,
:func:`~.approvals.check_new_decision`): the gate applies them, it does not restate them.

A request's life::

    request ──► decide* / withdraw* ──► act (once) ──► restore (at most once: a rollback)

``restore`` is a rollback's undo of a change the gate made (:func:`restore_refusal`): its own change, kept
under its own key in the ledger, allowed once, only for a step whose shipped rollback is ``restore``, and
only back to exactly the value the gate recorded as the one before its change, while the value it set is
still in force.

``resolve`` settles the orders in flight at a broker from its answers (:func:`resolve_refusal`): no judgment, so no
four-eyes, but only for the running execution's executor, at the step of its shipped runbook that does it, with that
step's own arguments, once.

A drill sets a guarded flag without four-eyes (op ``flag``) only where the gate's own configuration
allows it (:func:`drill_flag_refusal`): a drill environment's gate, which people cannot reconfigure.

``request`` opens the step's ledger (the arguments the approvers will see are fixed then, from the
shipped text and the execution's parameters); decisions count from then until ``act``; ``act``
lands once, and everything after it on that step is refused. A step of a shipped runbook with no
``approval`` needs no request: the runbook itself allows its action, with its arguments as the
execution's parameters render them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from tradeops.runbooks import catalogue
from tradeops.runbooks.approvals import (
    GRANTED,
    REJECTED,
    Approval,
    ApprovalContext,
    ApprovalRule,
    check_new_decision,
    evaluate,
    is_drill_identity,
)
from tradeops.runbooks.states import RUNNING
from tradeops.runtime.platform.errors import BadInput, Refused

__all__ = [
    "DRILL_FLAGS",
    "GUARDED_ACTIONS",
    "MAX_LIFETIME",
    "NONCE_KEPT",
    "OPS",
    "SETTLING_ACTIONS",
    "VALUED_OPS",
    "Act",
    "GateRequest",
    "StepLedger",
    "act_refusal",
    "decision_context",
    "decision_refusal",
    "drill_flag_refusal",
    "freshness_refusal",
    "nonce_expiry",
    "parse_request",
    "request_digest",
    "request_refusal",
    "resolve_refusal",
    "restore_refusal",
    "short_name",
]

Op = Literal["request", "decide", "withdraw", "act", "restore", "flag", "unwind", "resolve"]
OPS: Final[tuple[str, ...]] = ("request", "decide", "withdraw", "act", "restore", "flag", "unwind", "resolve")
VALUED_OPS: Final[tuple[str, ...]] = ("flag", "restore", "resolve")
"""The ops whose request carries a value: ``flag`` (what a drill sets), ``restore`` (what a rollback restores),
``resolve`` (the broker the run expects its step to ask: checked against the runbook's, never used instead of it)."""
"""``unwind``: one person's decision on a double execution (the order as the execution, the outcome as the
step); the rules are :func:`tradeops.runbooks.unwind.decide`'s, applied by the gate with its own credentials."""

GUARDED_ACTIONS: Final[Mapping[str, str]] = {
    "set_processing": "the processing flag",
    "set_routing_mode": "the routing mode flag",
    "set_active_broker": "the active broker flag",
    "apply_roster": "the roster",
    "declare_void": "releasing in-doubt orders",
}
"""Runbook actions only the gate performs, and what each changes."""

SETTLING_ACTIONS: Final[Mapping[str, str]] = {
    "resolve_in_flight": "settling the orders in flight at a broker from that broker's own answers",
}
"""Runbook actions that write order state without anyone's judgment (no four-eyes): the gate performs them with its own
credentials for the running execution's executor, at that step only, once (op ``resolve``, :func:`resolve_refusal`).
People's roles may neither read the brokers' keys nor write orders."""

DRILL_FLAGS: Final[tuple[str, ...]] = ("processing", "mode", "active")
"""The guarded flags a drill may set through the gate (op ``flag``, the flag as the step), where its configuration
allows drills."""

MAX_LIFETIME: Final = timedelta(minutes=5)
"""The longest a request may stay valid: long enough for a slow network, too short to hoard one for later."""

NONCE_KEPT: Final = timedelta(days=1)
"""How long past the end of the longest window a request can be valid in its nonce is kept (:func:`nonce_expiry`)."""

_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_NONCE: Final = re.compile(r"^[0-9a-f]{32,64}$")
_FIELDS: Final = {"op", "execution_id", "step_id", "nonce", "expires_at", "decision", "reason", "value"}


@dataclass(frozen=True)
class GateRequest:
    """One signed request to the gate. It names the execution and step, never who asks or what to write."""

    op: Op
    execution_id: str
    step_id: str
    nonce: str  # one use only: a second request with it is a replay
    expires_at: datetime
    decision: str = ""  # decide: approve | reject
    reason: str = ""
    value: str = ""  # flag: the value a drill sets the flag (step_id) to; restore: the value a rollback restores


def request_digest(body: Mapping[str, Any]) -> str:
    """The SHA-256 of a request body in canonical JSON: what the caller's signed proof binds."""
    text = json.dumps(dict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(body: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise BadInput(f"malformed gate request: {name} is missing or not valid")
    return value


def parse_request(body: Any) -> GateRequest:
    """The request in ``body``, or BadInput (one line) for anything malformed: unknown fields included."""
    if not isinstance(body, Mapping):
        raise BadInput("malformed gate request: not a JSON object")
    extra = sorted(set(body) - _FIELDS)
    if extra:
        raise BadInput(f"malformed gate request: unknown field(s) {', '.join(map(str, extra))}")
    op = _text(body, "op")
    if op not in OPS:
        raise BadInput(f"malformed gate request: op is one of {', '.join(OPS)}, not {op!r}")
    try:
        expires = datetime.fromisoformat(_text(body, "expires_at"))
    except ValueError:
        raise BadInput("malformed gate request: expires_at is not an ISO time") from None
    if expires.tzinfo is None:
        raise BadInput("malformed gate request: expires_at has no time zone")
    decision = str(body.get("decision") or "")
    if op == "decide" and decision not in ("approve", "reject"):
        raise BadInput("malformed gate request: a decision is approve or reject")
    reason = body.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > 1000:
        raise BadInput("malformed gate request: reason is text of at most 1000 characters")
    value = body.get("value") or ""
    if not isinstance(value, str) or len(value) > 32 or (op in VALUED_OPS) != bool(value):
        raise BadInput("malformed gate request: a flag or restore request, and only those, carry a value "
                       "(at most 32 characters)")
    return GateRequest(op=op, execution_id=_text(body, "execution_id", _ID),  # type: ignore[arg-type]
                       step_id=_text(body, "step_id", _ID), nonce=_text(body, "nonce", _NONCE),
                       expires_at=expires, decision=decision, reason=reason, value=value)


def drill_flag_refusal(request: GateRequest, who: str, *, drills_allowed: bool) -> str | None:
    """Why the gate does not set a flag for a drill without four-eyes (None when it does): only where the gate's
    own configuration allows drills, only for a drill identity, only a guarded flag, always with a reason."""
    if not drills_allowed:
        return ("this gate does not take drills' flag changes (its configuration, TRADEOPS_GATE_DRILL_FLAGS, "
                "enables them on drill environments only)")
    if not is_drill_identity(short_name(who), ""):
        return f"{who} is not a drill identity: a person changes a guarded flag through a runbook, or break-glass"
    if request.step_id not in DRILL_FLAGS:
        return f"{request.step_id} is not a guarded flag ({', '.join(DRILL_FLAGS)})"
    if len(request.reason.strip()) < 3:
        return "a drill's flag change needs a reason (the drill and its step)"
    return None


def freshness_refusal(request: GateRequest, now: datetime) -> str | None:
    """Why a request is stale or hoarded (None when it is fresh)."""
    if request.expires_at <= now:
        return f"the request expired at {request.expires_at.isoformat()}"
    if request.expires_at - now > MAX_LIFETIME:
        return f"the request is valid for more than {int(MAX_LIFETIME.total_seconds())} s; ask again closer to the act"
    return None


def nonce_expiry(now: datetime) -> int:
    """When the gate may forget a nonce it records at ``now`` (epoch seconds: the decisions table's TTL).

    Any request the gate accepts at ``now`` expires by ``now + MAX_LIFETIME`` (:func:`freshness_refusal`), so after
    that a replay is refused as stale whether or not its nonce is remembered; the nonce is kept a day past that, so
    a gate whose clock runs behind (another task, a skewed host) still finds it. DynamoDB deletes an expired item
    only some time after its expiry, never before, and until then a replay is still refused by it."""
    return int((now + MAX_LIFETIME + NONCE_KEPT).timestamp())


def short_name(identity: str) -> str:
    """The user name at the end of an IAM ARN (what a drill identity's prefix is tested on)."""
    return identity.rsplit("/", 1)[-1] if identity.startswith("arn:") else identity


@dataclass(frozen=True)
class StepLedger:
    """What the gate holds for one step of one execution (written only by the gate)."""

    requested_by: str = ""
    roster_digest: str = ""
    runbook_sha256: str = ""
    action: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    decisions: tuple[Approval, ...] = ()
    decision_seq: int = 0
    acted: Mapping[str, Any] | None = None  # {"by", "at", ...} once the action was let through

    @property
    def requested(self) -> bool:
        return bool(self.requested_by)


def decision_context(execution_id: str, step_id: str, runbook_sha256: str, ledger: StepLedger,
                     executors: Sequence[str], roles_of: Mapping[str, frozenset[str]],
                     caller: str | None = None) -> ApprovalContext:
    """The four-eyes context of a step: the executors are the execution's, the one who requested the step
    and whoever asks to act (proven identities), so none of them can approve it."""
    who = {*executors, ledger.requested_by, *([caller] if caller else [])} - {""}
    # A drill's step: requested by a drill identity, and acted on by one (a person acting on a step a drill
    # identity opened does not make drill approvals count as four-eyes).
    drill = all(is_drill_identity(short_name(w), "") for w in (ledger.requested_by, caller) if w is not None) \
        and bool(ledger.requested_by)
    return ApprovalContext(execution_id=execution_id, step_id=step_id, runbook_sha256=runbook_sha256,
                           executors=frozenset(who), roles_of=roles_of, drill=drill)


def _action_name(step: Mapping[str, Any]) -> str:
    """The name of a shipped step's action ("" for a step without one)."""
    return str((step.get("action") or {}).get("name") or "")


def _step_refusal(step: Mapping[str, Any] | None, execution_id: str, step_id: str) -> str | None:
    if step is None:
        return (f"execution {execution_id} is not of a shipped runbook, or its runbook has no step {step_id}: "
                "the gate acts only on the runbooks it ships")
    return None


def request_refusal(step: Mapping[str, Any] | None, ledger: StepLedger, *, execution_id: str, step_id: str,
                    roster_now: str, roster_of_execution: str) -> str | None:
    """Why the gate does not open a step's ledger (None when it does, or it is open already: asking again after a
    resume changes nothing)."""
    why = _step_refusal(step, execution_id, step_id)
    if why:
        return why
    assert step is not None
    if "approval" not in step:
        return f"step {step_id} needs no approval; there is nothing to request"
    if roster_now != roster_of_execution:
        return (f"execution {execution_id} started under roster {roster_of_execution[:12]}…, not the one in force "
                f"({roster_now[:12]}…)")
    return None


def decision_refusal(step: Mapping[str, Any] | None, ledger: StepLedger, ctx: ApprovalContext, *, who: str,
                     source: str, op: str, roster_now: str) -> str | None:
    """Why the gate does not record ``who``'s decision or withdrawal (None when it does)."""
    why = _step_refusal(step, ctx.execution_id, ctx.step_id)
    if why:
        return why
    assert step is not None
    where = f"step {ctx.step_id} of {ctx.execution_id}"
    if "approval" not in step:
        return f"{where} needs no approval"
    if not ledger.requested:
        return f"{where} is not yet requested: there is nothing to decide yet"
    if ledger.acted is not None:
        return f"{where} was already acted on at {ledger.acted.get('at')}; a decision now would change nothing"
    if roster_now != ledger.roster_digest:
        return f"{where} was requested under another roster; decisions under the one in force are refused"
    if op == "withdraw":
        mine = [a for a in ledger.decisions if a.identity == who]
        if not mine or mine[0].decision != "approve" or mine[0].withdrawn_at:
            return f"{who} has no approval of {where} to withdraw"
        return None
    try:
        check_new_decision(ApprovalRule.from_spec(step["approval"]), ctx, who, source, ledger.decisions)
    except Refused as exc:
        return str(exc).removeprefix("refused: ")
    return None


@dataclass(frozen=True)
class Act:
    """What the gate lets through: the action, its arguments and who approved it."""

    action: str
    args: Mapping[str, Any]
    approved_by: tuple[str, ...] = ()


def act_refusal(step: Mapping[str, Any] | None, ledger: StepLedger, ctx: ApprovalContext, *,
                rendered_args: Mapping[str, Any], roster_now: str) -> tuple[Act | None, str | None]:
    """Whether the gate performs the step's action now: ``(Act, None)``, or ``(None, why not)``.

    ``rendered_args`` are the shipped step's arguments under the execution's parameters (used only for a step
    without approval: a step with approval acts with the arguments fixed when it was requested)."""
    why = _step_refusal(step, ctx.execution_id, ctx.step_id)
    if why:
        return None, why
    assert step is not None
    where = f"step {ctx.step_id} of {ctx.execution_id}"
    action = _action_name(step)
    if action not in GUARDED_ACTIONS:
        return None, f"{where} is not a guarded change (its action is {action or 'none'}); it needs no gate"
    if ledger.acted is not None:
        return None, f"{where} was already acted on at {ledger.acted.get('at')} by {ledger.acted.get('by')}"
    if "approval" not in step:
        return Act(action=action, args=dict(rendered_args)), None
    if not ledger.requested:
        return None, f"{where} was never requested through the gate: no approval can count for it"
    if roster_now != ledger.roster_digest:
        return None, f"{where} was requested under roster {ledger.roster_digest[:12]}…, not the one in force"
    verdict = evaluate(ApprovalRule.from_spec(step["approval"]), ctx, ledger.decisions)
    if verdict.state == REJECTED:
        who = "; ".join(f"{i} ({r or 'no reason'})" for i, r in verdict.rejected_by)
        return None, f"{where} was rejected by {who}"
    if verdict.state != GRANTED:
        return None, f"{where} still needs {verdict.missing} approval(s) that count"
    return Act(action=ledger.action, args=dict(ledger.args), approved_by=verdict.approved_by), None


def _restore_arg(action: str) -> str | None:
    return next((e.restore_arg for e in catalogue.ENTRIES if e.name == action and e.kind == "action"), None)


def restore_refusal(step: Mapping[str, Any] | None, ledger: StepLedger, restored: Mapping[str, Any] | None, *,
                    execution_id: str, step_id: str, value: str, current: Any) -> tuple[Act | None, str | None]:
    """Whether the gate restores, for a rollback, the value its act on this step replaced: ``(Act, None)`` or
    ``(None, why not)``.

    ``restored`` is the ledger's record of a restore of this step (None before one); ``current`` the value now in
    force of what the act changed. Only a step the gate acted on in this execution, whose change succeeded and
    recorded the value before it; only where the shipped step's rollback is ``restore``; only once; only back to
    exactly that value; and only while the value the gate set is still the one in force (a later change, by
    anyone, is not undone by restoring an earlier one)."""
    why = _step_refusal(step, execution_id, step_id)
    if why:
        return None, why
    assert step is not None
    where = f"step {step_id} of {execution_id}"
    action = _action_name(step)
    arg = _restore_arg(action)
    if action not in GUARDED_ACTIONS or arg is None:
        return None, f"{where} is not a guarded change with a value to restore (its action is {action or 'none'})"
    if step.get("rollback", "restore") != "restore":
        return None, f"{where}'s rollback is not a restore in its runbook; the gate restores nothing for it"
    acted = ledger.acted
    if acted is None:
        return None, f"{where} was never acted on by the gate: there is nothing of its to restore"
    output = (acted.get("outcome") or {}).get("output")
    if not isinstance(output, Mapping) or "previous" not in output:
        return None, f"{where}'s change did not complete at the gate (no value before it is recorded): nothing to undo"
    if restored is not None:
        return None, f"{where} was already restored at {restored.get('at')} by {restored.get('by')}"
    if value != output["previous"]:
        return None, (f"{where} can be restored only to {output['previous']!r}, the value before the gate's change, "
                      f"not {value!r}")
    if current != output.get("value"):
        return None, (f"{where} set {output.get('value')!r}, but {current!r} is in force now: a later change is not "
                      "undone by restoring this one")
    return Act(action=action, args={arg: value}, approved_by=tuple(acted.get("approved_by") or ())), None


def resolve_refusal(step: Mapping[str, Any] | None, ledger: StepLedger, *, execution_id: str, step_id: str,
                    status: str, current_step: str, executors: Sequence[str], rostered: bool, who: str,
                    provider: str, rendered_args: Mapping[str, Any]) -> tuple[Act | None, str | None]:
    """Whether the gate settles, for ``who``, the orders in flight at the broker of a step: ``(Act, None)`` or
    ``(None, why not)``.

    Only a step of a shipped runbook whose action settles from a broker's answers (:data:`SETTLING_ACTIONS`), of an
    execution that is running and at that step; only for one of its executors, on the roster in force; only for the
    broker the shipped step names under the execution's parameters (``provider`` is what the run expects it to be: a
    mismatch is refused, never obeyed); and once per step."""
    why = _step_refusal(step, execution_id, step_id)
    if why:
        return None, why
    assert step is not None
    where = f"step {step_id} of {execution_id}"
    action = _action_name(step)
    if action not in SETTLING_ACTIONS:
        return None, f"{where} does not settle orders from a broker's answers (its action is {action or 'none'})"
    if status != RUNNING:
        return None, f"execution {execution_id} is {status or 'unknown'}, not running: nothing is settled for it"
    if current_step != step_id:
        return None, f"execution {execution_id} is at step {current_step or 'none'}, not {step_id}"
    if who not in executors:
        return None, f"{who} is not an executor of {execution_id}: only its executor's run settles its step"
    if not rostered:
        return None, f"{who} is not on the roster in force"
    named = str(rendered_args.get("provider") or "")
    if provider != named:
        return None, f"{where} asks the {named or 'unnamed'} broker, not {provider!r}"
    if ledger.acted is not None:
        return None, f"{where} was already acted on at {ledger.acted.get('at')} by {ledger.acted.get('by')}"
    return Act(action=action, args=dict(rendered_args)), None
