"""A runbook execution's statuses and its steps' statuses and phases as data, with every allowed move. Pure.

An execution (the ``status`` of its meta item)::

    running ──▶ waiting_approval ──granted──▶ running        (a four-eyes step asked, then got its approvals)
    running | waiting_approval ──▶ approval-timed-out | stopped ──resume──▶ running
    running ──▶ completed | failed                           (final: every step done, or one failed and rolled back)
    any status that is not final ──▶ aborted                 (`runbook abort`; final)

A step (its record's ``status``)::

    pending ──▶ running ──▶ succeeded | skipped              (final)
                  │ ▲ └──▶ failed | stopped | rejected | approval-timed-out ──resume──▶ running
                  ▼ │
            waiting_approval ──▶ rejected | approval-timed-out

and what the step has done so far (its ``phase``), which is what a resume goes by::

    pending ──▶ approval ──▶ acting ──▶ acted ──▶ done
       │           │         │ ▲ │ └──▶ action_failed ──▶ approval | acting  (approved again / run again)
       │           │         │ └─┘ interrupted while it ran: run again (a new run, the same phase)
       │           │         └──▶ approval                (decisions changed, or a resume asks again)
       └───────────┴──▶ done                              (a check, a manual step, or a skip)

"acting" is written before an action runs and "acted" after, so a resume never repeats a completed
action (:data:`AFTER_ACTION`: only its verification runs again) and never skips an unfinished one
(:data:`ACTION_INTERRUPTED`: run again if idempotent, else the operator is asked).

:class:`tradeops.runbooks.store.ExecutionStore` refuses any move not in these tables before it writes,
as the order store does with :mod:`tradeops.runtime.orderpath.states`: a bug can never record a state
the resume rules do not know. Staying where it is is no move (a step's record is rewritten as it goes).
Outcomes of one action or one rollback (:data:`ACTION_RESULTS`, :data:`ROLLBACK_RESULTS`) are facts,
not states: they never move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "ABORTED",
    "ACTED",
    "ACTING",
    "ACTION_FAILED",
    "ACTION_INTERRUPTED",
    "ACTION_RESULTS",
    "AFTER_ACTION",
    "APPROVAL",
    "APPROVAL_TIMED_OUT",
    "BEFORE_ACTION",
    "COMPLETED",
    "DONE",
    "EXECUTION_STATUSES",
    "EXECUTION_TRANSITIONS",
    "FAILED",
    "FINAL",
    "NOT_RUN",
    "PENDING",
    "PHASES",
    "PHASE_TRANSITIONS",
    "REJECTED",
    "RESUMABLE",
    "ROLLBACK_RESULTS",
    "RUNNING",
    "SKIPPED",
    "STEP_DONE",
    "STEP_STATUSES",
    "STEP_TRANSITIONS",
    "STOPPED",
    "SUCCEEDED",
    "WAITING_APPROVAL",
    "IllegalTransition",
    "check_execution_move",
    "check_phase_move",
    "check_step_move",
]

# ---- the words (each spelled here and nowhere else) ----

PENDING: Final = "pending"
RUNNING: Final = "running"
WAITING_APPROVAL: Final = "waiting_approval"
APPROVAL_TIMED_OUT: Final = "approval-timed-out"
"""Its approvers did not decide in time; `resume` asks again and waits."""
STOPPED: Final = "stopped"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
ABORTED: Final = "aborted"
SUCCEEDED: Final = "succeeded"
SKIPPED: Final = "skipped"
REJECTED: Final = "rejected"

APPROVAL: Final = "approval"
ACTING: Final = "acting"
ACTED: Final = "acted"
ACTION_FAILED: Final = "action_failed"
DONE: Final = "done"

NOT_RUN: Final = "none"
"""A rollback that had nothing to run (the step's ``rollback: none``)."""

# ---- an execution ----

EXECUTION_STATUSES: Final[tuple[str, ...]] = (RUNNING, WAITING_APPROVAL, APPROVAL_TIMED_OUT, STOPPED, COMPLETED,
                                              FAILED, ABORTED)
FINAL: Final[frozenset[str]] = frozenset({COMPLETED, FAILED, ABORTED})
"""Nothing moves an execution out of these; decisions on it are refused."""
RESUMABLE: Final[frozenset[str]] = frozenset(EXECUTION_STATUSES) - FINAL
"""`resume` takes these over (``running``: its driver died) and moves them to running."""

EXECUTION_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    RUNNING: frozenset({WAITING_APPROVAL, APPROVAL_TIMED_OUT, STOPPED, COMPLETED, FAILED, ABORTED}),
    WAITING_APPROVAL: frozenset({RUNNING, APPROVAL_TIMED_OUT, STOPPED, ABORTED}),
    APPROVAL_TIMED_OUT: frozenset({RUNNING, ABORTED}),
    STOPPED: frozenset({RUNNING, ABORTED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    ABORTED: frozenset(),
}

# ---- a step ----

STEP_STATUSES: Final[tuple[str, ...]] = (PENDING, RUNNING, WAITING_APPROVAL, SUCCEEDED, SKIPPED, FAILED, STOPPED,
                                         REJECTED, APPROVAL_TIMED_OUT)
STEP_DONE: Final[frozenset[str]] = frozenset({SUCCEEDED, SKIPPED})
"""A run passes over these steps; every other status runs the step (again)."""

STEP_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({RUNNING}),
    RUNNING: frozenset({WAITING_APPROVAL, SUCCEEDED, SKIPPED, FAILED, STOPPED, REJECTED, APPROVAL_TIMED_OUT}),
    WAITING_APPROVAL: frozenset({RUNNING, REJECTED, APPROVAL_TIMED_OUT}),
    FAILED: frozenset({RUNNING}),
    STOPPED: frozenset({RUNNING}),
    REJECTED: frozenset({RUNNING}),
    APPROVAL_TIMED_OUT: frozenset({RUNNING}),
    SUCCEEDED: frozenset(),
    SKIPPED: frozenset(),
}

PHASES: Final[tuple[str, ...]] = (PENDING, APPROVAL, ACTING, ACTED, ACTION_FAILED, DONE)
BEFORE_ACTION: Final[frozenset[str]] = frozenset({PENDING, APPROVAL})
"""A resume runs the whole step: precondition, approval, check, manual, action, verification."""
ACTION_INTERRUPTED: Final[frozenset[str]] = frozenset({ACTING, ACTION_FAILED})
"""Its action may have taken effect: run again only if idempotent (else the operator is asked), approved again."""
AFTER_ACTION: Final[frozenset[str]] = frozenset({ACTED})
"""Its action completed: a resume only verifies it again, never repeats it."""

PHASE_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({APPROVAL, ACTING, DONE}),
    APPROVAL: frozenset({ACTING, DONE}),
    ACTING: frozenset({ACTED, ACTION_FAILED, APPROVAL}),
    ACTION_FAILED: frozenset({ACTING, APPROVAL}),
    ACTED: frozenset({DONE}),
    DONE: frozenset(),
}

