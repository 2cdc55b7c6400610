"""Approval requests on the approvers' topic: how the people who approve learn that a step waits for them.

As SSM Automation's ``aws:approve`` notifies its approvers through SNS, a run that reaches a
four-eyes step publishes one request to the approvers' topic (``<prefix>-approvals``, created by the
template): the runbook, the step, its action and arguments, the executor, the exact command to
approve, and how long the step will wait. Approvers subscribe by e-mail, chat or pager.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeops.runbooks.eventkinds import APPROVAL_REQUESTED
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.text import human

__all__ = ["approval_request_text", "publish_approval_request"]


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min"
    return f"{whole / 3600:.1f} h"


def approval_request_text(request: Mapping[str, Any]) -> tuple[str, str]:
    """The subject and body of an approval request (pure)."""
    args = ", ".join(f"{k}={human(v)}" for k, v in (request.get("args") or {}).items())
    subject = f"tradeops: approval needed: {request['runbook']} / {request['step_id']}"
    body = "\n".join([
        f"Runbook {request['runbook']} v{request['version']} (sha256 {request['runbook_sha256']}) waits for "
        f"{request['count']} approval(s) from: {', '.join(request['roles'])}.",
        "",
        f"execution: {request['execution_id']}",
        f"step:      {request['step_id']} ({request['title']})",
        f"action:    {request['action']}({args})" if request.get("action") else "action:    none",
        f"executor:  {request['executor']}",
        f"waits:     {_duration(float(request['timeout']))} (until {request['deadline']})",
        "",
        "To approve, from your own terminal:",
        f"  {request['command']}",
        "",
        f"To reject: tradeops runbook reject {request['execution_id']} {request['step_id']} --reason '...'",
    ])
    return subject[:99], body


def publish_approval_request(aws: Aws, request: Mapping[str, Any]) -> str:
    """Publish one approval request on the approvers' topic; returns the SNS message id."""
    subject, body = approval_request_text(request)
    topic = aws.topic_arn(names_for(aws.settings).approvals_topic)
    attributes = {"kind": APPROVAL_REQUESTED, "execution_id": request["execution_id"],
                  "step_id": request["step_id"], "runbook": request["runbook"]}
    with aws_errors("publish the approval request to the approvers' topic"):
        answer = aws.sns.publish(TopicArn=topic, Subject=subject, Message=body,
                                 MessageAttributes={k: {"DataType": "String", "StringValue": str(v)}
                                                    for k, v in attributes.items()})
    return str(answer["MessageId"])
