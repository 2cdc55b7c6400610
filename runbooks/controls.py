"""Which segregation-of-duties controls the deployed account holds (`tradeops doctor --aws`).

docs/architecture.md, "Who may do what", lists them: no person's role may change a guarded flag, the roster, an
order or a decision; signing in as an operator needs MFA and the caller's own name as source identity; the
break-glass role takes only listed people, with MFA and a reason; every guarded use pages; a trail records the
guarded writes; the decisions table expires the gate's nonces, and nothing else, by its TTL. :func:`judge`
decides each from the deployed documents (pure, evaluated with :mod:`.iampolicy`, never matched as text);
:func:`read_deployed` reads them, and a document it cannot read is ``None``, which :func:`judge` reports as
"cannot tell", never as in place.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tradeops.runbooks.gateledger import EXPIRES_AT
from tradeops.runbooks.iampolicy import ALLOW, allowed, decide
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.names import Names, names_for

__all__ = ["PAGING_RULES", "Control", "Deployed", "judge", "read_deployed"]

PAGING_RULES = ("guarded-parameter", "guarded-table-write", "break-glass-assumed", "guarded-denied")
"""The template's EventBridge rules, by name after the prefix (deploy/template.yaml)."""
TRAIL = "guarded"
_WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")


@dataclass(frozen=True)
class Control:
    control: str
    in_place: bool
    why: str


@dataclass(frozen=True)
class Deployed:
    """What the account holds, as plain data (None: absent or unreadable)."""

    account: str
    region: str
    operator_policy: list[dict[str, Any]] | None = None
    operator_trust: list[dict[str, Any]] | None = None
    glass_trust: list[dict[str, Any]] | None = None
    rules: dict[str, list[str]] | None = None  # enabled rule name → its target ARNs
    alert_topic: str = ""
    trail_logging: bool | None = None
    trail_tables: list[str] = field(default_factory=list)
    glass_holders: list[str] | None = None  # user names of the roster's break-glass holders that are IAM users
    decisions_ttl: dict[str, Any] | None = None  # the decisions table's TimeToLiveDescription


def _guarded(names: Names, account: str, region: str) -> tuple[list[str], list[str]]:
    parameter = f"arn:aws:ssm:{region}:{account}:parameter"
    params = [parameter + p for p in (names.processing_param, names.mode_param, names.active_param,
                                      names.roster_param)]
    table = f"arn:aws:dynamodb:{region}:{account}:table/"
    return params, [table + names.orders_table, table + f"{names.prefix}-decisions"]


def _signing_in(account: str, **extra: str) -> dict[str, str]:
    return {"aws:PrincipalArn": f"arn:aws:iam::{account}:user/tradeops-doctor", "aws:username": "tradeops-doctor",
            "aws:MultiFactorAuthPresent": "true", "sts:RoleSessionName": "tradeops-doctor",
            "sts:SourceIdentity": "tradeops-doctor", **extra}


def _trust_refuses(trust: list[dict[str, Any]], good: dict[str, str], *missing: str) -> list[str]:
    """Which of ``missing`` the trust policy lets a caller go without (it should refuse each)."""
    return [key for key in missing
            if allowed(trust, "sts:AssumeRole", None, {k: v for k, v in good.items() if k != key})]


