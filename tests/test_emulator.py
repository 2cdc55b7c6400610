"""The local stack's emulator: moto's answers, with Kinesis puts one at a time and moto's per-request waste gone."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3

from tradeops.runtime.stack import emulator


def _kinesis(endpoint: str):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="eu-west-2",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_concurrent_kinesis_puts_each_keep_their_record(moto_endpoint):
    """8 threads putting 40 records each into one shard: 320 records, 320 distinct sequence numbers
    (moto numbers a record from the shard's last one with no lock of its own)."""
    client = _kinesis(moto_endpoint)
    name = f"emu-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=name, ShardCount=1)

    def put(writer: int) -> list[str]:
        own = _kinesis(moto_endpoint)
        return [own.put_record(StreamName=name, Data=f"{writer}-{n}".encode(), PartitionKey="k")["SequenceNumber"]
                for n in range(40)]

    with ThreadPoolExecutor(8) as pool:
        answered = [seq for seqs in pool.map(put, range(8)) for seq in seqs]
    shard = client.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamName=name, ShardId=shard,
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    stored = []
    while iterator:
        page = client.get_records(ShardIterator=iterator, Limit=1000)
        stored += page["Records"]
        iterator = page.get("NextShardIterator") if page["Records"] else None
    assert len(set(answered)) == 320
    assert sorted(r["Data"].decode() for r in stored) == sorted(f"{w}-{n}" for w in range(8) for n in range(40))


def test_what_is_computed_once_answers_as_moto_does():
    """The cached module list, the O(1) last sequence number and the retention check without the queue's
    counts give moto's own answers."""
    from moto import backends
    from moto.kinesis.models import Shard
    from moto.sqs.models import SQSBackend, sqs_backends

    sqs = sqs_backends["123456789012"]["eu-west-2"]
    queue = f"emu-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(queue, MessageRetentionPeriod="60")
    fresh = sqs.send_message(queue, "fresh")
    stale = sqs.send_message(queue, "stale")
    stale.sent_timestamp -= 61_000
    retained = SQSBackend.is_message_valid_based_on_retention_period
    moto_says = [retained(sqs, queue, m) for m in (fresh, stale)]

    listed = list(backends.list_of_moto_modules())
    shard = Shard(0, 0, 2**128)
    original, original_modules = Shard.get_max_sequence_number, backends.list_of_moto_modules
    assert moto_says == [True, False]
    try:
        empty = original(shard)
        for n in range(5):
            shard.put_record("k", f"r{n}", "")
        before = original(shard)
        emulator.speed_up_moto()
        assert list(backends.list_of_moto_modules()) == listed and "dynamodb" in listed
        assert Shard.get_max_sequence_number(shard) == before == 5
        assert Shard.get_max_sequence_number(Shard(1, 0, 2**128)) == empty == 0
        assert [SQSBackend.is_message_valid_based_on_retention_period(sqs, queue, m) for m in (fresh, stale)] \
            == moto_says
    finally:
        Shard.get_max_sequence_number = original  # type: ignore[method-assign]
        backends.list_of_moto_modules = original_modules
        SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]


def test_stream_records_keep_both_images_and_their_time(moto_endpoint):
    """DynamoDB Streams' GetRecords (answered without moto's generic serializer) gives boto3 each change
    with its keys, old and new images and an aware creation time of now."""
    from datetime import UTC, datetime

    kwargs = {"endpoint_url": moto_endpoint, "region_name": "eu-west-2", "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}
    dynamodb, streams = boto3.client("dynamodb", **kwargs), boto3.client("dynamodbstreams", **kwargs)
    name = f"emu-{uuid.uuid4().hex[:8]}"
    arn = dynamodb.create_table(
        TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    before = datetime.now(UTC)
    history = {"L": [{"M": {"at": {"S": "2026-11-26T10:00:00.000Z"}, "n": {"N": "1.50"}}}]}
    dynamodb.put_item(TableName=name, Item={"k": {"S": "a"}, "v": {"N": "1"}, "history": history})
    dynamodb.update_item(TableName=name, Key={"k": {"S": "a"}}, UpdateExpression="SET v = :two",
                         ExpressionAttributeValues={":two": {"N": "2"}})
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    page = streams.get_records(ShardIterator=iterator)
    inserted, modified = page["Records"]
    assert (inserted["eventName"], modified["eventName"]) == ("INSERT", "MODIFY")
    assert inserted["dynamodb"]["NewImage"] == {"k": {"S": "a"}, "v": {"N": "1"}, "history": history}
    assert modified["dynamodb"]["OldImage"]["v"] == {"N": "1"} and modified["dynamodb"]["NewImage"]["v"] == {"N": "2"}
    assert modified["dynamodb"]["Keys"] == {"k": {"S": "a"}}
    made = modified["dynamodb"]["ApproximateCreationDateTime"]
    assert made.tzinfo is not None and abs((made - before).total_seconds()) < 30
    assert streams.get_records(ShardIterator=page["NextShardIterator"])["Records"] == []
