"""Runbook documents: the shipped runbooks, validation with file and line, parameters (no AWS needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tradeops.runbooks.identity import load_operators
from tradeops.runbooks.loader import runbook_dir, shipped_runbooks
from tradeops.runbooks.params import parse_param_overrides, render, resolve_params
from tradeops.runbooks.testing import write_operators
from tradeops.runbooks.validation import check_runbook, load_runbook, schema
from tradeops.runtime.platform.errors import BadInput, ConfigError, NotFound

GOOD = """\
name: good
title: A good runbook
version: 1
service: Retail trade order execution
impact_tolerance: {max_outage_minutes: 30}
parameters:
  seconds: {type: number, default: 5}
steps:
  - id: paused
    title: Processing is paused
    check: {probe: processing, expect: paused}
  - id: toggle
    title: Switch
    approval: {count: 2, roles: [ops-manager, risk]}
    action: {name: set_active_broker, args: {provider: secondary}}
    verify: {probe: active_broker, expect: secondary, timeout: "${seconds}"}
"""


@pytest.fixture
def operators(tmp_path):
    return write_operators(tmp_path / "operators.yaml", {"alice": ["duty-engineer"], "bob": ["ops-manager"],
                                                         "carol": ["risk"]})


def _step(runbook, step_id):
    return next(s for s in runbook.steps if s["id"] == step_id)


def _issues(tmp_path, text, operators=None):
    path = tmp_path / "rb.yaml"
    path.write_text(text, encoding="utf-8")
    runbook, issues = check_runbook(path, text, operators=operators)
    return path, runbook, [str(i) for i in issues]


def test_shipped_runbooks_are_valid_against_the_example_operators():
    """failover, failback, enable-auto, disable-auto, declare-void and change-operators ship, validate, and name the
    service and tolerance."""
    ops = load_operators(runbook_dir() / "operators.example.yaml")
    names = set()
    for path in shipped_runbooks():
        runbook = load_runbook(path, operators=ops)
        names.add(runbook.name)
        assert runbook.service == "Retail trade order execution"
        assert runbook.impact_tolerance["max_outage_minutes"] == 30
    assert names == {"failover", "failback", "enable-auto", "disable-auto", "declare-void", "change-operators"}


def test_failover_follows_the_seed_procedure_with_four_eyes_on_the_dangerous_steps():
    """failover checks health, notifies, quiesces, settles in-flight orders, toggles under 2 approvals, resumes."""
    runbook = load_runbook("failover")
    ids = [s["id"] for s in runbook.steps]
    order = ["primary-unhealthy", "secondary-healthy", "notify-start", "quiesce", "resolve-in-flight",
             "declare-void", "toggle-to-secondary", "resume", "canary"]
    assert [i for i in ids if i in order] == order
    assert _step(runbook, "toggle-to-secondary")["approval"]["count"] == 2
    assert _step(runbook, "declare-void")["approval"]["count"] >= 1
    assert _step(runbook, "quiesce")["verify"]["probe"] == "workers_drained"
    failback = load_runbook("failback")
    assert _step(failback, "primary-sustained-healthy")["check"]["probe"] == "broker_healthy_for"
    assert _step(failback, "toggle-to-primary")["approval"]["count"] == 2


def test_schema_ships_and_is_a_valid_json_schema():
    """schema.json is a valid JSON Schema that editors can use, and it accepts a good runbook."""
    jsonschema.Draft202012Validator.check_schema(schema())
    assert json.loads((runbook_dir() / "schema.json").read_text())["title"] == "tradeops runbook"


def test_a_good_runbook_has_no_issues(tmp_path, operators):
    """A well-formed runbook validates and keeps its text and SHA-256."""
    _, runbook, issues = _issues(tmp_path, GOOD, operators)
    assert issues == []
    assert runbook is not None and len(runbook.sha256) == 64 and runbook.text == GOOD


@pytest.mark.parametrize(("change", "expected"), [
    (("name: set_active_broker", "name: set_broker"),
     ":15: step 2 (toggle) action.name: unknown action 'set_broker' (known actions: "),
    (("probe: processing", "probe: procesing"), ":11: step 1 (paused) check.probe: unknown probe 'procesing'"),
    (("probe: processing", "probe: set_processing"), ":11: step 1 (paused) check.probe: 'set_processing' is an "
                                                     "action, not a probe"),
    (("title: A good runbook\n", ""), ":1: runbook: missing field 'title'"),
    (("    title: Switch\n", ""), ":12: step 2 (toggle): missing field 'title'"),
    (("id: toggle", "id: paused"), ":12: duplicate step id 'paused' (first used at line 9)"),
    (("count: 2", "count: 3"), ":14: step 2 (toggle) approval: needs 3 approvers with role ops-manager or risk, "
                               "but the roster"),
    ((', timeout: "${seconds}"', ""), ":16: step 2 (toggle) verify: verification without timeout"),
    (("provider: secondary}", "provider: tertiary}"), ":15: step 2 (toggle) action.args: argument 'provider' of "
                                                      "set_active_broker must be one of primary, secondary"),
    (("provider: secondary}", "provider: secondary, speed: 3}"), ":15: step 2 (toggle) action.args: "
                                                                 "set_active_broker takes no argument 'speed'"),
    (("${seconds}", "${second}"), ":16: step 2 (toggle) verify.timeout: unknown parameter 'second'"),
    (("    title: Switch\n", "    title: Switch\n    colour: blue\n"), ":14: step 2 (toggle): unknown field 'colour'"),
    (("check: {probe: processing, expect: paused}", "manual: do it\n    check: {probe: processing, expect: paused}"),
     ":9: step 1 (paused): a step needs exactly one of check, action or manual (has check, manual)"),
    (("expect: paused}", "expect: {lt: soon}}"), ":11: step 1 (paused) check.expect: lt needs a number"),
    (("    verify:", "    rollback: restor\n    verify:"), ":16: step 2 (toggle) rollback: must be 'restore', 'none'"),
    (("version: 1\n", "version: 1\nversion: 2\n"), ":4: duplicate key 'version'"),
])
def test_each_problem_is_reported_with_file_line_and_plain_reason(tmp_path, operators, change, expected):
    """validate names the file, the line and the reason for each kind of mistake."""
    path, runbook, issues = _issues(tmp_path, GOOD.replace(*change), operators)
    assert runbook is None
    assert any(i.startswith(str(path)) and expected in i for i in issues), issues


def test_every_issue_is_reported_not_just_the_first(tmp_path, operators):
    """All problems of a file come back at once, ordered by line."""
    text = GOOD.replace("name: set_active_broker", "name: nope").replace("probe: processing", "probe: nah")
    _, _, issues = _issues(tmp_path, text, operators)
    assert len(issues) == 2
    assert [int(i.split(":")[1]) for i in issues] == [11, 15]


def test_yaml_syntax_error_names_its_line(tmp_path):
    """Broken YAML is one issue at the line the parser stopped at."""
    _, _, issues = _issues(tmp_path, GOOD.replace("  - id: toggle", "  - id: toggle: x"))
    assert len(issues) == 1 and ":12: not valid YAML" in issues[0]


def test_validate_command_lists_every_issue_and_exits_2(processes, tmp_path, operators):
    """`runbook validate` prints file:line: reason per problem and exits 2; valid files print ok."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("count: 2", "count: 9").replace("id: toggle", "id: paused"), encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    result = subprocess.run(["tradeops", "runbook", "validate", str(good), str(bad),
                             "--operators", str(operators.source)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{good}: ok" in result.stdout
    assert f"{bad}:12: duplicate step id 'paused'" in result.stdout
    assert f"{bad}:14: step 2 (paused) approval: needs 9 approvers" in result.stdout
    assert "Traceback" not in result.stderr


