"""The approval gate's pure decisions: malformed and stale requests, and when a guarded step may act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runbooks.approvals import Approval, ApprovalRule
from tradeops.runbooks.gate import (
    MAX_LIFETIME,
    NONCE_KEPT,
    StepLedger,
    act_refusal,
    decision_context,
    decision_refusal,
    freshness_refusal,
    nonce_expiry,
    parse_request,
    request_digest,
    request_refusal,
    resolve_refusal,
    restore_refusal,
)
from tradeops.runtime.platform.errors import BadInput

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
SHA = "a" * 64
ROSTER = "r" * 64
ROLES = {"alice": frozenset({"duty-engineer"}), "bob": frozenset({"ops-manager"}), "carol": frozenset({"risk"}),
         "erin": frozenset({"ops-manager"}), "drill-bot": frozenset({"ops-manager"})}
TOGGLE = {"id": "toggle", "approval": {"count": 2, "roles": ["ops-manager", "risk"]},
          "action": {"name": "set_active_broker", "args": {"provider": "${target}"}}}
PAUSE = {"id": "pause", "action": {"name": "set_processing", "args": {"state": "paused"}}}
NOTIFY = {"id": "tell", "action": {"name": "notify", "args": {}}}


def _body(**over):
    return {"op": "act", "execution_id": "ex-1", "step_id": "toggle", "nonce": "0" * 32,
            "expires_at": (NOW + timedelta(minutes=1)).isoformat(), **over}


def _ledger(*approvals, requested_by="alice", **over):
    return StepLedger(requested_by=requested_by, roster_digest=ROSTER, runbook_sha256=SHA, action="set_active_broker",
                      args={"provider": "secondary"}, decisions=tuple(approvals), **over)


def _ctx(ledger, caller="alice", executors=("alice",)):
    return decision_context("ex-1", "toggle", SHA, ledger, list(executors), ROLES, caller=caller)


def _approve(ledger, who, decision="approve", **kw):
    return Approval.make(_ctx(ledger), who, "iam-user", decision, at=f"2026-12-06T07:00:0{len(who) % 10}", **kw)


def _act(step, ledger, **kw):
    kw.setdefault("caller", "alice")
    return act_refusal(step, ledger, _ctx(ledger, caller=kw.pop("caller")), rendered_args={"state": "paused"},
                       roster_now=kw.pop("roster_now", ROSTER))


@pytest.mark.parametrize(("body", "why"), [
    ("not an object", "not a JSON object"),
    (_body(who="bob"), "unknown field"),
    (_body(op="approve"), "op is one of"),
    (_body(nonce="short"), "nonce"),
    (_body(execution_id="../etc"), "execution_id"),
    (_body(expires_at="tomorrow"), "not an ISO time"),
    (_body(expires_at="2026-12-06T07:01:00"), "no time zone"),
    (_body(op="decide", decision="maybe"), "approve or reject"),
    (_body(op="restore"), "a flag or restore request, and only those, carry a value"),
    (_body(value="primary"), "a flag or restore request, and only those, carry a value"),
])
def test_a_malformed_request_is_bad_input_naming_what_is_wrong(body, why):
    """Every malformed request is BadInput with a one-line reason; nothing is guessed."""
    with pytest.raises(BadInput, match=why):
        parse_request(body)


def test_the_digest_covers_every_field_and_not_their_order():
    """Two bodies with the same fields digest alike; any change to a field changes it."""
    body = _body()
    assert request_digest(body) == request_digest(dict(reversed(list(body.items()))))
    assert request_digest(body) != request_digest(_body(step_id="other"))


def test_an_expired_or_hoarded_request_is_stale():
    """A request past its expiry, or valid for longer than the gate allows, is refused."""
    assert freshness_refusal(parse_request(_body()), NOW) is None
    assert "expired" in str(freshness_refusal(parse_request(_body()), NOW + timedelta(minutes=2)))
    far = _body(expires_at=(NOW + MAX_LIFETIME + timedelta(seconds=1)).isoformat())
    assert "more than" in str(freshness_refusal(parse_request(far), NOW))


@given(st.integers(min_value=1, max_value=int(MAX_LIFETIME.total_seconds())))
def test_a_nonce_outlives_every_request_the_gate_accepts_with_it(valid_for):
    """A nonce recorded with a request the gate accepts is kept until a day after that request, and any request
    accepted at the same moment, can no longer be accepted: a replay within the window always finds it."""
    request = parse_request(_body(expires_at=(NOW + timedelta(seconds=valid_for)).isoformat()))
    assert freshness_refusal(request, NOW) is None
    kept_until = datetime.fromtimestamp(nonce_expiry(NOW), UTC)
    assert kept_until >= request.expires_at + NONCE_KEPT and kept_until >= NOW + MAX_LIFETIME + NONCE_KEPT
    assert freshness_refusal(request, kept_until) is not None  # by then the request itself is refused as stale


def test_a_step_with_two_valid_approvals_acts_with_the_arguments_fixed_at_the_request():
    """Granted: the gate acts with the ledger's arguments (what approvers saw), naming who approved."""
    ledger = _ledger()
    ledger = _ledger(_approve(ledger, "bob"), _approve(ledger, "carol"))
    act, why = _act(TOGGLE, ledger)
    assert why is None and act is not None
    assert act.args == {"provider": "secondary"} and sorted(act.approved_by) == ["bob", "carol"]


