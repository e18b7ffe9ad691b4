"""The local stack lasts a working day: a closed connection's work stops at once and leaves no
subscription behind (its `$disconnect` runs once)."""

from __future__ import annotations

import asyncio
import json
import time

import boto3
import httpx
from websockets.asyncio.client import connect

from pts.local.functions import Invocation
from tests.support import RunningStack


def test_a_flood_then_a_close_stops_at_once_and_leaves_no_subscription(
    local_stack: RunningStack,
):
    stack = local_stack.stack
    function = stack.functions["WebSocketFunction"]
    invocations: list[Invocation] = []
    function.observe(invocations.append)
    with httpx.Client(base_url=local_stack.http_url) as http:
        stream_id = http.post("/chats", json={"prompt": "echo:flood"}).json()["streamId"]

    async def flood() -> None:
        async with connect(local_stack.ws_url) as ws:
            frame = json.dumps({"action": "subscribe", "streamId": stream_id})
            for _ in range(2000):
                await ws.send(frame)

    asyncio.run(flood())
    closed = time.monotonic()
    deadline = closed + 10
    while not any(i.event["requestContext"]["routeKey"] == "$disconnect" for i in invocations):
        assert time.monotonic() < deadline, "no $disconnect"
        time.sleep(0.05)
    settled = len(invocations)
    time.sleep(1.5)
    assert len(invocations) == settled, "frames of a closed connection still run"
    routes = [i.event["requestContext"]["routeKey"] for i in invocations]
    assert routes.count("$disconnect") == 1
    assert routes.count("subscribe") < 200  # of 2,000 sent
    connections = boto3.client("dynamodb").scan(
        TableName=stack.dynamodb.table_names["ConnectionsTable"]
    )
    assert connections["Items"] == []
