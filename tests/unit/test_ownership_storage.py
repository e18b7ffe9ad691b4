"""Owners, sharing, the per-owner chat list and the per-owner limit on live streams."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from typing import Any

import boto3
import pytest

from pts.local.dynamodb import LocalDynamoDB
from pts.model import ANONYMOUS
from pts.storage import BadCursor, Status, StreamStore, TooManyActiveStreams


@pytest.fixture
def limited(dynamodb: Any) -> StreamStore:
    return StreamStore("StreamsTable", client=dynamodb, active_limit=3)


def _ticking(store: StreamStore, start: float = 1000.0) -> None:
    """A clock that moves 1 s per call, so createdAt values differ."""
    now = [start]

    def clock() -> float:
        now[0] += 1
        return now[0]

    store.clock = clock


def test_owner_and_shared_are_stored_on_chat_and_stream(store: StreamStore):
    chat, _ = store.create_chat("hi", owner="alice", shared=True)
    stream = store.get_stream(chat.stream_id)
    stored = store.get_chat(chat.chat_id)
    assert stream is not None and stored is not None
    assert (stream.owner, stream.shared) == ("alice", True)
    assert (stored.owner, stored.shared) == ("alice", True)
    body = store.read(chat.stream_id)
    assert body is not None and body.readable_by("bob")


def test_private_by_default_and_readable_by_its_owner_only(store: StreamStore):
    chat, _ = store.create_chat("hi", owner="alice")
    body = store.read(chat.stream_id)
    assert body is not None and not body.shared
    assert body.readable_by("alice") and not body.readable_by("bob")


def test_none_mode_owner_is_anonymous_and_uncounted(store: StreamStore, dynamodb: Any):
    chat, _ = store.create_chat("hi")
    stream = store.get_stream(chat.stream_id)
    assert stream is not None and stream.owner == ANONYMOUS
    kinds = {i["kind"]["S"] for i in dynamodb.scan(TableName="StreamsTable")["Items"]}
    assert kinds == {"chat", "stream"}  # no counter without a limit
    assert store.cancel_pending(chat.stream_id)


def test_list_is_per_owner(store: StreamStore):
    _ticking(store)
    alice = [store.create_chat(f"a{i}", owner="alice")[0].chat_id for i in range(3)]
    bob = [store.create_chat(f"b{i}", owner="bob")[0].chat_id for i in range(2)]
    assert [c.chat_id for c in store.list_chats("alice")] == alice
    assert [c.chat_id for c in store.chat_page("bob").chats] == bob
    assert store.chat_page("carol").chats == []


def test_pages_go_from_the_newest_back_and_each_is_oldest_first(store: StreamStore):
    _ticking(store)
    made = [store.create_chat(f"p{i}", owner="alice")[0].chat_id for i in range(7)]
    store.create_chat("other", owner="bob")
    first = store.chat_page("alice", limit=3)
    assert [c.chat_id for c in first.chats] == made[4:7]
    assert first.cursor
    second = store.chat_page("alice", limit=3, cursor=first.cursor)
    assert [c.chat_id for c in second.chats] == made[1:4]
    third = store.chat_page("alice", limit=3, cursor=second.cursor)
    assert [c.chat_id for c in third.chats] == made[0:1]
    assert third.cursor is None


def test_a_cursor_never_leaves_the_callers_partition(store: StreamStore):
    _ticking(store)
    for i in range(3):
        store.create_chat(f"a{i}", owner="alice")
    store.create_chat("secret", owner="bob")
    cursor = store.chat_page("alice", limit=1).cursor
    assert cursor is not None
    # Bob replays Alice's cursor: it positions within Bob's own chats, never Alice's.
    assert all(c.owner == "bob" for c in store.chat_page("bob", cursor=cursor).chats)


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        base64.urlsafe_b64encode(b"[]").decode(),
        base64.urlsafe_b64encode(b'{"t": 1, "c": "x"}').decode(),
        base64.urlsafe_b64encode(json.dumps({"t": "x", "c": "../.."}).encode()).decode(),
        "A" * 500,
        "",
    ],
)
def test_bad_cursors_are_refused(store: StreamStore, cursor: str):
    store.create_chat("x", owner="alice")
    if cursor == "":
        assert store.chat_page("alice", cursor=None).chats
        return
    with pytest.raises(BadCursor):
        store.chat_page("alice", cursor=cursor)


def test_limit_counts_pending_and_streaming_streams(limited: StreamStore):
    chats = [limited.create_chat(f"c{i}", owner="alice")[0] for i in range(3)]
    assert limited.active_count("alice") == 3
    with pytest.raises(TooManyActiveStreams):
        limited.create_chat("one too many", owner="alice")
    limited.create_chat("bob is not alice", owner="bob")
    assert limited.active_count("alice") == 3
    # Claiming keeps it live; every way of ending frees a slot, once.
    assert limited.claim(chats[0].stream_id)
    assert limited.active_count("alice") == 3
    assert limited.finish(chats[0].stream_id, Status.DONE)
    assert not limited.finish(chats[0].stream_id, Status.DONE)
    assert limited.active_count("alice") == 2
    assert limited.cancel_pending(chats[1].stream_id)
    assert not limited.cancel_pending(chats[1].stream_id)
    assert limited.active_count("alice") == 1
    stream = limited.get_stream(chats[2].stream_id)
    assert stream is not None
    assert limited.time_out(chats[2].stream_id, Status.PENDING, stream.updated_at)
    assert limited.active_count("alice") == 0
    for i in range(3):
        limited.create_chat(f"again {i}", owner="alice")
    with pytest.raises(TooManyActiveStreams):
        limited.create_chat("full again", owner="alice")


def test_streams_made_without_a_limit_end_without_touching_a_counter(
    dynamodb: Any, limited: StreamStore
):
    unlimited = StreamStore("StreamsTable", client=dynamodb)
    chat, _ = unlimited.create_chat("old", owner="alice")
    assert limited.cancel_pending(chat.stream_id)  # the limited store ends it: no count
    assert limited.active_count("alice") == 0


def test_the_limit_holds_under_concurrent_creates(aws_credentials: None, template):
    """Racing creates against the local stack's DynamoDB (atomic per request, like AWS)."""
    server = LocalDynamoDB(template, prefix=f"lim{uuid.uuid4().hex[:6]}")
    server.start()
    try:
        client = boto3.client("dynamodb", endpoint_url=server.endpoint)
        store = StreamStore(server.table_names["StreamsTable"], client=client, active_limit=3)
        results: list[str] = []

        def create() -> None:
            try:
                store.create_chat("race", owner="alice")
                results.append("created")
            except TooManyActiveStreams:
                results.append("refused")

        threads = [threading.Thread(target=create) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("created") == 3
        assert results.count("refused") == 9
        assert store.active_count("alice") == 3
        assert len(store.list_chats("alice")) == 3
    finally:
        server.stop()
