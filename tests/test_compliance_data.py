"""The reports' data files (no stack): they are checked (a missing or unknown field is one line naming it, exit 2,
nothing written), a third party is never accountable, and the testing plan gives its coverage and the drill
schedule."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.stack import REPO, run_cli

FIXTURE = REPO / "tests" / "data" / "drill-primary-outage"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_STATE_DIR": str(tmp_path / "state"), "TRADEOPS_RUNS_DIR": str(tmp_path / "runs"),
                "TRADEOPS_OPERATOR": "compliance-dana"})
    return env


def test_the_shipped_data_files_are_valid_and_map_the_template():
    """service, mapping, testing plan, communications and third parties load and pass every rule, the mapping's
    technology against the deployed template; the mapping has all five categories."""
    from tradeops.reports.data import load_catalogue, template_resources
    from tradeops.runtime.stack.deploy import load_template

    _text, template = load_template(REPO / "deploy" / "template.yaml")
    data = load_catalogue(resources=template_resources(template))
    assert all(data["mapping"][part] for part in ("people", "processes", "technology", "facilities", "information"))
    assert {p["provider"] for p in data["third_parties"]} >= {"primary", "secondary"}
    assert data["signoff"]["approver_roles"] == ["smf24", "board-delegate"]


def _copy_data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("service.yaml", "mapping.yaml", "testing-plan.yaml", "communications.yaml", "third-parties.yaml"):
        shutil.copy(REPO / "reports" / name, folder / name)
    return folder


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize(("name", "change", "expected"), [
    ("testing-plan.yaml", lambda d: d["scenarios"][2].pop("frequency"), "scenarios[2]: missing field 'frequency'"),
    ("testing-plan.yaml", lambda d: d["scenarios"][2].update(frequncy="monthly"),
     "scenarios[2]: unknown field 'frequncy'"),
    ("mapping.yaml", lambda d: d["facilities"][0].pop("does"), "facilities[0]: missing field 'does'"),
    ("mapping.yaml", lambda d: d.pop("information"), "the document: missing field 'information'"),
    ("communications.yaml", lambda d: d["messages"][1].update(owner="nobody"),
     "messages[1].owner: 'nobody' is not a person of mapping.yaml"),
    ("third-parties.yaml", lambda d: d["parties"][0]["contract"].update(sla="99.9%"),
     "parties[0].contract: unknown field 'sla'"),
], ids=["plan-missing", "plan-unknown", "mapping-missing-field", "mapping-missing-category", "comms-owner",
        "contract-unknown"])
def test_a_data_file_with_a_missing_or_unknown_field_is_refused_with_one_line_naming_it(processes, tmp_path, name,
                                                                                         change, expected):
    """`report check-data DIR` exits 2 with one line naming the file, its line and the field."""
    data = _copy_data(tmp_path)
    _edit(data / name, change)
    done = run_cli("report", "check-data", str(data), env=_env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{data / name}:" in done.stderr and expected in done.stderr, done.stderr


def test_a_bad_data_file_writes_nothing(processes, tmp_path):
    """With a testing plan missing a field, `report build --data`, `report self-assessment --data` and `report
    testing-plan --write-schedule` exit 2 with one line and write nothing: no report, no version, no schedule."""
    data = _copy_data(tmp_path)
    _edit(data / "testing-plan.yaml", lambda d: d["scenarios"][0].pop("rationale"))
    run = tmp_path / "runs" / "20261126T155151Z-drill-primary-outage"
    shutil.copytree(FIXTURE, run)
    env = _env(tmp_path)
    for args in (("report", "build", str(run), "--data", str(data)),
                 ("report", "self-assessment", "--since", "2026-01-01", "--data", str(data)),
                 ("report", "testing-plan", "--data", str(data), "--write-schedule", str(tmp_path / "drills.yaml"))):
        done = run_cli(*args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and "scenarios[0]: missing field 'rationale'" in done.stderr
    assert not (run / "evidence.json").exists() and not (run / "report.html").exists()
    assert not (tmp_path / "runs" / "self-assessments").exists() and not (tmp_path / "drills.yaml").exists()


def test_a_third_party_is_never_accountable_and_every_raci_row_has_one_accountable_party(tmp_path):
    """A RACI that makes a broker accountable is refused (the firm cannot delegate accountability), and so is a row
    with no accountable party; the shipped RACIs hold neither."""
    from tradeops.reports.data import load_catalogue
    from tradeops.runtime.platform.errors import BadInput

    data = _copy_data(tmp_path)
    _edit(data / "service.yaml", lambda d: d["phases"]["queuing"]["raci"]["rows"].__setitem__(
        5, ["Responding to a broker outage", "I", "R", "R", "C", "A"]))
    with pytest.raises(BadInput, match=r"phases\.queuing\.raci\.rows\[5\]: 'Responding to a broker outage' makes "
                                       r"Broker accountable: a third party"):
        load_catalogue(data)
    _edit(data / "service.yaml", lambda d: d["phases"]["queuing"]["raci"]["rows"].__setitem__(
        5, ["Responding to a broker outage", "I", "R", "R", "C", "R"]))
    with pytest.raises(BadInput, match="needs exactly one accountable party"):
        load_catalogue(data)
    for phase in load_catalogue()["phases"].values():
        raci = phase["raci"]
        for row in raci["rows"]:
            cells = dict(zip(raci["parties"], row[1:], strict=True))
            assert [p for p, c in cells.items() if c == "A"] and not any(cells[p] == "A" for p in raci["external"])


def test_coverage_counts_each_planned_scenario_against_the_runs_of_the_period():
    """Over 92 days a monthly scenario is due three times and a quarterly one once; two runs of the monthly one are
    short by one, the quarterly one run once is covered, a paper test is not seen by tradeops, and a drill the plan
    does not hold is named."""
    from tradeops.reports.data import load_catalogue
    from tradeops.reports.plan import coverage

    plan = load_catalogue()["testing_plan"]
    tested = [{"kind": "drill", "scenario": "primary-outage", "at": "2026-10-05T02:00:00.000Z", "verdict": "v"},
              {"kind": "drill", "scenario": "primary-outage", "at": "2026-11-05T02:00:00.000Z", "verdict": "v"},
              {"kind": "drill", "scenario": "both-down", "at": "2026-11-07T02:00:00.000Z", "verdict": "v"},
              {"kind": "drill", "scenario": "my-own", "at": "2026-11-08T02:00:00.000Z", "verdict": "v"},
              {"kind": "incident", "scenario": "incident", "at": "2026-11-09T02:00:00.000Z", "verdict": "v"}]
    cov = coverage(plan, tested, since="2026-10-01T00:00:00.000Z", until="2027-01-01T00:00:00.000Z")
    rows = {r["scenario"]: r for r in cov["rows"]}
    assert (rows["primary-outage"]["expected"], rows["primary-outage"]["executed"],
            rows["primary-outage"]["status"]) == (3, 2, "short by 1")
    assert (rows["both-down"]["expected"], rows["both-down"]["status"]) == (1, "covered")
    assert rows["region-loss"]["status"].startswith("not seen by tradeops") and rows["region-loss"]["expect_breach"]
    assert rows["worker-crash"]["status"] == "short by 3"
    assert cov["unplanned"] == ["my-own"] and cov["executed_scenarios"] == 2 and cov["automated"] == 9


def test_the_testing_plan_makes_the_drill_schedule(processes, tmp_path):
    """`report testing-plan --write-schedule FILE` adds an entry per scheduled scenario, which `drill schedule list`
    reads; writing it again is refused (exit 2) and leaves the file as it was."""
    env = _env(tmp_path)
    schedule = tmp_path / "drills.yaml"
    done = run_cli("report", "testing-plan", "--write-schedule", str(schedule), "--json", env=env)
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)["schedule"]
    assert {e["name"]: (e["scenario"], e["cron"]) for e in entries} == {
        "plan-primary-outage": ("primary-outage", "0 2 * * 6"), "plan-primary-blackhole": ("primary-blackhole",
                                                                                       "30 2 * * 6"),
        "plan-worker-crash": ("worker-crash", "0 3 * * 6")}
    listed = run_cli("drill", "schedule", "list", "--schedule", str(schedule), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {e["name"] for e in json.loads(listed.stdout)["drills"]} == {e["name"] for e in entries}
    before = schedule.read_bytes()
    again = run_cli("report", "testing-plan", "--write-schedule", str(schedule), env=env)
    assert again.returncode == 2 and "an entry named 'plan-primary-outage' exists" in again.stderr
    assert schedule.read_bytes() == before
