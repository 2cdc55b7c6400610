"""The suite's tiers: each test's comes from its fixtures, the tiers add up to the suite, and the unit tier
starts nothing (tests/support/tiers.py)."""

from __future__ import annotations

import pytest

from tests import run
from tests.support.stack import REPO
from tests.support.tiers import (
    COLLECTED_ALONE,
    COLLECTED_TIERS,
    FIXTURE_TIERS,
    TIERS,
    runs_alone,
    stack_group,
    tier_of,
)

# Run against this suite's own conftest, in a session of their own (pytester's, in this process).
SAMPLES = '''
import socket
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def started_for_the_module():
    subprocess.run(["true"])


def test_pure():
    assert sorted([3, 1, 2]) == [1, 2, 3]


def test_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"])


def test_opens_a_socket():
    with socket.socket():
        pass


def test_connects():
    socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_swallows_what_it_was_refused():
    try:
        subprocess.run(["true"])
    except Exception:
        pass


def test_starts_a_process_from_a_thread():
    import threading
    thread = threading.Thread(target=subprocess.run, args=(["true"],))
    thread.start()
    thread.join()


def test_uses_a_fixture_that_starts_a_process(started_for_the_module):
    pass


def test_declares_the_processes_it_starts(processes):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A scratch suite with this suite's conftest."""
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_samples=SAMPLES)
    return pytester


def test_a_unit_test_that_starts_a_process_or_opens_a_socket_fails_saying_why(suite: pytest.Pytester):
    """In the unit tier, a subprocess, a new socket or a connection fails the test, also from a fixture of any
    scope, a swallowed refusal or another thread, with a message naming the tier; a pure test passes."""
    result = suite.runpytest_inprocess("-m", "unit", "-ra", "-p", "no:cacheprovider")
    # The thread's test counts once as passed (its own code ran through) and once as an error (at its teardown).
    result.assert_outcomes(passed=2, failed=4, errors=2, deselected=1)
    failed = {report.nodeid.split("::")[-1]: str(report.longrepr) for report in result.reprec.getfailures()}
    assert failed.keys() == {"test_starts_a_process", "test_opens_a_socket", "test_connects",
                             "test_swallows_what_it_was_refused", "test_starts_a_process_from_a_thread",
                             "test_uses_a_fixture_that_starts_a_process"}
    for name, why in failed.items():
        assert f"test_samples.py::{name} is in the unit tier but " in why, why
        assert "request the fixture that starts what it needs" in why
    assert "started a process" in failed["test_starts_a_process_from_a_thread"]
    assert "opened a socket" in failed["test_connects"]


def test_a_test_that_requests_the_fixture_for_what_it_starts_is_in_that_tier_and_may(processes,
                                                                                     suite: pytest.Pytester):
    """`processes` puts a test in the emulator tier, where starting processes is what it is for."""
    result = suite.runpytest_inprocess("-m", "emulator", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=7)


def test_a_test_that_marks_its_own_tier_fails_the_collection(pytester: pytest.Pytester):
    """Tiers come from fixtures only: a tier mark written on a test stops the collection, naming the test."""
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_marked='''
import pytest


@pytest.mark.stack
def test_claims_a_tier():
    pass
