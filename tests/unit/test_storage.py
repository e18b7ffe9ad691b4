from __future__ import annotations

import threading
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pts.keys import batch_key
from pts.local.dynamodb import LocalDynamoDB
from pts.storage import (
    SequenceConflict,
    Status,
    StreamEnded,
    StreamStore,
    WriteContention,
    batch_sk,
    serialize,
)


def test_create_chat_makes_a_pending_stream_with_hashed_token(store: StreamStore, dynamodb: Any):
    chat, token = store.create_chat("hello")
    stream = store.get_stream(chat.stream_id)
    assert stream is not None
    assert stream.status is Status.PENDING
    assert stream.chat_id == chat.chat_id
    assert token not in stream.token_hash
    assert stream.token_matches(token)
    assert not stream.token_matches(token + "x")
    assert len(chat.stream_id) == 32 and len(chat.chat_id) == 32  # 128 bits, hex
    assert chat.created_at.endswith("Z") and len(chat.created_at) == 24  # ms precision


def test_every_item_has_a_ttl(store: StreamStore, dynamodb: Any):
    chat, _ = store.create_chat("hello")
    store.claim(chat.stream_id)
    store.append(chat.stream_id, 1, "Hi. ")
    items = dynamodb.scan(TableName="StreamsTable")["Items"]
    assert len(items) == 3
    now = store.clock()
    for item in items:
        assert 29 * 86_400 < int(item["ttl"]["N"]) - now <= 30 * 86_400


def test_list_chats_oldest_first(store: StreamStore):
    times = iter([100.0, 200.0, 300.0])
    store.clock = lambda: next(times)
    made = [store.create_chat(p)[0] for p in ("one", "two", "three")]
    assert [c.chat_id for c in store.list_chats()] == [c.chat_id for c in made]


def test_claim_has_exactly_one_winner(aws_credentials: None, template):
    """Racing claims, against the local stack's DynamoDB (atomic per request, like AWS's)."""
    server = LocalDynamoDB(template, prefix=f"race{uuid.uuid4().hex[:6]}")
    server.start()
    client = boto3.client("dynamodb", endpoint_url=server.endpoint)
    store = StreamStore(server.table_names["StreamsTable"], client=client)
    chat, _ = store.create_chat("race")
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.claim(chat.stream_id)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = store.get_stream(chat.stream_id).status
    server.stop()
    assert results.count(True) == 1
    assert status is Status.STREAMING


def test_append_is_idempotent_but_refuses_a_different_batch(store: StreamStore):
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    store.append(chat.stream_id, 1, "One. ")
    store.append(chat.stream_id, 1, "One. ")  # a retried write
    with pytest.raises(SequenceConflict):
        store.append(chat.stream_id, 1, "Other. ")
    assert store.read(chat.stream_id).text == "One. "


def test_read_joins_batches_in_order_and_after_skips(store: StreamStore):
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    for seq, text in enumerate(["a", "b", "c", "d"], start=1):
        store.append(chat.stream_id, seq, text)
    body = store.read(chat.stream_id)
    assert (body.text, body.seq, body.status) == ("abcd", 4, Status.STREAMING)
    after = store.read(chat.stream_id, after=2)
    assert (after.text, after.seq) == ("cd", 4)
    assert store.read(chat.stream_id, after=4).text == ""
    assert store.read("nope") is None


def test_read_paginates_long_streams(store: StreamStore, dynamodb: Any):
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    chunk = "y" * 4000 + ". "
    for seq in range(1, 301):  # ~1.2 MB: more than one 1 MB Query page
        store.append(chat.stream_id, seq, chunk)
    body = store.read(chat.stream_id)
    assert body.seq == 300
    assert body.text == chunk * 300


def test_finish_only_from_streaming_and_keeps_error(store: StreamStore):
    chat, _ = store.create_chat("x")
    assert not store.finish(chat.stream_id, Status.DONE)  # still pending
    store.claim(chat.stream_id)
    assert store.finish(chat.stream_id, Status.ERROR, "boom")
    assert not store.finish(chat.stream_id, Status.DONE)
    body = store.read(chat.stream_id)
    assert (body.status, body.error) == (Status.ERROR, "boom")


