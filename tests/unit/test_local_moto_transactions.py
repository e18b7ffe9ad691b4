"""The local DynamoDB's transactions: moto's semantics, undone from a log instead of a copy
of the whole table (`pts.local.moto_transactions`)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb import models

from pts.local import moto_transactions
from pts.storage import serialize

TABLE = "StreamsTable"


@pytest.fixture
def client(dynamodb: Any) -> Any:
    moto_transactions.install()
    return dynamodb


def put(key: str, **attributes: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": serialize({"pk": key, "sk": "x", **attributes})}}


def records(client: Any) -> int:
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return len(streams.get_records(ShardIterator=iterator)["Records"])


def items(client: Any) -> dict[str, dict[str, Any]]:
    return {i["pk"]["S"]: i for i in client.scan(TableName=TABLE)["Items"]}


def test_a_transaction_applies_whole(client: Any):
    client.transact_write_items(TransactItems=[put("a", n=1), put("b", n=1)])
    assert set(items(client)) == {"a", "b"}
    assert records(client) == 2


def test_a_cancelled_transaction_leaves_no_trace(client: Any):
    client.transact_write_items(TransactItems=[put("a", n=1)])
    before, seen = items(client), records(client)
    update = {
        "Update": {
            "TableName": TABLE,
            "Key": serialize({"pk": "a", "sk": "x"}),
            "UpdateExpression": "SET n = :two",
            "ExpressionAttributeValues": serialize({":two": 2}),
        }
    }
    refused = put("b", n=1)
    refused["Put"]["ConditionExpression"] = "attribute_exists(pk)"  # b does not exist
    with pytest.raises(ClientError) as error:
        client.transact_write_items(TransactItems=[update, put("c", n=1), refused])
    assert error.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert items(client) == before  # a unchanged, c not created
    assert records(client) == seen  # and no stream record of either


def test_tables_are_not_copied(client: Any):
    table = models.dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE]
    assert models.copy.deepcopy(table) is table  # type: ignore[attr-defined]
    assert models.copy.deepcopy({"k": [1]}) == {"k": [1]}  # type: ignore[attr-defined]
