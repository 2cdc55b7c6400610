"""Experiments an SRE writes from the docs alone: discovery with real types, docs/drills.md held to the code and
the templates it describes, and `tradeops env` exporting what the README says."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.drilldocs import DRILLS, worked_example_text
from tests.support.stack import REPO
from tradeops.drillresult.figures import FIGURES
from tradeops.experiments import activities
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.platform.statefile import stack_exports, write_state
from tradeops.runtime.stack.deploy import load_template

ACTIVITIES = sorted(set(activities.__all__) - {"discover"})
# Where a person reads how to use the extension: every place that could suggest a `chaos discover`.
READ = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "experiments").glob("*.py")),
        *sorted((REPO / "experiments").glob("*.yaml")), REPO / "__init__.py"]


def _table(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after ``heading`` in docs/drills.md, cells stripped."""
    text = DRILLS.read_text(encoding="utf-8")
    after = text[text.index(heading):]
    rows = []
    for line in after.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # the header and its rule


def _code(cell: str) -> str:
    return cell.strip("`")


# ---- discovery --------------------------------------------------------------------------------------

def _check_discovery(discovery: dict) -> None:
    found = {a["name"]: a for a in discovery["activities"]}
    assert sorted(found) == ACTIVITIES
    for name, activity in found.items():
        assert activity["type"] == ("action" if name in activities.ACTIONS else "probe"), name
        assert activity["return_type"] != "object", name
        assert all(a["type"] != "object" for a in activity["arguments"]), (name, activity["arguments"])
        assert activity["doc"], name
    assert found["wait_for_breakers_closed"]["type"] == "probe"  # used in hypotheses: what it is
    assert found["inject_fault"]["arguments"][:4] == [{"name": "provider", "type": "string"},
                                                      {"name": "mode", "type": "string"},
                                                      {"name": "rate", "type": "number", "default": None},
                                                      {"name": "ms", "type": "number", "default": None}]
    assert (found["nothing_lost"]["return_type"], found["stop_load"]["return_type"]) == ("boolean", "mapping")


def test_the_package_exports_discover_and_every_activity_is_typed():
    """`tradeops.discover` is a function of the package (what Chaos Toolkit looks up); the activities it reports
    are every one of the module, actions as actions, each argument and return value with its real type rather
    than `object` (the whole command is run by the next test: chaoslib's platform facts run `uname`)."""
    import inspect

    import tradeops

    assert "discover" in tradeops.__all__ and inspect.isfunction(tradeops.discover)
    _check_discovery({"activities": activities.typed_activities()})


