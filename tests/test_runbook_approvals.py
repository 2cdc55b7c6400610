"""Four-eyes rules as pure decisions: each rule fails closed on its own, and no repeated identity passes."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runbooks.approvals import Approval, ApprovalContext, ApprovalRule, check_new_decision, evaluate
from tradeops.runtime.platform.errors import Refused

SHA = "a" * 64
RULE = ApprovalRule(count=2, roles=("ops-manager", "risk", "duty-engineer"))
ROLES = {"alice": frozenset({"duty-engineer"}), "bob": frozenset({"ops-manager"}), "carol": frozenset({"risk"}),
         "dave": frozenset({"customer-service"}), "erin": frozenset({"ops-manager", "risk"})}


def ctx(execution_id: str = "e-1", step_id: str = "toggle", sha: str = SHA) -> ApprovalContext:
    return ApprovalContext(execution_id=execution_id, step_id=step_id, runbook_sha256=sha,
                           executors=frozenset({"alice"}), roles_of=ROLES)


def approval(identity: str, decision: str = "approve", at: str = "", **bound) -> Approval:
    return Approval.make(ctx(**bound), identity, "test", decision, at=at, reason="r" if decision == "reject" else "")


def test_two_distinct_allowed_approvers_grant():
    """Two different identities holding allowed roles, neither the executor, grant the step."""
    decision = evaluate(RULE, ctx(), [approval("bob"), approval("carol")])
    assert decision.state == "granted" and decision.approved_by == ("bob", "carol")


def test_same_identity_twice_counts_once():
    """The same identity approving twice is one approval: the step stays pending."""
    decision = evaluate(RULE, ctx(), [approval("bob", at="1"), approval("bob", at="2")])
    assert decision.state == "pending" and decision.approved_by == ("bob",)
    assert decision.refused == (("bob", "bob has already decided; one identity counts once"),)
    with pytest.raises(Refused, match="bob has already approved"):
        check_new_decision(RULE, ctx(), "bob", "test", [approval("bob")])


def test_executor_cannot_approve_own_step():
    """The executor's approval does not count, even though alice holds an allowed role."""
    decision = evaluate(RULE, ctx(), [approval("alice"), approval("bob")])
    assert decision.state == "pending"
    assert decision.refused[0][1] == "alice is executing this run and cannot approve its own step"
    with pytest.raises(Refused, match="cannot approve its own step"):
        check_new_decision(RULE, ctx(), "alice", "test", [])


def test_identity_without_allowed_role_does_not_count():
    """An identity without one of the step's roles is refused, and so is one missing from the operators file."""
    decision = evaluate(RULE, ctx(), [approval("dave"), approval("mallory"), approval("bob")])
    assert decision.state == "pending" and decision.approved_by == ("bob",)
    assert [i for i, _ in decision.refused] == ["dave", "mallory"]
    with pytest.raises(Refused, match="dave has customer-service; approving needs one of"):
        check_new_decision(RULE, ctx(), "dave", "test", [])


@pytest.mark.parametrize(("bound", "why"), [
    ({"execution_id": "e-2"}, "bound to execution e-2, not e-1"),
    ({"step_id": "declare-void"}, "bound to step declare-void, not toggle"),
    ({"sha": "b" * 64}, "bound to another version of the runbook"),
])
def test_approval_bound_elsewhere_does_not_count(bound, why):
    """An approval made for another execution, step or runbook text counts for nothing here."""
    decision = evaluate(RULE, ctx(), [approval("bob", **bound), approval("carol")])
    assert decision.state == "pending"
    assert decision.refused[0][1].startswith(why)


def test_edited_approval_record_does_not_count():
    """Rewriting the execution of a copied approval breaks its binding digest."""
    forged = dataclasses.replace(approval("bob", execution_id="e-2"), execution_id="e-1")
    decision = evaluate(RULE, ctx(), [forged, approval("carol")])
    assert decision.state == "pending"
    assert "binding digest does not match" in decision.refused[0][1]


