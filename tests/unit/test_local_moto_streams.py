"""moto's DynamoDB Streams, made to last: the records every reader has read are dropped."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table
from moto.dynamodbstreams.models import dynamodbstreams_backends

from pts.local import moto_streams
from pts.local.event_source_mapping import release_moto_iterator

TABLE = "StreamsTable"


@pytest.fixture
def client(dynamodb: Any) -> Any:
    moto_streams.install()
    return dynamodb


def _table() -> Table:
    return dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE]


def _item(pk: str, **attrs: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "META"}, **{k: {"S": v} for k, v in attrs.items()}}


def _records(streams: Any, iterator: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator)["Records"]
    return records


def _iterator(streams: Any, client: Any, kind: str = "LATEST", **position: str) -> str:
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator: str = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType=kind, **position
    )["ShardIterator"]
    return iterator


def _read(streams: Any, iterator: str, limit: int = 1000) -> tuple[list[dict[str, Any]], str]:
    """GetRecords as the local poller calls it: the used iterator is released."""
    answer = streams.get_records(ShardIterator=iterator, Limit=limit)
    release_moto_iterator(iterator)
    return answer["Records"], answer["NextShardIterator"]


def test_streams_drop_what_every_reader_has_read(client: Any):
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    fast = _iterator(streams, client)
    slow = _iterator(streams, client)
    for i in range(5):
        client.put_item(TableName=TABLE, Item=_item(f"p{i}"))
    shard = _table().stream_shard
    assert shard is not None
    records, fast = _read(streams, fast)
    assert len(records) == 5
    assert moto_streams.trim_streams(dynamodbstreams_backends) == 0  # `slow` has read nothing
    first = records[0]["dynamodb"]["SequenceNumber"]
    _, slow = _read(streams, slow, limit=3)
    assert moto_streams.trim_streams(dynamodbstreams_backends) == 3
    assert len(shard.items) == 2
    rest, slow = _read(streams, slow)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in rest] == ["p3", "p4"]
    # Sequence numbers go on from where they were.
    client.put_item(TableName=TABLE, Item=_item("p5"))
    [newest], fast = _read(streams, fast)
    assert (
        int(newest["dynamodb"]["SequenceNumber"]) == int(rest[-1]["dynamodb"]["SequenceNumber"]) + 1
    )
    # A reader asking for what was trimmed gets DynamoDB's error, not a crash.
    old = _iterator(streams, client, "AT_SEQUENCE_NUMBER", SequenceNumber=first)
    with pytest.raises(ClientError) as trimmed:
        _read(streams, old)
    assert trimmed.value.response["Error"]["Code"] == "TrimmedDataAccessException"
