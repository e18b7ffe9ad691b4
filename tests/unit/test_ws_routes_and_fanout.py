"""The WebSocket routes and the fan-out, on moto tables, fed with the samples in events/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from pts.fanout import Fanout
from pts.storage import Status, StreamStore, serialize
from pts.subscriptions import SubscriptionStore
from pts.ws_routes import WebSocketRoutes

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


class FakeConnections:
    """Records what each connection receives; some connections are gone, some fail."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.gone: set[str] = set()
        self.failing: set[str] = set()

    def send(self, connection_id: str, message: dict[str, Any] | bytes) -> bool:
        if connection_id in self.gone:
            return False
        if connection_id in self.failing:
            raise ConnectionError("throttled")
        if isinstance(message, bytes):
            message = json.loads(message)
        self.received.setdefault(connection_id, []).append(message)
        return True


@pytest.fixture
def subscriptions(dynamodb: Any) -> SubscriptionStore:
    return SubscriptionStore("ConnectionsTable", client=dynamodb)


@pytest.fixture
def connections() -> FakeConnections:
    return FakeConnections()


@pytest.fixture
def routes(store: StreamStore, subscriptions: SubscriptionStore, connections: FakeConnections):
    return WebSocketRoutes(store, subscriptions, connections)  # type: ignore[arg-type]


def ws_event(route: str, connection_id: str, body: Any = None) -> APIGatewayWebSocketEvent:
    name = {
        "$connect": "websocket-connect.json",
        "$disconnect": "websocket-disconnect.json",
    }.get(route, "websocket-subscribe.json")
    event = copy.deepcopy(sample(name))
    event["requestContext"]["routeKey"] = route
    event["requestContext"]["connectionId"] = connection_id
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return APIGatewayWebSocketEvent(event)


def a_stream(store: StreamStore, *texts: str) -> str:
    chat, _ = store.create_chat("p")
    store.claim(chat.stream_id)
    for seq, text in enumerate(texts, start=1):
        store.append(chat.stream_id, seq, text)
    return chat.stream_id


def test_connect_and_disconnect(routes: WebSocketRoutes, store: StreamStore, subscriptions):
    assert routes.handle(ws_event("$connect", "c1")) == {"statusCode": 200}
    stream_id = a_stream(store, "Hi. ")
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    assert subscriptions.subscribers(stream_id) == ["c1"]
    assert routes.handle(ws_event("$disconnect", "c1")) == {"statusCode": 200}
    assert subscriptions.subscribers(stream_id) == []


def test_subscribe_sends_the_snapshot(routes, store, connections, subscriptions):
    stream_id = a_stream(store, "One. ", "Two. ", "Three. ")
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    routes.handle(
        ws_event("subscribe", "c2", {"action": "subscribe", "streamId": stream_id, "after": 2})
    )
    assert connections.received["c1"] == [
        {
            "type": "snapshot",
            "streamId": stream_id,
            "text": "One. Two. Three. ",
            "status": "streaming",
            "seq": 3,
        }
    ]
    assert connections.received["c2"][0]["text"] == "Three. "
    assert sorted(subscriptions.subscribers(stream_id)) == ["c1", "c2"]


def test_many_subscriptions_per_connection_and_unsubscribe(routes, store, subscriptions):
    first, second = a_stream(store, "a"), a_stream(store, "b")
    for stream_id in (first, second):
        routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    routes.handle(ws_event("unsubscribe", "c1", {"action": "unsubscribe", "streamId": first}))
    assert subscriptions.subscribers(first) == []
    assert subscriptions.subscribers(second) == ["c1"]


@pytest.mark.parametrize(
    ("route", "body", "expected"),
    [
        ("$default", "not json", "not valid JSON"),
        ("$default", {"action": "dance"}, "unknown action"),
        ("subscribe", {"action": "subscribe"}, "streamId"),
        ("subscribe", {"action": "subscribe", "streamId": 5}, "streamId"),
        ("subscribe", {"action": "subscribe", "streamId": "x", "after": -1}, "after"),
        ("subscribe", {"action": "subscribe", "streamId": "x", "after": "2"}, "after"),
        ("subscribe", [1, 2], "JSON object"),
    ],
)
def test_bad_messages_get_an_error_and_keep_the_connection(
    routes, connections, route, body, expected
):
    assert routes.handle(ws_event(route, "c1", body)) == {"statusCode": 200}
    (message,) = connections.received["c1"]
    assert message["type"] == "error"
    assert expected in message["error"]


def test_unknown_stream(routes, connections, subscriptions):
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": "nope"}))
    assert connections.received["c1"] == [
        {"type": "error", "error": "unknown stream", "streamId": "nope"}
    ]
    assert subscriptions.subscribers("nope") == []


# -- fan-out ---------------------------------------------------------------------------


def stream_record(event_name: str, image: dict[str, Any], sequence_number: str) -> dict[str, Any]:
    record = copy.deepcopy(sample("dynamodb-stream-batch.json")["Records"][0])
    record["eventName"] = event_name
    record["dynamodb"]["NewImage"] = serialize(image)
    record["dynamodb"]["Keys"] = serialize({"pk": image["pk"], "sk": image["sk"]})
    record["dynamodb"]["SequenceNumber"] = sequence_number
    return record


def batch_record(stream_id: str, seq: int, text: str, sequence_number: str) -> dict[str, Any]:
    image = {
        "pk": f"STREAM#{stream_id}",
        "sk": f"BATCH#{seq:010d}",
        "kind": "batch",
        "streamId": stream_id,
        "seq": seq,
        "text": text,
    }
    return stream_record("INSERT", image, sequence_number)


