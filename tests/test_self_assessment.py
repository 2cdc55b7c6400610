"""The self-assessment (the written record of SYSC 15A.6.1R) built from two drill runs and one incident, no stack: each
part the rule asks for is checked in the record and in its HTML and Markdown."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.stack import REPO

FIXTURE = REPO / "tests" / "data" / "drill-primary-outage"
FIRST, SECOND = "20261126T155151Z-drill-primary-outage", "20261203T020000Z-drill-primary-outage"
INCIDENT = "failover-20261205-0915"


def _incident(root: Path, settings) -> Path:
    """A real failover's report, built from its records as `report incident` builds it (no AWS)."""
    from tradeops.reports.build import catalogue, digests, thresholds, write_report
    from tradeops.reports.model import incident_evidence

    folder = root / "incidents" / INCIDENT
    folder.mkdir(parents=True)
    history = {"execution": {"execution_id": INCIDENT, "runbook": "failover", "executor": "ops-alice",
                             "created_at": "2026-12-05T09:15:00.000Z", "finished_at": "2026-12-05T09:24:00.000Z",
                             "status": "completed"},
               "timeline": [{"kind": "execution.started", "at": "2026-12-05T09:15:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user"},
                            {"kind": "approval.approved", "at": "2026-12-05T09:17:00.000Z", "actor": "ops-bob",
                             "identity_source": "iam-user", "step_id": "toggle-to-secondary"},
                            {"kind": "step.finished", "at": "2026-12-05T09:18:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user", "step_id": "toggle-to-secondary",
                             "data": {"status": "succeeded"}},
                            {"kind": "execution.finished", "at": "2026-12-05T09:24:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user", "data": {"status": "completed"}}]}
    orders = [{"order_id": f"o{i}", "status": "FILLED", "provider": "secondary",
               "placed_at": f"2026-12-05T09:1{i}:00.000Z",
               "history": [{"at": f"2026-12-05T09:1{i}:00.000Z", "status": "ACCEPTED"},
                           {"at": f"2026-12-05T09:1{i + 3}:30.000Z", "status": "FILLED"}]} for i in range(4)]
    events = [{"at": "2026-12-05T09:12:00.000Z", "kind": "breaker_opened", "provider": "primary", "source": "w1"}]
    reimbursements = [{"order_id": "o1", "amount": "12.30", "status": "APPROVED"}]
    records = {"execution.json": history, "orders.json": orders, "events.json": events,
               "reimbursements.json": reimbursements}
    for name, data in records.items():
        (folder / name).write_text(json.dumps(data))
    evidence = incident_evidence(history=history, orders=orders, events=events, reimbursements=reimbursements,
                                 exposure=[{"total_exposure": "140.00"}], catalogue=catalogue(), tolerance_seconds=1800,
                                 generated_at="2026-12-05T10:00:00.000Z", generated_by="t", version="0",
                                 files=digests(folder), thresholds=thresholds(settings),
                                 annotations={"lessons": [{"lesson": "approvers were slow to log in",
                                                           "action": "approvers keep a session open on call"}]})
    write_report(folder, evidence, {})
    return folder


@pytest.fixture(scope="module")
def assessment(tmp_path_factory):
    """Two drill runs of the primary outage (a vulnerability found in the first, with a lesson) and one incident,
    compiled into the self-assessment of 2026."""
    from tradeops.reports.build import annotate, build_run_report
    from tradeops.reports.periodic_io import self_assessment
    from tradeops.runtime.platform.settings import load_settings

    root = tmp_path_factory.mktemp("assessment")
    settings = load_settings(state_dir=root / "state", runs_dir=root / "runs")
    runs = root / "runs"
    for name, started in ((FIRST, None), (SECOND, "2026-12-03T02:00:00.000Z")):
        shutil.copytree(FIXTURE, runs / name)
        if started:
            result = json.loads((runs / name / "result.json").read_text())
            result.update(started_at=started, ended_at="2026-12-03T02:00:23.000Z")
            (runs / name / "result.json").write_text(json.dumps(result))
    annotate(runs / FIRST, vulnerability="the secondary's capacity at peak is not agreed", severity="medium",
             metric="time", resource="router", remedy="agree peak capacity in the "
             "secondary's contract", owner="ops-manager", due="2027-03-31", due_reason="the contract renews in March",
             by="compliance-dana", at="2026-11-27T10:00:00.000Z")
    annotate(runs / FIRST, lesson="detection is under 100 ms", action="kept the refused-connection trip at 1",
             by="compliance-dana", at="2026-11-27T10:05:00.000Z")
    for name in (FIRST, SECOND):
        build_run_report(runs / name, settings, generated_by="t")
    _incident(runs, settings)
    made = self_assessment(settings, since=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2027, 1, 1, tzinfo=UTC),
                           out=None, generated_by="compliance-dana")
    return {"document": made.document, "html": made.files["self-assessment.html"].read_text(),
            "md": made.files["self-assessment.md"].read_text()}