def test_the_requester_and_the_actor_never_count_as_approvers():
    """Whoever requested the step, or asks to act, is an executor: their approval counts for nothing."""
    ledger = _ledger(requested_by="bob")
    ledger = _ledger(_approve(ledger, "bob"), _approve(ledger, "carol"), requested_by="bob")
    assert "still needs 1" in str(_act(TOGGLE, ledger)[1])
    ledger = _ledger()
    ledger = _ledger(_approve(ledger, "bob"), _approve(ledger, "carol"))
    assert "still needs 1" in str(_act(TOGGLE, ledger, caller="bob")[1])


def test_a_rejection_after_the_grant_a_withdrawal_and_a_binding_to_another_runbook_stop_it():
    """A rejection wins over approvals; a withdrawn approval, or one bound to other runbook text, does not count."""
    ledger = _ledger()
    bob, carol = _approve(ledger, "bob"), _approve(ledger, "carol")
    rejected = _ledger(bob, carol, _approve(ledger, "erin", "reject", reason="no"))
    assert "rejected by erin" in str(_act(TOGGLE, rejected)[1])
    withdrawn = _ledger(bob, Approval(**{**carol.__dict__, "withdrawn_at": "2026-12-06T07:00:09"}))
    assert "still needs 1" in str(_act(TOGGLE, withdrawn)[1])
    other_text = _ledger(bob, Approval(**{**carol.__dict__, "runbook_sha256": "b" * 64}))
    assert "still needs 1" in str(_act(TOGGLE, other_text)[1])


def test_a_different_roster_an_unrequested_step_and_an_acted_one_are_refused():
    """The roster in force must be the request's; a step never requested or already acted on gets nothing."""
    ledger = _ledger()
    granted = _ledger(_approve(ledger, "bob"), _approve(ledger, "carol"))
    assert "not the one in force" in str(_act(TOGGLE, granted, roster_now="x" * 64)[1])
    assert "never requested" in str(_act(TOGGLE, StepLedger())[1])
    acted = _ledger(*granted.decisions, acted={"at": "then", "by": "alice"})
    assert "already acted on" in str(_act(TOGGLE, acted)[1])


def test_a_step_without_approval_acts_with_the_shipped_arguments_and_an_unguarded_one_is_refused():
    """A shipped step without approval acts as its text says; the gate makes no change that is not guarded."""
    act, why = _act(PAUSE, StepLedger())
    assert why is None and act is not None and act.args == {"state": "paused"}
    assert "not a guarded change" in str(_act(NOTIFY, StepLedger())[1])
    assert "not of a shipped runbook" in str(_act(None, StepLedger())[1])


