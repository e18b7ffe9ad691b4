"""The DynamoDB Streams event source mapping: batching, order and Lambda's failure handling.

Most tests drive the poller with an in-memory stream client (fast, deterministic); the last
ones run it against moto's server, as the local stack does.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
)
from moto.dynamodbstreams.models import dynamodbstreams_backends

from pts.local.dynamodb import LocalDynamoDB
from pts.local.event_source_mapping import (
    EventSourceMapping,
    StreamPoller,
    lambda_record,
    release_moto_iterator,
)
from pts.local.template import Template

ARN = "arn:aws:dynamodb:eu-west-1:111122223333:table/T/stream/2024-12-01T09:00:00.000"
BASE = EventSourceMapping(
    "Fn",
    "Fn.Stream",
    ARN,
    starting_position="TRIM_HORIZON",
    batch_size=100,
    report_batch_item_failures=True,
)


def raw_record(seq: int, *, kind: str = "batch", age: float = 0.0) -> dict[str, Any]:
    """A record as boto3's `get_records` returns it (datetimes, bytes)."""
    image = {"pk": {"S": "STREAM#s"}, "sk": {"S": f"BATCH#{seq:010d}"}, "kind": {"S": kind}}
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime.fromtimestamp(time.time() - age, UTC),
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": f"{seq:021d}",
            "SizeBytes": 50,
            "StreamViewType": "NEW_IMAGE",
        },
    }