def _section(md: str, heading: str) -> str:
    start = md.index(heading)
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def test_it_shows_the_service_and_why_it_is_important(assessment):
    """(1) The service, why it is important and the justification against the factors of SYSC 15A.2.4G."""
    d, md = assessment["document"], assessment["md"]
    assert d["service"]["name"] == "Customer order execution" and d["service"]["why_important"]
    assert {j["factor"] for j in d["service"]["justification"]} >= {"Substitutability", "Time criticality"}
    part = _section(md, "## 1. The important business service")
    assert "**Why it is important:** About 800,000 retail customers" in part and "- Substitutability:" in part


def test_it_shows_each_tolerance_with_how_it_is_measured_and_its_trend(assessment):
    """(2) Each impact tolerance metric with its statement, how it is measured, why at that level, and its trend
    across the period's three runs (the incident among them)."""
    d, md = assessment["document"], assessment["md"]
    assert [t["metric"] for t in d["tolerance"]] == ["time", "customers affected", "money at risk"]
    assert all(t["definition"] and t["justification"] for t in d["tolerance"])
    trend = {m["metric"]: m["runs"] for m in d["trend"]}
    assert [r["run"] for r in trend["time"]] == [FIRST, SECOND, INCIDENT]
    assert [r["values"][0]["shown"] for r in trend["time"]] == ["0.421 s", "0.421 s", "210.000 s"]
    assert trend["money at risk"][2]["verdict"] == "within tolerance"
    part = _section(md, "## 2. Impact tolerance")
    assert "The longest any of the run's orders waited, from placement to its outcome" in part
    assert f"| {INCIDENT} | incident | longest wait of a customer's order: 210.000 s | within tolerance |" in part


def test_it_shows_the_mapping_in_all_five_categories(assessment):
    """(3) People, processes (the runbooks), technology (every resource of the template, and the stack's
    processes), facilities and information, and the open vulnerabilities by mapped resource."""
    d, md = assessment["document"], assessment["md"]
    mapping = d["mapping"]
    assert all(mapping[part] for part in ("people", "processes", "technology", "facilities", "information"))
    technology = {t["name"]: t for t in mapping["technology"]}
    assert technology["OrdersTable"]["described"] and technology["worker"]["type"] == "process of the stack"
    assert {"OrdersTable", "EvidenceBucket", "AuditTable"} <= set(technology)
    assert {p["runbook"] for p in mapping["processes"]} >= {"failover", "failback", "declare-void"}
    assert mapping["vulnerabilities_by_resource"] == {"router": 1}
    part = _section(md, "## 3. Mapping")
    for heading in ("People:", "Processes (runbooks):", "Technology:", "Facilities:", "Information:"):
        assert heading in part
    assert "| OrdersTable | AWS::DynamoDB::Table | The one record of each order" in part


def test_it_shows_the_testing_plan_with_its_coverage(assessment):
    """(4) The plan's justification, each scenario's nature, severity, duration, frequency and expected breach, and
    coverage: the primary outage run twice against twelve planned in the year, paper tests not seen."""
    d, md = assessment["document"], assessment["md"]
    plan = d["testing_plan"]
    assert plan["justification"] and len(plan["scenarios"]) == 11
    rows = {r["scenario"]: r for r in plan["coverage"]["rows"]}
    assert (rows["primary-outage"]["expected"], rows["primary-outage"]["executed"],
            rows["primary-outage"]["status"]) == (12, 2, "short by 10")
    assert rows["both-down"]["expect_breach"] and rows["region-loss"]["status"].startswith("not seen by tradeops")
    part = _section(md, "## 4. The testing plan")
    assert "| primary-outage | simulation | A third party fails - the primary broker refuses connections. |" in part
    assert "| monthly | no | 12 | 2 | short by 10 |" in part and "- both-down: A market-wide connectivity" in part
    summary = _section(md, "## Executive summary")
    assert "Testing plan: 1 of 9 automated scenarios run, 0 as often as planned." in summary


