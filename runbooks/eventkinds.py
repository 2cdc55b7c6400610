"""Every kind of event a runbook execution publishes, and of record the audit log holds. Pure.

A run publishes events (:class:`tradeops.runbooks.events.Event`) to its observers: the audit log
records them (all but :data:`NOT_AUDITED`), the terminal shows them, reports read them back from the
audit timeline. In the order a run publishes them::

    execution.started | execution.resumed
      step.started
        check.evaluated            (a precondition, check or verification read; once per phase)
        manual.instruction
        approval.requested → approval.progress … → approval.granted | approval.stopped
        action.retry               (a resume runs an interrupted action again)
        action.started → action.finished
      step.finished
      rollback.started → rollback.step … → rollback.finished
    execution.finished | execution.stopped | execution.interrupted

Outside a run, by other people: ``approval.approved``, ``approval.rejected``, ``approval.withdrawn``
(the approvers) and ``execution.aborted``. :data:`ENDS` end (or pause) an execution: the audit chain
is anchored after each. The audit log also holds records no run publishes (:data:`OTHER_RECORDS`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACTION_FINISHED",
    "ACTION_RETRY",
    "ACTION_STARTED",
    "APPROVAL_APPROVED",
    "APPROVAL_GRANTED",
    "APPROVAL_PROGRESS",
    "APPROVAL_REJECTED",
    "APPROVAL_REQUESTED",
    "APPROVAL_STOPPED",
    "APPROVAL_WITHDRAWN",
    "BREAK_GLASS_DECLARE_VOID",
    "BREAK_GLASS_FLAG_SET",
    "CHECK_EVALUATED",
    "ENDS",
    "EVENTS",
    "EXECUTION_ABORTED",
    "EXECUTION_FINISHED",
    "EXECUTION_INTERRUPTED",
    "EXECUTION_RESUMED",
    "EXECUTION_STARTED",
    "EXECUTION_STOPPED",
    "KINDS",
    "MANUAL_INSTRUCTION",
    "NOT_AUDITED",
    "OTHER_RECORDS",
    "REPORT_SIGNED",
    "ROLLBACK_FINISHED",
    "ROLLBACK_STARTED",
    "ROLLBACK_STEP",
    "ROSTER_SEEDED",
    "STEP_FINISHED",
    "STEP_STARTED",
]

EXECUTION_STARTED: Final = "execution.started"
EXECUTION_RESUMED: Final = "execution.resumed"
EXECUTION_INTERRUPTED: Final = "execution.interrupted"
EXECUTION_STOPPED: Final = "execution.stopped"
EXECUTION_FINISHED: Final = "execution.finished"
EXECUTION_ABORTED: Final = "execution.aborted"
STEP_STARTED: Final = "step.started"
STEP_FINISHED: Final = "step.finished"
CHECK_EVALUATED: Final = "check.evaluated"
MANUAL_INSTRUCTION: Final = "manual.instruction"
APPROVAL_REQUESTED: Final = "approval.requested"
APPROVAL_PROGRESS: Final = "approval.progress"
APPROVAL_GRANTED: Final = "approval.granted"
APPROVAL_STOPPED: Final = "approval.stopped"
APPROVAL_APPROVED: Final = "approval.approved"
APPROVAL_REJECTED: Final = "approval.rejected"
APPROVAL_WITHDRAWN: Final = "approval.withdrawn"
ACTION_RETRY: Final = "action.retry"
ACTION_STARTED: Final = "action.started"
ACTION_FINISHED: Final = "action.finished"
ROLLBACK_STARTED: Final = "rollback.started"
ROLLBACK_STEP: Final = "rollback.step"
ROLLBACK_FINISHED: Final = "rollback.finished"

KINDS: Final[tuple[str, ...]] = (
    EXECUTION_STARTED, EXECUTION_RESUMED, EXECUTION_INTERRUPTED, EXECUTION_STOPPED, EXECUTION_FINISHED,
    EXECUTION_ABORTED, STEP_STARTED, STEP_FINISHED, CHECK_EVALUATED, MANUAL_INSTRUCTION, APPROVAL_REQUESTED,
    APPROVAL_PROGRESS, APPROVAL_GRANTED, APPROVAL_STOPPED, APPROVAL_APPROVED, APPROVAL_REJECTED, APPROVAL_WITHDRAWN,
    ACTION_RETRY, ACTION_STARTED, ACTION_FINISHED, ROLLBACK_STARTED, ROLLBACK_STEP, ROLLBACK_FINISHED,
)
"""Every kind of event a runbook execution publishes."""

NOT_AUDITED: Final[frozenset[str]] = frozenset({APPROVAL_PROGRESS})
"""Display only: the decisions it shows are recorded as they are made."""
ENDS: Final[frozenset[str]] = frozenset({EXECUTION_FINISHED, EXECUTION_STOPPED, EXECUTION_ABORTED,
                                         EXECUTION_INTERRUPTED})

BREAK_GLASS_FLAG_SET: Final = "break_glass.flag_set"
BREAK_GLASS_DECLARE_VOID: Final = "break_glass.declare_void"
ROSTER_SEEDED: Final = "roster.seeded"
REPORT_SIGNED: Final = "report.signed"
"""A person signed a report or the self-assessment (:mod:`tradeops.reports.signoff`)."""
EVENTS: Final = "events"
"""One audit record holding several events of one execution in the order they happened: what a run did
between two checkpoints (:mod:`tradeops.runbooks.audit`). Timelines show it as those events."""
OTHER_RECORDS: Final[tuple[str, ...]] = (BREAK_GLASS_FLAG_SET, BREAK_GLASS_DECLARE_VOID, ROSTER_SEEDED, REPORT_SIGNED,
                                         EVENTS)
"""Audit records no run publishes as an event: a flag changed or orders declared void by hand, the first
roster, a signature on a report, and a run's events written together."""