def test_request_cancel(store: StreamStore):
    pending, _ = store.create_chat("x")
    assert store.request_cancel(pending.stream_id) is Status.CANCELLED
    assert store.get_stream(pending.stream_id).status is Status.CANCELLED
    live, _ = store.create_chat("y")
    store.claim(live.stream_id)
    assert store.watch(live.stream_id) == (Status.STREAMING, False)
    assert store.request_cancel(live.stream_id) is Status.STREAMING
    assert store.watch(live.stream_id) == (Status.STREAMING, True)
    store.finish(live.stream_id, Status.CANCELLED)
    assert store.request_cancel(live.stream_id) is None
    assert store.watch(live.stream_id) == (Status.CANCELLED, True)
    assert store.watch("unknown") == (None, False)


def test_cancel_pending_only_ends_a_pending_stream(store: StreamStore):
    pending, _ = store.create_chat("x")
    assert store.cancel_pending(pending.stream_id)
    assert not store.cancel_pending(pending.stream_id)  # ended already
    live, _ = store.create_chat("y")
    store.claim(live.stream_id)
    assert not store.cancel_pending(live.stream_id)
    assert store.get_stream(live.stream_id).status is Status.STREAMING


def test_time_out_only_a_stream_unchanged_since_it_was_seen(store: StreamStore):
    store.clock = lambda: 1000.0
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    seen = store.get_stream(chat.stream_id)
    assert not store.time_out(chat.stream_id, Status.PENDING, seen.updated_at)  # wrong status
    assert not store.time_out(chat.stream_id, Status.STREAMING, seen.updated_at - 1)  # moved
    assert store.time_out(chat.stream_id, Status.STREAMING, seen.updated_at, "no text")
    body = store.read(chat.stream_id)
    assert (body.status, body.error) == (Status.TIMEOUT, "no text")
    assert list(store.active_streams(Status.STREAMING, 2000)) == []


def test_active_streams_index_is_sparse(store: StreamStore):
    store.clock = lambda: 1000.0
    a, _ = store.create_chat("a")
    b, _ = store.create_chat("b")
    store.claim(b.stream_id)
    assert [s for s, _ in store.active_streams(Status.PENDING, 2000)] == [a.stream_id]
    assert [s for s, _ in store.active_streams(Status.STREAMING, 2000)] == [b.stream_id]
    store.finish(b.stream_id, Status.DONE)
    assert list(store.active_streams(Status.STREAMING, 2000)) == []


def test_delete_chat_removes_everything(store: StreamStore, dynamodb: Any):
    chat, _ = store.create_chat("x")
    other, _ = store.create_chat("keep")
    store.claim(chat.stream_id)
    for seq in range(1, 61):  # more than one BatchWriteItem page
        store.append(chat.stream_id, seq, f"{seq}. ")
    store.delete_chat(chat)
    assert store.get_chat(chat.chat_id) is None
    assert store.read(chat.stream_id) is None
    remaining = dynamodb.scan(TableName="StreamsTable")["Items"]
    assert {i["pk"]["S"] for i in remaining} == {
        f"CHAT#{other.chat_id}",
        f"STREAM#{other.stream_id}",
    }


def test_batch_keys_sort_numerically():
    assert batch_sk(9) < batch_sk(10) < batch_sk(9_999_999_999) < "META"


# -- ended is ended ----------------------------------------------------------------------


def streaming(store: StreamStore, *texts: str) -> str:
    chat, _ = store.create_chat("x")
    assert store.claim(chat.stream_id)
    for seq, text in enumerate(texts, start=1):
        store.append(chat.stream_id, seq, text)
    return chat.stream_id


def batch_items(dynamodb: Any, stream_id: str) -> list[str]:
    items = dynamodb.scan(TableName="StreamsTable")["Items"]
    return sorted(
        i["sk"]["S"]
        for i in items
        if i["pk"]["S"] == f"STREAM#{stream_id}" and i["sk"]["S"] != "META"
    )


def test_the_stream_seq_is_always_the_last_stored_batch(store: StreamStore):
    stream_id = streaming(store)
    assert store.get_stream(stream_id).seq == 0
    for seq in (1, 2, 3):
        store.append(stream_id, seq, f"{seq}. ")
        assert store.get_stream(stream_id).seq == seq
    store.finish(stream_id, Status.DONE)
    assert store.get_stream(stream_id).seq == 3  # the end keeps it