def test_chaos_discover_no_install_lists_every_activity_with_its_types(processes, tmp_path):
    """`chaos discover tradeops --no-install` (nothing fetched from a package index) writes discovery.json with
    every activity, typed; it no longer logs that the package exports no `discover`."""
    done = subprocess.run(["chaos", "--no-version-check", "discover", "tradeops", "--no-install", "--no-system-info"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TRADEOPS_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 0, done.stderr
    assert "does not export" not in done.stdout + done.stderr
    _check_discovery(json.loads((tmp_path / "discovery.json").read_text()))


def test_nothing_a_person_reads_suggests_a_discover_that_reaches_the_package_index():
    """Every `chaos discover` in the README, the docs, the experiments and the package says --no-install."""
    found = [(path.name, line.strip()) for path in READ for line in path.read_text(encoding="utf-8").splitlines()
             if "chaos discover" in line]
    assert found  # the README and docs/drills.md do name it
    assert [f for f in found if "--no-install" not in f[1]] == []


# ---- docs/drills.md held to what it describes ---------------------------------------------------------

def test_every_activity_is_in_the_drills_doc_with_its_kind_and_return_type():
    """The activities table lists each activity once, its kind as discovery gives it, and a return shape starting
    with discovery's return type."""
    discovered = {a["name"]: a for a in activities.typed_activities()}
    rows = {_code(r[0]): r for r in _table("## The activities")}
    assert sorted(rows) == ACTIVITIES
    for name, (_, kind, returns) in rows.items():
        assert kind == discovered[name]["type"], name
        assert returns.split(":")[0] == discovered[name]["return_type"], name


def _default(cell: str) -> float | None:
    if cell.startswith("the read timeout"):
        return None
    return float(re.match(r"[0-9.]+", cell).group())


def test_the_sizing_table_gives_each_settings_default_value():
    """Each setting of the sizing table is a setting whose default is the value the table states (in its unit)."""
    rows = _table("## Sizing a fault from the settings")
    assert len(rows) >= 15
    for setting, default, _ in rows:
        field = _code(setting).removeprefix("TRADEOPS_").lower()
        assert field in Settings.model_fields, setting
        assert _default(default) == Settings.model_fields[field].default, setting
    names = {_code(r[0]) for r in rows}
    for wanted in ("BROKER_READ_TIMEOUT", "BREAKER_WINDOW", "BREAKER_SLOW_MS", "BREAKER_OPEN_SECONDS",
                   "BREAKER_HALF_OPEN_PROBES", "SUSPECT_FLOOR_MS"):
        assert f"TRADEOPS_{wanted}" in names


def test_the_fresh_stacks_flags_are_the_templates():
    """The flags table gives the value the base template creates each control flag with."""
    resources = load_template(REPO / "deploy" / "template.yaml")[1]["Resources"]
    created = {str(r["Properties"]["Name"]["Fn::Sub"]).removeprefix("${ParamPrefix}/"): r["Properties"]["Value"]
               for r in resources.values() if r["Type"] == "AWS::SSM::Parameter"
               and "ParamPrefix}/" in str(r["Properties"]["Name"]) and "roster" not in str(r["Properties"]["Name"])}
    table = {_code(flag): _code(value) for flag, value, _ in _table("## A fresh stack's flags")}
    assert table == created


def test_every_figure_is_explained_and_nothing_else_is_called_one():
    """The figures table names exactly the figures a drill measures."""
    assert sorted(_code(r[0]) for r in _table("## The figures")) == sorted(FIGURES)


def test_the_worked_example_is_a_valid_experiment_that_starts_its_own_load_and_checks_nothing_lost():
    """The worked example's file, as docs/drills.md shows it, passes Chaos Toolkit's own validation, names only
    tradeops activities that exist, starts and stops its own load, and checks nothing_lost in its hypothesis."""
    from chaoslib.experiment import ensure_experiment_is_valid

    from tradeops.experiments.drillload import starts_own_load

    experiment = yaml.safe_load(worked_example_text())
    ensure_experiment_is_valid(experiment)
    funcs = [a["provider"]["func"] for a in [*experiment["steady-state-hypothesis"]["probes"], *experiment["method"],
                                             *experiment["rollbacks"]]]
    assert set(funcs) <= set(ACTIVITIES)
    assert starts_own_load(experiment) and "stop_load" in funcs
    assert "nothing_lost" in [p["provider"]["func"] for p in experiment["steady-state-hypothesis"]["probes"]]


# ---- tradeops env -----------------------------------------------------------------------------------

def _readme_env_names() -> set[str]:
    (row,) = [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
              if line.startswith("| `tradeops env")]
    return set(re.findall(r"`((?:TRADEOPS|AWS)_[A-Z_]+)`", row))


def test_tradeops_env_exports_what_the_readme_and_the_drills_doc_say_with_the_stacks_own_prefixes(tmp_path):
    """For a running local stack started under other prefixes, the exports are exactly the names the README's
    `tradeops env` row and docs/drills.md list, and the prefixes are the stack's, not this shell's defaults."""
    settings = load_settings(state_dir=tmp_path)
    token = tmp_path / "intake-token"
    token.write_text("t")
    write_state(settings.state_file, {
        "status": "ready", "supervisor_pid": os.getpid(), "local": True, "region": "eu-west-2",
        "name_prefix": "drillx", "param_prefix": "/drillx", "aws_endpoint": "http://127.0.0.1:9",
        "intake": "http://127.0.0.1:8", "intake_token_file": str(token), "prices": "http://127.0.0.1:7",
        "brokers": {}, "components": {}})
    exports = stack_exports(settings)
    assert set(exports) == _readme_env_names()
    documented = {name for cell, _ in _table("## Two ways to run one experiment")
                  for name in re.findall(r"`([A-Z_]+)`", cell)}
    assert documented == set(exports)
    assert (exports["TRADEOPS_NAME_PREFIX"], exports["TRADEOPS_PARAM_PREFIX"]) == ("drillx", "/drillx")
    assert exports["TRADEOPS_STATE_DIR"] == str(Path(tmp_path).resolve())


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_shipped_experiment_reads_the_prefix_tradeops_env_exports(path):
    """Each shipped experiment that writes flags takes their prefix from TRADEOPS_PARAM_PREFIX, which `tradeops env`
    now exports, so a stack under another prefix is the one whose flags it changes."""
    experiment = yaml.safe_load(path.read_text(encoding="utf-8"))
    prefix = (experiment.get("configuration") or {}).get("param_prefix")
    if prefix is not None:
        assert prefix["type"] == "env" and prefix["key"] == "TRADEOPS_PARAM_PREFIX"