def test_parameters_are_typed_and_checked():
    """--param values take the declared type; unknown names, bad values and bad syntax are refused."""
    runbook = load_runbook("failover")
    values = resolve_params(runbook, {"verify_canary": "no", "drain_timeout": "12.5"}, {"execution_id": "e-1"})
    assert values["verify_canary"] is False and values["drain_timeout"] == 12.5 and values["execution_id"] == "e-1"
    with pytest.raises(BadInput, match="must be a number"):
        resolve_params(runbook, {"drain_timeout": "soon"})
    with pytest.raises(BadInput, match="has no parameter 'speed'"):
        resolve_params(runbook, {"speed": "1"})
    with pytest.raises(BadInput, match="NAME=VALUE"):
        parse_param_overrides(["verify_canary"])
    assert parse_param_overrides(["a=b=c"]) == {"a": "b=c"}


def test_render_keeps_whole_references_typed():
    """A whole-string ${name} keeps the parameter's type; inside text it is interpolated."""
    params = {"n": 5, "who": "bob"}
    assert render({"t": "${n}", "m": ["hi ${who}, wait ${n}s"]}, params) == {"t": 5, "m": ["hi bob, wait 5s"]}


def test_unknown_runbook_and_bad_operators_file_are_bad_input(tmp_path):
    """An unknown runbook name is NotFound; a malformed operators file is a ConfigError naming its line."""
    with pytest.raises(NotFound, match="no runbook named 'nope'"):
        load_runbook("nope")
    path = tmp_path / "operators.yaml"
    path.write_text("operators:\n  alice: [duty-engineer]\n  bob: ops-manager\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"operators.yaml:3: operator 'bob' needs a non-empty list of roles"):
        load_operators(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_operators(tmp_path / "missing.yaml")


def test_runbook_dir_holds_the_example_operators_file():
    """The example operators file ships next to the runbooks and loads."""
    ops = load_operators(Path(runbook_dir()) / "operators.example.yaml")
    assert "risk" in ops.roles_of("carol")


def test_run_time_check_leaves_the_executor_out_of_the_approvers(tmp_path, operators):
    """With bob executing, a step needing ops-manager and risk approvers has only carol left: refused."""
    path = tmp_path / "rb.yaml"
    path.write_text(GOOD, encoding="utf-8")
    _, issues = check_runbook(path, GOOD, operators=operators, executor="bob")
    assert [str(i) for i in issues] == [f"{path}:14: step 2 (toggle) approval: needs 2 approvers with role "
                                        f"ops-manager or risk, but the roster ({operators.source}) gives only "
                                        "1 besides the executor (bob) (carol)"]
    assert check_runbook(path, GOOD, operators=operators, executor="alice")[1] == []
