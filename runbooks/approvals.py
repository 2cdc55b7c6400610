"""Four-eyes rules, as pure decisions over plain values (no I/O).

An approval (or rejection) is bound to one execution, one step and the SHA-256 of the runbook
text as it was when the execution started; its ``binding`` digest covers those and the
identity, so a record copied to another execution or step, or edited, no longer counts.

The rules, each failing closed:

- the executor of a run can never approve its steps;
- one identity counts once (a second decision by the same identity is refused);
- only identities holding one of the step's roles count (roles from the operators file of the
  process that decides, not from the record);
- a valid rejection stops the step, whatever the approvals;
- a withdrawn approval counts for nothing (and its identity cannot decide again);
- an approval bound to another execution, step or runbook text counts for nothing;
- a drill identity (source ``drill``, or a name starting ``drill-``) counts only in a drill's own
  execution (one whose executor is a drill identity): automated approvals never pass as human
  four-eyes.

Break-glass (a direct change outside any runbook, such as ``flags set active``) skips four-eyes,
so it is allowed only to identities holding a role the roster names for it, and only with a
reason (:func:`break_glass_refusal`).

Refusals are :class:`Refused` (exit 1): the request was well formed, the rules say no.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from tradeops.runtime.platform.errors import BadInput, Refused

__all__ = [
    "DRILL_PREFIX",
    "DRILL_SOURCE",
    "GRANTED",
    "REJECTED",
    "WAITING",
    "Approval",
    "ApprovalContext",
    "ApprovalRule",
    "Decision",
    "binding_of",
    "break_glass_refusal",
    "check_new_decision",
    "evaluate",
    "identity_key",
    "is_drill_identity",
    "roles_held",
]

Choice = Literal["approve", "reject"]
DecisionState = Literal["granted", "pending", "rejected"]
GRANTED: Final = "granted"
"""Enough approvals count, and no rejection: the step's action may start."""
WAITING: Final = "pending"
"""Not enough approvals count yet."""
REJECTED: Final = "rejected"
"""A rejection counts: the step stops, whatever the approvals."""

DRILL_SOURCE = "drill"
"""The identity source of a drill's automated executor and approvers (never a person's)."""
DRILL_PREFIX = "drill-"
"""Roster names of drill identities start with this, so no person can be one by name either."""


def identity_key(identity: str) -> str:
    """The form identities are compared in: ``Alice``, ``alice`` and `` alice `` are one person.

    IAM user names are unique regardless of case, and a name typed into TRADEOPS_OPERATOR or an operators
    file is easily cased differently; comparing exactly would let one person count twice (or hold no role).
    Reimbursement approvers are compared the same way (``runtime/liability/reimbursement.py``).
    """
    return identity.strip().casefold()


def roles_held(roles_of: Mapping[str, frozenset[str]], identity: str) -> frozenset[str]:
    """The roles ``identity`` holds in ``roles_of``, whatever the case of either name."""
    exact = roles_of.get(identity)
    if exact is not None:
        return exact
    key = identity_key(identity)
    return next((held for name, held in roles_of.items() if identity_key(name) == key), frozenset())


@dataclass(frozen=True)
class ApprovalRule:
    count: int
    roles: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> ApprovalRule:
        count, roles = spec["count"], spec.get("roles") or ()
        if not isinstance(count, int) or not isinstance(roles, list | tuple):
            raise BadInput(f"an approval needs a whole count and a list of roles, not {dict(spec)!r}")
        return cls(count=count, roles=tuple(str(r) for r in roles))


@dataclass(frozen=True)
class ApprovalContext:
    """What an approval must be bound to, and who may not give it."""

    execution_id: str
    step_id: str
    runbook_sha256: str
    executors: frozenset[str]
    roles_of: Mapping[str, frozenset[str]]
    drill: bool = False  # the execution is a drill's (its executor is a drill identity)


