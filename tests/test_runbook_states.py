"""The runbook statuses and phases as data: the tables, the resume branches the runner takes, and Changes."""

from __future__ import annotations

import itertools

import pytest

from tradeops.runbooks import states as s
from tradeops.runbooks.changes import Changes
from tradeops.runbooks.states import IllegalTransition

TABLES = {"execution": (s.EXECUTION_STATUSES, s.EXECUTION_TRANSITIONS, s.check_execution_move),
          "step": (s.STEP_STATUSES, s.STEP_TRANSITIONS, s.check_step_move),
          "phase": (s.PHASES, s.PHASE_TRANSITIONS, s.check_phase_move)}


@pytest.mark.parametrize("name", TABLES)
def test_every_word_has_a_row_and_every_move_leads_to_a_word(name):
    """Each table has a row for every status (or phase) it names, and every move it allows goes to another one."""
    words, table, _ = TABLES[name]
    assert set(table) == set(words) and len(words) == len(set(words))
    assert all(allowed <= set(words) - {word} for word, allowed in table.items())  # staying is no move


@pytest.mark.parametrize("name", TABLES)
def test_the_check_allows_exactly_the_table(name):
    """check_*_move accepts every move in the table (and staying put) and refuses every other one, and any
    unknown word."""
    words, table, check = TABLES[name]
    for current in words:
        for new in words:
            if new in table[current] or new == current:
                check(current, new)
            else:
                with pytest.raises(IllegalTransition):
                    check(current, new)
    with pytest.raises(IllegalTransition, match="unknown"):
        check(words[0], "no-such-word")
    with pytest.raises(IllegalTransition, match="unknown"):
        check("no-such-word", words[0])


def test_final_executions_never_move_and_every_other_one_resumes_or_aborts():
    """completed, failed and aborted are final; every other status may be resumed (to running) or aborted."""
    assert s.FINAL == {s.COMPLETED, s.FAILED, s.ABORTED}
    for status in s.FINAL:
        assert s.EXECUTION_TRANSITIONS[status] == frozenset()
    assert s.RESUMABLE == set(s.EXECUTION_STATUSES) - s.FINAL
    for status in s.RESUMABLE:
        s.check_execution_move(status, s.RUNNING)
        s.check_execution_move(status, s.ABORTED)


def test_a_step_the_run_does_not_pass_over_is_run_again():
    """Every step status but succeeded and skipped moves back to running when a resume reaches the step."""
    assert s.STEP_DONE == {s.SUCCEEDED, s.SKIPPED}
    for status in set(s.STEP_STATUSES) - s.STEP_DONE:
        s.check_step_move(status, s.RUNNING)
    for status in s.STEP_DONE:
        assert s.STEP_TRANSITIONS[status] == frozenset()


def test_the_resume_branches_cover_every_phase_once():
    """The runner's three branches (before the action, action interrupted, after the action) and done split the
    phases: a resume knows what to do with every phase a record can hold, and with each in one way only."""
    branches = [s.BEFORE_ACTION, s.ACTION_INTERRUPTED, s.AFTER_ACTION, frozenset({s.DONE})]
    assert sorted(p for b in branches for p in b) == sorted(s.PHASES)


# Every path of phases a resume can take from each branch, as the runner walks it (runner.step_body and act):
# approval (maybe), the move to acting, then acted or action_failed, then done after the verification.
RESUME_PATHS = {
    s.PENDING: [[s.PENDING, s.APPROVAL, s.ACTING, s.ACTED, s.DONE], [s.PENDING, s.ACTING, s.ACTION_FAILED],
                [s.PENDING, s.DONE]],
    s.APPROVAL: [[s.APPROVAL, s.APPROVAL, s.ACTING, s.ACTED, s.DONE], [s.APPROVAL, s.DONE],
                 [s.APPROVAL, s.ACTING, s.APPROVAL, s.ACTING]],  # decisions changed at the move to acting
    s.ACTING: [[s.ACTING, s.APPROVAL, s.ACTING, s.ACTED, s.DONE], [s.ACTING, s.ACTING, s.ACTION_FAILED]],
    s.ACTION_FAILED: [[s.ACTION_FAILED, s.APPROVAL, s.ACTING, s.ACTED, s.DONE], [s.ACTION_FAILED, s.ACTING]],
    s.ACTED: [[s.ACTED, s.DONE]],
}


@pytest.mark.parametrize("start", sorted(RESUME_PATHS))
def test_every_resume_path_is_a_path_in_the_table(start):
    """From each phase a resume can find, every way the runner goes on is a sequence of allowed moves."""
    for path in RESUME_PATHS[start]:
        for current, new in itertools.pairwise(path):
            s.check_phase_move(current, new)


def test_changes_refuse_a_move_not_in_the_table_and_keep_nothing():
    """Keeping a record that moves a finished step back to acting raises, and nothing is kept to be written."""
    done = {"status": s.SUCCEEDED, "phase": s.DONE}
    changes = Changes("e-1", s.COMPLETED, {0: done}, epoch=1)
    with pytest.raises(IllegalTransition, match="succeeded is final"):
        changes.step(0, {"status": s.RUNNING, "phase": s.ACTING})
    with pytest.raises(IllegalTransition, match="completed is final"):
        changes.set(status=s.RUNNING)
    assert not changes and changes.attributes() == {}


def test_changes_check_every_move_between_two_writes():
    """A step kept several times before a write is checked at each move, not only from the last write to the
    last record; what is written is its last record, with where it belongs."""
    changes = Changes("e-1", s.RUNNING, {}, epoch=3)
    changes.step(2, {"status": s.RUNNING, "phase": s.PENDING, "n": 1.0})
    changes.step(2, {"status": s.SUCCEEDED, "phase": s.DONE, "n": 2.5})
    assert changes.attributes() == {"step#0002": {"status": s.SUCCEEDED, "phase": s.DONE, "n": 2.5,
                                                  "execution_id": "e-1", "item": "step#0002", "index": 2,
                                                  "lease_epoch": 3}}
    fresh = Changes("e-1", s.RUNNING, {}, epoch=3)
    with pytest.raises(IllegalTransition, match="pending to succeeded"):
        fresh.step(2, {"status": s.SUCCEEDED, "phase": s.DONE})  # never through running: refused
