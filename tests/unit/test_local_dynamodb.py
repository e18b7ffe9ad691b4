"""The local DynamoDB shows every request it serves to its observers (the bench's meter)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from pts.local.dynamodb import DATA_FILE, LocalDynamoDB
from pts.local.template import Template


def test_observers_see_each_dynamodb_request_with_its_answer(monkeypatch: pytest.MonkeyPatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    seen: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    local = LocalDynamoDB(Template(), prefix=f"o{uuid.uuid4().hex[:8]}")
    local.start()
    try:
        local.observe(lambda *request: seen.append(request))
        client = boto3.client("dynamodb", endpoint_url=local.endpoint)
        table = local.table_names["StreamsTable"]
        item = {"pk": {"S": "STREAM#x"}, "sk": {"S": "META"}}
        client.put_item(TableName=table, Item=item)
        client.get_item(TableName=table, Key=item)
        streams = boto3.client("dynamodbstreams", endpoint_url=local.endpoint)
        streams.describe_stream(StreamArn=local.stream_arns["StreamsTable"])  # not DynamoDB's
    finally:
        local.stop()
    assert [(operation, request["TableName"]) for operation, request, _ in seen] == [
        ("PutItem", table),
        ("GetItem", table),
    ]
    assert seen[1][2] == {"Item": item}


def _local_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_a_data_dir_is_saved_while_written_and_loaded_without_stream_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    _local_credentials(monkeypatch)
    data_file = tmp_path / DATA_FILE
    item = {"pk": {"S": "STREAM#kept"}, "sk": {"S": "META"}, "n": {"N": "7"}, "b": {"B": b"\0\1"}}

    first = LocalDynamoDB(Template(), prefix=f"a{uuid.uuid4().hex[:8]}", data_dir=tmp_path)
    first.save_interval = 0.2
    first.start()
    try:
        time.sleep(0.5)
        assert not data_file.exists()  # nothing written, nothing saved
        client = boto3.client("dynamodb", endpoint_url=first.endpoint)
        client.put_item(TableName=first.table_names["StreamsTable"], Item=item)
        deadline = time.monotonic() + 5
        while not data_file.exists():  # saved while running: a crash loses little
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        first.stop()

    second = LocalDynamoDB(Template(), prefix=f"b{uuid.uuid4().hex[:8]}", data_dir=tmp_path)
    second.start()
    try:
        client = boto3.client("dynamodb", endpoint_url=second.endpoint)
        table = second.table_names["StreamsTable"]
        key = {"pk": item["pk"], "sk": item["sk"]}
        assert client.get_item(TableName=table, Key=key)["Item"] == item
        streams = boto3.client("dynamodbstreams", endpoint_url=second.endpoint)
        arn = second.stream_arns["StreamsTable"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        assert streams.get_records(ShardIterator=iterator)["Records"] == []  # not news
    finally:
        second.stop()
