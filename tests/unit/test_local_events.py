"""`events/` holds one sample of every event kind the functions receive, in AWS's shape; the
local gateway, stream poller and scheduler produce exactly that shape (the same keys, all
the way down, with values of the same types), and Powertools reads both."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayWebSocketEvent,
    DynamoDBStreamEvent,
    EventBridgeEvent,
)
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
    DynamoDBStreamModel,
    EventBridgeModel,
)
from websockets.asyncio.client import connect

from pts.local.apigateway_websocket import WebSocketApi
from pts.local.dynamodb import LocalDynamoDB
from pts.local.event_source_mapping import EventSourceMapping, StreamPoller
from pts.local.gateway import LocalGateway
from pts.local.stack import scheduled_event
from pts.local.template import Template

EVENTS = Path(__file__).resolve().parents[2] / "events"
# Maps whose keys are data, not structure: compared by the types of their values only.
FREE_FORM = {
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
}


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def shape(value: Any, key: str = "") -> Any:
    """The structure of a JSON value: key sets and value types, recursively."""
    if isinstance(value, dict):
        if key in FREE_FORM:
            return {"<any key>": sorted({json.dumps(shape(v)) for v in value.values()})}
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [json.dumps(s) for s in sorted({json.dumps(shape(item)) for item in value})]
    return type(value).__name__


def test_every_function_event_kind_has_a_sample():
    names = {path.stem for path in EVENTS.glob("*.json")}
    assert names >= {
        "websocket-connect",
        "websocket-subscribe",
        "websocket-disconnect",
        "dynamodb-stream-batch",
        "schedule",
    }


# -- WebSocket -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_events(template: Template) -> dict[str, dict[str, Any]]:
    """What the local gateway hands the template's WebSocket function for one session."""
    api = WebSocketApi.from_template(template)
    events: dict[str, dict[str, Any]] = {}

    def function(event: dict[str, Any]) -> dict[str, int]:
        events[event["requestContext"]["eventType"]] = event
        return {"statusCode": 200}

    async def session() -> None:
        gateway = LocalGateway(api, {"WebSocketFunction": function})
        await gateway.start()
        try:
            async with connect(f"{gateway.url}/{api.stage}?client=pts-watch") as ws:
                await ws.send(sample("websocket-subscribe")["body"])
                await ws.close(1001)
        finally:
            await gateway.stop()

    asyncio.run(asyncio.wait_for(session(), 20))
    return events


@pytest.mark.parametrize(
    ("name", "event_type"),
    [
        ("websocket-connect", "CONNECT"),
        ("websocket-subscribe", "MESSAGE"),
        ("websocket-disconnect", "DISCONNECT"),
    ],
)
def test_the_gateway_shapes_events_like_api_gateway(gateway_events, name: str, event_type: str):
    local = gateway_events[event_type]
    assert shape(local) == shape(sample(name))
    assert list(local) == list(sample(name))


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("websocket-connect", APIGatewayWebSocketConnectEventModel),
        ("websocket-subscribe", APIGatewayWebSocketMessageEventModel),
        ("websocket-disconnect", APIGatewayWebSocketDisconnectEventModel),
    ],
)
def test_powertools_reads_websocket_events(gateway_events, name: str, model: Any):
    expected = sample(name)
    local = gateway_events[expected["requestContext"]["eventType"]]
    for raw in (expected, local):
        model(**raw)
        event = APIGatewayWebSocketEvent(raw)
        context = event.request_context
        assert context.route_key == expected["requestContext"]["routeKey"]
        assert context.connection_id and context.request_id and context.domain_name
        assert isinstance(context.connected_at, int) and isinstance(context.request_time_epoch, int)
        assert context.identity.source_ip
    subscribe = APIGatewayWebSocketEvent(gateway_events["MESSAGE"])
    assert subscribe.json_body["action"] == "subscribe"
    disconnect = APIGatewayWebSocketEvent(gateway_events["DISCONNECT"]).request_context
    assert (disconnect.disconnect_status_code, disconnect.disconnect_reason) == (1001, "Going away")


# -- DynamoDB stream -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream_events(template: Template) -> Iterator[list[dict[str, Any]]]:
    """What the local poller hands the fan-out for the sample's own writes, on moto's server."""
    records = sample("dynamodb-stream-batch")["Records"]
    batch_item, meta_item = (record["dynamodb"]["NewImage"] for record in records)
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setenv(name, "local")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_PROFILE", raising=False)
        tables = LocalDynamoDB(template, prefix=f"e{uuid.uuid4().hex[:8]}")
        tables.start()
        try:
            endpoint, table = tables.endpoint, tables.table_names["StreamsTable"]
            dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
            streams = boto3.client("dynamodbstreams", endpoint_url=endpoint)
            dynamodb.put_item(TableName=table, Item={**meta_item, "status": {"S": "streaming"}})
            (mapping,) = EventSourceMapping.all_from(template, tables.stream_arns)
            events: list[dict[str, Any]] = []
            received = threading.Event()

            def fanout(event: dict[str, Any]) -> dict[str, Any]:
                events.append(event)
                if sum(len(e["Records"]) for e in events) >= 2:
                    received.set()
                return {"batchItemFailures": []}

            poller = StreamPoller(mapping, fanout, client=streams)
            poller.start()
            try:
                dynamodb.put_item(TableName=table, Item=batch_item)
                dynamodb.put_item(TableName=table, Item=meta_item)  # streaming → done
                assert received.wait(5)
                time.sleep(0.1)
            finally:
                poller.stop()
            yield events
        finally:
            tables.stop()


def test_the_poller_shapes_events_like_lambda(stream_events):
    expected = sample("dynamodb-stream-batch")["Records"]
    local = [record for event in stream_events for record in event["Records"]]
    assert [r["eventName"] for r in local] == ["INSERT", "MODIFY"]
    for ours, theirs in zip(local, expected, strict=True):
        assert shape(ours) == shape(theirs)
        assert list(ours) == list(theirs)
        assert list(ours["dynamodb"]) == list(theirs["dynamodb"])
        assert ours["dynamodb"]["NewImage"] == theirs["dynamodb"]["NewImage"]
        assert ours["dynamodb"]["Keys"] == theirs["dynamodb"]["Keys"]


def test_powertools_reads_stream_events(stream_events):
    for raw in (sample("dynamodb-stream-batch"), *stream_events):
        DynamoDBStreamModel(**raw)
        for record in DynamoDBStreamEvent(raw).records:
            assert record.event_name is not None
            assert record.dynamodb is not None
            assert record.dynamodb.sequence_number
            assert record.dynamodb.new_image["kind"] in ("batch", "stream")
            assert isinstance(record.dynamodb.approximate_creation_date_time, int | float)


# -- schedule ------------------------------------------------------------------------------


def test_the_scheduler_shapes_events_like_eventbridge():
    local = scheduled_event(
        "arn:aws:events:us-east-1:000000000000:rule/SweeperFunction-EveryMinute"
    )
    expected = sample("schedule")
    assert shape(local) == shape(expected)
    for raw in (local, expected):
        EventBridgeModel(**raw)
        assert EventBridgeEvent(raw).detail_type == "Scheduled Event"
