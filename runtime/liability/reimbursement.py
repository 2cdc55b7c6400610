"""Reimbursing customers for delay: the amount and the approval rules. Pure, no I/O.

When an order that waited fills at a worse price than the customer was shown, the customer is
made whole: ``amount`` = adverse difference x quantity (see :mod:`tradeops.runtime.liability.arithmetic` for the
formula), computed exactly and rounded to the penny with ROUND_UP — in the customer's favour.

Approval (money leaving the firm follows four-eyes rules):

- ``amount <= auto_approve``: APPROVED at creation; its approvals record ``"auto"``.
- ``auto_approve < amount <= dual_approval``: PENDING_APPROVAL until one finance approver agrees.
- ``amount > dual_approval``: PENDING_APPROVAL until two *distinct* finance approvers agree.

An approver needs the ``finance`` role and may be neither the requester nor someone who already
approved. Identities are compared case-insensitively, ignoring surrounding spaces ("Alice " is
"alice"), so a second approval cannot be had by retyping a name. ``"auto"`` is reserved.
Every change returns a new Reimbursement; the I/O layer stores it with a conditional write.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal

from tradeops.runtime.liability.arithmetic import adverse_exposure
from tradeops.runtime.platform.errors import BadInput

__all__ = [
    "APPROVED",
    "AUTO_APPROVER",
    "FINANCE_ROLE",
    "PENDING_APPROVAL",
    "REJECTED",
    "Approval",
    "ApprovalRefused",
    "NothingToReimburse",
    "Reimbursement",
    "approve",
    "compensation",
    "new_reimbursement",
    "reject",
]

APPROVED = "APPROVED"
PENDING_APPROVAL = "PENDING_APPROVAL"
REJECTED = "REJECTED"
FINANCE_ROLE = "finance"
AUTO_APPROVER = "auto"

_PENNY = Decimal("0.01")
_MILLISECOND = Decimal("0.001")


class ApprovalRefused(BadInput):
    """An approval or rejection is not allowed (wrong role, own request, repeat, already decided)."""


class NothingToReimburse(BadInput):
    """The fill was at or better than the quote: the customer lost nothing to the delay."""


def compensation(side: str, quote: Decimal, fill_price: Decimal, quantity: int | Decimal) -> Decimal:
    """What the customer is owed: adverse difference x quantity, >= 0, rounded UP to the penny."""
    return adverse_exposure(side, quote, fill_price, quantity).quantize(_PENNY, rounding=ROUND_UP)


@dataclass(frozen=True)
class Approval:
    approver: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Reimbursement:
    """One reimbursement and its decision state. ``required_approvals`` is 0, 1 or 2."""

    order_id: str
    account_id: str
    symbol: str
    side: str
    quantity: int | Decimal
    quote_price: Decimal
    fill_price: Decimal
    amount: Decimal
    currency: str = "GBP"
    waited_seconds: Decimal
    status: str
    required_approvals: int
    approvals: tuple[Approval, ...] = ()
    requested_by: str
    created_at: datetime
    decided_at: datetime | None = None
    rejected_by: str | None = None
    rejection_reason: str | None = None


def _identity(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"{what} must be a non-empty name")
    return name.strip().casefold()


def _aware(moment: object, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise BadInput(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment


def new_reimbursement(
    *,
    order_id: str,
    account_id: str,
    symbol: str,
    side: str,
    quantity: int | Decimal,
    quote_price: Decimal,
    fill_price: Decimal,
    placed_at: datetime,
    filled_at: datetime,
    requested_by: str,
    auto_approve: Decimal,
    dual_approval: Decimal,
    now: datetime,
) -> Reimbursement:
    """A new reimbursement for a filled order, approved at once when small enough.

    Raises NothingToReimburse when the fill was not worse than the quote (amount would be 0).
    """
    for name, value in (("order_id", order_id), ("account_id", account_id), ("symbol", symbol)):
        if not isinstance(value, str) or not value:
            raise BadInput(f"{name} must be a non-empty string, got {value!r}")
    requester = _identity(requested_by, "requested_by")
    if requester == AUTO_APPROVER:
        raise BadInput(f"{AUTO_APPROVER!r} is reserved and cannot request a reimbursement")
    if not (isinstance(auto_approve, Decimal) and isinstance(dual_approval, Decimal)):
        raise BadInput("auto_approve and dual_approval must be Decimal amounts")
    if not 0 <= auto_approve <= dual_approval:
        raise BadInput(f"need 0 <= auto_approve <= dual_approval, got {auto_approve} and {dual_approval}")
    waited = _aware(filled_at, "filled_at") - _aware(placed_at, "placed_at")
    if waited.total_seconds() < 0:
        raise BadInput(f"order {order_id} filled before it was placed")
    _aware(now, "now")
    amount = compensation(side, quote_price, fill_price, quantity)
    if amount == 0:
        raise NothingToReimburse(
            f"order {order_id} filled at {fill_price}, not worse than the quote {quote_price}: nothing to reimburse"
        )
    approvals: tuple[Approval, ...]
    if amount <= auto_approve:
        status, required, approvals = APPROVED, 0, (Approval(AUTO_APPROVER, now),)
    else:
        status, required, approvals = PENDING_APPROVAL, (2 if amount > dual_approval else 1), ()
    return Reimbursement(
        order_id=order_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        quote_price=quote_price,
        fill_price=fill_price,
        amount=amount,
        waited_seconds=(Decimal(waited // timedelta(microseconds=1)) / 1_000_000).quantize(_MILLISECOND),
        status=status,
        required_approvals=required,
        approvals=approvals,
        requested_by=requested_by,
        created_at=now,
        decided_at=now if status == APPROVED else None,
    )


def _check_decider(r: Reimbursement, approver: str, roles: Collection[str], action: str) -> str:
    who = _identity(approver, "approver")
    if isinstance(roles, str):  # "finance" in "nonfinance" would be True
        raise BadInput("roles must be a collection of role names, not one string")
    if r.status != PENDING_APPROVAL:
        raise ApprovalRefused(f"reimbursement for order {r.order_id} is already {r.status}; cannot {action}")
    if FINANCE_ROLE not in roles:
        raise ApprovalRefused(f"{approver} lacks the {FINANCE_ROLE!r} role needed to {action}")
    if who == AUTO_APPROVER:
        raise ApprovalRefused(f"{AUTO_APPROVER!r} is reserved for automatic approval")
    return who


def approve(r: Reimbursement, *, approver: str, roles: Collection[str], now: datetime) -> Reimbursement:
    """``r`` with one more approval; APPROVED once it has the approvals its amount requires."""
    who = _check_decider(r, approver, roles, "approve")
    _aware(now, "now")
    if who == _identity(r.requested_by, "requested_by"):
        raise ApprovalRefused(f"{approver} requested this reimbursement and cannot approve it")
    if any(_identity(a.approver, "approver") == who for a in r.approvals):
        raise ApprovalRefused(f"{approver} has already approved this reimbursement; a different approver is needed")
    approvals = (*r.approvals, Approval(approver.strip(), now))
    if len(approvals) >= r.required_approvals:
        return replace(r, approvals=approvals, status=APPROVED, decided_at=now)
    return replace(r, approvals=approvals)


def reject(r: Reimbursement, *, approver: str, roles: Collection[str], reason: str, now: datetime) -> Reimbursement:
    """``r`` REJECTED with a recorded reason.

    One finance decider suffices and may be the requester (withdrawing a request): no money moves.
    """
    _check_decider(r, approver, roles, "reject")
    _aware(now, "now")
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("a rejection needs a reason")
    return replace(r, status=REJECTED, decided_at=now, rejected_by=approver.strip(), rejection_reason=reason.strip())
