"""Drills in a pipeline and at a terminal: the JUnit file a CI reads, the example pipelines, the live panel."""

from __future__ import annotations

import shlex
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from junitparser import Failure, JUnitXml
from rich.console import Console

from tests.support.commandline import parse
from tests.support.stack import REPO
from tradeops.commands.drill import junit_target
from tradeops.commands.drillpanel import DrillPanel, PanelState
from tradeops.drillresult import figures as drillfigures
from tradeops.drillresult.junit import junit_xml
from tradeops.experiments.drill import Progress
from tradeops.runtime.platform.errors import BadInput

PIPELINE = REPO / "deploy" / "pipeline"


def _result(measured: dict, tolerance: dict, findings: list[str] = ()) -> dict:
    figures = {name: None for name in drillfigures.FIGURES} | measured
    judged = drillfigures.judge(figures, drillfigures.parse_tolerance(tolerance), list(findings))
    return {"scenario": "primary-outage", "title": "The primary goes down", "run_dir": "/runs/x", "figures": figures,
            "passed": judged.passed, "verdict": "passed" if judged.passed else "failed", "checks": judged.checks,
            "failures": judged.failures, "started_at": "2026-12-01T02:00:00.000Z",
            "ended_at": "2026-12-01T02:01:05.500Z",
            "journal": {"status": "completed", "steady_state_before": True, "steady_state_after": True}}


def _cases(path: Path) -> tuple[Any, dict[str, Any]]:
    (suite,) = list(JUnitXml.fromfile(str(path)))
    return suite, {case.name: case for case in suite}


# ---- --junit ----------------------------------------------------------------------------------------

def test_junit_has_one_case_per_tolerance_figure_with_the_measured_value_in_the_message(tmp_path):
    """junitparser reads the file: one test case per figure of the tolerance plus `experiment`; a figure out of
    tolerance fails with the measured value and the bound as its message, one within it passes and says both."""
    result = _result({"time_to_detect": 1.3241, "orders_lost": 0, "max_exposure_gbp": "12.50"},
                     {"time_to_detect": "<= 1", "orders_lost": 0, "max_exposure_gbp": "<= 100"})
    path = tmp_path / "drill.xml"
    path.write_bytes(junit_xml(result))
    suite, cases = _cases(path)
    assert suite.name == "tradeops drill primary-outage" and suite.tests == 4 and suite.failures == 1
    assert suite.time == pytest.approx(65.5)
    assert set(cases) == {"time_to_detect", "orders_lost", "max_exposure_gbp", "experiment"}
    assert all(case.classname == "drill.primary-outage" for case in cases.values())
    (failure,) = cases["time_to_detect"].result
    assert isinstance(failure, Failure) and failure.message == "measured 1.32 s, tolerance <= 1"
    assert cases["orders_lost"].is_passed and "measured 0, tolerance == 0" in cases["orders_lost"].system_out
    assert "measured £12.50, tolerance <= 100" in cases["max_exposure_gbp"].system_out
    assert cases["experiment"].is_passed
    assert {p.name: p.value for p in suite.properties()} == {"verdict": "failed", "run_dir": "/runs/x",
                                                             "title": "The primary goes down"}


def test_a_failed_journal_fails_the_experiment_case_so_a_ci_never_shows_a_failed_drill_all_green(tmp_path):
    """Every figure within tolerance but the method interrupted: the `experiment` case fails with the journal's
    findings; a figure that could not be measured fails saying so."""
    result = _result({"orders_lost": 0}, {"orders_lost": 0, "time_to_detect": "<= 1"},
                     ["steady state after the method: not met (breakers-closed)", "the experiment ended interrupted"])
    path = tmp_path / "drill.xml"
    path.write_bytes(junit_xml(result))
    suite, cases = _cases(path)
    assert suite.failures == 2 and cases["orders_lost"].is_passed
    assert cases["time_to_detect"].result[0].message == "not measured, tolerance <= 1"
    (failure,) = cases["experiment"].result
    assert failure.message == ("steady state after the method: not met (breakers-closed); the experiment ended "
                               "interrupted")


