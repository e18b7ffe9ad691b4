"""The local DynamoDB shows every request it serves to its observers (the bench's meter)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from pts.local.dynamodb import LocalDynamoDB
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
