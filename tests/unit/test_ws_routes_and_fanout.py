"""The WebSocket routes and the fan-out, on moto tables, fed with the samples in events/."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from pts import protocol
from pts.client import StreamView
from pts.fanout import Fanout
from pts.keys import batch_key
from pts.storage import Status, StreamEnded, StreamStore, serialize
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
        self.attempts: dict[str, int] = {}

    def send(self, connection_id: str, message: dict[str, Any] | bytes) -> bool:
        self.attempts[connection_id] = self.attempts.get(connection_id, 0) + 1
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


def test_a_viewer_whose_posts_fail_is_given_up_on_alone(fanout, subscriptions, connections):
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
    # No record fails: a retry would repeat every message to "fine" and hold up the shard.
    assert fanout.handle(event) == {"batchItemFailures": []}
    assert [m["text"] for m in connections.received["fine"]] == ["a", "b", "c"]
    assert "flaky" not in connections.received
    assert connections.attempts["flaky"] == 1  # its turn ends at its first failure
    # It keeps its subscription: the next batch is tried again (its client sees the gap).
    assert sorted(subscriptions.subscribers("s1")) == ["fine", "flaky"]
    connections.failing.clear()
    assert fanout.handle({"Records": [batch_record("s1", 3, "d", "4")]}) == {
        "batchItemFailures": []
    }
    assert [m["seq"] for m in connections.received["flaky"]] == [3]
    assert [m["text"] for m in connections.received["fine"]] == ["a", "b", "c", "d"]


def test_one_failing_connection_alone_fails_nothing(fanout, subscriptions, connections):
    # One viewer, failing on two streams: it may be the viewer, so nothing is retried.
    subscriptions.subscribe("flaky", "s1")
    subscriptions.subscribe("flaky", "s2")
    connections.failing.add("flaky")
    event = {"Records": [batch_record("s1", 1, "a", "1"), batch_record("s2", 1, "b", "2")]}
    assert fanout.handle(event) == {"batchItemFailures": []}


def test_failing_for_everyone_is_reported_not_raised(fanout, subscriptions, connections):
    # Every post to every connection failed: the endpoint is down, so the records are
    # retried. All of them are listed: Powertools' process_partial_response would raise
    # then, which makes Lambda bisect the batch.
    for viewer in ("v1", "v2"):
        subscriptions.subscribe(viewer, "s1")
        subscriptions.subscribe(viewer, "s2")
        connections.failing.add(viewer)
    event = {"Records": [batch_record("s1", 1, "a", "1"), batch_record("s2", 1, "b", "2")]}
    assert fanout.handle(event) == {
        "batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "2"}]
    }


def test_unreadable_subscribers_fail_that_streams_records_only(
    fanout, subscriptions, connections, monkeypatch
):
    subscriptions.subscribe("v", "s1")
    subscriptions.subscribe("v", "s2")
    real = subscriptions.subscribers

    def subscribers(stream_id: str) -> list[str]:
        if stream_id == "s1":
            raise ConnectionError("DynamoDB unreachable")
        return real(stream_id)

    monkeypatch.setattr(subscriptions, "subscribers", subscribers)
    event = {
        "Records": [
            batch_record("s1", 1, "a", "1"),
            batch_record("s2", 1, "b", "2"),
            batch_record("s1", 2, "c", "3"),
        ]
    }
    assert fanout.handle(event) == {
        "batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]
    }
    assert [m["text"] for m in connections.received["v"]] == ["b"]


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


# -- the size rule -----------------------------------------------------------------------

# Multi-byte characters, quotes, backslashes and control characters: JSON escapes some of
# them to six bytes, so the cut has to measure the text as it is encoded, not its length.
PIECE = 'Ünïcode “quotes” \\ back\\slash "q" \x01\x1f tab\t 中文。 🙂 '


def long_batches(count: int = 90, size: int = 4000) -> list[str]:
    """Batches of about `size` UTF-8 bytes (as the driver cuts them), ~360 KB in all."""
    unit = PIECE.encode()
    return [(f"[{n}] " + PIECE * (size // len(unit)))[: size // 2] for n in range(1, count + 1)]


def sizes(messages: list[dict[str, Any]]) -> list[int]:
    return [len(protocol.encode(m)) for m in messages]  # type: ignore[arg-type]


class Viewer:
    """A client on the fake connection: the client rule, resubscribing through the routes."""

    def __init__(
        self, routes: WebSocketRoutes, connections: FakeConnections, name: str, stream_id: str
    ):
        self.routes, self.connections, self.name = routes, connections, name
        self.view = StreamView(stream_id)
        self.read = 0
        self.send(self.view.subscribe_message())

    def send(self, request: Any) -> None:
        self.routes.handle(ws_event("subscribe", self.name, request))

    def pump(self) -> None:
        """Apply what has arrived; resubscribe when the rule says so, or when a backlog
        stopped short (what `follow` does after `BACKLOG_WAIT_SECONDS`)."""
        while True:
            received = self.connections.received.get(self.name, [])
            while self.read < len(received):
                message = received[self.read]
                self.read += 1
                if request := self.view.apply(message):
                    self.send(request)
            if self.view.ended or not self.view.waiting_for_backlog:
                return
            self.send(self.view.resync())


@pytest.mark.parametrize("ended", [False, True])
def test_a_long_snapshot_is_cut_to_fit(routes, store, connections, ended):
    texts = long_batches()
    stream_id = a_stream(store, *texts)
    if ended:
        store.finish(stream_id, Status.DONE)
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    messages = connections.received["c1"]
    snapshot, *rest = messages
    assert snapshot["type"] == "snapshot" and snapshot["more"] is True
    assert snapshot["status"] == ("done" if ended else "streaming")
    assert protocol.text_size(snapshot["text"]) <= protocol.MAX_TEXT_BYTES
    assert snapshot["text"] == "".join(texts[: snapshot["seq"]])
    deltas = [m for m in rest if m["type"] == "delta"]
    assert [d["seq"] for d in deltas] == list(range(snapshot["seq"] + 1, len(texts) + 1))
    assert [m["type"] for m in rest[len(deltas) :]] == (["status"] if ended else [])
    assert max(sizes(messages)) <= protocol.MAX_MESSAGE_BYTES
    view = StreamView(stream_id, awaiting_snapshot=True)
    for message in messages:
        assert view.apply(message) is None  # no resubscribe needed
    assert view.text == "".join(texts)
    assert view.status == ("done" if ended else None)


def test_a_short_snapshot_has_no_more(routes, store, connections):
    stream_id = a_stream(store, "a", "b")
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    assert "more" not in connections.received["c1"][0]


def test_a_batch_too_long_for_any_snapshot_goes_alone(routes, store, connections):
    huge = "x" * (protocol.MAX_TEXT_BYTES + 1)
    stream_id = a_stream(store, "a", huge, "b")
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    snapshot, *deltas = connections.received["c1"]
    assert (snapshot["text"], snapshot["seq"], snapshot["more"]) == ("a", 1, True)
    assert [(d["seq"], len(d["text"])) for d in deltas] == [(2, len(huge)), (3, 1)]


def test_viewers_before_during_and_after_a_long_reply(routes, store, fanout, connections):
    """The fan-out and the subscribe handler both send deltas of the same stream, in an
    interleaving the client rule has to absorb: every viewer ends with the exact text."""
    texts = long_batches(100)
    chat, _ = store.create_chat("p")
    stream_id = chat.stream_id
    store.claim(stream_id)
    viewers = [Viewer(routes, connections, "before", stream_id)]
    for seq, text in enumerate(texts, start=1):
        store.append(stream_id, seq, text)
        if seq == 60:
            viewers.append(Viewer(routes, connections, "during", stream_id))
        fanout.handle({"Records": [batch_record(stream_id, seq, text, str(seq))]})
        for viewer in viewers:
            viewer.pump()
    store.finish(stream_id, Status.DONE)
    fanout.handle({"Records": [status_record(stream_id, "done", len(texts), "999")]})
    viewers.append(Viewer(routes, connections, "after", stream_id))
    for viewer in viewers:
        viewer.pump()
        assert (viewer.view.text, viewer.view.status) == ("".join(texts), "done"), viewer.name
        assert viewer.view.resubscribes == 0
        received = connections.received[viewer.name]
        assert max(sizes(received)) <= protocol.MAX_MESSAGE_BYTES
    assert connections.received["during"][0]["more"] is True
    assert connections.received["after"][0]["more"] is True


def test_resuming_a_long_reply_after_some_batches(routes, store, connections):
    texts = long_batches()
    stream_id = a_stream(store, *texts)
    store.finish(stream_id, Status.DONE)
    view = StreamView(stream_id, last=7, text="".join(texts[:7]))
    routes.handle(ws_event("subscribe", "c1", dict(view.subscribe_message())))
    for message in connections.received["c1"]:
        view.apply(message)
    assert (view.text, view.status) == ("".join(texts), "done")


def test_the_snapshot_ends_at_the_final_seq(routes, store, connections, dynamodb):
    # The store refuses a stale writer's batch 3 after the stream ended at 2; and one that
    # got in anyway (written behind the store's back) is shown to nobody.
    stream_id = a_stream(store, "a", "b")
    store.finish(stream_id, Status.DONE)
    with pytest.raises(StreamEnded):
        store.append(stream_id, 3, "late")
    dynamodb.put_item(
        TableName=store.table,
        Item=serialize({**batch_key(stream_id, 3), "kind": "batch", "seq": 3, "text": "late"}),
    )
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    assert connections.received["c1"][0]["text"] == "ab"
    assert connections.received["c1"][0]["seq"] == 2


# -- failed posts never fail the route ---------------------------------------------------


def test_a_gone_subscriber_loses_its_subscriptions(routes, store, connections, subscriptions):
    other = a_stream(store, "x")
    subscriptions.subscribe("c1", other)
    stream_id = a_stream(store, *long_batches())
    connections.gone.add("c1")
    event = ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id})
    assert routes.handle(event) == {"statusCode": 200}
    assert subscriptions.subscribers(stream_id) == []
    assert subscriptions.subscribers(other) == []
    assert connections.attempts["c1"] == 1  # nothing more is sent after the snapshot failed


def test_a_failing_post_is_logged_not_raised(routes, store, connections, subscriptions, caplog):
    stream_id = a_stream(store, *long_batches())
    connections.failing.add("c1")
    for body in ({"action": "subscribe", "streamId": stream_id}, {"action": "subscribe"}):
        assert routes.handle(ws_event("subscribe", "c1", body)) == {"statusCode": 200}
    assert "posting a reply to c1" in caplog.text
    assert connections.attempts["c1"] == 2  # one snapshot, one error: each given up at once
    assert subscriptions.subscribers(stream_id) == ["c1"]  # it may recover later


# -- bad frames: answered at once, never sent to DynamoDB --------------------------------


class NoStorage:
    """Fails the test if a frame reaches DynamoDB."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a bad frame reached storage ({name})")


