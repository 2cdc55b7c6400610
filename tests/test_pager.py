"""The fleet's broker pager against moto over HTTP: routing events in, one page per episode out, across a restart."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

import pytest

from tradeops.runtime.liability.alerts import AlertPublisher
from tradeops.runtime.liability.pager import FleetPager
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import names_for


@pytest.fixture
def inbox(aws_settings):
    """An SQS queue subscribed to the 'ut' alert topic."""
    aws = Aws(aws_settings)
    url = aws.sqs.create_queue(QueueName=f"pager-inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sub = aws.sns.subscribe(TopicArn=aws.topic_arn(names_for(aws_settings).alert_topic), Protocol="sqs",
                            Endpoint=arn)["SubscriptionArn"]
    got: list[dict] = []

    def drain() -> list[dict]:
        while messages := aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for m in messages:
                got.append(json.loads(json.loads(m["Body"])["Message"]))
                aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return got

    yield drain
    aws.sns.unsubscribe(SubscriptionArn=sub)
    aws.sqs.delete_queue(QueueUrl=url)


def _pager(settings, now: list[datetime]) -> FleetPager:
    aws = Aws(settings)
    names = names_for(settings)
    return FleetPager(aws, names, settings, AlertPublisher(aws, names, source="test-pager"), clock=lambda: now[0])


def test_workers_events_page_once_for_the_fleet_and_a_restart_neither_repeats_nor_forgets(aws_settings, inbox):
    """Two workers' breakers opening for one broker: one page. A new pager (a restarted monitor) that re-reads
    the same events pages nothing again; once both have closed and the recovery hold passed, one recovery."""
    settings = aws_settings.model_copy(update={"paging_broker_recovery_seconds": 1.0})
    provider = f"broker-{uuid.uuid4().hex[:6]}"  # a name no other test's events use
    now = [utcnow()]
    for source in ("worker-a", "worker-b"):
        EventLog(Aws(settings), source=source, echo=False).emit(
            "breaker_opened", provider=provider, from_state="closed", to_state="open", reason="failure rate 5/5")
    def mine() -> list[str]:
        time.sleep(0.3)  # SNS to SQS delivery
        return [m["kind"] for m in inbox() if m.get("provider") == provider]

    first = _pager(settings, now)
    first.restore()
    first.poll()
    first.poll()
    assert mine() == ["broker_unhealthy"]
    again = _pager(settings, now)
    again.restore()
    again.poll()
    assert mine() == ["broker_unhealthy"], "a restarted pager re-reading the same events must not page again"
    for source in ("worker-a", "worker-b"):
        EventLog(Aws(settings), source=source, echo=False).emit(
            "breaker_closed", provider=provider, from_state="half_open", to_state="closed", reason="2 probes")
    again.poll()
    assert mine() == ["broker_unhealthy"]
    now[0] += timedelta(seconds=1.5)
    again.poll()
    assert mine() == ["broker_unhealthy", "broker_recovered"]
    pages = [m for m in inbox() if m.get("provider") == provider]
    assert sorted(pages[0]["workers"]) == ["worker-a", "worker-b"] and pages[1]["transitions"] == 4
    assert not pages[1]["flapping"]