def status_record(
    stream_id: str, status: str, seq: int, sequence_number: str, error: str | None = None
) -> dict[str, Any]:
    image = {
        "pk": f"STREAM#{stream_id}",
        "sk": "META",
        "kind": "stream",
        "streamId": stream_id,
        "status": status,
        "seq": seq,
    }
    if error is not None:
        image["error"] = error
    return stream_record("MODIFY", image, sequence_number)


@pytest.fixture
def fanout(subscriptions: SubscriptionStore, connections: FakeConnections) -> Fanout:
    return Fanout(subscriptions, connections)  # type: ignore[arg-type]


def test_sample_event_is_delivered(fanout: Fanout, subscriptions, connections):
    event = sample("dynamodb-stream-batch.json")
    stream_ids = {r["dynamodb"]["NewImage"]["streamId"]["S"] for r in event["Records"]}
    for stream_id in stream_ids:
        subscriptions.subscribe("viewer", stream_id)
    assert fanout.handle(event) == {"batchItemFailures": []}
    assert [m["type"] for m in connections.received["viewer"]] == [
        "delta" if r["eventName"] == "INSERT" else "status" for r in event["Records"]
    ]


def test_deltas_and_status_reach_every_viewer_in_order(fanout, subscriptions, connections):
    for viewer in ("v1", "v2", "v3"):
        subscriptions.subscribe(viewer, "s1")
    subscriptions.subscribe("other", "s2")
    event = {
        "Records": [
            batch_record("s1", 1, "One. ", "100"),
            batch_record("s2", 1, "Elsewhere. ", "101"),
            batch_record("s1", 2, "Two. ", "102"),
            status_record("s1", "done", 2, "103"),
            status_record("s2", "streaming", 0, "104"),  # not terminal: nobody hears of it
        ]
    }
    assert fanout.handle(event) == {"batchItemFailures": []}
    for viewer in ("v1", "v2", "v3"):
        assert connections.received[viewer] == [
            {"type": "delta", "streamId": "s1", "seq": 1, "text": "One. "},
            {"type": "delta", "streamId": "s1", "seq": 2, "text": "Two. "},
            {"type": "status", "streamId": "s1", "status": "done", "seq": 2},
        ]
    assert connections.received["other"] == [
        {"type": "delta", "streamId": "s2", "seq": 1, "text": "Elsewhere. "}
    ]


def test_a_failed_stream_s_status_carries_its_error(fanout, subscriptions, connections):
    subscriptions.subscribe("viewer", "s1")
    subscriptions.subscribe("viewer", "s2")
    event = {
        "Records": [
            status_record("s1", "error", 3, "1", error="model overloaded"),
            status_record("s2", "timeout", 1, "2", error="no sign of its driver for 120 s"),
        ]
    }
    assert fanout.handle(event) == {"batchItemFailures": []}
    assert connections.received["viewer"] == [
        {
            "type": "status",
            "streamId": "s1",
            "status": "error",
            "seq": 3,
            "error": "model overloaded",
        },
        {"type": "status", "streamId": "s2", "status": "timeout", "seq": 1},  # as GET shows it
    ]


def test_gone_viewers_are_dropped_without_failing(fanout, subscriptions, connections):
    subscriptions.subscribe("gone", "s1")
    subscriptions.subscribe("gone", "s2")
    subscriptions.subscribe("here", "s1")
    connections.gone.add("gone")
    event = {"Records": [batch_record("s1", 1, "x", "1")]}
    assert fanout.handle(event) == {"batchItemFailures": []}
    assert subscriptions.subscribers("s1") == ["here"]
    assert subscriptions.subscribers("s2") == []  # every subscription of that connection


def test_a_failed_post_fails_only_its_record(fanout, subscriptions, connections):
    subscriptions.subscribe("flaky", "s1")
    subscriptions.subscribe("fine", "s1")
    subscriptions.subscribe("fine", "s2")
    connections.failing.add("flaky")
    event = {
        "Records": [
            batch_record("s1", 1, "a", "1"),
            batch_record("s1", 2, "b", "2"),
            batch_record("s2", 1, "c", "3"),
        ]
    }
    assert fanout.handle(event) == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert [m["text"] for m in connections.received["fine"]] == ["a", "b", "c"]
    # Lambda retries from record 1: "fine" gets duplicates, which the client rule drops.
    connections.failing.clear()
    assert fanout.handle(event) == {"batchItemFailures": []}
    assert [m["seq"] for m in connections.received["flaky"]] == [1, 2]


def test_every_record_failing_is_reported_not_raised(fanout, subscriptions, connections):
    # Powertools' process_partial_response raises then, which makes Lambda bisect the batch.
    subscriptions.subscribe("flaky", "s1")
    subscriptions.subscribe("flaky", "s2")
    connections.failing.add("flaky")
    event = {"Records": [batch_record("s1", 1, "a", "1"), batch_record("s2", 1, "b", "2")]}
    assert fanout.handle(event) == {
        "batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "2"}]
    }


def test_records_that_are_not_ours_are_ignored(fanout, subscriptions, connections):
    subscriptions.subscribe("v", "s1")
    chat = stream_record("INSERT", {"pk": "CHAT#c", "sk": "CHAT", "kind": "chat"}, "9")
    removed = batch_record("s1", 1, "x", "10")
    removed["eventName"] = "REMOVE"
    assert fanout.handle({"Records": [chat, removed]}) == {"batchItemFailures": []}
    assert connections.received == {}


def test_status_enum_matches_the_filter_values(template):
    pattern = template.functions()["FanoutFunction"].events["StreamRecords"]["Properties"]
    statuses = json.loads(pattern["FilterCriteria"]["Filters"][1]["Pattern"])["dynamodb"][
        "NewImage"
    ]["status"]["S"]
    assert set(statuses) == {s.value for s in Status if s.terminal}