@pytest.fixture
def guarded(connections: FakeConnections) -> WebSocketRoutes:
    return WebSocketRoutes(NoStorage(), NoStorage(), connections)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[" * 60_000, "nested too deeply"),
        ('{"action": "subscribe", "streamId": "s", "after": ' + "9" * 5000 + "}", "too long"),
        ({"action": "subscribe", "streamId": "s", "after": 10**2000}, "after"),
        ({"action": "subscribe", "streamId": "s", "after": 2.5}, "after"),
        ({"action": "subscribe", "streamId": "s", "after": True}, "after"),
        ({"action": "subscribe", "streamId": "s", "after": None}, "after"),
        ({"action": "subscribe", "streamId": "\ud800"}, "unknown stream"),
        ({"action": "subscribe", "streamId": "a/b"}, "unknown stream"),
        ({"action": "subscribe", "streamId": "x" * 65}, "unknown stream"),
        ({"action": "subscribe", "streamId": ["s"]}, "streamId"),
        ({"action": "subscribe", "streamId": {"\ud800": 1}}, "streamId"),
        ("\ud800", "not valid JSON"),
        ("", "not valid JSON"),
        ("null", "JSON object"),
    ],
)
def test_bad_frames_are_answered_at_once(guarded, connections, body, expected):
    assert guarded.handle(ws_event("subscribe", "c1", body)) == {"statusCode": 200}
    (message,) = connections.received["c1"]
    assert message["type"] == "error"
    assert expected in message["error"]
    protocol.encode(message)  # always sendable: nothing unencodable is echoed


