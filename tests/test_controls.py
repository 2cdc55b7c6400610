"""`tradeops doctor --aws`'s segregation-of-duties rows: each control judged from the deployed documents."""

from __future__ import annotations

from tradeops.runbooks.controls import Control, judge, read_deployed
from tradeops.runbooks.doctor import segregation
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.names import names_for


def test_the_template_as_deployed_holds_every_control(aws_settings):
    """Read from the emulator the template was deployed into, every control is in place: operators refused the
    guarded flags, the roster, orders and decisions; MFA and source identity on sign-in; break-glass for listed
    people with MFA and a reason; four enabled paging rules on the alert topic; the trail logging both tables; the
    decisions table's TTL on the gate's nonces only."""
    aws = Aws(aws_settings)
    deployed = read_deployed(aws, glass_holders=None)
    controls = judge(deployed, names_for(aws_settings))
    assert [c for c in controls if not c.in_place] == []
    assert len(controls) == 7
    assert controls[-1].why == "TTL enabled on expires_at"
    assert all(f.check.startswith("control: ") and f.ok for f in segregation(aws))


def test_a_deployment_missing_a_control_is_reported_with_the_reason(aws_settings):
    """An operator policy that allows PutParameter on the whole prefix, a trust policy without MFA, a paging rule
    gone, a trail not logging and the decisions table's TTL off or on another attribute are each reported not in
    place, naming what is open; nothing read counts as in place by default."""
    aws = Aws(aws_settings)
    names = names_for(aws_settings)
    deployed = read_deployed(aws, glass_holders=["olga"])
    lax_policy = [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]
    trust = [{**s, "Condition": {k: v for k, v in s["Condition"].items() if k != "Bool"}}
             for s in deployed.operator_trust]
    rules = {k: v for k, v in deployed.rules.items() if not k.endswith("guarded-denied")}
    lax = type(deployed)(**{**deployed.__dict__, "operator_policy": lax_policy, "operator_trust": trust,
                            "rules": rules, "trail_logging": False})
    by_name = {c.control: c for c in judge(lax, names)}
    assert by_name["operators cannot change the guarded flags or the roster"] == Control(
        "operators cannot change the guarded flags or the roster", False,
        f"{names.operator_role} may put {names.processing_param}, {names.mode_param}, {names.active_param}, "
        f"{names.roster_param}")
    assert "without aws:MultiFactorAuthPresent" in by_name["operator sign-in needs MFA and the caller's own source "
                                                           "identity"].why
    assert by_name["every guarded use pages"].why == "not paging the alert topic: guarded-denied"
    assert not by_name["a trail records the guarded writes"].in_place
    glass = by_name["break-glass takes only listed people, with MFA and a reason"]
    assert glass.in_place and "the roster's break-glass holders differ" in glass.why
    ttl = "the decisions table expires only the gate's nonces"
    off = type(deployed)(**{**deployed.__dict__, "decisions_ttl": {"TimeToLiveStatus": "DISABLED"}})
    assert {c.control: c for c in judge(off, names)}[ttl] == Control(ttl, False,
                                                                     "TTL disabled: nonces are never removed")
    other = type(deployed)(**{**deployed.__dict__, "decisions_ttl": {"TimeToLiveStatus": "ENABLED",
                                                                     "AttributeName": "decision_seq"}})
    wrong = {c.control: c for c in judge(other, names)}[ttl]
    assert not wrong.in_place and "could erase a step's decisions" in wrong.why
    unknown = type(deployed)(account=deployed.account, region=deployed.region)
    assert not any(c.in_place for c in judge(unknown, names))