class FakeStreams:
    """`describe_stream`, `get_shard_iterator` and `get_records` over in-memory shards."""

    def __init__(self) -> None:
        self.shards: dict[str, list[dict[str, Any]]] = {"shard-0": []}
        self.parents: dict[str, str] = {}
        self.closed: set[str] = set()
        self.lock = threading.Lock()

    def put(self, *seqs: int, shard: str = "shard-0", **options: Any) -> None:
        with self.lock:
            self.shards[shard] += [raw_record(seq, **options) for seq in seqs]

    def describe_stream(self, StreamArn: str, **_: Any) -> dict[str, Any]:
        shards = []
        for shard_id in self.shards:
            numbers = {"StartingSequenceNumber": "0"}
            if shard_id in self.closed:
                numbers["EndingSequenceNumber"] = "9" * 21
            shard = {"ShardId": shard_id, "SequenceNumberRange": numbers}
            if shard_id in self.parents:
                shard["ParentShardId"] = self.parents[shard_id]
            shards.append(shard)
        return {"StreamDescription": {"StreamArn": StreamArn, "Shards": shards}}

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str = ""
    ) -> dict[str, str]:
        records = self.shards[ShardId]
        numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
        position = {
            "TRIM_HORIZON": 0,
            "LATEST": len(records),
            "AFTER_SEQUENCE_NUMBER": numbers.index(SequenceNumber) + 1 if SequenceNumber else 0,
        }[ShardIteratorType]
        return {"ShardIterator": f"{ShardId}|{position}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard_id, position = ShardIterator.split("|")
        with self.lock:
            records = self.shards[shard_id][int(position) : int(position) + Limit]
            end = int(position) + len(records)
            response: dict[str, Any] = {"Records": records}
            if shard_id not in self.closed or end < len(self.shards[shard_id]):
                response["NextShardIterator"] = f"{shard_id}|{end}"
        return response


class Function:
    """A stand-in for the fan-out: records each batch's sequence numbers, answers with `answer`."""

    def __init__(self, answer: Callable[[list[int], int], Any] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.events: list[dict[str, Any]] = []
        self.answer = answer or (lambda seqs, call: None)

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]
        self.batches.append(seqs)
        return self.answer(seqs, len(self.batches))

    def delivered(self) -> list[int]:
        return [seq for batch in self.batches for seq in batch]


def fail(*seqs: int) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": f"{seq:021d}"} for seq in seqs]}


def poll(
    streams: FakeStreams,
    function: Function,
    until: Callable[[], bool],
    mapping: EventSourceMapping = BASE,
    *,
    after_start: Callable[[], None] | None = None,
) -> StreamPoller:
    poller = StreamPoller(
        mapping, function, client=streams, poll_interval=0.005, active_poll_interval=0.002
    )
    poller.delay = lambda retries: 0.0
    poller.start()
    try:
        if after_start:
            after_start()
        deadline = time.monotonic() + 5
        while not until() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # anything more would show up now
    finally:
        poller.stop()
    return poller


# -- the mapping, from the template --------------------------------------------------------


def test_the_templates_mapping(template: Template):
    (mapping,) = EventSourceMapping.all_from(template, {"StreamsTable": ARN})
    assert mapping.function_id == "FanoutFunction"
    assert mapping.name == "FanoutFunction.StreamRecords"
    assert mapping.stream_arn == ARN
    assert mapping.starting_position == "LATEST"
    assert (mapping.batch_size, mapping.batching_window) == (100, 0.0)
    assert mapping.report_batch_item_failures and mapping.bisect_on_error
    assert (mapping.maximum_retry_attempts, mapping.maximum_record_age) == (5, 300)
    assert mapping.on_failure == "FanoutFailureQueue"
    assert mapping.function_arn == "arn:aws:lambda:eu-west-1:111122223333:function:FanoutFunction"


def test_records_are_reshaped_as_lambda_sends_them():
    raw = raw_record(7)
    raw["dynamodb"]["NewImage"]["blob"] = {"B": b"\x00\x01"}
    raw["dynamodb"]["NewImage"]["nested"] = {"M": {"bs": {"BS": [b"\xff"]}}}
    raw["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    record = lambda_record(raw, ARN)
    assert list(record) == [
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
        "userIdentity",
    ]
    assert (record["eventVersion"], record["awsRegion"]) == ("1.1", "eu-west-1")
    assert record["eventSourceARN"] == ARN
    stream = record["dynamodb"]
    created = stream["ApproximateCreationDateTime"]
    assert isinstance(created, float) and created == int(created)
    assert abs(created - time.time()) < 2
    assert stream["NewImage"]["blob"] == {"B": "AAE="}
    assert stream["NewImage"]["nested"] == {"M": {"bs": {"BS": ["/w=="]}}}
    assert record["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


# -- batching and order ------------------------------------------------------------------


def test_batches_respect_batch_size_and_shard_order():
    streams, function = FakeStreams(), Function()
    streams.put(*range(1, 6))
    poll(
        streams,
        function,
        lambda: len(function.delivered()) == 5,
        dataclasses.replace(BASE, batch_size=2),
    )
    assert function.batches == [[1, 2], [3, 4], [5]]


def test_latest_skips_what_was_written_before_the_start():
    streams, function = FakeStreams(), Function()
    streams.put(1, 2)
    latest = dataclasses.replace(BASE, starting_position="LATEST")
    poll(
        streams,
        function,
        lambda: 4 in function.delivered(),
        latest,
        after_start=lambda: streams.put(3, 4),
    )
    assert function.delivered() == [3, 4]


def test_filtered_out_records_never_invoke(template: Template):
    (mapping,) = EventSourceMapping.all_from(template, {"StreamsTable": ARN})
    mapping = dataclasses.replace(mapping, starting_position="TRIM_HORIZON")
    streams, function = FakeStreams(), Function()
    streams.put(1, 2, kind="chat")
    streams.put(3)
    streams.put(4, 5, kind="chat")
    poller = poll(streams, function, lambda: bool(function.batches), mapping)
    assert function.batches == [[3]]
    assert poller.invocations == 1


def test_a_child_shard_follows_its_closed_parent():
    streams, function = FakeStreams(), Function()
    streams.shards["shard-1"] = []
    streams.parents["shard-1"] = "shard-0"
    streams.put(3, 4, shard="shard-1")
    streams.put(1, 2)
    streams.closed.add("shard-0")
    poll(streams, function, lambda: len(function.delivered()) == 4)
    assert function.delivered() == [1, 2, 3, 4]


# -- failures ----------------------------------------------------------------------------


def test_a_record_that_fails_once_is_retried_and_later_records_follow_in_order():
    streams = FakeStreams()
    function = Function(lambda seqs, call: fail(3) if call == 1 else None)
    streams.put(1, 2, 3, 4, 5)

    def more() -> None:
        while len(function.batches) < 2:
            time.sleep(0.005)
        streams.put(6, 7)

    poller = poll(streams, function, lambda: 7 in function.delivered(), after_start=more)
    # Lambda checkpoints before the first failed record and retries from there.
    assert function.batches == [[1, 2, 3, 4, 5], [3, 4, 5], [6, 7]]
    assert poller.failures == []


def test_the_lowest_failed_record_is_where_the_retry_starts():
    streams = FakeStreams()
    function = Function(lambda seqs, call: fail(4, 2) if call == 1 else None)
    streams.put(1, 2, 3, 4)
    poll(streams, function, lambda: len(function.batches) == 2)
    assert function.batches == [[1, 2, 3, 4], [2, 3, 4]]


@pytest.mark.parametrize("identifier", ["", None, "not-in-this-batch"])
def test_a_bad_item_identifier_fails_the_whole_batch(identifier: str | None):
    streams = FakeStreams()
    answer = {"batchItemFailures": [{"itemIdentifier": identifier}]}
    function = Function(lambda seqs, call: answer if call == 1 else None)
    streams.put(1, 2, 3)
    poll(streams, function, lambda: len(function.batches) == 2)
    assert function.batches == [[1, 2, 3], [1, 2, 3]]


def test_item_failures_are_ignored_unless_the_mapping_reports_them():
    streams = FakeStreams()
    function = Function(lambda seqs, call: fail(2))
    streams.put(1, 2, 3)
    mapping = dataclasses.replace(BASE, report_batch_item_failures=False)
    poll(streams, function, lambda: bool(function.batches), mapping)
    assert function.batches == [[1, 2, 3]]


def test_a_poison_record_is_bisected_out_retried_then_sent_to_the_destination():
    def answer(seqs: list[int], call: int) -> None:
        if 2 in seqs:
            raise RuntimeError("poison")

    streams, function = FakeStreams(), Function(answer)
    streams.put(1, 2, 3, 4)
    mapping = dataclasses.replace(BASE, bisect_on_error=True, maximum_retry_attempts=2)
    poller = poll(streams, function, lambda: 4 in function.delivered(), mapping)
    assert function.batches == [[1, 2, 3, 4], [1, 2], [1], [2], [2], [2], [3, 4]]
    (failure,) = poller.failures
    parsed = DynamoDBStreamLambdaOnFailureDestinationModel(**failure)
    assert parsed.request_context.condition == "RetryAttemptsExhausted"
    assert parsed.request_context.approximate_invoke_count == 3
    info = parsed.ddb_stream_batch_info
    assert (info.start_sequence_number, info.end_sequence_number) == (f"{2:021d}", f"{2:021d}")
    assert (info.batch_size, info.shard_id, info.stream_arn) == (1, "shard-0", ARN)


def test_without_bisect_a_failing_batch_is_retried_whole_then_given_up():
    def answer(seqs: list[int], call: int) -> None:
        raise RuntimeError("down")

    streams, function = FakeStreams(), Function(answer)
    streams.put(1, 2)
    mapping = dataclasses.replace(BASE, maximum_retry_attempts=1)
    poller = poll(streams, function, lambda: len(function.batches) >= 2, mapping)
    assert function.batches == [[1, 2], [1, 2]]
    (failure,) = poller.failures
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 2


def test_records_older_than_the_maximum_age_are_not_delivered():
    streams, function = FakeStreams(), Function()
    streams.put(1, age=400)
    streams.put(2)
    mapping = dataclasses.replace(BASE, maximum_record_age=300)
    poller = poll(streams, function, lambda: bool(function.batches), mapping)
    assert function.batches == [[2]]
    (failure,) = poller.failures
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"


# -- against moto's server, as in the local stack ------------------------------------------


@pytest.fixture(scope="module")
def moto_tables(template: Template) -> Iterator[LocalDynamoDB]:
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setenv(name, "local")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
        tables = LocalDynamoDB(template, prefix=f"u{uuid.uuid4().hex[:8]}")
        tables.start()
        try:
            yield tables
        finally:
            tables.stop()


def test_moto_stream_records_reach_the_function_in_write_order(
    template: Template, moto_tables: LocalDynamoDB
):
    endpoint = moto_tables.endpoint
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    table = moto_tables.table_names["StreamsTable"]
    (mapping,) = EventSourceMapping.all_from(template, moto_tables.stream_arns)
    function = Function()
    poller = StreamPoller(mapping, function, client=streams, release_iterator=release_moto_iterator)
    poller.delay = lambda retries: 0.0
    poller.start()
    try:
        for seq in range(1, 31):
            item = {"pk": {"S": "STREAM#m"}, "sk": {"S": f"BATCH#{seq:010d}"}}
            item |= {"kind": {"S": "batch"}, "seq": {"N": str(seq)}, "text": {"S": f"{seq}. "}}
            dynamodb.put_item(TableName=table, Item=item)
            chat = {"pk": {"S": f"CHAT#{seq}"}, "sk": {"S": "CHAT"}, "kind": {"S": "chat"}}
            dynamodb.put_item(TableName=table, Item=chat)  # filtered out
        deadline = time.monotonic() + 5
        while sum(len(e["Records"]) for e in function.events) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        poller.stop()
    texts = [
        record["dynamodb"]["NewImage"]["text"]["S"]
        for event in function.events
        for record in event["Records"]
    ]
    assert texts == [f"{seq}. " for seq in range(1, 31)]
    backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
    ours = [arn for arn in backend.shard_iterators if arn.startswith(mapping.stream_arn)]
    assert len(ours) <= 2  # used iterators are released, not hoarded
