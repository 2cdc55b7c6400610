"""A scheduled drill on AWS is a drill identity the approval gate recognises (issue 24): its ECS task runs under
the runtime template's drill task role, which only ECS tasks of the account assume and no person may hand to a
task, and a session of that role is the drill's automation — allowed to set a guarded flag where the gate's
configuration allows drills, never counted as four-eyes. Evaluated from the template and pure rules."""

from __future__ import annotations

import datetime

import pytest

from tests.support.policies import ACCOUNT, decide, resolve, role_statements, template, trust_statements
from tradeops.runbooks.approvals import (
    Approval,
    ApprovalContext,
    ApprovalRule,
    check_new_decision,
    evaluate,
    is_drill_identity,
)
from tradeops.runbooks.gate import GateRequest, drill_flag_refusal
from tradeops.runbooks.identity import drill_roles, identity_from_arn
from tradeops.runtime.platform.errors import Refused
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import load_settings

RUNTIME = template("runtime.yaml")
BASE = template()
SETTINGS = load_settings(name_prefix="tradeops", param_prefix="/tradeops")
ROLE = names_for(SETTINGS).drill_task_role
TASK_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_the_drill_task_role_is_named_as_the_gate_knows_it_and_only_ecs_tasks_of_the_account_assume_it():
    """The template names the task role as names.drill_task_role; its trust policy admits the ECS tasks service of
    this account only (no person, no other account); the drill task calls the gate."""
    role = RUNTIME["Resources"]["DrillTaskRole"]["Properties"]
    assert resolve(RUNTIME, role["RoleName"]) == ROLE
    trust = resolve(RUNTIME, trust_statements(RUNTIME, "DrillTaskRole"))
    assert [s["Principal"] for s in trust] == [{"Service": "ecs-tasks.amazonaws.com"}]
    assert all(s["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}} for s in trust)
    (drill,) = RUNTIME["Resources"]["DrillTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert "TRADEOPS_GATE_URL" in {e["Name"] for e in drill["Environment"]}


@pytest.mark.parametrize("action", ["iam:PassRole", "sts:AssumeRole"])
def test_no_persons_role_may_hand_the_drill_task_role_to_a_task_or_assume_it(action):
    """Neither the operator role (and the permission set it shares its policy with) nor break-glass may pass the
    drill task role to a task of their own or assume it: a drill identity is never a person's to borrow."""
    arn = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
    for person in ("OperatorRole", "BreakGlassRole"):
        assert decide(resolve(BASE, role_statements(BASE, person)), action, arn) != "allow", person


def test_a_session_of_the_drill_task_role_is_a_drill_identity_and_another_roles_is_refused():
    """The task's session is `drill-task:ROLE/TASK` (a drill identity); a session of any other role whose name
    the caller picks is still refused."""
    who = identity_from_arn(TASK_SESSION, bound=(), drill_roles=drill_roles(SETTINGS))
    assert who.name == f"drill-task:{ROLE}/0f1e2d3c4b5a69788796a5b4c3d2e1f0" and who.source == "drill-task-role"
    assert is_drill_identity(who.name, who.source)
    with pytest.raises(Refused, match="choose the session"):
        identity_from_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/tradeops-other/x", bound=(),
                          drill_roles=drill_roles(SETTINGS))
    with pytest.raises(Refused):  # without the gate knowing the role, the session names nobody
        identity_from_arn(TASK_SESSION, bound=())


def test_the_gate_lets_the_drill_task_set_a_guarded_flag_only_where_drills_are_allowed():
    """A scheduled drill's flag change through the gate: allowed on a drill environment's gate with a reason,
    refused on any other gate."""
    who = identity_from_arn(TASK_SESSION, bound=(), drill_roles=drill_roles(SETTINGS)).name
    request = GateRequest(op="flag", execution_id="drill-run-1", step_id="active", value="secondary",
                          reason="drill primary-outage: inject", nonce="n" * 32,
                          expires_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1))
    assert drill_flag_refusal(request, who, drills_allowed=True) is None
    assert "does not take drills" in (drill_flag_refusal(request, who, drills_allowed=False) or "")


def test_the_drill_tasks_approvals_never_count_as_four_eyes():
    """In a person's execution, the drill task's approval counts for nothing and a new one is refused, whatever
    roles a roster gave it: automated approvals never pass as human four-eyes."""
    who = identity_from_arn(TASK_SESSION, bound=(), drill_roles=drill_roles(SETTINGS))
    rule = ApprovalRule(count=1, roles=("ops-manager",))
    ctx = ApprovalContext(execution_id="failover-1", step_id="toggle", runbook_sha256="0" * 64,
                          executors=frozenset({"alice"}), roles_of={who.name: frozenset({"ops-manager"})})
    decision = evaluate(rule, ctx, [Approval.make(ctx, who.name, who.source, "approve")])
    assert decision.approved_by == () and "drill identity" in decision.refused[0][1]
    with pytest.raises(Refused, match="never as human four-eyes"):
        check_new_decision(rule, ctx, who.name, who.source, [])