''')
    result = pytester.runpytest_inprocess("--collect-only", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*every test has exactly one tier*", "*test_marked.py::test_claims_a_tier: *"])


def test_the_tier_is_the_highest_of_the_fixtures_requested():
    """No tier fixture: unit; otherwise the highest of those requested, whatever else is requested."""
    assert tier_of(["tmp_path", "monkeypatch"]) == "unit"
    assert tier_of(["aws_settings", "moto_endpoint", "tmp_path"]) == "emulator"
    assert tier_of(["processes", "flow", "shared_stack", "shared_stack_env"]) == "stack"
    assert tier_of(["drill_stack", "moto_endpoint", "own_stack"]) == "drill"


def test_every_collected_test_is_in_exactly_one_tier_and_the_tiers_add_up_to_the_suite(request):
    """Every test this session collected (before `-m` chose among them) has exactly one tier mark, so that
    `-m unit`, `-m emulator`, `-m stack` and `-m drill` (CI's steps) together run exactly the whole suite."""
    collected = request.config.stash[COLLECTED_TIERS]
    assert collected and all(len(tiers) == 1 and tiers[0] in TIERS for tiers in collected.values()), [
        (nodeid, tiers) for nodeid, tiers in collected.items() if len(tiers) != 1][:10]


def test_a_modules_stack_tests_share_an_xdist_group_and_the_other_tiers_spread_test_by_test():
    """In the stack, drill and image tiers a module is a group (its stack, module-scoped, session-scoped per worker
    or started test by test, runs on one worker), the shared stack's tests of a module apart from its other
    tests; unit and emulator tests have none, so that xdist spreads them one by one."""
    assert stack_group("tests/test_order_path.py::test_x", ["flow", "shared_stack"]) == (
        "tests/test_order_path.py (shared stack)")
    assert stack_group("tests/test_order_path.py::test_w", ["shared_stack"]) == stack_group(
        "tests/test_order_path.py::test_x", ["flow", "shared_stack"])
    assert stack_group("tests/test_stack.py::test_y", ["shared_stack_env", "shared_stack"]) == (
        "tests/test_stack.py (shared stack)")
    assert stack_group("tests/test_stack.py::test_z", ["own_stack", "tmp_path"]) == "tests/test_stack.py"
    assert stack_group("tests/test_drills_stack.py::test_d[primary-outage]", ["drill_stack"]) == (
        "tests/test_drills_stack.py")
    assert stack_group("tests/test_image.py::test_i", ["container_image"]) == "tests/test_image.py"
    assert stack_group("tests/test_roster.py::test_r", ["aws_settings", "moto_endpoint"]) is None
    assert stack_group("tests/test_answers.py::test_a", ["tmp_path"]) is None


def test_the_runner_runs_each_tier_in_a_pytest_of_its_own_on_two_workers_unless_serial():
    """`python -m tests.run`: each tier selected with -m, on xdist workers spread by test (unit, emulator) or by
    group (stack, drill, image), the load tests of the drill tier after the rest and alone; --serial drops the
    workers; what else is given reaches every pytest."""
    for tier in TIERS:
        commands = run.pytest_argv(tier, serial=False, extra=["-x"])
        assert all(argv[1:4] == ["-m", "pytest", "-m"] and argv[-1] == "-x" for argv in commands)
        assert [argv[4] for argv in commands] == ([f"{tier} and not alone", f"{tier} and alone"]
                                                  if tier == "drill" else [tier])
        if run.workers() > 1:
            first = commands[0]
            assert first[first.index("--dist") + 1] == ("load" if tier == "unit" else "loadgroup")
        assert all("-n" not in argv for argv in commands[1:])
        assert all("-n" not in argv for argv in run.pytest_argv(tier, serial=True, extra=[]))


def test_the_runner_lets_its_processes_write_bytecode_and_keeps_the_rest_of_the_environment(monkeypatch, capsys):
    """Each module is compiled once in a run, not in each of the suite's processes: every tier's pytest runs without
    PYTHONDONTWRITEBYTECODE, and with everything else the caller set. (The pytests are recorded, not run.)"""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("TRADEOPS_SUITE_MARKER", "kept")
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(run.subprocess, "call", lambda argv, env: started.append((argv, env)) or 0)
    assert run.main(["--tier", "unit", "--tier", "drill"]) == 0
    assert [argv[4] for argv, _ in started] == ["unit", "drill and not alone", "drill and alone"]
    assert all("PYTHONDONTWRITEBYTECODE" not in env and env["TRADEOPS_SUITE_MARKER"] == "kept" for _, env in started)
    assert "2 tiers passed" in capsys.readouterr().out


def test_the_load_tests_and_only_they_are_marked_to_run_alone(request):
    """A test that requests the load stack runs alone, whatever else it requests, and no other does; in this
    session every collected test (before `-m` chose) that requests it carries the `alone` mark the runner selects
    on, and no other test does."""
    assert runs_alone(["load_stack", "flow", "tmp_path"]) and runs_alone(["load_stack"])
    assert not any(runs_alone([name]) for name in FIXTURE_TIERS if name != "load_stack")
    alone, loads = request.config.stash[COLLECTED_ALONE]
    assert alone == loads


def test_the_runner_stops_at_the_first_tier_that_fails_and_names_it(processes):
    """A tier whose pytest fails ends the run with that pytest's exit code, the tier named, the next not run."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tests.run", "--serial", "--tier", "unit", "--tier", "emulator",
                           "-k", "no_test_is_called_this", "-q"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 5, done.stdout[-2000:] + done.stderr[-2000:]  # pytest: no tests collected
    assert "the unit tier failed (pytest exit code 5)" in done.stderr
    assert "-m unit" in done.stdout and "-m emulator" not in done.stdout