def test_only_the_next_batch_is_taken(store: StreamStore, dynamodb: Any):
    stream_id = streaming(store, "one. ")
    with pytest.raises(SequenceConflict, match="not its next"):
        store.append(stream_id, 3, "three. ")  # batch 2 is missing
    store.append(stream_id, 2, "two. ")
    assert batch_items(dynamodb, stream_id) == [batch_sk(1), batch_sk(2)]


@pytest.mark.parametrize("end", ["time_out", "cancel", "finish", "delete"])
def test_an_ended_stream_takes_no_batch(store: StreamStore, dynamodb: Any, end: str):
    """A stale driver (a frozen sandbox thawing, a driver resuming after delete) stores
    nothing: the terminal status, with its seq, is the authority."""
    stream_id = streaming(store, "Kept. ")
    if end == "time_out":
        seen = store.get_stream(stream_id)
        assert store.time_out(stream_id, Status.STREAMING, seen.updated_at, "gone")
    elif end == "cancel":
        assert store.request_cancel(stream_id) is Status.STREAMING
        assert store.finish(stream_id, Status.CANCELLED)  # what the API does if no driver
    elif end == "finish":
        assert store.finish(stream_id, Status.DONE)
    else:
        chat = store.get_chat(store.get_stream(stream_id).chat_id)
        store.delete_chat(chat)
    with pytest.raises(StreamEnded):
        store.append(stream_id, 2, "Too late. ")
    assert not store.heartbeat(stream_id)
    if end == "delete":
        assert batch_items(dynamodb, stream_id) == []
        assert store.get_stream(stream_id) is None  # nothing came back to life
        return
    assert batch_items(dynamodb, stream_id) == [batch_sk(1)]
    body = store.read(stream_id)
    assert (body.text, body.seq) == ("Kept. ", 1)
    assert store.get_stream(stream_id).seq == 1


def test_a_retry_of_a_stored_batch_is_recognised_even_after_the_end(store: StreamStore):
    """A lost response: the first try applied, the driver tries again (after the stream was
    timed out, even): the same batch is success, not a refusal."""
    stream_id = streaming(store, "One. ")
    store.append(stream_id, 1, "One. ")
    seen = store.get_stream(stream_id)
    store.time_out(stream_id, Status.STREAMING, seen.updated_at)
    store.append(stream_id, 1, "One. ")
    with pytest.raises(SequenceConflict):
        store.append(stream_id, 1, "Other. ")


def test_a_transaction_that_lost_a_race_is_retryable(store: StreamStore, dynamodb: Any):
    """DynamoDB cancels a transaction that conflicts with a concurrent write to its items
    (`TransactionConflict`): that is not a refusal, the driver tries again."""

    class Conflicting:
        def transact_write_items(self, **_: Any) -> None:
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
                },
                "TransactWriteItems",
            )

        def __getattr__(self, name: str) -> Any:
            return getattr(dynamodb, name)

    stream_id = streaming(store, "One. ")
    racing = StreamStore("StreamsTable", client=Conflicting())  # type: ignore[arg-type]
    with pytest.raises(WriteContention):
        racing.append(stream_id, 2, "Two. ")
    store.append(stream_id, 2, "Two. ")  # the retry
    assert store.read(stream_id).text == "One. Two. "


def test_heartbeat_bumps_updated_at_only_while_streaming(store: StreamStore):
    store.clock = lambda: 1000.0
    chat, _ = store.create_chat("x")
    store.clock = lambda: 1010.0
    assert not store.heartbeat(chat.stream_id)  # pending: no driver yet
    store.claim(chat.stream_id)
    store.clock = lambda: 1050.0
    assert store.heartbeat(chat.stream_id)
    assert store.get_stream(chat.stream_id).updated_at == 1050
    assert [s for s, _ in store.active_streams(Status.STREAMING, 1040)] == []
    assert not store.heartbeat("unknown")


def test_read_never_shows_a_batch_past_the_stream_seq(store: StreamStore, dynamodb: Any):
    """Defence in depth: even a batch item written behind the store's back (or seen by a
    Query before its transaction's `seq`) is not part of the body."""
    stream_id = streaming(store, "One. ")
    store.finish(stream_id, Status.DONE)
    dynamodb.put_item(
        TableName="StreamsTable",
        Item=serialize({**batch_key(stream_id, 2), "kind": "batch", "seq": 2, "text": "Stray. "}),
    )
    body = store.read(stream_id)
    assert (body.text, body.seq) == ("One. ", 1)
    assert store.read(stream_id, after=1).text == ""
