"""Operator notices on the alert topic (SNS): what a runbook step announces to the people on call."""

from __future__ import annotations

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.names import names_for

__all__ = ["notify"]


def notify(aws: Aws, subject: str, message: str) -> str:
    """Publish an operator notification on the alert topic; returns the message id."""
    names = names_for(aws.settings)
    with aws_errors("publish notification"):
        return aws.sns.publish(TopicArn=aws.topic_arn(names.alert_topic), Subject=subject[:99], Message=message)[
            "MessageId"
        ]
