"""`StoredReply`: a stream's stored text, then its batches as persisted, then its ending."""

from __future__ import annotations

import asyncio

from pts.protocol import Status
from pts.resume import GONE, Ended, StoredReply
from pts.storage import AsyncStreamStore, StreamStore


async def read_all(reply: StoredReply) -> list[str]:
    return [piece async for piece in reply.pieces()]


def test_stored_text_first_then_each_batch_then_the_ending(store: StreamStore):
    chat, _ = store.create_chat("p")
    sid = chat.stream_id
    assert store.claim(sid)
    store.append(sid, 1, "one. ")
    store.append(sid, 2, "two. ")

    async def main() -> tuple[list[str], Ended]:
        aio = AsyncStreamStore(store)
        first = await aio.read_batches(sid)
        assert first is not None
        reply = StoredReply(aio, sid, first, poll_seconds=0.01)

        async def writer() -> None:
            await asyncio.sleep(0.05)
            store.append(sid, 3, "three. ")
            await asyncio.sleep(0.05)
            store.append(sid, 4, "four.")
            assert store.finish(sid, Status.ERROR, "boom")

        pieces, _ = await asyncio.gather(read_all(reply), writer())
        return pieces, await reply.outcome

    pieces, ended = asyncio.run(main())
    assert pieces[0] == "one. two. "
    assert "".join(pieces) == "one. two. three. four."
    assert "three. " in pieces  # a batch of its own, as it came
    assert ended == Ended(Status.ERROR, "boom")


def test_an_ended_stream_at_once_and_a_deleted_one_as_gone(store: StreamStore):
    chat, _ = store.create_chat("p")
    assert store.claim(chat.stream_id)
    store.append(chat.stream_id, 1, "all of it")
    assert store.finish(chat.stream_id, Status.DONE)
    live, _ = store.create_chat("q")
    assert store.claim(live.stream_id)

    async def main() -> tuple[list[str], Ended, list[str], Ended]:
        aio = AsyncStreamStore(store)
        first = await aio.read_batches(chat.stream_id)
        assert first is not None
        done = StoredReply(aio, chat.stream_id, first, poll_seconds=0.01)
        done_pieces = await read_all(done)
        tail = await aio.read_batches(live.stream_id)
        assert tail is not None
        gone = StoredReply(aio, live.stream_id, tail, poll_seconds=0.01)
        store.delete_chat(live)
        return done_pieces, await done.outcome, await read_all(gone), await gone.outcome

    done_pieces, done_end, gone_pieces, gone_end = asyncio.run(main())
    assert done_pieces == ["all of it"] and done_end == Ended(Status.DONE)
    assert gone_pieces == [] and gone_end == GONE