def test_an_invalid_id_is_echoed_only_when_it_can_be(guarded, connections):
    for stream_id in ("a/b", "\ud800", "y" * 1000):
        guarded.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    assert [m.get("streamId") for m in connections.received["c1"]] == ["a/b", None, None]


def test_unsubscribe_from_an_invalid_id_is_a_no_op(guarded, connections):
    body = {"action": "unsubscribe", "streamId": "\ud800"}
    assert guarded.handle(ws_event("unsubscribe", "c1", body)) == {"statusCode": 200}
    assert connections.received == {}


def test_a_binary_frame_that_is_not_utf8(guarded, connections):
    event = ws_event("subscribe", "c1")
    event.raw_event["body"] = base64.b64encode(b"\xff\xfe{").decode()
    event.raw_event["isBase64Encoded"] = True
    guarded.handle(event)
    assert "UTF-8" in connections.received["c1"][0]["error"]


@pytest.mark.parametrize("after", [3, 4, 1000])
def test_after_past_the_last_batch_is_an_error(routes, store, connections, subscriptions, after):
    stream_id = a_stream(store, "a", "b")
    body = {"action": "subscribe", "streamId": stream_id, "after": after}
    routes.handle(ws_event("subscribe", "c1", body))
    (message,) = connections.received["c1"]
    assert message["type"] == "error" and message["streamId"] == stream_id
    assert message["error"] == "after is past the stream's last batch"
    assert subscriptions.subscribers(stream_id) == []


