"""Runbooks run unattended inside a drill, approved by drill identities from the shared roster.

A drill's approvals are real: the engine requests them, and :class:`ScriptedApprover` gives them
through the engine's own ``decide``, so every four-eyes rule applies (the executor never approves,
roles must match, no identity twice). What makes them a drill's is said in every record: the
identities' source is ``drill``, and the reason each approval carries starts with
:data:`DRILL_REASON`, which reports look for to keep them apart from human four-eyes. The
four-eyes rules themselves (:mod:`tradeops.runbooks.approvals`) count a drill identity's approval
only in an execution whose executor is a drill identity, so one can never stand in for a person.

Drill identities are the roster entries whose name starts with ``drill-`` (unless named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tradeops.runbooks import engine
from tradeops.runbooks.approvals import DRILL_PREFIX, DRILL_SOURCE
from tradeops.runbooks.identity import Identity
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.testing import ScriptedApprover
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, CheckFailed
from tradeops.runtime.platform.settings import Settings

__all__ = ["DRILL_PREFIX", "DRILL_REASON", "DRILL_SOURCE", "run_unattended"]

DRILL_REASON = "automated in a drill (not human four-eyes)"


def run_unattended(settings: Settings, runbook: str, *, params: Mapping[str, Any], executor: str,
                   approvers: Sequence[str]) -> dict[str, Any]:
    """Run ``runbook`` to its end with drill approvers; CheckFailed naming the step when it does not complete."""
    aws = Aws(settings)
    operators = Roster(aws).require()
    names = list(approvers) or sorted(n for n in operators.roles if n.startswith(DRILL_PREFIX) and n != executor)
    if not names:
        raise BadInput(f"the roster has no drill identities (names starting {DRILL_PREFIX!r}) to approve "
                       f"{runbook!r}: add them with the change-operators runbook")
    unknown = [n for n in names if not operators.roles_of(n)]
    if unknown:
        raise BadInput(f"drill approvers not in the roster: {', '.join(unknown)}")
    approver = ScriptedApprover(settings, aws=aws, operators=operators,
                                identities=[Identity(n, DRILL_SOURCE) for n in names], reason=DRILL_REASON)
    outcome = engine.run_execution(settings, runbook, aws=aws, params=params, identity=Identity(executor, DRILL_SOURCE),
                                   operators=operators, assume_yes=True, on_approval_wait=approver,
                                   poll_seconds=0.2, approval_timeout=60)
    approvals = [{"execution_id": e, "step": s, "identity": i, "source": DRILL_SOURCE, "reason": DRILL_REASON}
                 for e, s, i in approver.decisions]
    if not outcome.ok:
        raise CheckFailed(f"runbook {runbook} ended {outcome.status}: {outcome.reason or 'no reason given'} "
                          f"(execution {outcome.execution_id})")
    return {"execution_id": outcome.execution_id, "status": outcome.status, "approvals": approvals}
