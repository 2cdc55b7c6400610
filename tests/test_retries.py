"""The AWS write loops' retries (runtime/platform/retries.py, the monitor's SNS pages): each is bounded.

Fakes of the boto3 clients stand in for a table, stream or topic that keeps refusing; stamina's test
mode keeps the real bounds and skips the waits.
"""

from __future__ import annotations

from typing import Any

import pytest
import stamina

from tradeops.runtime.liability.alerts import PUBLISH_ATTEMPTS, AlertPublisher
from tradeops.runtime.platform.errors import AwsError, BadInput
from tradeops.runtime.platform.names import Names
from tradeops.runtime.platform.retries import (
    BATCH_ATTEMPTS,
    PUT_RECORDS_ATTEMPTS,
    batch_get_all,
    batch_write_all,
    put_records_all,
    until_done,
)


@pytest.fixture(autouse=True)
def no_waiting():
    with stamina.set_testing(True, attempts=1000, cap=True):
        yield


class Throttled:
    """A DynamoDB client that leaves ``keep`` items of every batch unprocessed, ``refusals`` times."""

    def __init__(self, refusals: int = 10**9) -> None:
        self.refusals = refusals
        self.writes: list[dict[str, Any]] = []
        self.gets: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(RequestItems)
        if len(self.writes) > self.refusals:
            return {"UnprocessedItems": {}}
        return {"UnprocessedItems": {t: items[:1] for t, items in RequestItems.items()}}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.gets.append(RequestItems)
        table, request = next(iter(RequestItems.items()))
        first, rest = request["Keys"][:1], request["Keys"][1:]
        left = {} if len(self.gets) > self.refusals else {table: {**request, "Keys": rest or first}}
        return {"Responses": {table: first}, "UnprocessedKeys": left}


def _puts(n: int) -> dict[str, Any]:
    return {"t": [{"PutRequest": {"Item": {"k": {"S": str(i)}}}} for i in range(n)]}


def test_unprocessed_items_forever_stop_after_the_bound_with_a_clear_error():
    """A table that leaves items unprocessed forever gets BATCH_ATTEMPTS batch writes, then an AwsError saying so."""
    dynamodb = Throttled()
    with pytest.raises(AwsError, match=rf"write t: 1 items still unprocessed after {BATCH_ATTEMPTS} attempts"):
        batch_write_all(dynamodb, _puts(3), what="write t")
    assert len(dynamodb.writes) == BATCH_ATTEMPTS


def test_unprocessed_items_are_resent_alone_until_taken():
    """Only the unprocessed items are sent again, and the loop ends as soon as none are left."""
    dynamodb = Throttled(refusals=2)
    batch_write_all(dynamodb, _puts(3))
    assert [len(w["t"]) for w in dynamodb.writes] == [3, 1, 1]


def test_unprocessed_keys_forever_stop_after_the_bound():
    """A batch read whose keys stay unprocessed stops after BATCH_ATTEMPTS reads with an AwsError."""
    dynamodb = Throttled()
    request = {"t": {"Keys": [{"k": {"S": "a"}}, {"k": {"S": "b"}}]}}
    with pytest.raises(AwsError, match=rf"keys still unprocessed after {BATCH_ATTEMPTS} attempts"):
        batch_get_all(dynamodb, request)
    assert len(dynamodb.gets) == BATCH_ATTEMPTS


def test_unprocessed_keys_are_read_again_and_every_item_returned():
    """Keys left unprocessed are read again; the items of every attempt are returned together."""
    dynamodb = Throttled(refusals=1)
    found = batch_get_all(dynamodb, {"t": {"Keys": [{"k": {"S": "a"}}, {"k": {"S": "b"}}]}})
    assert found == {"t": [{"k": {"S": "a"}}, {"k": {"S": "b"}}]}


class Stream:
    """A Kinesis client that fails the records whose symbol is in ``failing``."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        return {"Records": [{"ErrorCode": "ProvisionedThroughputExceededException"}
                            if r["PartitionKey"] in self.failing else {"SequenceNumber": "1"} for r in Records]}


def test_failed_kinesis_records_are_retried_alone_and_bounded():
    """Failed records are put again (only they), at most PUT_RECORDS_ATTEMPTS times; the rest are accepted."""
    stream = Stream({"BARC.L"})
    ticks = [{"symbol": "VOD.L"}, {"symbol": "BARC.L"}, {"symbol": "LLOY.L"}]
    accepted, failed = put_records_all(stream, "prices", ticks, lambda t: b"x", lambda t: t["symbol"])
    assert accepted == [{"symbol": "VOD.L"}, {"symbol": "LLOY.L"}]
    assert failed == [{"symbol": "BARC.L"}]
    assert [len(c) for c in stream.calls] == [3] + [1] * (PUT_RECORDS_ATTEMPTS - 1)


class Topic:
    """An SNS client (and the bits of Aws the publisher uses) whose publish always fails."""

    def __init__(self) -> None:
        self.publishes = 0
        self.sns = self
        self.dynamodb = self
        self.events: list[dict[str, Any]] = []

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:eu-west-2:123456789012:{name}"

    def publish(self, **_: Any) -> None:
        self.publishes += 1
        raise ConnectionError("topic unreachable")

    def put_item(self, **item: Any) -> None:
        self.events.append(item)


def test_a_page_sns_refuses_is_published_a_bounded_number_of_times_and_recorded_unsent():
    """SNS is tried PUBLISH_ATTEMPTS times (each already retried by botocore), then the page is recorded as not sent."""
    aws = Topic()
    publisher = AlertPublisher(aws, Names(prefix="t", param_prefix="/t"), source="test")  # type: ignore[arg-type]
    publisher.events.echo = False
    sent = publisher.page({"dedup_key": "k", "at": "2026-11-26T00:00:00.000Z"}, kind="exposure_breach",
                          subject="breach", stream="exposure", event="exposure_paged")
    assert publisher.events.flush(timeout=5)
    assert sent is False
    assert aws.publishes == PUBLISH_ATTEMPTS
    assert '"sent": false' in aws.events[0]["Item"]["body"]["S"]


def test_until_done_retries_until_the_action_succeeds():
    """The monitor's unbounded write retry keeps going while retry() says so, and returns the action's answer."""
    calls = []

    def action() -> str:
        calls.append(1)
        if len(calls) < 5:
            raise ConnectionError("down")
        return "written"

    assert until_done(action, retry=lambda exc: True) == "written"
    assert len(calls) == 5


def test_until_done_lets_through_what_retry_refuses():
    """An exception retry() refuses (bad input, a stopping monitor) is raised at once, not retried."""
    calls = []

    def action() -> None:
        calls.append(1)
        raise BadInput("no such table")

    with pytest.raises(BadInput):
        until_done(action, retry=lambda exc: not isinstance(exc, BadInput))
    assert len(calls) == 1