def _listed_users(trust: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for statement in trust:
        value = statement.get("Condition", {}).get("StringEquals", {}).get("aws:username")
        found += value if isinstance(value, list) else [value] if value else []
    return sorted({p for p in found if p})


def judge(deployed: Deployed, names: Names) -> list[Control]:
    """Each control: in place or not, and why (pure)."""
    account, region = deployed.account, deployed.region
    params, tables = _guarded(names, account, region)
    controls: list[Control] = []
    what = "operators cannot change the guarded flags or the roster"
    if deployed.operator_policy is None:
        controls.append(Control(what, False, f"cannot tell: role {names.operator_role} or its policy is unreadable"))
    else:
        open_ = [p.rsplit(":parameter", 1)[1] for p in params
                 if decide(deployed.operator_policy, "ssm:PutParameter", p) == ALLOW]
        controls.append(Control(what, not open_, f"{names.operator_role} may put {', '.join(open_)}" if open_
                                else f"{names.operator_role} is refused ssm:PutParameter on all four"))
    what = "operators cannot write orders or decisions"
    if deployed.operator_policy is not None:
        policy = deployed.operator_policy
        open_ = sorted({t.rsplit("/", 1)[1] for t in tables for a in _WRITES if decide(policy, a, t) == ALLOW})
        shut = ", ".join(t.rsplit("/", 1)[1] for t in tables)
        controls.append(Control(what, not open_, f"{names.operator_role} may write {', '.join(open_)}" if open_
                                else f"{names.operator_role} is refused writes on {shut}"))
    else:
        controls.append(Control(what, False, "cannot tell: the operator role's policy is unreadable"))
    what = "operator sign-in needs MFA and the caller's own source identity"
    if deployed.operator_trust is None:
        controls.append(Control(what, False, f"cannot tell: role {names.operator_role} is unreadable"))
    else:
        good = _signing_in(account)
        lax = _trust_refuses(deployed.operator_trust, good, "aws:MultiFactorAuthPresent", "sts:SourceIdentity")
        if not allowed(deployed.operator_trust, "sts:AssumeRole", None, good):
            controls.append(Control(what, False, "its trust policy refuses even a caller with MFA and source identity"))
        else:
            controls.append(Control(what, not lax, f"its trust policy accepts a caller without {', '.join(lax)}" if lax
                                    else "its trust policy refuses a caller without either"))
    what = "break-glass takes only listed people, with MFA and a reason"
    if deployed.glass_trust is None:
        controls.append(Control(what, False, f"role {names.break_glass_role} is not deployed or unreadable"))
    else:
        listed = _listed_users(deployed.glass_trust)
        name = listed[0] if listed else "tradeops-doctor"
        good = _signing_in(account, **{"aws:RequestTag/tradeops-reason": "doctor", "aws:username": name,
                                       "sts:RoleSessionName": name, "sts:SourceIdentity": name})
        lax = _trust_refuses(deployed.glass_trust, good, "aws:MultiFactorAuthPresent", "aws:RequestTag/tradeops-reason")
        other = f"not-listed-{account}"
        stranger = allowed(deployed.glass_trust, "sts:AssumeRole", None,
                           {**good, "aws:username": other, "sts:RoleSessionName": other, "sts:SourceIdentity": other})
        why = f"lists {len(listed)} people" + (f"; accepts a caller without {', '.join(lax)}" if lax else "")
        why += "; accepts anyone in the account" if stranger else ""
        if deployed.glass_holders is not None and sorted(deployed.glass_holders) != listed:
            why += (f"; the roster's break-glass holders differ ({len(deployed.glass_holders)}): redeploy with "
                    "BreakGlassUsers from the roster")
        controls.append(Control(what, not lax and not stranger, why))
    what = "every guarded use pages"
    if deployed.rules is None:
        controls.append(Control(what, False, "cannot tell: the paging rules are unreadable"))
    else:
        missing = [r for r in PAGING_RULES if deployed.alert_topic not in deployed.rules.get(f"{names.prefix}-{r}", [])]
        controls.append(Control(what, not missing, f"not paging the alert topic: {', '.join(missing)}" if missing
                                else f"{len(PAGING_RULES)} rules enabled, each targets the alert topic"))
    what = "a trail records the guarded writes"
    if deployed.trail_logging is None:
        controls.append(Control(what, False, f"trail {names.prefix}-{TRAIL} is not deployed or unreadable"))
    else:
        unrecorded = [t.rsplit("/", 1)[1] for t in tables if t not in deployed.trail_tables]
        why = "logging" if deployed.trail_logging else "not logging"
        why += (f"; no data events for {', '.join(unrecorded)}" if unrecorded
                else "; data events of orders and decisions")
        controls.append(Control(what, deployed.trail_logging and not unrecorded, why))
    what = "the decisions table expires only the gate's nonces"
    ttl = deployed.decisions_ttl
    if ttl is None:
        controls.append(Control(what, False, f"cannot tell: the TTL of {names.decisions_table} is unreadable"))
    else:
        status, attribute = str(ttl.get("TimeToLiveStatus") or "DISABLED"), str(ttl.get("AttributeName") or "")
        on = status in ("ENABLED", "ENABLING")
        why = (f"TTL {status.lower()} on {attribute}" if on else f"TTL {status.lower()}: nonces are never removed")
        if on and attribute != EXPIRES_AT:
            why += f", not {EXPIRES_AT}: it could erase a step's decisions or acted mark"
        controls.append(Control(what, on and attribute == EXPIRES_AT, why))
    return controls


def _document(value: Any) -> dict[str, Any]:
    """A policy document as IAM answers it: already parsed by botocore, or URL-encoded JSON text."""
    if isinstance(value, dict):
        return value
    text = unquote(str(value))
    try:
        return dict(json.loads(text))
    except json.JSONDecodeError:
        # The emulator's CloudFormation keeps a role's inline policy as Python's repr of the template's mapping.
        return dict(ast.literal_eval(text))


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return list(statements if isinstance(statements, list) else [statements])


def _role(aws: Aws, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """A role's trust statements and all its permission statements (inline and attached), or None."""
    iam = aws.client("iam")
    try:
        role = iam.get_role(RoleName=name)["Role"]
        statements: list[dict[str, Any]] = []
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            inline = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            statements += _statements(_document(inline))
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]
            statements += _statements(_document(document["Document"]))
    except Exception:  # absent or not readable: the control is reported as unknown, never as in place
        return None
    return _statements(_document(role["AssumeRolePolicyDocument"])), statements


def read_deployed(aws: Aws, *, glass_holders: list[str] | None) -> Deployed:
    """Read the documents :func:`judge` decides from (each None when absent or unreadable)."""
    names = names_for(aws.settings)
    account, region = aws.caller()["account"], aws.settings.region
    operator, glass = _role(aws, names.operator_role), _role(aws, names.break_glass_role)
    rules: dict[str, list[str]] | None = {}
    events = aws.client("events")
    try:
        for rule in PAGING_RULES:
            name = f"{names.prefix}-{rule}"
            try:
                if events.describe_rule(Name=name).get("State") == "ENABLED":
                    assert rules is not None
                    rules[name] = [t["Arn"] for t in events.list_targets_by_rule(Rule=name)["Targets"]]
            except events.exceptions.ResourceNotFoundException:
                continue
    except Exception:
        rules = None
    trail = aws.client("cloudtrail")
    logging: bool | None
    try:
        logging = bool(trail.get_trail_status(Name=f"{names.prefix}-{TRAIL}")["IsLogging"])
        selectors = trail.get_event_selectors(TrailName=f"{names.prefix}-{TRAIL}").get("AdvancedEventSelectors", [])
        tables = [arn for s in selectors for f in s["FieldSelectors"] if f["Field"] == "resources.ARN"
                  for arn in f.get("Equals", [])]
    except Exception:
        logging, tables = None, []
    ttl: dict[str, Any] | None
    try:
        ttl = dict(aws.dynamodb.describe_time_to_live(TableName=names.decisions_table)["TimeToLiveDescription"])
    except Exception:  # absent or not readable: reported as unknown
        ttl = None
    return Deployed(account=account, region=region, operator_policy=operator[1] if operator else None,
                    operator_trust=operator[0] if operator else None, glass_trust=glass[0] if glass else None,
                    rules=rules, alert_topic=aws.topic_arn(names.alert_topic), trail_logging=logging,
                    trail_tables=tables, glass_holders=glass_holders, decisions_ttl=ttl)
