"""The shipped experiments set routing flags only through tradeops's audited path (issue 23, item 4).

Every flag step of every experiment in experiments/ is run, as the experiment spells it, through the activity it
names, against the emulator with the template deployed; afterwards each flag's description, allowed pattern,
type and tier are still the template's (so ``mode`` still refuses ``bogus``), and the audit log and the events
hold each change under the drill identity. Cheaper than running the drills, and it covers every one of them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeops.experiments import activities
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.eventkinds import DRILL_FLAG_SET
from tradeops.runtime.orderpath.flags import FLAGS
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.events import read_events
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.statefile import write_state

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
PARAMETER = {"processing": "processing_param", "mode": "mode_param", "active": "active_param",
             "trickle": "trickle_param"}


def _activities(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    steady = experiment.get("steady-state-hypothesis", {}).get("probes", [])
    return [*steady, *experiment.get("method", []), *experiment.get("rollbacks", [])]


def _flag_steps(path: Path) -> list[dict[str, Any]]:
    experiment = yaml.safe_load(path.read_text(encoding="utf-8"))
    config = {k: v for k, v in experiment.get("configuration", {}).items() if not isinstance(v, dict)}
    steps = []
    for activity in _activities(experiment):
        provider = activity.get("provider", {})
        if provider.get("func") != "set_routing_flag":
            continue
        args = {k: re.sub(r"\$\{(\w+)\}", lambda m: str(config[m.group(1)]), str(v))
                for k, v in provider.get("arguments", {}).items()}
        steps.append({"name": activity["name"], **args})
    return steps


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_no_shipped_experiment_writes_ssm_itself(path):
    """No experiment calls chaostoolkit-aws's SSM actions (put_parameter writes no audit record and replaces the
    parameter's pattern); each that changes a flag does it with tradeops's set_routing_flag."""
    experiment = yaml.safe_load(path.read_text(encoding="utf-8"))
    modules = {a.get("provider", {}).get("module") for a in _activities(experiment)}
    assert not {m for m in modules if m and m.startswith("chaosaws.ssm")}
    assert "put_parameter" not in path.read_text(encoding="utf-8")
    assert _flag_steps(path), "every shipped drill changes routing and restores it"


def _definitions(aws: Aws) -> dict[str, dict[str, Any]]:
    names = names_for(aws.settings)
    wanted = {getattr(names, PARAMETER[f]): f for f in FLAGS}
    got = aws.ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": list(wanted)}])["Parameters"]
    return {wanted[p["Name"]]: {k: p.get(k) for k in ("Description", "AllowedPattern", "Type", "Tier")} for p in got}


@pytest.fixture
def drill_configuration(aws_settings, tmp_path, monkeypatch):
    """What `chaos run` hands an activity: a state folder naming a ready stack on the emulator (prefix `ut`)."""
    monkeypatch.setenv("TRADEOPS_NAME_PREFIX", aws_settings.name_prefix)
    monkeypatch.setenv("TRADEOPS_PARAM_PREFIX", aws_settings.param_prefix)
    monkeypatch.setenv("TRADEOPS_STACK_NAME", aws_settings.stack_name)
    write_state(tmp_path / "stack.json", {"status": "ready", "local": True, "intake": "http://127.0.0.1:9",
                                          "aws_endpoint": aws_settings.aws_endpoint_url, "region": aws_settings.region})
    return {"tradeops_state_dir": str(tmp_path)}


def test_every_shipped_flag_step_is_audited_as_the_drill_and_leaves_the_flags_validation_alone(aws_settings,
                                                                                              drill_configuration):
    """Running every experiment's flag steps through set_routing_flag changes only the flags' values: each
    parameter's description, allowed pattern (mode still refuses `bogus`), type and tier stay the template's; each
    change is one drill.flag_set audit record and one flag_set event, both naming the identity `drill`."""
    aws = Aws(aws_settings)
    before = _definitions(aws)
    assert re.fullmatch(before["mode"]["AllowedPattern"], "bogus") is None
    since = utcnow() - timedelta(seconds=1)
    audited = len([e for e in AuditLog(aws).entries() if e["kind"] == DRILL_FLAG_SET])
    steps = [(path.stem, step) for path in EXPERIMENTS for step in _flag_steps(path)]
    changed = 0
    for experiment, step in steps:
        current = activities.routing_state(drill_configuration)[step["flag"]]
        answer = activities.set_routing_flag(step["flag"], step["value"], reason=f"{experiment}: {step['name']}",
                                             configuration=drill_configuration)
        assert answer["after"] == step["value"] and answer["before"] == str(current)
        changed += answer["before"] != answer["after"]
    assert _definitions(aws) == before
    assert re.fullmatch(_definitions(aws)["mode"]["AllowedPattern"], "bogus") is None
    records = [e for e in AuditLog(aws).entries() if e["kind"] == DRILL_FLAG_SET][audited:]
    assert len(records) == len(steps) > 9
    assert {(r["actor"], r["identity_source"]) for r in records} == {("drill", "drill")}
    assert [r["data"]["reason"] for r in records] == [f"{e}: {s['name']}" for e, s in steps]
    events = [e for e in read_events(aws, stream="routing", since=since) if e.get("kind") == "flag_set"]
    assert len(events) == changed and {e["actor"] for e in events} == {"drill"}
