"""Segregation of duties in deploy/template.yaml, evaluated (not grepped): who may make a guarded change, who may
assume which role, and that every use of a guarded permission pages (docs/architecture.md, "Who may do what").

The statements are evaluated by tests/support/policies.py (why not moto's evaluator: its docstring); the
paging rules' patterns by moto's EventBridge pattern matcher against CloudTrail records shaped as AWS writes
them; the requests a person makes (AssumeRole with a source identity and a reason) against botocore's models.
What no test here can prove: that AWS evaluates them the same way. `tradeops doctor --aws` reports what the
deployed account holds.
"""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.validate import ParamValidator
from moto.events.models import EventPattern

from tests.support.policies import (
    ACCOUNT,
    REGION,
    allowed,
    decide,
    resolve,
    role_statements,
    template,
    trust_statements,
)

DOC = template()
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
GUARDED_PARAMETERS = ("/tradeops/processing", "/tradeops/routing/mode", "/tradeops/routing/active",
                      "/tradeops/roster/current")
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")


def _parameter(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"


def _statements(role: str, **params) -> list[dict]:
    return resolve(DOC, role_statements(DOC, role), params=params)


def _trust(role: str, **params) -> list[dict]:
    return resolve(DOC, trust_statements(DOC, role), params=params)


def _guarded() -> list[tuple[str, str]]:
    """Every guarded change as (action, resource): the flags and the roster, orders, decisions, the brokers' keys."""
    secrets = [resolve(DOC, {"Ref": s}) for s in ("PrimaryBrokerSecret", "SecondaryBrokerSecret")]
    return ([(a, _parameter(p)) for p in GUARDED_PARAMETERS
             for a in ("ssm:PutParameter", "ssm:DeleteParameter", "ssm:LabelParameterVersion")]
            + [(a, TABLE + t) for t in ("tradeops-orders", "tradeops-decisions") for a in WRITES]
            # The decisions table's TTL, pointed at a step's number attribute, would erase its acting mark.
            + [("dynamodb:UpdateTimeToLive", TABLE + "tradeops-decisions")]
            + [("secretsmanager:GetSecretValue", s) for s in secrets])


# ---- what a person's role may do -------------------------------------------------------------------

@pytest.mark.parametrize(("action", "resource"), _guarded())
def test_no_policy_of_a_persons_role_grants_a_guarded_change(action, resource):
    """The operator policy (the operator role's and the Identity Center permission set's) explicitly denies every
    guarded change: the three routing flags, the roster, order state, the decisions table, the brokers' keys."""
    assert decide(_statements("OperatorRole"), action, resource) == "deny"


def test_the_operator_keeps_trickle_reads_proposals_and_its_own_writes():
    """What is not guarded stays: trickle and roster proposals, reading the flags, orders and decisions, and the
    runner's writes to executions, events and the ledger (so the denials above are not a policy denying all)."""
    operator = _statements("OperatorRole")
    for action, resource in (("ssm:PutParameter", _parameter("/tradeops/routing/trickle")),
                             ("ssm:PutParameter", _parameter("/tradeops/roster/proposed/0123456789abcdef")),
                             ("ssm:GetParameter", _parameter("/tradeops/routing/active")),
                             ("ssm:GetParameterHistory", _parameter("/tradeops/roster/current")),
                             ("dynamodb:Query", TABLE + "tradeops-orders/index/status-symbol-index"),
                             ("dynamodb:GetItem", TABLE + "tradeops-decisions"),
                             ("dynamodb:UpdateItem", TABLE + "tradeops-executions"),
                             ("dynamodb:PutItem", TABLE + "tradeops-events"),
                             ("dynamodb:UpdateItem", TABLE + "tradeops-reimbursements")):
        assert allowed(operator, action, resource), (action, resource)


def test_the_permission_set_attaches_the_operator_policy_and_nothing_else():
    """The Identity Center permission set grants exactly the operator role's permissions: the same managed policy,
    by the name the template gives it, and no policy of its own."""
    role = DOC["Resources"]["OperatorRole"]["Properties"]
    assert "Policies" not in role and role["ManagedPolicyArns"] == [{"Ref": "OperatorPolicy"}]
    permission_set = DOC["Resources"]["OperatorPermissionSet"]
    props = permission_set["Properties"]
    assert permission_set["Condition"] == "HasIdentityCenter"
    assert props["CustomerManagedPolicyReferences"] == [
        {"Name": DOC["Resources"]["OperatorPolicy"]["Properties"]["ManagedPolicyName"]}]
    assert not {"InlinePolicy", "ManagedPolicies", "PermissionsBoundary"} & set(props)


def test_the_break_glass_role_may_make_the_guarded_flag_changes_and_declare_void():
    """The break-glass role may write the routing flags and release orders (with the brokers' keys), not the roster
    nor the decisions: a roster change is always four-eyes."""
    glass = _statements("BreakGlassRole")
    for flag in GUARDED_PARAMETERS[:3]:
        assert allowed(glass, "ssm:PutParameter", _parameter(flag))
    assert allowed(glass, "dynamodb:UpdateItem", TABLE + "tradeops-orders")
    assert not allowed(glass, "ssm:PutParameter", _parameter("/tradeops/roster/current"))
    assert not allowed(glass, "dynamodb:PutItem", TABLE + "tradeops-decisions")


# ---- who may assume which role --------------------------------------------------------------------

SIGNED_IN = {"aws:PrincipalArn": USER, "aws:username": "alice", "aws:MultiFactorAuthPresent": "true",
             "sts:RoleSessionName": "alice", "sts:SourceIdentity": "alice"}


@pytest.mark.parametrize(("change", "ok"), [
    ({}, True),
    ({"aws:MultiFactorAuthPresent": "false"}, False),
    ({"aws:MultiFactorAuthPresent": None}, False),
    ({"sts:SourceIdentity": None}, False),
    ({"sts:SourceIdentity": "bob"}, False),
    ({"sts:RoleSessionName": "bob"}, False),
], ids=["own-name-with-mfa", "no-mfa", "mfa-unknown", "no-source-identity", "someone-elses-source-identity",
        "someone-elses-session-name"])
def test_the_operator_role_needs_mfa_and_the_callers_own_name_as_session_and_source_identity(change, ok):
    """AssumeRole (and SetSourceIdentity) on the operator role is allowed only with MFA, the caller's own user
    name as the session name and as sts:SourceIdentity; without a source identity it is refused."""
    request = {k: v for k, v in {**SIGNED_IN, **change}.items() if v is not None}
    trust = _trust("OperatorRole")
    assert all(allowed(trust, action, None, request) == ok for action in ("sts:AssumeRole", "sts:SetSourceIdentity"))


BREAKING = {**SIGNED_IN, "aws:RequestTag/tradeops-reason": "primary broker unreachable, runbook gate down"}


@pytest.mark.parametrize(("listed", "change", "ok"), [
    (["olga", "alice"], {}, True),
    (["alice"], {"aws:RequestTag/tradeops-reason": None}, False),
    (["alice"], {"aws:MultiFactorAuthPresent": "false"}, False),
    (["alice"], {"sts:SourceIdentity": None}, False),
    (["bob"], {}, False),
    ([""], {}, False),
], ids=["listed-with-mfa-and-reason", "no-reason", "no-mfa", "no-source-identity", "not-listed", "nobody-listed"])
def test_the_break_glass_role_takes_only_a_listed_person_with_mfa_and_a_reason(listed, change, ok):
    """Only the IAM users named in BreakGlassUsers may assume the break-glass role, with MFA, their own name as
    session name and source identity, and a tradeops-reason session tag; the default (empty) list lets nobody in."""
    request = {k: v for k, v in {**BREAKING, **change}.items() if v is not None}
    trust = _trust("BreakGlassRole", BreakGlassUsers=listed)
    assert allowed(trust, "sts:AssumeRole", None, request) == ok
    assert allowed(trust, "sts:TagSession", None, request) == ok


def test_a_break_glass_assume_role_request_is_valid_for_sts():
    """The request a person makes to break the glass (MFA code, own name as session and source identity, the reason
    as a session tag) is valid for botocore's STS model, so the trust policy asks for something AWS can be sent."""
    model = botocore.session.get_session().get_service_model("sts")
    params = {"RoleArn": resolve(DOC, {"Fn::GetAtt": ["BreakGlassRole", "Arn"]}), "RoleSessionName": "alice",
              "SourceIdentity": "alice", "SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/alice", "TokenCode": "123456",
              "Tags": [{"Key": "tradeops-reason", "Value": "primary broker unreachable"}], "DurationSeconds": 3600}
    report = ParamValidator().validate(params, model.operation_model("AssumeRole").input_shape)
    assert not report.has_errors(), report.generate_report()


# ---- every use of a guarded permission pages --------------------------------------------------------

def _rules() -> dict[str, EventPattern]:
    rules = {k: r for k, r in DOC["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
    return {k: EventPattern.load(json.dumps(resolve(DOC, r["Properties"]["EventPattern"]))) for k, r in rules.items()}


def _trail(source: str, event_name: str, *, issuer: str | None = None, error: str | None = None,
           **request: object) -> dict:
    """A CloudTrail record as EventBridge delivers it (detail-type "AWS API Call via CloudTrail")."""
    identity: dict = {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{issuer or 'x'}/alice"}
    if issuer:
        identity["sessionContext"] = {"sessionIssuer": {"type": "Role", "userName": issuer,
                                                        "arn": f"arn:aws:iam::{ACCOUNT}:role/{issuer}"}}
    detail = {"eventSource": f"{source}.amazonaws.com", "eventName": event_name, "userIdentity": identity,
              "requestParameters": request, **({"errorCode": error} if error else {})}
    return {"source": f"aws.{source}", "detail-type": "AWS API Call via CloudTrail", "account": ACCOUNT,
            "region": REGION, "detail": detail}


@pytest.mark.parametrize(("event", "pages"), [
    (_trail("ssm", "PutParameter", issuer="tradeops-gate", name="/tradeops/routing/active"),
     {"GuardedParameterRule"}),
    (_trail("ssm", "PutParameter", issuer="tradeops-break-glass", name="/tradeops/processing"),
     {"GuardedParameterRule"}),
    (_trail("ssm", "PutParameter", issuer="tradeops-operator", error="AccessDenied", name="/tradeops/roster/current"),
     {"GuardedParameterRule", "GuardedDeniedRule"}),
    (_trail("dynamodb", "UpdateItem", issuer="tradeops-operator", error="AccessDenied", tableName="tradeops-orders"),
     {"GuardedDeniedRule"}),
    (_trail("dynamodb", "UpdateItem", issuer="tradeops-gate", tableName="tradeops-orders"), {"GuardedTableWriteRule"}),
    (_trail("dynamodb", "PutItem", issuer="tradeops-gate", tableName="tradeops-decisions"), {"GuardedTableWriteRule"}),
    (_trail("sts", "AssumeRole", roleArn=f"arn:aws:iam::{ACCOUNT}:role/tradeops-break-glass", sourceIdentity="alice",
            tags=[{"key": "tradeops-reason", "value": "gate down"}]), {"BreakGlassAssumedRule"}),
    (_trail("ssm", "PutParameter", issuer="tradeops-operator", name="/tradeops/routing/trickle"), set()),
    (_trail("dynamodb", "UpdateItem", issuer="tradeops-worker", tableName="tradeops-orders"), set()),
    (_trail("sts", "AssumeRole", roleArn=f"arn:aws:iam::{ACCOUNT}:role/tradeops-operator"), set()),
], ids=["gate-sets-active", "break-glass-pauses", "operator-tries-the-roster", "operator-tries-an-order",
        "gate-releases-an-order", "gate-records-a-decision", "break-glass-assumed", "trickle-is-quiet",
        "workers-are-quiet", "operator-sign-in-is-quiet"])
def test_every_use_of_a_guarded_permission_pages_and_nothing_else_does(event, pages):
    """A guarded flag or roster write (by the gate, the break-glass role, or a refused attempt), the gate's or the
    break-glass role's order and decision writes, a break-glass sign-in and any refused write each match a paging
    rule; trickle, the workers' order writes and an operator signing in match none (no page storm)."""
    assert {name for name, pattern in _rules().items() if pattern.matches_event(event)} == pages


def test_each_paging_rule_reaches_the_alert_topic_through_its_policy_and_key():
    """Every paging rule targets the alert topic; the topic's policy lets EventBridge publish from exactly those
    rules, and the topic's KMS key lets EventBridge use it (else deliveries fail and nobody is paged)."""
    resources = DOC["Resources"]
    rules = sorted(k for k, r in resources.items() if r["Type"] == "AWS::Events::Rule")
    assert len(rules) == 4
    for name in rules:
        assert [t["Arn"] for t in resources[name]["Properties"]["Targets"]] == [{"Ref": "AlertTopic"}]
    [statement] = resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sns:Publish"
    assert sorted(a["Fn::GetAtt"][0] for a in statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == rules
    key = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert allowed(key, "kms:GenerateDataKey", "*") and any(
        s.get("Principal") == {"Service": "events.amazonaws.com"} for s in key)


def test_the_trail_records_the_writes_the_rules_watch():
    """EventBridge sees API calls only through a trail: the template's logs write management events and the data
    events of the orders and decisions tables, so the rules above have something to match."""
    trail = resolve(DOC, DOC["Resources"]["GuardedTrail"]["Properties"])
    assert trail["IsLogging"] is True
    selectors = {s["Name"]: {f["Field"]: f["Equals"] for f in s["FieldSelectors"]}
                 for s in trail["AdvancedEventSelectors"]}
    assert selectors["management events"]["eventCategory"] == ["Management"]
    data = selectors["writes to the guarded tables"]
    assert data["resources.type"] == ["AWS::DynamoDB::Table"]
    assert sorted(data["resources.ARN"]) == [TABLE + "tradeops-decisions", TABLE + "tradeops-orders"]


def test_the_paging_rules_and_the_trail_are_valid_requests_for_their_services():
    """Each paging rule (its pattern as JSON, its target) and the trail's event selectors are what botocore's
    EventBridge and CloudTrail models accept, so a deployment is not refused for their shape."""
    session = botocore.session.get_session()
    events, trail = session.get_service_model("events"), session.get_service_model("cloudtrail")
    for name, rule in DOC["Resources"].items():
        if rule["Type"] != "AWS::Events::Rule":
            continue
        props = resolve(DOC, rule["Properties"])
        for operation, params in (("PutRule", {"Name": props["Name"], "EventPattern": json.dumps(props["EventPattern"]),
                                               "Description": props["Description"]}),
                                  ("PutTargets", {"Rule": props["Name"], "Targets": props["Targets"]})):
            report = ParamValidator().validate(params, events.operation_model(operation).input_shape)
            assert not report.has_errors(), (name, report.generate_report())
    props = resolve(DOC, DOC["Resources"]["GuardedTrail"]["Properties"])
    report = ParamValidator().validate({"TrailName": props["TrailName"],
                                        "AdvancedEventSelectors": props["AdvancedEventSelectors"]},
                                       trail.operation_model("PutEventSelectors").input_shape)
    assert not report.has_errors(), report.generate_report()
