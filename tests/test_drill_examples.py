"""Chaos Toolkit as an SRE runs it, on a drill stack of this module's own: plain `chaos run` of a shipped
experiment, docs/drills.md's worked example both ways (its own load, a tolerance that cannot hold, the live
panel, JUnit), a stop condition that trips, and the two scenarios that run runbooks under `tradeops drill run`.

Chaos Toolkit and Locust always run in their own processes (the CLI starts them; these tests start the CLI).
Durations and rates are short; full-length figures are in bench/. A module apart from tests/test_drills_stack.py
so that the two drill stacks run side by side on the suite's two workers (docs/testing.md).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.drilldocs import write_worked_example
from tests.support.drillrun import RUNBOOK_SCENARIOS, passes_through_drill_run
from tests.support.drillrun import drill as _drill
from tests.support.drillrun import routing_state as _state
from tests.support.orderflow import fresh_flow
from tests.support.stack import REPO


@pytest.fixture
def flow(drill_stack):
    """A Flow on the drill stack, with routing flags and broker faults reset before and after the test."""
    with fresh_flow(drill_stack) as f:
        yield f


def test_plain_chaos_run_of_primary_outage_meets_the_hypothesis_before_and_after(drill_stack, flow, tmp_path):
    """eval "$(tradeops env)" && chaos run experiments/primary-outage.yaml: the journal shows the steady state met
    before and after, every activity and rollback succeeded, the flags were set through set_routing_flag, and they
    are back as they were."""
    before = _state(flow)
    journal = tmp_path / "journal.json"
    # Shorter fault and recovery than shipped (test time), through chaos's own --var.
    command = ('eval "$(tradeops env)" && chaos --no-version-check run --var fault_seconds:float=3 '
               "--var recover_seconds:float=6 --journal-path " + str(journal)
               + " " + str(REPO / "experiments" / "primary-outage.yaml"))
    done = subprocess.run(["bash", "-c", command], env=drill_stack["env"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    j = json.loads(journal.read_text())
    assert j["status"] == "completed" and not j["deviated"]
    assert j["steady_states"]["before"]["steady_state_met"] and j["steady_states"]["after"]["steady_state_met"]
    assert {r["status"] for r in j["run"] + j["rollbacks"]} == {"succeeded"}
    # The routing flag went through tradeops's audited path, not chaostoolkit-aws's put_parameter.
    assert "set_routing_flag" in {r["activity"]["provider"]["func"] for r in j["run"]}
    assert not any(r["activity"]["provider"]["module"].startswith("chaosaws.ssm") for r in j["run"] + j["rollbacks"])
    assert _state(flow) == before



def test_the_worked_example_runs_under_plain_chaos_and_nothing_lost_reads_its_own_loads_summary(drill_stack, flow,
                                                                                                 tmp_path):
    """docs/drills.md's worked example, saved as the page says, under plain `chaos run` after `tradeops env`: it
    starts its own load (answering the run id), stop_load gets that run's summary (Locust stopped early still
    drains and reconciles), and nothing_lost answers true before and after from that summary: 0 lost."""
    before = _state(flow)
    example = write_worked_example(tmp_path)
    journal = tmp_path / "journal.json"
    # Shorter than the page's pauses (test time), through chaos's own --var.
    command = ('eval "$(tradeops env)" && chaos --no-version-check run --var warmup_seconds:float=1 '
               "--var fault_seconds:float=3 --var recover_seconds:float=2 --journal-path " + str(journal) + " "
               + str(example))
    done = subprocess.run(["bash", "-c", command], env={**drill_stack["env"], "TRADEOPS_RUNS_DIR": str(tmp_path)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    j = json.loads(journal.read_text())
    assert j["status"] == "completed" and not j["deviated"]
    assert {r["status"] for r in j["run"] + j["rollbacks"]} == {"succeeded"}
    runs = {r["activity"]["name"]: r["output"] for r in j["run"]}
    started, stopped = runs["customers-trade"], runs["customers-stop"]
    assert stopped["run_id"] == started["run_id"] and stopped["stopped"] is True
    summary = json.loads((Path(started["run_dir"]) / "summary.json").read_text())
    assert summary["run_id"] == started["run_id"] and stopped["orders"] == summary["orders"]
    assert summary["orders"]["placed"] > 0 and summary["orders"]["lost"] == 0
    assert summary["orders"]["filled_twice"] == 0 and summary["orders"]["pending"] == 0
    for when in ("before", "after"):
        probes = {p["activity"]["name"]: p for p in j["steady_states"][when]["probes"]}
        assert probes["nothing-lost"]["output"] is True and probes["nothing-lost"]["tolerance_met"], when
    assert _state(flow) == before


def test_the_worked_example_under_drill_run_at_a_terminal_starts_one_load_shows_the_panel_and_writes_junit(
        drill_stack, flow, tmp_path):
    """The worked example under `tradeops drill run` at a terminal with an impossibly tight tolerance
    (time_to_detect<=0.001): the live panel shows the drill as it runs; the drill starts no load of its own (its
    load is the one start_load answered, its orders all of that run); exit 1 with one line on stderr naming the
    figure and what was measured; and --junit writes a file a JUnit reader reads, the figure's case failing with
    its measured value."""
    from junitparser import JUnitXml

    from tests.support.terminal import Terminal

    example = write_worked_example(tmp_path)
    out, junit = tmp_path / "run", tmp_path / "drill-junit.xml"
    term = Terminal(["tradeops", "drill", "run", str(example), "--out", str(out), "--junit", str(junit),
                     "--rate", "5", "--duration", "3s", "--recover", "4s", "--drain", "30s",
                     "--tolerance", "time_to_detect<=0.001"], drill_stack["env"], cwd=tmp_path)
    code, shown, err = term.finish(timeout=240)
    assert code == 1, shown[-3000:] + err[-2000:]
    assert "time to detect (time_to_detect)" in err and "tolerance <= 0.001" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    for line in ("drill primary-slow", "orders/s filled", "breakers", "in doubt", "exposure", "time left"):
        assert line in shown, line
    assert re.search(r"phase +chaos: chaos run primary-slow.yaml", shown) and "FAILED" in shown
    result = json.loads((out / "result.json").read_text())
    assert not result["passed"] and result["verdict"] == "failed"
    check = next(c for c in result["checks"] if c["figure"] == "time_to_detect")
    assert not check["passed"] and check["measured"] is not None and check["measured"] > 0.001
    journal = json.loads((out / "journal.json").read_text())
    started = next(r["output"] for r in journal["run"] if r["activity"]["name"] == "customers-trade")
    assert result["load"]["started_by"] == "experiment" and result["load"]["run_id"] == started["run_id"]
    assert Path(started["run_dir"]) == out / "load" and result["load"]["rate"] == 5
    accepted = [oid for f in (out / "load" / "orders").glob("*.accepted") for oid in f.read_text().split()]
    assert accepted and all(oid.startswith(started["run_id"] + "-") for oid in accepted)
    assert result["figures"]["orders_placed"] == len(set(accepted)) and result["figures"]["orders_lost"] == 0
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    cases = {case.name: case for case in suite}
    assert set(cases) == {c["figure"] for c in result["checks"]} | {"experiment"}
    assert cases["time_to_detect"].result[0].message.startswith("measured ")
    assert "tolerance <= 0.001" in cases["time_to_detect"].result[0].message
    assert cases["orders_lost"].is_passed and cases["experiment"].is_passed


def test_a_stop_condition_that_trips_aborts_the_method_runs_the_rollbacks_and_restores_everything(drill_stack, flow,
                                                                                                  tmp_path):
    """Both brokers down with a 2 s oldest-pending stop condition: the safeguard interrupts the method before the
    heal, the rollbacks run and succeed, the drill fails saying so, and brokers and flags are as they were."""
    before = _state(flow)
    done = _drill(drill_stack["env"], tmp_path / "stopped", "both-down", "--rate", "5", "--duration", "20s",
                  "--stop-oldest-pending", "2s", "--drain", "30s")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "the experiment ended interrupted" in done.stderr
    result = json.loads(done.stdout)
    assert result["stop_conditions"]["interrupted"] and result["stop_conditions"]["oldest_pending_seconds"] == 2.0
    names = [a["name"] for a in result["journal"]["activities"]]
    assert "both-heal" not in names  # the method was cut short
    rollbacks = result["journal"]["rollbacks"]
    assert rollbacks and {r["status"] for r in rollbacks} == {"succeeded"}
    assert _state(flow) == before
    assert result["figures"]["orders_lost"] == 0


@pytest.mark.parametrize("scenario", RUNBOOK_SCENARIOS)
def test_the_runbook_scenarios_pass_through_drill_run_with_a_complete_run_folder(drill_stack, flow, drill_roster,
                                                                                 tmp_path, scenario):
    """`tradeops drill run` of the scenarios that run the failover and failback runbooks passes with a complete run
    folder, as every other scenario does (tests/test_drills_stack.py); the manual failover's approvals are the
    drill's automated identities, never a human four-eyes, and the audit says so."""
    out = passes_through_drill_run(drill_stack, flow, tmp_path, scenario)
    if scenario == "manual-failover":
        result = json.loads((out / "result.json").read_text())
        approvals = result["drill_approvals"]
        assert approvals["automated_in_drill"] and not approvals["human_four_eyes"] and approvals["approvals"]
        assert all(a["identity"].startswith("drill-") and a["source"] == "drill" for a in approvals["approvals"])
        audit = json.loads((out / "audit.json").read_text())
        assert audit and any("automated in a drill" in json.dumps(r) for r in audit)
