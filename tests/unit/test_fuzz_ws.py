"""Fuzzing the WebSocket routes: every frame gets an answer at once, the connection is never
failed (no raise, so no 1011 or "Internal server error"), and every answer can be sent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pts import protocol
from pts.client import StreamView
from pts.model import Stream
from pts.protocol import Status
from pts.storage import StreamStore, Tail
from pts.subscriptions import SubscriptionStore
from pts.ws_routes import WebSocketRoutes, subscribe_replies
from tests.unit.test_fuzz_http import any_text, json_values
from tests.unit.test_ws_routes_and_fanout import ws_event

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class WireConnections:
    """Encodes each message as `@connections` would receive it, and keeps it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, connection_id: str, message: Any) -> bool:
        data = message if isinstance(message, bytes) else protocol.encode(message)
        assert len(data) <= protocol.MAX_MESSAGE_BYTES
        self.sent.append(json.loads(data))
        return True


@pytest.fixture
def world(store: StreamStore, dynamodb: Any) -> tuple[WebSocketRoutes, WireConnections, str]:
    chat, _ = store.create_chat("p")
    store.claim(chat.stream_id)
    for seq in range(1, 4):
        store.append(chat.stream_id, seq, f"batch {seq}. ")
    connections = WireConnections()
    routes = WebSocketRoutes(
        store,
        SubscriptionStore("ConnectionsTable", client=dynamodb),
        connections,  # type: ignore[arg-type]
    )
    return routes, connections, chat.stream_id


def frames(stream_id: str) -> st.SearchStrategy[str]:
    ids = st.one_of(st.just(stream_id), any_text, json_values)
    afters = st.one_of(
        st.integers(-5, 10),
        st.integers(),
        st.integers(10**20, 10**2000),
        st.floats(),
        json_values,
    )
    requests = st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "dance"]) | any_text},
        optional={"streamId": ids, "after": afters},
    )
    return st.one_of(
        requests.map(json.dumps),
        json_values.map(json.dumps),
        any_text,
        st.integers(1, 60_000).map(lambda n: "[" * n),
        st.integers(4_000, 20_000).map(lambda n: '{"action": "subscribe", "after": ' + "1" * n),
        st.integers(4_000, 20_000).map(
            lambda n: f'{{"action": "subscribe", "streamId": "{stream_id}", "after": {"9" * n}}}'
        ),
    )


@FUZZ
@given(data=st.data(), route=st.sampled_from(["subscribe", "unsubscribe", "$default"]))
def test_every_frame_is_answered_at_once(world, data: st.DataObject, route: str):
    routes, connections, stream_id = world
    frame = data.draw(frames(stream_id))
    connections.sent.clear()
    started = time.monotonic()
    assert routes.handle(ws_event(route, "fuzzer", frame)) == {"statusCode": 200}
    assert time.monotonic() - started < 2
    kinds = [m["type"] for m in connections.sent]
    if route == "unsubscribe" and not kinds:
        return  # a well-formed unsubscribe has no answer
    assert kinds in (["error"], ["snapshot"]), (frame, connections.sent)
    if kinds == ["snapshot"]:
        body = json.loads(frame)
        snapshot = connections.sent[0]
        assert (snapshot["streamId"], snapshot["seq"]) == (stream_id, 3)
        assert snapshot["text"] == "".join(
            f"batch {s}. " for s in range(body.get("after", 0) + 1, 4)
        )


batch_texts = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=50).map(lambda t: t * 300),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=200),
        st.integers(1, 40_000).map(lambda n: "\x01" * n),  # six bytes each once escaped
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(texts=batch_texts, data=st.data(), status=st.sampled_from(list(Status)))
def test_subscribe_replies_always_fit_and_add_up(texts: list[str], data, status: Status):
    after = data.draw(st.integers(0, len(texts)))
    stream = Stream("s", None, status, "", "", 0.0, len(texts) if status.terminal else 0)
    batches = list(enumerate(texts, start=1))[after:]
    tail = Tail(stream, batches, len(texts))
    messages = list(subscribe_replies("s", tail, after))
    for message in messages:
        single = message["type"] == "delta"  # a lone batch may exceed the limit only alone
        assert single or protocol.text_size(message.get("text", "")) <= protocol.MAX_TEXT_BYTES
        if protocol.text_size(message.get("text", "")) <= protocol.MAX_TEXT_BYTES:
            assert len(protocol.encode(message)) <= protocol.MAX_MESSAGE_BYTES - 30_000
    view = StreamView("s", last=after, text="".join(texts[:after]), awaiting_snapshot=True)
    for message in messages:
        assert view.apply(message) is None
    assert view.text == "".join(texts)
    assert view.last == len(texts)
    assert view.status == (status.value if status.terminal else None)
    assert view.resubscribes == 0