def binding_of(execution_id: str, step_id: str, runbook_sha256: str, identity: str, decision: str) -> str:
    """Digest tying one decision to one execution, step, runbook text and identity."""
    payload = json.dumps([execution_id, step_id, runbook_sha256, identity, decision], separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Approval:
    execution_id: str
    step_id: str
    runbook_sha256: str
    identity: str
    identity_source: str
    decision: Choice
    binding: str
    roles: tuple[str, ...] = ()
    reason: str = ""
    at: str = ""
    withdrawn_at: str = ""  # set when its approver took it back before the action started

    @classmethod
    def make(cls, ctx: ApprovalContext, identity: str, identity_source: str, decision: Choice, *,
             reason: str = "", at: str = "") -> Approval:
        return cls(execution_id=ctx.execution_id, step_id=ctx.step_id, runbook_sha256=ctx.runbook_sha256,
                   identity=identity, identity_source=identity_source, decision=decision,
                   binding=binding_of(ctx.execution_id, ctx.step_id, ctx.runbook_sha256, identity, decision),
                   roles=tuple(sorted(roles_held(ctx.roles_of, identity))), reason=reason, at=at)


@dataclass(frozen=True)
class Decision:
    state: DecisionState
    needed: int
    approved_by: tuple[str, ...] = ()
    rejected_by: tuple[tuple[str, str], ...] = ()  # (identity, reason)
    refused: tuple[tuple[str, str], ...] = field(default=())  # (identity, why it does not count)

    @property
    def missing(self) -> int:
        return max(self.needed - len(self.approved_by), 0)


def _why_not_bound(ctx: ApprovalContext, a: Approval) -> str | None:
    if a.execution_id != ctx.execution_id:
        return f"bound to execution {a.execution_id}, not {ctx.execution_id}"
    if a.step_id != ctx.step_id:
        return f"bound to step {a.step_id}, not {ctx.step_id}"
    if a.runbook_sha256 != ctx.runbook_sha256:
        return "bound to another version of the runbook (SHA-256 differs)"
    if a.binding != binding_of(a.execution_id, a.step_id, a.runbook_sha256, a.identity, a.decision):
        return "its binding digest does not match its content (edited)"
    return None


def is_drill_identity(identity: str, source: str) -> bool:
    """Whether a decision comes from a drill's automation rather than a person."""
    return source == DRILL_SOURCE or identity.startswith(DRILL_PREFIX)


def _why_not_allowed(rule: ApprovalRule, ctx: ApprovalContext, identity: str, source: str) -> str | None:
    if not ctx.drill and is_drill_identity(identity, source):
        return (f"{identity} is a drill identity: its approvals count only in a drill's own execution, "
                "never as human four-eyes")
    if identity_key(identity) in {identity_key(e) for e in ctx.executors}:
        return f"{identity} is executing this run and cannot approve its own step"
    held = roles_held(ctx.roles_of, identity)
    if not held & set(rule.roles):
        has = ", ".join(sorted(held)) or "no role"
        return f"{identity} has {has}; approving needs one of {', '.join(rule.roles)}"
    return None


def check_new_decision(rule: ApprovalRule, ctx: ApprovalContext, identity: str, source: str,
                       existing: Iterable[Approval]) -> None:
    """Refuse (Refused, one line) a decision the rules would not count; return if it may be recorded."""
    why = _why_not_allowed(rule, ctx, identity, source)
    if why:
        raise Refused(f"refused: {why}")
    for a in existing:
        if identity_key(a.identity) == identity_key(identity):
            did = "withdrawn an approval of" if a.withdrawn_at else (
                "approved" if a.decision == "approve" else "rejected")
            raise Refused(f"refused: {identity} has already {did} step {ctx.step_id} of {ctx.execution_id}; "
                          "one identity counts once")


def evaluate(rule: ApprovalRule, ctx: ApprovalContext, approvals: Sequence[Approval]) -> Decision:
    """Where a step's approval stands, counting only decisions every rule allows."""
    approved: list[str] = []
    rejected: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    seen: set[str] = set()
    for a in sorted(approvals, key=lambda a: (a.at, a.identity)):
        why = _why_not_bound(ctx, a) or _why_not_allowed(rule, ctx, a.identity, a.identity_source)
        if why is None and identity_key(a.identity) in seen:
            why = f"{a.identity} has already decided; one identity counts once"
        if why is None and a.withdrawn_at:
            seen.add(identity_key(a.identity))
            why = f"{a.identity} withdrew their approval"
        if why is not None:
            refused.append((a.identity, why))
            continue
        seen.add(identity_key(a.identity))
        if a.decision == "reject":
            rejected.append((a.identity, a.reason))
        else:
            approved.append(a.identity)
    state: DecisionState = REJECTED if rejected else GRANTED if len(approved) >= rule.count else WAITING
    return Decision(state=state, needed=rule.count, approved_by=tuple(approved), rejected_by=tuple(rejected),
                    refused=tuple(refused))


def break_glass_refusal(identity: str, roles_held: frozenset[str], break_glass_roles: frozenset[str],
                        reason: str) -> str | None:
    """Why ``identity`` may not pull a lever by hand (None when it may): it needs a break-glass role and a reason."""
    if not break_glass_roles:
        return f"{identity} may not: the roster names no break-glass role (break_glass: [ROLE, ...])"
    if not roles_held & break_glass_roles:
        has = ", ".join(sorted(roles_held)) or "no role"
        return (f"{identity} has {has}; a change outside a runbook needs a break-glass role "
                f"({', '.join(sorted(break_glass_roles))}). Use the runbook instead, with four-eyes")
    if len(reason.strip()) < 3:
        return "a change outside a runbook needs --reason (it goes to the audit log and the alert)"
    return None