def test_it_shows_the_tests_run_with_their_assumptions(assessment):
    """(5) The three tests and incidents of the period with their verdicts and the assumptions of their design."""
    d, md = assessment["document"], assessment["md"]
    assert [(t["kind"], t["id"]) for t in d["scenarios_tested"]] == [("drill", FIRST), ("drill", SECOND),
                                                                     ("incident", INCIDENT)]
    assert d["summary"]["tests"] == 3 and d["summary"]["not_judged"] == 2 and d["summary"]["within"] == 1
    part = _section(md, "## 5. Scenario testing carried out")
    assert "- primary-outage: The simulated brokers behave like the real brokers at their API." in part
    assert "money at risk not judged" in part


def test_it_shows_each_vulnerability_with_its_action_date_and_justification(assessment):
    """(7) Each vulnerability with the action to remedy it, its owner, its due date and why that date."""
    d, md, html = assessment["document"], assessment["md"], assessment["html"]
    (v,) = d["vulnerabilities"]["open"]
    assert (v["remedy"], v["due"], v["due_reason"], v["severity"], v["metric"]) == (
        "agree peak capacity in the secondary's contract", "2027-03-31", "the contract renews in March", "medium",
        "time")
    part = _section(md, "## 7. Vulnerabilities")
    assert (f"- {FIRST}/V1 (medium, puts time at risk, in router): the secondary's capacity at peak is not agreed. "
            "Action: agree peak capacity in the secondary's contract; owner ops-manager; due 2027-03-31, because the "
            f"contract renews in March; open; retested by {SECOND}: time: within tolerance") in part
    assert "the contract renews in March" in html


def test_it_shows_the_lessons(assessment):
    """(6) The lessons of the drills and the incident, each with its action."""
    d, md = assessment["document"], assessment["md"]
    assert [(lesson["lesson"], lesson["from"]) for lesson in d["lessons"]] == [("detection is under 100 ms", FIRST),
                                                                ("approvers were slow to log in", INCIDENT)]
    assert "- approvers were slow to log in (from failover-20261205-0915): action approvers keep a session open" in md


def test_it_shows_the_communication_strategy(assessment):
    """(8) The strategy and who is told what, when, how and by whom."""
    d, md = assessment["document"], assessment["md"]
    assert d["communications"]["strategy"] and len(d["communications"]["messages"]) == 6
    part = _section(md, "## 8. Communication strategy")
    assert "| Customers with an order waiting | The oldest pending order passes its alert threshold" in part


def test_it_shows_the_third_parties_and_their_part(assessment):
    """Each third party's role, contract facts (or that they are not recorded), testing and substitution."""
    d, md = assessment["document"], assessment["md"]
    parties = {p["provider"]: p for p in d["third_parties"]}
    assert set(parties) == {"primary", "secondary", "market-data"}
    assert parties["secondary"]["substitution"]["exit"] and parties["primary"]["sandbox"]["how"]
    part = _section(md, "## Third parties")
    assert "| primary (broker) | Primary execution broker" in part and "reference: not recorded" in part


def test_it_shows_the_methodology(assessment):
    """(9) How each activity is done and how each figure is measured."""
    d, md = assessment["document"], assessment["md"]
    assert {a["activity"] for a in d["methodology"]["activities"]} >= {"Measuring the impact tolerance", "Mapping",
                                                                        "Keeping the record"}
    assert any(f["label"] == "longest wait of a customer's order" for f in d["methodology"]["figures"])
    assert "- Vulnerabilities and lessons: A vulnerability is opened from the run" in _section(md, "## 9. Methodology")


def test_it_shows_its_sign_off_state(assessment):
    """A new version is a draft, version 1, with its digest; read without the audit log, it says how to see it."""
    d, md, html = assessment["document"], assessment["md"], assessment["html"]
    assert d["version"] == 1 and d["signoff"]["state"] == "draft" and d["signoff"]["read"] is False
    assert d["document"]["id"] == "self-assessment:2026-01-01T00:00:00.000Z..2027-01-01T00:00:00.000Z"
    assert f"Sign-off: **draft** (version 1, SHA-256 `{d['document']['sha256']}`)" in md
    assert 'Sign-off: <span class="state draft">draft</span>' in html and "tradeops report signatures" in html
    assert html.index('<section id="summary">') < html.index('<section id="service">')
