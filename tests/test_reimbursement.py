"""Reimbursements: the amount as a table, the approval rules by example and as properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.liability.reimbursement import (
    APPROVED,
    PENDING_APPROVAL,
    REJECTED,
    ApprovalRefused,
    NothingToReimburse,
    Reimbursement,
    approve,
    compensation,
    new_reimbursement,
    reject,
)
from tradeops.runtime.platform.errors import BadInput

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
FINANCE = {"finance"}


def make(amount_diff: str = "1", quantity: int | D = 100, side: str = "BUY", requested_by: str = "olga",
         auto: str = "50", dual: str = "1000") -> Reimbursement:
    quote = D("100")
    fill = quote + D(amount_diff) if side == "BUY" else quote - D(amount_diff)
    return new_reimbursement(
        order_id="o1", account_id="acc-1", symbol="VOD.L", side=side, quantity=quantity, quote_price=quote,
        fill_price=fill, placed_at=T0, filled_at=T0 + timedelta(seconds=95, microseconds=500_400),
        requested_by=requested_by, auto_approve=D(auto), dual_approval=D(dual), now=T0 + timedelta(minutes=5),
    )


# --------------------------------------------------------------------------- the amount


@pytest.mark.parametrize(
    ("side", "quote", "fill", "quantity", "owed"),
    [
        ("BUY", "100", "101", 10, "10.00"),  # filled worse: owed the difference
        ("BUY", "100", "99", 10, "0.00"),  # filled better: owed nothing
        ("BUY", "100", "100", 10, "0.00"),
        ("SELL", "100", "99", 10, "10.00"),
        ("SELL", "100", "101", 10, "0.00"),
        ("SELL", "100", "100", 10, "0.00"),
        ("BUY", "1.000", "1.001", 1, "0.01"),  # a tenth of a penny rounds UP, in the customer's favour
        ("BUY", "1.000", "1.001", 10, "0.01"),  # exactly a penny stays a penny
        ("BUY", "1.000", "1.0113", 1, "0.02"),  # 0.0113 -> 0.02 where half-up would give 0.01
        ("SELL", "2.50", "2.4999", 11, "0.01"),  # 0.0011 -> 0.01 where half-up would give 0.00
        ("BUY", "250", "260", D("0.5"), "5.00"),
    ],
)
def test_compensation_table(side, quote, fill, quantity, owed):
    """Owed = adverse difference x quantity, never negative, rounded up to the penny."""
    assert compensation(side, D(quote), D(fill), quantity) == D(owed)
    assert str(compensation(side, D(quote), D(fill), quantity)) == owed


@given(st.sampled_from(["BUY", "SELL"]), st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 5000))
def test_compensation_never_short_changes_the_customer(side, quote_pence, fill_pence, quantity):
    """The amount is never negative and never below the exact loss, and at most a penny above it."""
    quote, fill = D(quote_pence).scaleb(-3), D(fill_pence).scaleb(-3)
    exact = max(D(0), (fill - quote if side == "BUY" else quote - fill) * quantity)
    owed = compensation(side, quote, fill, quantity)
    assert exact <= owed < exact + D("0.01")
    assert owed == owed.quantize(D("0.01"))


# --------------------------------------------------------------------------- creation


def test_small_amount_is_approved_automatically():
    """An amount at or under the auto-approve limit is APPROVED at once, recorded as 'auto'."""
    r = make(amount_diff="0.5")  # 50.00, exactly the limit
    assert (r.amount, r.status, r.required_approvals) == (D("50.00"), APPROVED, 0)
    assert [a.approver for a in r.approvals] == ["auto"] and r.decided_at == r.created_at
    assert r.currency == "GBP" and r.waited_seconds == D("95.500")


@pytest.mark.parametrize(("diff", "required"), [("0.5001", 1), ("10", 1), ("10.0001", 2), ("25", 2)])
def test_larger_amounts_need_one_or_two_approvers(diff, required):
    """Above auto-approve one finance approver is needed; above the dual limit, two."""
    r = make(amount_diff=diff)
    assert (r.status, r.required_approvals, r.approvals) == (PENDING_APPROVAL, required, ())


def test_nothing_to_reimburse_when_fill_was_not_worse():
    """A fill at or better than the quote makes no reimbursement."""
    with pytest.raises(NothingToReimburse):
        make(amount_diff="0")
    with pytest.raises(NothingToReimburse):
        make(amount_diff="-1", side="SELL")


@pytest.mark.parametrize(
    "change",
    [
        {"requested_by": ""},
        {"requested_by": "Auto"},
        {"auto": "-1"},
        {"auto": "100", "dual": "50"},
    ],
)
def test_creation_refuses_bad_input(change):
    """An empty or reserved requester, or inconsistent limits, are refused."""
    with pytest.raises(BadInput):
        make(**change)


def test_creation_refuses_fill_before_placement():
    """An order cannot have waited a negative time."""
    with pytest.raises(BadInput, match="before it was placed"):
        new_reimbursement(order_id="o1", account_id="a", symbol="VOD.L", side="BUY", quantity=1,
                          quote_price=D(1), fill_price=D(2), placed_at=T0, filled_at=T0 - timedelta(seconds=1),
                          requested_by="olga", auto_approve=D(50), dual_approval=D(1000), now=T0)


# --------------------------------------------------------------------------- approval


def test_single_approval_approves_and_returns_new_state():
    """One finance approval completes a single-approval reimbursement; the old value is unchanged."""
    pending = make(amount_diff="5")
    done = approve(pending, approver="fiona", roles=FINANCE, now=T0 + timedelta(hours=1))
    assert done.status == APPROVED and [a.approver for a in done.approvals] == ["fiona"]
    assert done.decided_at == T0 + timedelta(hours=1)
    assert pending.status == PENDING_APPROVAL and pending.approvals == ()


def test_dual_approval_needs_two_distinct_finance_approvers():
    """Above the dual limit the first approval leaves it pending and the second distinct one approves."""
    r = make(amount_diff="20")
    r = approve(r, approver="fiona", roles=FINANCE, now=T0)
    assert r.status == PENDING_APPROVAL
    with pytest.raises(ApprovalRefused, match="already approved"):
        approve(r, approver=" FIONA ", roles=FINANCE, now=T0)
    r = approve(r, approver="frank", roles={"finance", "ops"}, now=T0)
    assert r.status == APPROVED and [a.approver for a in r.approvals] == ["fiona", "frank"]


@pytest.mark.parametrize(
    ("approver", "roles", "match"),
    [
        ("fiona", {"ops"}, "finance"),
        ("fiona", set(), "finance"),
        ("olga", FINANCE, "requested"),
        ("Olga ", FINANCE, "requested"),
        ("auto", FINANCE, "reserved"),
    ],
)
def test_approval_refused(approver, roles, match):
    """Approval needs the finance role, and the requester or 'auto' can never approve."""
    with pytest.raises(ApprovalRefused, match=match):
        approve(make(amount_diff="5"), approver=approver, roles=roles, now=T0)


def test_roles_must_be_a_collection_not_a_string():
    """A role string is refused rather than matched by substring ("finance" in "nonfinance")."""
    with pytest.raises(BadInput, match="collection"):
        approve(make(amount_diff="5"), approver="fiona", roles="nonfinance", now=T0)


def test_decided_reimbursements_cannot_be_approved_again():
    """An APPROVED or REJECTED reimbursement refuses any further approval or rejection."""
    auto = make(amount_diff="0.1")
    rejected = reject(make(amount_diff="5"), approver="fiona", roles=FINANCE, reason="duplicate claim", now=T0)
    for decided in (auto, rejected):
        with pytest.raises(ApprovalRefused, match="already"):
            approve(decided, approver="frank", roles=FINANCE, now=T0)
        with pytest.raises(ApprovalRefused, match="already"):
            reject(decided, approver="frank", roles=FINANCE, reason="x", now=T0)


def test_reject_records_who_and_why():
    """A rejection needs the finance role and a reason, and records both."""
    r = make(amount_diff="20")
    with pytest.raises(ApprovalRefused):
        reject(r, approver="oscar", roles={"ops"}, reason="no", now=T0)
    with pytest.raises(BadInput, match="reason"):
        reject(r, approver="fiona", roles=FINANCE, reason="  ", now=T0)
    done = reject(r, approver="fiona", roles=FINANCE, reason="fill was customer's limit", now=T0)
    assert (done.status, done.rejected_by, done.rejection_reason, done.decided_at) == (
        REJECTED, "fiona", "fill was customer's limit", T0)


# --------------------------------------------------------------------------- approval properties

PEOPLE = ["olga", "Olga", "fiona", "FIONA ", "frank", "fred", "auto"]
attempts = st.lists(st.tuples(st.sampled_from(PEOPLE), st.sets(st.sampled_from(["finance", "ops"]))), max_size=8)


@given(st.sampled_from(["5", "20"]), attempts)
def test_no_repeated_identity_or_requester_ever_approves(diff, tries):
    """Whatever is tried, an APPROVED reimbursement has enough distinct finance approvers, none the requester."""
    r = make(amount_diff=diff)
    accepted = []
    for who, roles in tries:
        try:
            r = approve(r, approver=who, roles=roles, now=T0)
        except ApprovalRefused:
            continue
        accepted.append((who, roles))
    identities = [who.strip().casefold() for who, _ in accepted]
    assert len(identities) == len(set(identities))
    assert "olga" not in identities and "auto" not in identities
    assert all("finance" in roles for _, roles in accepted)
    assert (r.status == APPROVED) == (len(accepted) >= r.required_approvals)


@given(st.sampled_from(["5", "20"]), st.sampled_from(["olga", "OLGA", " olga"]), st.integers(0, 1))
def test_requester_can_never_approve(diff, spelling, others_first):
    """The requester's approval is refused however it is spelt and whoever approved before."""
    r = make(amount_diff=diff)
    if others_first and r.required_approvals == 2:
        r = approve(r, approver="fiona", roles=FINANCE, now=T0)
    with pytest.raises(ApprovalRefused):
        approve(r, approver=spelling, roles=FINANCE, now=T0)


def test_forged_state_with_repeated_identity_does_not_pass():
    """Even a stored state already holding one approval refuses that same identity again."""
    r = approve(make(amount_diff="20"), approver="fiona", roles=FINANCE, now=T0)
    forged = replace(r, requested_by="someone-else")
    with pytest.raises(ApprovalRefused):
        approve(forged, approver="Fiona", roles=FINANCE, now=T0)
