"""An experiment's own load, by its run id: the records `start_load` leaves, which one `stop_load` and
`nothing_lost` take, the summary they wait for, and what they answer when the experiment started none."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tradeops.experiments import activities, loadproc
from tradeops.experiments.drillload import starts_own_load
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import pid_alive, write_state


def _dead_pid() -> int:
    """A process id no process has now (a finished load's)."""
    return next(pid for pid in range(4_000_000, 3_000_000, -1) if not pid_alive(pid))


def _record(settings, run_id: str, run_dir: Path, *, pid: int, owner: str = loadproc.OWNER,
            started_at: str = "2026-12-01T02:00:00.000Z") -> loadproc.BackgroundLoad:
    """A load's record as `loadproc.start` leaves it, without starting one."""
    load = loadproc.BackgroundLoad(run_id=run_id, pid=pid, run_dir=run_dir, started_at=started_at, owner=owner)
    folder = settings.state_dir / "loads"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(json.dumps(load.as_dict()), encoding="utf-8")
    return load


@pytest.fixture
def stack(tmp_path):
    """A state folder whose stack reads as up (this process stands in for its supervisor): what the activities
    need to find one; its settings."""
    settings = load_settings(state_dir=tmp_path / "state")
    write_state(settings.state_file, {"status": "ready", "supervisor_pid": os.getpid(), "local": True,
                                      "intake": "http://127.0.0.1:9", "brokers": {}, "components": {}})
    return settings


def test_the_load_of_an_experiment_is_the_last_its_process_started_or_the_one_named(stack, tmp_path):
    """Without a run id, the last load this process started, never another process's; with one, that run; an
    unknown run id is bad input naming it; a run folder finds its load."""
    first = _record(stack, "r1", tmp_path / "one", pid=os.getpid(), started_at="2026-12-01T02:00:00.000Z")
    second = _record(stack, "r2", tmp_path / "two", pid=os.getpid(), started_at="2026-12-01T02:05:00.000Z")
    _record(stack, "r3", tmp_path / "three", pid=os.getpid(), owner="another-process",
            started_at="2026-12-01T02:09:00.000Z")
    assert loadproc.started_here(stack) == second
    assert loadproc.find(stack, "r1") == first
    assert loadproc.find_in(stack, tmp_path / "one") == first and loadproc.find_in(stack, tmp_path / "x") is None
    with pytest.raises(BadInput, match="no load run 'r9'"):
        loadproc.find(stack, "r9")


def test_the_summary_awaited_is_that_runs_and_a_load_that_ended_without_one_says_so(stack, tmp_path):
    """wait_summary answers the summary once it is that run's (another run's in the folder is not it); a load
    whose process ended with no summary fails at once naming its output, a live one after the timeout."""
    ended = _record(stack, "r1", tmp_path / "ended", pid=_dead_pid())
    ended.run_dir.mkdir()
    (tmp_path / "ended.out").write_text("locust: no intake\n")
    with pytest.raises(OperationFailed, match="ended without a summary: locust: no intake"):
        loadproc.wait_summary(ended, timeout=30)
    running = _record(stack, "r2", tmp_path / "running", pid=os.getpid())
    running.run_dir.mkdir()
    (running.run_dir / "summary.json").write_text(json.dumps({"run_id": "other", "orders": {"lost": 0}}))
    with pytest.raises(OperationFailed, match="wrote no summary within 0s"):
        loadproc.wait_summary(running, timeout=0)
    (running.run_dir / "summary.json").write_text(json.dumps({"run_id": "r2", "orders": {"lost": 0}}))
    assert loadproc.wait_summary(running, timeout=0)["run_id"] == "r2"
    assert loadproc.stop(ended) is False


def test_nothing_lost_reads_the_runs_summary_and_never_passes_what_it_could_not_reconcile(stack, tmp_path):
    """nothing_lost is True for 0 lost and False for any, from the run's own summary; a summary whose orders were
    not reconciled raises rather than answer True; before any load it is True (nothing placed)."""
    config = {"tradeops_state_dir": str(stack.state_dir)}
    assert activities.nothing_lost(configuration=config) is True
    load = _record(stack, "r1", tmp_path / "run", pid=_dead_pid())
    load.run_dir.mkdir()
    for orders, answer in (({"placed": 40, "lost": 0}, True), ({"placed": 40, "lost": 2}, False)):
        (load.run_dir / "summary.json").write_text(json.dumps({"run_id": "r1", "orders": orders}))
        assert activities.nothing_lost(configuration=config) is answer
        assert activities.nothing_lost("r1", configuration=config) is answer
    (load.run_dir / "summary.json").write_text(json.dumps({"run_id": "r1", "orders": None}))
    with pytest.raises(OperationFailed, match="not reconciled"):
        activities.nothing_lost(configuration=config)


def test_stop_load_answers_the_runs_summary_and_nothing_to_stop_is_not_a_failure(stack, tmp_path):
    """stop_load of a load that already ended answers stopped false with its summary's verdict and orders; with no
    load started (a rollback after a method that failed early) it answers stopped false, the rest null."""
    config = {"tradeops_state_dir": str(stack.state_dir)}
    assert activities.stop_load(configuration=config) == {"run_id": None, "run_dir": None, "stopped": False,
                                                          "passed": None, "breached": None, "orders": None}
    load = _record(stack, "r1", tmp_path / "run", pid=_dead_pid())
    load.run_dir.mkdir()
    (load.run_dir / "summary.json").write_text(json.dumps({"run_id": "r1", "passed": True, "breached": [],
                                                           "orders": {"placed": 3, "lost": 0}}))
    assert activities.stop_load(configuration=config) == {"run_id": "r1", "run_dir": str(load.run_dir),
                                                          "stopped": False, "passed": True, "breached": [],
                                                          "orders": {"placed": 3, "lost": 0}}


@pytest.mark.parametrize("where", ["probes", "method", "rollbacks"])
def test_an_experiment_that_calls_start_load_anywhere_brings_its_own_load(where):
    """start_load in the hypothesis, the method or the rollbacks makes the experiment's load the drill's; a
    function of that name in another module does not."""
    own = {"type": "python", "module": "tradeops.experiments.activities", "func": "start_load"}
    other = {**own, "module": "mine.activities"}
    for provider, expected in ((own, True), (other, False)):
        activity = {"name": "load", "type": "action", "provider": provider}
        experiment = ({"steady-state-hypothesis": {"probes": [activity]}} if where == "probes"
                      else {where: [activity]})
        assert starts_own_load(experiment) is expected