@pytest.mark.parametrize("make,needle", [
    (lambda tmp: tmp / "missing" / "drill.xml", "does not exist"),
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "drill.xml", "does not exist"),
])
def test_an_unwritable_junit_path_is_bad_input(tmp_path, make, needle):
    """--junit into a folder that does not exist, onto a folder, or under a file: BadInput naming why."""
    with pytest.raises(BadInput, match=needle):
        junit_target(make(tmp_path))


def test_a_writable_junit_path_passes_and_the_check_leaves_nothing_behind(tmp_path):
    """The check makes and removes a file in the folder (file modes alone do not say whether it can be written):
    a writable path passes, and the folder is as it was."""
    (tmp_path / "old.xml").write_text("x")
    assert junit_target(tmp_path / "drill.xml") == tmp_path / "drill.xml"
    assert junit_target(tmp_path / "old.xml") == tmp_path / "old.xml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.xml"]


# ---- the example pipelines --------------------------------------------------------------------------

def _drill_line(lines: list[str]) -> list[str]:
    (line,) = [c for c in lines if " drill run " in c]
    return shlex.split(line.split(">")[0])


def test_the_github_workflow_deploys_then_drills_staging_and_fails_on_a_failed_verdict():
    """The workflow's steps deploy (with every setting a release needs in the job's environment), then run a short
    drill with --junit (a command line the CLI takes), with nothing that swallows its exit code; the JUnit
    reporter reads that same file even after a failure, and fails too."""
    workflow = yaml.safe_load((PIPELINE / "github-actions.yml").read_text())
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    runs = [s.get("run", "") for s in steps]
    deploy = next(i for i, r in enumerate(runs) if r.startswith("tradeops deploy --aws"))
    drill = next(i for i, r in enumerate(runs) if " drill run " in r)
    assert deploy < drill
    assert "--drill-image" in runs[deploy] and "--yes" in runs[deploy]
    argv = _drill_line([runs[drill]])
    assert parse(argv).command.name == "run" and argv[1] == "--aws"
    junit = argv[argv.index("--junit") + 1]
    step = steps[drill]
    assert not step.get("continue-on-error") and "|| true" not in step["run"] and "if" not in step
    report = next(s for s in steps if "junit-report" in s.get("uses", ""))
    assert report["with"]["report_paths"] == junit and report["if"] == "${{ !cancelled() }}"
    assert report["with"]["fail_on_failure"] is True
    # What `tradeops deploy` refuses to release without: the network, the certificate and the brokers.
    assert {f"TRADEOPS_{name}" for name in ("DEPLOY_VPC", "DEPLOY_SUBNETS", "DEPLOY_SECURITY_GROUPS",
                                            "DEPLOY_LB_SECURITY_GROUPS", "DEPLOY_CERTIFICATE", "PRIMARY_URL",
                                            "PRIMARY_WIRE", "SECONDARY_URL", "SECONDARY_WIRE")} <= set(job["env"])
    assert workflow["permissions"]["id-token"] == "write"  # OIDC, no stored AWS keys
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_the_codebuild_buildspec_deploys_then_drills_in_one_aborting_phase_and_reports_junit():
    """The buildspec's build phase aborts on the first failed command, deploys before it drills (a command line
    the CLI takes), and its JUnit report group reads the drill's --junit file."""
    spec = yaml.safe_load((PIPELINE / "buildspec.yml").read_text())
    assert spec["version"] == 0.2
    build = spec["phases"]["build"]
    assert build["on-failure"] == "ABORT"
    commands = build["commands"]
    deploy = next(i for i, c in enumerate(commands) if c.startswith("tradeops deploy --aws"))
    drill = next(i for i, c in enumerate(commands) if " drill run " in c)
    assert deploy < drill and "|| true" not in commands[drill]
    argv = _drill_line([commands[drill]])
    assert parse(argv).command.name == "run"
    (group,) = spec["reports"].values()
    assert group["file-format"] == "JUNITXML" and group["files"] == [argv[argv.index("--junit") + 1]]