ACTION_RESULTS: Final[frozenset[str]] = frozenset({SUCCEEDED, FAILED})
ROLLBACK_RESULTS: Final[frozenset[str]] = frozenset({SUCCEEDED, FAILED, NOT_RUN})


class IllegalTransition(ValueError):
    """A move the tables do not allow (a bug in the caller, never an operator error)."""


def _check(what: str, table: Mapping[str, frozenset[str]], current: str, new: str) -> None:
    if new not in table:
        raise IllegalTransition(f"unknown {what} {new!r}")
    allowed = table.get(current)
    if allowed is None:
        raise IllegalTransition(f"unknown {what} {current!r}")
    if new != current and new not in allowed:
        raise IllegalTransition(f"a {what} may not move from {current} to {new}"
                                + ("" if allowed else f" ({current} is final)"))


def check_execution_move(current: str, new: str) -> None:
    """Raise IllegalTransition unless an execution in ``current`` may move to ``new`` (staying is no move)."""
    _check("execution status", EXECUTION_TRANSITIONS, current, new)


def check_step_move(current: str, new: str) -> None:
    """Raise IllegalTransition unless a step whose status is ``current`` may move to ``new`` (staying is no move)."""
    _check("step status", STEP_TRANSITIONS, current, new)


def check_phase_move(current: str, new: str) -> None:
    """Raise IllegalTransition unless a step in phase ``current`` may move to ``new`` (staying is no move)."""
    _check("step phase", PHASE_TRANSITIONS, current, new)
