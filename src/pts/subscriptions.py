"""Who watches which stream: WebSocket subscriptions in the connections table.

One item per (stream, connection) (keys in `pts.keys`), so the fan-out reads a stream's
viewers with one Query; the `ByConnection` index finds a
connection's subscriptions when it goes away. Items expire (`ttl`) a little after API
Gateway's 2-hour connection limit, so a missed `$disconnect` leaves nothing behind for long.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pts import aws
from pts.keys import serialize, stream_pk, subscription_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CONNECTION_LIFETIME = 2 * 3600 + 600


class SubscriptionStore:
    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.clock = clock
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        return self._client or aws.dynamodb()  # shared, created on first use

    def subscribe(self, connection_id: str, stream_id: str) -> None:
        item = {
            **subscription_key(stream_id, connection_id),
            "connectionId": connection_id,
            "streamId": stream_id,
            "ttl": int(self.clock() + CONNECTION_LIFETIME),
        }
        self.client.put_item(TableName=self.table, Item=serialize(item))

    def unsubscribe(self, connection_id: str, stream_id: str) -> None:
        self.client.delete_item(
            TableName=self.table, Key=serialize(subscription_key(stream_id, connection_id))
        )

    def subscribers(self, stream_id: str) -> list[str]:
        """Connection ids watching `stream_id` (every page)."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": stream_pk(stream_id)}},
            ProjectionExpression="connectionId",
        )
        return [item["connectionId"]["S"] for page in pages for item in page["Items"]]

    def remove_connection(self, connection_id: str) -> int:
        """Drop every subscription of a connection; how many there were."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName="ByConnection",
            KeyConditionExpression="connectionId = :c",
            ExpressionAttributeValues={":c": {"S": connection_id}},
        )
        count = 0
        for page in pages:
            for item in page["Items"]:
                self.client.delete_item(
                    TableName=self.table, Key={"pk": item["pk"], "sk": item["sk"]}
                )
                count += 1
        return count
