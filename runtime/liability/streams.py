"""Following streams shard by shard: the Kinesis price stream and the orders table's DynamoDB Stream.

A follower reads every shard of one stream through shard iterators, from remembered positions
(the last sequence number *applied* per shard, which the caller advances as it applies records),
so that after a restart each shard resumes right after what was applied. Children of a split or
merged shard are read only once their parents are finished, so one key's records stay in order.
A checkpoint older than the stream's retention restarts that shard at the oldest record kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tradeops.runtime.platform.aws import Aws, error_code

__all__ = ["SHARD_REFRESH_SECONDS", "DynamoStreamFollower", "KinesisFollower"]

log = logging.getLogger("tradeops.monitor")

SHARD_REFRESH_SECONDS = 30.0
"""How often a follower lists the stream's shards again (splits and merges make new ones)."""


class _Follower:
    """Follows every shard of one stream with shard iterators from remembered positions.

    ``positions`` holds the last sequence number *applied* per shard; the caller advances it as it
    applies records, so after a restart a shard resumes right after it. Children of a split or
    merged shard are read only once their parents are finished, so one key's records stay in order.
    """

    limit = 1000

    def __init__(self, positions: Mapping[str, str], initial: tuple[str, dict[str, Any]]) -> None:
        self.positions: dict[str, str] = dict(positions)
        self.initial = initial
        self.caught_up = False
        self.full = False  # the last poll filled a page somewhere: read again at once
        self._iterators: dict[str, str | None] = {}
        self._parents: dict[str, tuple[str, ...]] = {}
        self._order: list[str] = []
        self._finished: set[str] = set()
        self._listed_at = -1e9

    # adapters
    def _list(self) -> list[tuple[str, tuple[str, ...]]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _iterator(self, shard_id: str, kind: str, **kwargs: Any) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _records(self, iterator: str) -> tuple[list[dict[str, Any]], str | None, bool]:  # pragma: no cover
        """(records, next iterator or None when the shard is closed and read, still behind the tip?)."""
        raise NotImplementedError

    def _seq(self, record: dict[str, Any]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start(self, shard_id: str) -> str:
        seq = self.positions.get(shard_id)
        if seq is not None:
            try:
                return self._iterator(shard_id, "AFTER_SEQUENCE_NUMBER", seq=seq)
            except Exception as exc:
                if error_code(exc) not in ("InvalidArgumentException", "TrimmedDataAccessException",
                                           "ValidationException"):
                    raise
                # The checkpoint is older than the stream's retention: start over from what is kept.
                log.warning("shard %s: checkpoint %s no longer readable; starting from the oldest record",
                            shard_id, seq)
                self.positions.pop(shard_id, None)
                return self._iterator(shard_id, "TRIM_HORIZON")
        kind, kwargs = self.initial
        return self._iterator(shard_id, kind, **kwargs)

    def refresh(self) -> None:
        self._listed_at = time.monotonic()
        for shard_id, parents in self._list():
            if shard_id not in self._parents:
                self._parents[shard_id] = parents
                self._order.append(shard_id)

    @property
    def shards(self) -> list[str]:
        return list(self._order)

    def poll(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The next records of every readable shard, in shard order: (shard_id, sequence, record)."""
        if time.monotonic() - self._listed_at > SHARD_REFRESH_SECONDS:
            self.refresh()
        out: list[tuple[str, str, dict[str, Any]]] = []
        caught_up, full = True, False
        for shard_id in list(self._order):
            if shard_id in self._finished:
                continue
            if any(p in self._parents and p not in self._finished for p in self._parents[shard_id]):
                continue
            iterator = self._iterators.get(shard_id) or self._start(shard_id)
            try:
                records, following, behind = self._records(iterator)
            except Exception as exc:
                code = error_code(exc)
                if code == "ExpiredIteratorException":
                    self._iterators[shard_id] = None  # resume from the applied position next time
                    caught_up = False
                    continue
                if code == "ProvisionedThroughputExceededException":
                    caught_up = False
                    continue
                if code == "ResourceNotFoundException":
                    self._finished.add(shard_id)
                    continue
                if code == "TrimmedDataAccessException":  # fell behind the retention: go on from the oldest kept
                    log.warning("shard %s: records after %s were trimmed", shard_id, self.positions.get(shard_id))
                    self.positions.pop(shard_id, None)
                    self._iterators[shard_id] = self._iterator(shard_id, "TRIM_HORIZON")
                    caught_up = False
                    continue
                raise
            self._iterators[shard_id] = following
            if following is None:
                self._finished.add(shard_id)  # a closed shard, read to its end
            out.extend((shard_id, self._seq(r), r) for r in records)
            if len(records) >= self.limit:
                full = True
            if behind or len(records) >= self.limit:
                caught_up = False
        self.caught_up, self.full = caught_up, full
        return out


class KinesisFollower(_Follower):
    """Every shard of the Kinesis price stream."""

    def __init__(self, aws: Aws, stream: str, positions: Mapping[str, str], *, since: datetime) -> None:
        super().__init__(positions, ("AT_TIMESTAMP", {"at": since}))
        self.kinesis = aws.kinesis
        self.stream = stream

    def _list(self) -> list[tuple[str, tuple[str, ...]]]:
        shards, kwargs = [], {"StreamName": self.stream}
        while True:
            page = self.kinesis.list_shards(**kwargs)
            shards += page.get("Shards", [])
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        return [(s["ShardId"], tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p))
                for s in shards]

    def _iterator(self, shard_id: str, kind: str, **kwargs: Any) -> str:
        args: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard_id, "ShardIteratorType": kind}
        if "seq" in kwargs:
            args["StartingSequenceNumber"] = kwargs["seq"]
        if "at" in kwargs:
            args["Timestamp"] = kwargs["at"]
        return self.kinesis.get_shard_iterator(**args)["ShardIterator"]

    def _records(self, iterator: str) -> tuple[list[dict[str, Any]], str | None, bool]:
        got = self.kinesis.get_records(ShardIterator=iterator, Limit=self.limit)
        records = got.get("Records", [])
        return records, got.get("NextShardIterator"), bool(got.get("MillisBehindLatest"))

    def _seq(self, record: dict[str, Any]) -> str:
        return record["SequenceNumber"]


class DynamoStreamFollower(_Follower):
    """Every shard of a DynamoDB table's stream (the orders table)."""

    def __init__(self, aws: Aws, stream_arn: str, positions: Mapping[str, str]) -> None:
        super().__init__(positions, ("TRIM_HORIZON", {}))
        self.streams = aws.client("dynamodbstreams")
        self.arn = stream_arn

    def _list(self) -> list[tuple[str, tuple[str, ...]]]:
        shards, kwargs = [], {"StreamArn": self.arn}
        while True:
            desc = self.streams.describe_stream(**kwargs)["StreamDescription"]
            shards += desc.get("Shards", [])
            if not desc.get("LastEvaluatedShardId"):
                break
            kwargs = {"StreamArn": self.arn, "ExclusiveStartShardId": desc["LastEvaluatedShardId"]}
        return [(s["ShardId"], (s["ParentShardId"],) if s.get("ParentShardId") else ()) for s in shards]

    def _iterator(self, shard_id: str, kind: str, **kwargs: Any) -> str:
        args: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id, "ShardIteratorType": kind}
        if "seq" in kwargs:
            args["SequenceNumber"] = kwargs["seq"]
        return self.streams.get_shard_iterator(**args)["ShardIterator"]

    def _records(self, iterator: str) -> tuple[list[dict[str, Any]], str | None, bool]:
        got = self.streams.get_records(ShardIterator=iterator, Limit=self.limit)
        records = got.get("Records", [])
        return records, got.get("NextShardIterator"), False

    def _seq(self, record: dict[str, Any]) -> str:
        return record["dynamodb"]["SequenceNumber"]
