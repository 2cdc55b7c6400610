"""Chaos drills on a real local stack: `tradeops drill run` for every scenario, the report of one, and the
commands' answers to bad input (plain `chaos run`, docs/drills.md's worked example and a stop condition that trips
are in tests/test_drill_examples.py, on a drill stack of their own).

Chaos Toolkit and Locust always run in their own processes (the CLI starts them; these tests start the
CLI). Durations and rates are short; full-length figures are in bench/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.drillrun import EXTRA, RUNBOOK_SCENARIOS, SHORT, passes_through_drill_run
from tests.support.drillrun import drill as _drill
from tests.support.orderflow import fresh_flow
from tests.support.stack import REPO, run_cli

RUNS: dict[str, Path] = {}
"""Run folders the parametrised drill test leaves, for the tests of their reports (no second drill)."""


@pytest.fixture
def flow(drill_stack):
    """A Flow on the drill stack, with routing flags and broker faults reset before and after the test."""
    with fresh_flow(drill_stack) as f:
        yield f


# The scenarios this module drills; those that run runbooks (RUNBOOK_SCENARIOS) are drilled by
# tests/test_drill_examples.py, on its own drill stack beside this one (docs/testing.md, "Two workers").
SCENARIOS = ["primary-outage", "primary-blackhole", "primary-latency", "primary-flapping", "both-down",
             "worker-crash", "price-shock"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_passes_through_drill_run_with_a_complete_run_folder(drill_stack, flow, drill_roster, tmp_path,
                                                                           scenario):
    """`tradeops drill run SCENARIO` (every scenario but the runbook ones, tests/test_drill_examples.py's) exits 0
    with the verdict passed; the run folder holds the journal, load summary,
    timeline (sampled at least once a second), events, audit excerpt and result.json (run_dir set). Piped, with
    --json and without --quiet, it prints nothing but the result: no panel, no progress line. The outage and the
    blackhole break the path through the fault proxies (`--backend proxy`), the rest the simulators (the default),
    as result.json records."""
    RUNS[scenario] = passes_through_drill_run(drill_stack, flow, tmp_path, scenario)


@pytest.fixture(scope="module")
def primary_outage_run(drill_stack, drill_roster, tmp_path_factory) -> Path:
    """The primary-outage run folder the parametrised test left (a drill of its own only when run alone)."""
    if "primary-outage" not in RUNS:
        out = tmp_path_factory.mktemp("report-drill") / "primary-outage"
        done = _drill(drill_stack["env"], out, "primary-outage", *SHORT, *EXTRA["primary-outage"])
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        RUNS["primary-outage"] = out
    return RUNS["primary-outage"]


def test_the_drill_writes_its_report_with_every_section_and_the_runs_figures(primary_outage_run):
    """The primary-outage drill wrote report.html, report.md and evidence.json: every section, and the figures of
    its result.json (detect, recover, lost, double fills, max exposure) in each; no secret of the stack in any."""
    from decimal import Decimal

    from tradeops.reports.model import SECTIONS

    out = primary_outage_run
    result = json.loads((out / "result.json").read_text())
    figures = result["figures"]
    evidence = json.loads((out / "evidence.json").read_text())
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    for section in SECTIONS:
        assert evidence.get(section) is not None and f'<section id="{section}">' in html, section
    rows = {r["figure"]: r for r in evidence["results"]}
    for name in ("time_to_detect", "time_to_99pct_secondary", "time_back_on_primary", "orders_lost",
                 "orders_filled_twice", "max_exposure_gbp"):
        assert rows[name]["measured"] == figures[name], name
    assert f"| time to detect | {figures['time_to_detect']:.3f} s |" in md
    failover = figures["time_to_99pct_secondary"]
    assert f"| time to fail over: 99% of new orders at the secondary | {failover:.3f} s |" in md
    assert f"| orders lost | {figures['orders_lost']} |" in md
    assert f"| orders filled twice (double fills) | {figures['orders_filled_twice']} |" in md
    assert f"| maximum exposure | £{Decimal(figures['max_exposure_gbp']):,.2f} |" in md
    assert f'<td class="measured">{figures["time_to_detect"]:.3f} s</td>' in html
    milestones = {r["milestone"]: r["at"] for r in evidence["timeline"] if r["milestone"]}
    assert milestones["fault injected"] == result["fault"]["started_at"]
    assert {"detected", "failed over", "fault healed", "back on the primary"} <= set(milestones)
    assert evidence["scenario"]["test_type"] == "simulation" and not evidence["people"]["human_four_eyes"]
    assert evidence["scenario"]["fault_backend"]["name"] == result["fault_backend"]["name"]
    assert f"(backend `{result['fault_backend']['name']}`" in md and "Fault injected through:" in html
    listed = {f["path"] for f in evidence["evidence"]}
    assert {"result.json", "journal.json", "orders.json", "load/summary.json"} <= listed
    state = Path(result["stack"]["state_dir"])
    planted = [v for p in state.rglob("*.json") for k, v in _strings(json.loads(p.read_text() or "null"))
               if any(w in k.lower() for w in ("token", "api_key", "secret")) and len(v) >= 8]
    for path in (out / "evidence.json", out / "report.html", out / "report.md"):
        text = path.read_text()
        assert not any(secret in text for secret in planted), path.name


def _strings(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


def test_the_drill_report_loads_in_headless_chromium_with_no_failed_requests(primary_outage_run, tmp_path):
    """Debian's Chromium loads report.html with no request but the page itself and none failed; the screenshot shows
    the throughput chart with the fault window shaded (its colour is on screen)."""
    import numpy
    from PIL import Image

    from tests.support.browser import load_page

    shot = tmp_path / "report.png"
    # The executive summary and the tolerance come first now: the timeline's chart is further down the page.
    page = load_page(primary_outage_run / "report.html", shot, user_data_dir=tmp_path / "chromium", height=6000)
    assert page.loaded
    assert page.requests == [(primary_outage_run / "report.html").resolve().as_uri()]
    assert not page.failed and not page.bad_status and not page.console_errors
    assert page.dom.count("<svg") == 3 and "fault window (primary)" in page.dom
    pixels = numpy.asarray(Image.open(shot).convert("RGB"), dtype=int)
    # The fault window is matplotlib's #d62728 at 12 % over white: (250, 229, 229) give or take rounding.
    shaded = int((numpy.abs(pixels - numpy.array([250, 229, 229])) <= 3).all(axis=2).sum())
    assert shaded > 2000, shaded
    print(f"screenshot: {shot}")


def test_bad_drill_input_exits_2_with_one_line_and_writes_nothing(processes, tmp_path):
    """An unknown scenario, figure, duration or fault backend, a backend the target cannot use (sim on AWS), or a
    --junit file that cannot be written: exit 2, one line, no run folder, even with no stack up (the other backend
    checks: tests/test_fault_backends.py)."""
    env = {"PATH": __import__("os").environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path / "state")}
    on_aws = {**env, "TRADEOPS_TARGET": "aws", "AWS_REGION": "eu-west-2"}
    nowhere = str(tmp_path / "nowhere" / "drill.xml")
    for args, needle, where in ((("no-such",), "unknown scenario 'no-such'", env),
                                (("primary-outage", "--tolerance", "latency<=1"), "unknown figure 'latency'", env),
                                (("primary-outage", "--duration", "soon"), "not a duration", env),
                                (("primary-outage", "--junit", nowhere), "--junit " + nowhere + ": folder", env),
                                (("primary-outage", "--backend", "chaos"), "unknown fault backend 'chaos'", env),
                                (("primary-outage", "--backend", "sim"), "only the local stack has", on_aws)):
        out = tmp_path / "run"
        done = run_cli("drill", "run", *args, "--out", str(out), env=where)
        assert done.returncode == 2, done.stdout + done.stderr
        assert needle in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert not out.exists()


def test_an_experiment_with_a_bad_activity_budget_exits_2_naming_it(processes, tmp_path):
    """An experiment file whose tradeops extension gives a negative activity_seconds: exit 2, one line, no run."""
    import yaml

    experiment = yaml.safe_load((REPO / "experiments" / "manual-failover.yaml").read_text())
    next(e for e in experiment["extensions"] if e["name"] == "tradeops")["activity_seconds"] = -5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(experiment))
    env = {"PATH": __import__("os").environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path / "state")}
    done = run_cli("drill", "run", str(path), "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "activity_seconds must be a number of seconds" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_drill_list_shows_every_scenario_without_a_stack(processes, tmp_path):
    """`drill list --json` names the nine shipped scenarios with titles and their last result (none yet)."""
    env = {"PATH": __import__("os").environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path),
           "TRADEOPS_RUNS_DIR": str(tmp_path / "runs")}
    rows = json.loads(run_cli("drill", "list", "--json", env=env).stdout)
    assert sorted(r["scenario"] for r in rows) == sorted([*SCENARIOS, *RUNBOOK_SCENARIOS])  # each drilled once
    assert all(r["title"] and r["last"] is None for r in rows)