@pytest.mark.parametrize("after", [0, 1, 2])
def test_after_up_to_the_last_batch_is_fine(routes, store, connections, after):
    stream_id = a_stream(store, "a", "b")
    body = {"action": "subscribe", "streamId": stream_id, "after": after}
    routes.handle(ws_event("subscribe", "c1", body))
    assert connections.received["c1"] == [
        protocol.snapshot_message(stream_id, "ab"[after:], "streaming", 2)
    ]


def test_fanout_deltas_overtaking_the_backlog_are_waited_out(routes, store, connections):
    texts = long_batches(70)
    stream_id = a_stream(store, *texts[:60])
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    snapshot, *backlog = connections.received["c1"]
    newer = [protocol.delta_message(stream_id, seq, texts[seq - 1]) for seq in range(61, 71)]
    final = protocol.status_message(stream_id, "done", 70)
    view = StreamView(stream_id, awaiting_snapshot=True)
    # The fan-out's newer deltas, and even the final status, arrive before the backlog.
    for message in [newer[0], snapshot, *newer[1:], final, *backlog]:
        assert view.apply(message) is None
    assert (view.text, view.status, view.resubscribes) == ("".join(texts), "done", 0)


def test_a_backlog_that_stops_short_is_asked_for_again(routes, store, connections):
    texts = long_batches(70)
    stream_id = a_stream(store, *texts)
    routes.handle(ws_event("subscribe", "c1", {"action": "subscribe", "streamId": stream_id}))
    snapshot, *backlog = connections.received["c1"]
    view = StreamView(stream_id, awaiting_snapshot=True)
    for message in [snapshot, *backlog[:3], *backlog[4:]]:  # one delta lost
        assert view.apply(message) is None
    assert view.waiting_for_backlog
    request = view.resync()  # what `follow` does after BACKLOG_WAIT_SECONDS
    assert request == protocol.subscribe_request(stream_id, snapshot["seq"] + 3)
    assert view.resync() is None  # one subscribe in flight at a time
    connections.received["c1"].clear()
    routes.handle(ws_event("subscribe", "c1", dict(request)))
    for message in connections.received["c1"]:
        view.apply(message)
    assert view.text == "".join(texts) and view.resubscribes == 1