def test_drill_approvals_count_only_in_a_drill_requested_execution():
    """A drill identity's approval is not human four-eyes, unless drill identities requested the step and act on it."""
    person = _ledger()
    drill = _approve(person, "drill-bot")
    assert "still needs 1" in str(_act(TOGGLE, _ledger(drill, _approve(person, "carol")))[1])
    by_drill = _ledger(requested_by="arn:aws:iam::123456789012:user/drill-runner")
    assert _ctx(by_drill, caller="arn:aws:iam::123456789012:user/drill-runner", executors=()).drill
    assert not _ctx(by_drill, caller="alice", executors=()).drill


def test_decisions_are_refused_before_the_request_after_the_act_and_by_the_executor():
    """A decision needs a requested, not yet acted step, under its roster, from someone allowed to decide."""
    ledger = _ledger()
    ctx = _ctx(ledger, caller=None)
    assert "not yet requested" in str(decision_refusal(TOGGLE, StepLedger(), ctx, who="bob", source="iam-user",
                                                       op="decide", roster_now=ROSTER))
    assert "cannot approve" in str(decision_refusal(TOGGLE, ledger, ctx, who="alice", source="iam-user",
                                                    op="decide", roster_now=ROSTER))
    assert "another roster" in str(decision_refusal(TOGGLE, ledger, ctx, who="bob", source="iam-user", op="decide",
                                                    roster_now="x" * 64))
    acted = _ledger(acted={"at": "then"})
    assert "already acted" in str(decision_refusal(TOGGLE, acted, ctx, who="bob", source="iam-user", op="decide",
                                                   roster_now=ROSTER))
    assert decision_refusal(TOGGLE, ledger, ctx, who="bob", source="iam-user", op="decide", roster_now=ROSTER) is None
    assert "no approval" in str(decision_refusal(TOGGLE, ledger, ctx, who="bob", source="iam-user", op="withdraw",
                                                 roster_now=ROSTER))


def test_a_request_is_opened_only_under_the_executions_roster():
    """A step's ledger opens (or stays open) only for a step with approval, under the roster the execution started
    with."""
    assert request_refusal(TOGGLE, StepLedger(), execution_id="ex-1", step_id="toggle", roster_now=ROSTER,
                           roster_of_execution=ROSTER) is None
    assert request_refusal(TOGGLE, _ledger(), execution_id="ex-1", step_id="toggle", roster_now=ROSTER,
                           roster_of_execution=ROSTER) is None
    assert "needs no approval" in str(request_refusal(PAUSE, StepLedger(), execution_id="ex-1", step_id="pause",
                                                      roster_now=ROSTER, roster_of_execution=ROSTER))
    assert "started under roster" in str(request_refusal(TOGGLE, StepLedger(), execution_id="ex-1", step_id="toggle",
                                                         roster_now="x" * 64, roster_of_execution=ROSTER))


@given(st.lists(st.sampled_from(["alice", "Alice", " alice "]), min_size=1, max_size=6))
def test_no_set_of_the_requesters_own_approvals_ever_lets_the_step_act(names):
    """However many times, and however cased, the requester's own approvals never grant a step."""
    ledger = _ledger()
    rule_ok = ApprovalRule.from_spec(TOGGLE["approval"]).count
    approvals = tuple(_approve(ledger, n) for n in names)
    act, why = _act(TOGGLE, _ledger(*approvals))
    assert act is None and why and rule_ok == 2


# ---- a rollback's restore of the gate's own change -------------------------------------------------

ACTED = {"by": "alice", "at": "t0", "action": "set_active_broker", "args": {"provider": "secondary"},
         "approved_by": ["bob", "carol"], "outcome": {"output": {"flag": "active", "previous": "primary",
                                                                 "value": "secondary"}}}


