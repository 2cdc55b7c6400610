"""What a run tells its observers, and what it hands back: events, outcomes, the approval-wait hook.

The engine publishes every step of a run as an :class:`Event` to its observers (the audit log, the
terminal display, a drill's recorder); none of them is called from inside step logic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tradeops.runbooks.approvals import ApprovalRule, Decision
from tradeops.runbooks.states import COMPLETED
from tradeops.runtime.platform.clock import iso

__all__ = ["ApprovalHook", "ApprovalWait", "Confirm", "Event", "Observer", "Outcome"]


@dataclass(frozen=True)
class Event:
    kind: str
    execution_id: str
    step_id: str | None
    actor: str
    identity_source: str
    data: dict[str, Any]
    at: str = field(default_factory=iso)


class Observer(Protocol):
    def notify(self, event: Event) -> None: ...


@dataclass(frozen=True)
class ApprovalWait:
    """Handed to ``on_approval_wait`` at every poll while a step waits for approvers."""

    execution_id: str
    step_id: str
    rule: ApprovalRule
    decision: Decision
    command: str


@dataclass(frozen=True)
class Outcome:
    """Where a run left its execution: ``status`` is the execution's (:mod:`.states`): completed, failed or
    aborted (final), or stopped or approval-timed-out (resumable); never running or waiting_approval, which
    a run leaves before it returns."""

    execution_id: str
    status: str
    reason: str | None
    steps: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


Confirm = Callable[[str], bool]
ApprovalHook = Callable[[ApprovalWait], None]
