"""moto's index queries, patched to sort cheaply: same answers, in the same order."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from moto.dynamodb.models.dynamo_type import DynamoType

from pts.local import moto_queries

TABLE = "StreamsTable"


def _query(client: Any) -> list[str]:
    answer = client.query(
        TableName=TABLE,
        IndexName="ActiveStreams",
        KeyConditionExpression="activeStatus = :s AND updatedAt < :t",
        ExpressionAttributeValues={":s": {"S": "streaming"}, ":t": {"N": "100000"}},
    )
    return [item["pk"]["S"] for item in answer["Items"]]


def test_an_index_query_answers_the_same_without_comparing_every_item_in_python(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
):
    moto_queries.install()
    for i in range(3):
        item = {"pk": {"S": f"S#{i}"}, "sk": {"S": "META"}}
        item |= {"activeStatus": {"S": "streaming"}, "updatedAt": {"N": str(3 - i)}}
        dynamodb.put_item(TableName=TABLE, Item=item)
    for i in range(500):  # inactive: not in the sparse index; ids in no order, as chats'
        item = {"pk": {"S": f"C#{uuid.uuid4().hex}"}, "sk": {"S": "META"}, "n": {"N": str(i)}}
        dynamodb.put_item(TableName=TABLE, Item=item)
    comparisons = 0
    less_than = DynamoType.__lt__

    def counted(self: DynamoType, other: DynamoType) -> bool:
        nonlocal comparisons
        comparisons += 1
        return less_than(self, other)

    monkeypatch.setattr(DynamoType, "__lt__", counted)
    assert _query(dynamodb) == ["S#2", "S#1", "S#0"]  # by the index's range key
    # moto sorts the whole table first, comparing DynamoTypes in Python (thousands of calls,
    # each recomputing both values); patched, only the few results are.
    assert comparisons < 50, comparisons