def test_a_restore_puts_back_exactly_the_value_the_gates_change_replaced():
    """The gate restores the step's flag to the value before its act, with the act's approvers on record."""
    act, why = restore_refusal(TOGGLE, _ledger(acted=ACTED), None, execution_id="ex-1", step_id="toggle",
                               value="primary", current="secondary")
    assert why is None and act is not None
    assert (act.action, dict(act.args), act.approved_by) == ("set_active_broker", {"provider": "primary"},
                                                             ("bob", "carol"))


@pytest.mark.parametrize(("over", "why"), [
    ({"step": None}, "not of a shipped runbook"),
    ({"acted": None}, "never acted on by the gate"),
    ({"acted": {**ACTED, "outcome": {"error": "AccessDenied"}}}, "did not complete at the gate"),
    ({"restored": {"at": "t1", "by": "alice"}}, "already restored at t1 by alice"),
    ({"value": "secondary"}, "only to 'primary'"),
    ({"current": "primary"}, "a later change is not undone"),
    ({"step": {**TOGGLE, "rollback": "none"}}, "rollback is not a restore"),
    ({"step": {**TOGGLE, "action": {"name": "declare_void", "args": {}}}}, "(its action is declare_void)"),
    ({"step": {**TOGGLE, "action": {"name": "notify", "args": {}}}}, "value to restore (its action is notify)"),
], ids=["not-shipped", "never-acted", "act-failed", "second-restore", "another-value", "changed-since",
        "rollback-none", "nothing-to-restore", "not-guarded"])
def test_a_restore_is_refused_unless_it_undoes_the_gates_own_completed_change_once(over, why):
    """Refused: a step not shipped, never acted on, whose change failed, already restored, to another value than
    the one replaced, after a later change, whose runbook says no restore, or with no value to restore."""
    args = {"step": TOGGLE, "acted": ACTED, "restored": None, "value": "primary", "current": "secondary", **over}
    step = args.pop("step")
    act, reason = restore_refusal(step, _ledger(acted=args["acted"]), args["restored"], execution_id="ex-1",
                                  step_id="toggle", value=args["value"], current=args["current"])
    assert act is None and why in str(reason)



RESOLVE = {"id": "settle", "action": {"name": "resolve_in_flight", "args": {"provider": "primary"}}}


def _resolve(step=RESOLVE, ledger=StepLedger(), **over):
    kw = {"execution_id": "ex-1", "step_id": "settle", "status": "running", "current_step": "settle",
          "executors": ["alice"], "rostered": True, "who": "alice", "provider": "primary",
          "rendered_args": {"provider": "primary"}, **over}
    return resolve_refusal(step, ledger, **kw)


def test_the_executor_at_the_step_settles_with_the_runbooks_arguments():
    """The running execution's executor, at its resolve step, gets the shipped step's action and arguments."""
    act, why = _resolve()
    assert why is None and act is not None
    assert (act.action, dict(act.args), act.approved_by) == ("resolve_in_flight", {"provider": "primary"}, ())


@pytest.mark.parametrize(("step", "over", "why"), [
    (None, {}, "not of a shipped runbook"),
    (PAUSE, {}, "does not settle orders from a broker's answers (its action is set_processing)"),
    (RESOLVE, {"status": "stopped"}, "ex-1 is stopped, not running"),
    (RESOLVE, {"current_step": "pause"}, "is at step pause, not settle"),
    (RESOLVE, {"who": "bob"}, "bob is not an executor of ex-1"),
    (RESOLVE, {"rostered": False}, "alice is not on the roster in force"),
    (RESOLVE, {"provider": "secondary"}, "asks the primary broker, not 'secondary'"),
    (RESOLVE, {"ledger": StepLedger(acted={"at": "t", "by": "alice"})}, "was already acted on at t by alice"),
], ids=["not-shipped", "another-action", "not-running", "another-step", "not-executor", "not-rostered",
        "another-broker", "twice"])
def test_a_settlement_is_refused_off_its_step_to_others_for_another_broker_and_twice(step, over, why):
    """Anything but the executor's running execution at its resolve step, for the runbook's broker, once: refused."""
    act, reason = _resolve(step, **over)
    assert act is None and reason is not None and why in reason