def test_a_rejection_stops_the_step_whatever_the_approvals():
    """One valid rejection wins over any number of approvals."""
    decision = evaluate(RULE, ctx(), [approval("bob"), approval("erin"), approval("carol", "reject")])
    assert decision.state == "rejected" and decision.rejected_by == (("carol", "r"),)


def test_rejection_by_someone_who_may_not_decide_is_not_counted():
    """A rejection by the executor or a role-less identity is refused like their approvals are."""
    decision = evaluate(RULE, ctx(), [approval("dave", "reject"), approval("bob"), approval("carol")])
    assert decision.state == "granted"


NAMES = st.sampled_from([*sorted(ROLES), "mallory"])


@given(st.lists(st.tuples(NAMES, st.sampled_from(["approve", "reject"]), st.integers(0, 9)), max_size=8),
       st.integers(1, 4))
def test_never_granted_without_enough_distinct_eligible_approvers(decisions, count):
    """No set of decisions grants a step unless `count` distinct, eligible, non-executor identities approved."""
    rule = ApprovalRule(count=count, roles=RULE.roles)
    approvals = [approval(name, choice, at=str(at)) for name, choice, at in decisions]
    decision = evaluate(rule, ctx(), approvals)
    if decision.state == "granted":
        assert len(set(decision.approved_by)) == len(decision.approved_by) >= count
        assert "alice" not in decision.approved_by
        assert all(ROLES.get(i, frozenset()) & set(rule.roles) for i in decision.approved_by)
        assert not decision.rejected_by
    eligible = {n for n, _, _ in decisions if n not in ("alice", "dave", "mallory")}
    if len(eligible) < count:
        assert decision.state != "granted"


DRILL_ROLES = {**ROLES, "drill-ops-manager": frozenset({"ops-manager"}), "drill-risk": frozenset({"risk"})}


def drill_ctx(*, drill: bool) -> ApprovalContext:
    return ApprovalContext(execution_id="e-1", step_id="toggle", runbook_sha256=SHA,
                           executors=frozenset({"drill-executor" if drill else "alice"}), roles_of=DRILL_ROLES,
                           drill=drill)


def drill_approval(identity: str, source: str, *, drill: bool) -> Approval:
    return Approval.make(drill_ctx(drill=drill), identity, source, "approve")


def test_drill_approvals_never_count_outside_a_drill():
    """In a person's execution, approvals from the drill source or by drill- identities count for nothing, and
    a new one is refused: automated approvals never pass as human four-eyes."""
    human = drill_ctx(drill=False)
    decision = evaluate(RULE, human, [drill_approval("drill-ops-manager", "drill", drill=False),
                                      drill_approval("drill-risk", "os-user", drill=False),
                                      drill_approval("bob", "drill", drill=False)])
    assert decision.state == "pending" and decision.approved_by == ()
    assert all("drill identity" in why and "never as human four-eyes" in why for _, why in decision.refused)
    for identity, source in (("drill-risk", "drill"), ("drill-risk", "TRADEOPS_OPERATOR"), ("carol", "drill")):
        with pytest.raises(Refused, match="its approvals count only in a drill's own execution"):
            check_new_decision(RULE, human, identity, source, [])


def test_drill_approvals_count_in_a_drill_under_every_other_rule():
    """In a drill's own execution, two drill identities with the step's roles grant it; the other rules still
    hold (a drill identity without a role is refused)."""
    drill = drill_ctx(drill=True)
    decision = evaluate(RULE, drill, [drill_approval("drill-ops-manager", "drill", drill=True),
                                      drill_approval("drill-risk", "drill", drill=True)])
    assert decision.state == "granted" and decision.approved_by == ("drill-ops-manager", "drill-risk")
    with pytest.raises(Refused, match="approving needs one of"):
        check_new_decision(RULE, drill, "drill-nobody", "drill", [])
