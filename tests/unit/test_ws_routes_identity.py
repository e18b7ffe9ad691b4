"""The WebSocket routes with `PTS_AUTH=jwt`: the `$connect` authorizer's `sub` decides who may
subscribe to what, and a refused subscribe looks exactly like an unknown stream."""

from __future__ import annotations

from typing import Any

import pytest

from pts.storage import StreamStore
from pts.subscriptions import SubscriptionStore
from pts.ws_routes import WebSocketRoutes
from tests.unit.test_ws_routes_and_fanout import FakeConnections, ws_event


@pytest.fixture
def subscriptions(dynamodb: Any) -> SubscriptionStore:
    return SubscriptionStore("ConnectionsTable", client=dynamodb)


@pytest.fixture
def connections() -> FakeConnections:
    return FakeConnections()


@pytest.fixture
def routes(store: StreamStore, subscriptions: SubscriptionStore, connections: FakeConnections):
    return WebSocketRoutes(store, subscriptions, connections, require_identity=True)  # type: ignore[arg-type]


def as_user(event: Any, sub: str | None) -> Any:
    """The event as API Gateway sends it after the authorizer allowed `sub`."""
    if sub is not None:
        event.raw_event["requestContext"]["authorizer"] = {"sub": sub, "principalId": sub}
    return event


def subscribe(routes: WebSocketRoutes, connection: str, sub: str | None, stream_id: str) -> None:
    body = {"action": "subscribe", "streamId": stream_id}
    routes.handle(as_user(ws_event("subscribe", connection, body), sub))


def owned_stream(store: StreamStore, owner: str, *, shared: bool = False) -> str:
    chat, _ = store.create_chat("p", owner=owner, shared=shared)
    store.claim(chat.stream_id)
    store.append(chat.stream_id, 1, "Secret. ")
    return chat.stream_id


def test_connect_needs_the_authorizers_sub(routes: WebSocketRoutes):
    assert routes.handle(as_user(ws_event("$connect", "c1"), None)) == {"statusCode": 401}
    assert routes.handle(as_user(ws_event("$connect", "c1"), "alice")) == {"statusCode": 200}


def test_the_owner_subscribes(routes, store, connections, subscriptions):
    stream_id = owned_stream(store, "alice")
    subscribe(routes, "alice-1", "alice", stream_id)
    assert connections.received["alice-1"][0]["type"] == "snapshot"
    assert connections.received["alice-1"][0]["text"] == "Secret. "
    assert subscriptions.subscribers(stream_id) == ["alice-1"]


def test_anybody_else_gets_unknown_stream_and_no_subscription(
    routes, store, connections, subscriptions
):
    stream_id = owned_stream(store, "alice")
    subscribe(routes, "bob-1", "bob", stream_id)
    subscribe(routes, "bob-1", "bob", "0" * 32)  # a stream that does not exist
    refused, missing = connections.received["bob-1"]
    assert refused == {"type": "error", "error": "unknown stream", "streamId": stream_id}
    assert missing == {"type": "error", "error": "unknown stream", "streamId": "0" * 32}
    assert subscriptions.subscribers(stream_id) == []
    # A connection without a `sub` (no authorizer ran) is nobody.
    subscribe(routes, "nobody", None, stream_id)
    assert connections.received["nobody"][0]["error"] == "unknown stream"
    assert subscriptions.subscribers(stream_id) == []


def test_a_shared_stream_is_watchable_by_anybody_signed_in(routes, store, connections):
    stream_id = owned_stream(store, "alice", shared=True)
    subscribe(routes, "bob-1", "bob", stream_id)
    assert connections.received["bob-1"][0]["text"] == "Secret. "


def test_none_mode_ignores_identity(store, subscriptions, connections):
    routes = WebSocketRoutes(store, subscriptions, connections)  # type: ignore[arg-type]
    assert routes.handle(ws_event("$connect", "c1")) == {"statusCode": 200}
    stream_id = owned_stream(store, "alice")
    subscribe(routes, "c1", None, stream_id)
    assert connections.received["c1"][0]["type"] == "snapshot"
