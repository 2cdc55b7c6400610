"""The incident report reads a runbook's audit timeline by what its steps did, not by what they are called."""

from __future__ import annotations

from tradeops.reports.build import catalogue
from tradeops.reports.model import incident_evidence


def _finished(step_id: str, action: str, previous: str, value: str, at: str) -> dict:
    output = {"action": {"status": "succeeded", "action": action,
                         "output": {"flag": "active", "previous": previous, "value": value}}}
    return {"kind": "step.finished", "at": at, "actor": "ops-alice", "identity_source": "iam-user",
            "step_id": step_id, "data": {"status": "succeeded", "output": output}}


def _milestones(timeline: list[dict]) -> dict[str, str]:
    history = {"execution": {"execution_id": "x-1", "runbook": "my-failover", "created_at": "2026-11-26T09:06:00.000Z",
                             "finished_at": "2026-11-26T09:10:00.000Z", "status": "completed"},
               "timeline": [{"kind": "execution.started", "at": "2026-11-26T09:06:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user"}, *timeline,
                            {"kind": "execution.finished", "at": "2026-11-26T09:10:00.000Z", "actor": "ops-alice",
                             "identity_source": "iam-user", "data": {"status": "completed"}}]}
    model = incident_evidence(history=history, orders=[], events=[], reimbursements=[], exposure=[],
                              catalogue=catalogue(), tolerance_seconds=1800, generated_at="2026-11-26T10:00:00.000Z",
                              generated_by="t", version="0")
    return {r["milestone"]: r["at"] for r in model["timeline"] if r["milestone"]}


def test_the_failover_is_the_step_that_moved_the_active_broker_whatever_its_id():
    """"failed over" is marked at the step whose set_active_broker moved execution to the other broker, though
    no step id says toggle; a step named toggle that only set the broker already active marks nothing."""
    marks = _milestones([_finished("toggle-pin", "set_active_broker", "primary", "primary", "2026-11-26T09:07:00.000Z"),
                         _finished("switch", "set_processing", "running", "paused", "2026-11-26T09:07:30.000Z"),
                         _finished("move-it", "set_active_broker", "primary", "secondary", "2026-11-26T09:08:00.000Z")])
    assert marks["failed over"] == "2026-11-26T09:08:00.000Z"
    assert "failed over" not in _milestones([_finished("toggle-to-secondary", "set_active_broker", "secondary",
                                                       "secondary", "2026-11-26T09:08:00.000Z")])
