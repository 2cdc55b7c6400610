"""Retries of AWS write loops, done by stamina: bounded, jittered, and instant in its test mode.

botocore already retries each *request* (standard mode, 4 attempts) on throttling and transient
errors. What it cannot retry is a request that succeeded with part of its work left over: a
``BatchWriteItem`` answering ``UnprocessedItems``, a ``BatchGetItem`` answering ``UnprocessedKeys``,
a Kinesis ``PutRecords`` with failed records. Those loops live here, each with a bound, so a table or
stream that keeps refusing ends in a clear :class:`~tradeops.runtime.platform.errors.AwsError` (or a
count of what was dropped) rather than a loop that spins forever at a fixed 50 ms.

The re-read-and-retry loops of conditional writes (orders, audit chain, ledger) are not retries of a
failure but a protocol, and stay where they are.

Tests call ``stamina.set_testing(True, attempts=N, cap=True)``: no waiting, the real bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import stamina

from tradeops.runtime.platform.errors import AwsError

__all__ = ["BATCH_ATTEMPTS", "PUT_RECORDS_ATTEMPTS", "Leftover", "batch_get_all", "batch_write_all", "put_records_all",
           "until_done"]

T = TypeVar("T")

BATCH_ATTEMPTS = 8
"""Attempts at one batch before giving up: 0.05 s doubling to 2 s, jittered, about 6 s in all."""


PUT_RECORDS_ATTEMPTS = 3
"""Attempts at a Kinesis batch: a price feed must not stall on a throttled shard (50 ms, 100 ms, jittered)."""


class Leftover(Exception):  # not an error of ours: the signal stamina retries on
    """Part of a batch was not processed; carries what is left for the next attempt."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__("unprocessed items left")
        self.request = request


def _count(request: dict[str, Any], field: str | None = None) -> int:
    return sum(len(v[field] if field else v) for v in request.values())


def _until_none_left(call: Callable[[dict[str, Any]], dict[str, Any]], request: dict[str, Any], *,
                     attempts: int) -> None:
    """``call(pending)`` returns what it left; call again until nothing is, at most ``attempts`` times."""
    pending = request
    for attempt in stamina.retry_context(on=Leftover, attempts=attempts, timeout=None,
                                         wait_initial=0.05, wait_max=2.0, wait_jitter=0.1):
        with attempt:
            left = call(pending)
            if left:
                pending = left
                raise Leftover(left)


def batch_write_all(dynamodb: Any, request: dict[str, list[dict[str, Any]]], *,
                    attempts: int = BATCH_ATTEMPTS, what: str = "batch write") -> None:
    """``BatchWriteItem`` until nothing is left unprocessed, at most ``attempts`` times (AwsError after)."""
    try:
        _until_none_left(lambda pending: dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems"),
                         request, attempts=attempts)
    except Leftover as exc:
        raise AwsError(f"{what}: {_count(exc.request)} items still unprocessed after {attempts} attempts "
                       "(the table is throttling; try again later)") from None


def batch_get_all(dynamodb: Any, request: dict[str, dict[str, Any]], *,
                  attempts: int = BATCH_ATTEMPTS, what: str = "batch read") -> dict[str, list[dict[str, Any]]]:
    """``BatchGetItem`` until no key is left unprocessed, at most ``attempts`` times; the items by table."""
    found: dict[str, list[dict[str, Any]]] = {}

    def get(pending: dict[str, Any]) -> dict[str, Any]:
        got = dynamodb.batch_get_item(RequestItems=pending)
        for table, items in got.get("Responses", {}).items():
            found.setdefault(table, []).extend(items)
        return got.get("UnprocessedKeys") or {}

    try:
        _until_none_left(get, request, attempts=attempts)
    except Leftover as exc:
        raise AwsError(f"{what}: {_count(exc.request, 'Keys')} keys still unprocessed after {attempts} "
                       "attempts (the table is throttling; try again later)") from None
    return found


def put_records_all(kinesis: Any, stream: str, entries: list[Any], encode: Any, partition_key: Any, *,
                    attempts: int = PUT_RECORDS_ATTEMPTS) -> tuple[list[Any], list[Any]]:
    """``PutRecords`` of ``entries`` (each made a record by ``encode``/``partition_key``), retrying only the
    failed records, at most ``attempts`` times. Returns (accepted, failed) entries; a request that
    fails outright raises (botocore has retried it already)."""
    pending = list(entries)
    accepted: list[Any] = []
    try:
        for attempt in stamina.retry_context(on=Leftover, attempts=attempts, timeout=None,
                                             wait_initial=0.05, wait_max=0.2, wait_jitter=0.05):
            with attempt:
                records = [{"Data": encode(e), "PartitionKey": partition_key(e)} for e in pending]
                answer = kinesis.put_records(StreamName=stream, Records=records)
                failed: list[Any] = []
                for entry, result in zip(pending, answer.get("Records", []), strict=False):
                    (failed if result.get("ErrorCode") else accepted).append(entry)
                pending = failed
                if pending:
                    raise Leftover({"failed": pending})
    except Leftover:
        return accepted, pending
    return accepted, []


def until_done(action: Callable[[], T], *, retry: Callable[[Exception], bool],
               wait_initial: float = 0.2, wait_max: float = 5.0) -> T:
    """Run ``action`` until it returns, for as long as ``retry(exc)`` says a failure is worth another go.

    Unbounded by design (for writes a checkpoint must not pass); jittered backoff doubling from
    ``wait_initial`` up to ``wait_max``. ``retry`` decides, counts and logs: it returns False to let the
    exception through (bad input, or a process that is stopping).
    """
    for attempt in stamina.retry_context(on=retry, attempts=None, timeout=None,
                                         wait_initial=wait_initial, wait_max=wait_max, wait_jitter=wait_initial):
        with attempt:
            return action()
    raise AssertionError("unreachable: an unbounded retry returns or raises")  # pragma: no cover