def test_the_pipelines_deploy_commands_are_ones_the_cli_takes():
    """Both pipelines' deploy lines parse with `tradeops deploy`'s own options."""
    workflow = yaml.safe_load((PIPELINE / "github-actions.yml").read_text())
    spec = yaml.safe_load((PIPELINE / "buildspec.yml").read_text())
    lines = [s["run"] for job in workflow["jobs"].values() for s in job["steps"]
             if "tradeops deploy" in s.get("run", "")]
    lines += [c for c in spec["phases"]["build"]["commands"] if c.startswith("tradeops deploy")]
    assert len(lines) == 2
    for line in lines:
        assert parse(shlex.split(line)).command.name == "deploy"


# ---- the live panel ---------------------------------------------------------------------------------

def _row(filled: dict[str, dict[str, int]], *, breakers=None, suspect=(), **extra) -> dict:
    workers = {w: {"filled_at": counts, "breakers": (breakers or {}).get(w, {"primary": "closed",
                                                                           "secondary": "closed"}),
                   "suspect": list(suspect) if w == "worker-1" else []} for w, counts in filled.items()}
    return {"at": "x", "workers": workers, "flags": {"mode": "auto", "active": "primary", "processing": "running"},
            "in_doubt": 2, "pending_orders": 7, "exposure_gbp": "12.34", **extra}


def test_the_panel_shows_fills_a_second_per_broker_the_worst_breaker_and_time_left():
    """From two timeline rows a second apart: fills a second at each broker summed over workers (a worker seen
    once adds nothing yet); each broker's worst breaker across workers, `suspect` over `closed`; the phase with
    about how long is left of it."""
    state = PanelState("primary-outage")
    state.on_progress(Progress("chaos", "chaos run primary-outage.yaml", seconds=20), now=100.0)
    state.on_sample(_row({"worker-1": {"primary": 10, "secondary": 0}, "worker-2": {"primary": 5, "secondary": 1}}),
                    now=101.0)
    state.on_sample(_row({"worker-1": {"primary": 14, "secondary": 2}, "worker-2": {"primary": 7, "secondary": 1},
                          "worker-3": {"primary": 50, "secondary": 50}},
                         breakers={"worker-2": {"primary": "open", "secondary": "closed"}}, suspect=["secondary"]),
                    now=103.0)
    rows = dict(state.rows(now=105.0))
    assert rows["orders/s filled"] == "primary 3.0, secondary 1.0"
    assert rows["breakers"] == "primary open, secondary suspect"
    assert rows["time left"] == "about 15 s" and rows["phase"] == "chaos: chaos run primary-outage.yaml"
    assert (rows["in doubt"], rows["pending"], rows["exposure"]) == ("2", "7", "£12.34")
    assert rows["routing"] == "auto, active primary, processing running"


def test_a_restarted_worker_never_makes_a_negative_rate_and_an_unreadable_row_changes_nothing():
    """A worker whose counters start again (it restarted) adds 0, not a negative rate; a row that could not be read
    (an `error`) leaves the panel as it was."""
    state = PanelState("worker-crash")
    state.on_sample(_row({"worker-1": {"primary": 40, "secondary": 0}}), now=1.0)
    state.on_sample(_row({"worker-1": {"primary": 2, "secondary": 0}}), now=2.0)
    assert dict(state.rows(now=2.0))["orders/s filled"] == "primary 0.0, secondary 0.0"
    state.on_sample({"at": "x", "error": "the heartbeats table is unreadable"}, now=3.0)
    assert dict(state.rows(now=3.0))["pending"] == "7"


def test_the_panel_draws_every_line_inside_its_frame():
    """Rendered on a console, the panel is titled with the drill and holds each line's label and value."""
    console = Console(file=StringIO(), width=100, force_terminal=False, color_system=None)
    panel = DrillPanel(console, "primary-outage", clock=lambda: 10.0)
    panel.progress(Progress("drain", "draining", seconds=30))
    console.print(panel)
    text = console.file.getvalue()
    assert "drill primary-outage" in text and "time left" in text and "about 30 s" in text
    assert "orders/s filled" in text and "primary -" in text
