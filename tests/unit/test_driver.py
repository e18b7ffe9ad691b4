from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from pts.driver import StreamDriver
from pts.sources import GenerationRequest, aiter_source
from pts.storage import Status, StreamStore


class SlowStore:
    """A store whose batch writes are slow, stalled until released, or failing."""

    def __init__(
        self,
        store: StreamStore,
        delay: float,
        fail: bool = False,
        release: threading.Event | None = None,
    ) -> None:
        self._store = store
        self.delay = delay
        self.fail = fail
        self.release = release
        self.appends: list[tuple[int, str]] = []

    def append(self, stream_id: str, seq: int, text: str) -> None:
        time.sleep(self.delay)
        if self.release is not None:
            self.release.wait(timeout=30)
        if self.fail:
            raise ConnectionError("DynamoDB is unreachable")
        self.appends.append((seq, text))
        self._store.append(stream_id, seq, text)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


async def paced(pieces: list[str], interval: float = 0.0) -> AsyncIterator[str]:
    for piece in pieces:
        if interval:
            await asyncio.sleep(interval)
        yield piece


def claimed(store: StreamStore) -> str:
    chat, _ = store.create_chat("p")
    assert store.claim(chat.stream_id)
    return chat.stream_id


async def collect(driver: StreamDriver) -> str:
    return "".join([piece async for piece in driver.text()])


PIECES = ["Hel", "lo ", "wor", "ld. ", "Ça ", "va? ", "日本", "語。", "🙂 ", "def f(x): return x"]


def test_streams_every_piece_and_persists_the_same_text(store: StreamStore):
    stream_id = claimed(store)
    driver = StreamDriver(store, stream_id, paced(PIECES))
    streamed = asyncio.run(collect(driver))
    assert streamed == "".join(PIECES)
    body = store.read(stream_id)
    assert body.text == streamed
    assert body.status is Status.DONE
    assert store.get_stream(stream_id).seq == body.seq >= 1


def test_sync_sources_work_too(store: StreamStore):
    def blocking() -> Iterator[str]:
        for piece in PIECES:
            time.sleep(0.001)
            yield piece

    stream_id = claimed(store)
    pieces = aiter_source(lambda request: blocking(), GenerationRequest("p", stream_id))
    assert asyncio.run(collect(StreamDriver(store, stream_id, pieces))) == "".join(PIECES)
    assert store.read(stream_id).text == "".join(PIECES)


def test_a_stalled_dynamodb_never_delays_the_http_stream(store: StreamStore):
    """Every piece reaches the HTTP body while the first write is still stuck."""
    release = threading.Event()
    stalled = SlowStore(store, delay=0, release=release)
    stream_id = claimed(store)
    pieces = [f"Sentence {i}. " for i in range(20)]
    driver = StreamDriver(stalled, stream_id, paced(pieces, 0.002))  # type: ignore[arg-type]

    async def run() -> str:
        out = []
        async for piece in driver.text():
            out.append(piece)
            if len(out) == len(pieces):
                assert stalled.appends == []  # nothing is stored yet…
                release.set()  # …and only now does DynamoDB answer
        return "".join(out)

    assert asyncio.run(run()) == "".join(pieces)
    assert store.read(stream_id).text == "".join(pieces)
    assert len(stalled.appends) < len(pieces)  # what queued up meanwhile went out together


def test_source_error_keeps_the_partial_text(store: StreamStore):
    async def failing() -> AsyncIterator[str]:
        yield "Partial. "
        yield "text"
        raise RuntimeError("model overloaded")

    stream_id = claimed(store)
    assert asyncio.run(collect(StreamDriver(store, stream_id, failing()))) == "Partial. text"
    body = store.read(stream_id)
    assert (body.text, body.status, body.error) == (
        "Partial. text",
        Status.ERROR,
        "model overloaded",
    )


def test_cancel_stops_generation_and_keeps_what_was_made(store: StreamStore):
    async def endless() -> AsyncIterator[str]:
        i = 0
        while True:
            i += 1
            yield f"{i} "
            await asyncio.sleep(0.005)

    stream_id = claimed(store)

    async def run() -> str:
        driver = StreamDriver(store, stream_id, endless(), cancel_poll_interval=0.05)
        out = []
        async for piece in driver.text():
            out.append(piece)
            if len(out) == 10:
                await asyncio.to_thread(store.request_cancel, stream_id)  # as another process would
        return "".join(out)

    streamed = asyncio.run(run())
    body = store.read(stream_id)
    assert body.status is Status.CANCELLED
    assert body.text == streamed


def test_generation_goes_on_when_the_listener_leaves(store: StreamStore):
    stream_id = claimed(store)
    pieces = [f"{i}. " for i in range(50)]

    async def run() -> Status:
        driver = StreamDriver(store, stream_id, paced(pieces, 0.002))
        body = driver.text()
        await anext(body)
        await body.aclose()  # what Starlette does when the client disconnects
        return (await driver.start()).status

    assert asyncio.run(run()) is Status.DONE
    assert store.read(stream_id).text == "".join(pieces)


def test_a_store_that_keeps_failing_ends_the_stream_in_error(store: StreamStore):
    failing = SlowStore(store, delay=0, fail=True)
    stream_id = claimed(store)
    driver = StreamDriver(failing, stream_id, paced(["One. ", "Two. "]), write_retry_for=0.3)  # type: ignore[arg-type]
    streamed = asyncio.run(collect(driver))
    assert streamed == "One. Two. "
    body = store.read(stream_id)
    assert body.status is Status.ERROR
    assert "could not persist" in body.error


@pytest.mark.parametrize("max_bytes", [8, 64])
def test_text_without_punctuation_persists_by_size_and_time(store: StreamStore, max_bytes: int):
    stream_id = claimed(store)
    pieces = ["x" * 3] * 40
    driver = StreamDriver(
        store, stream_id, paced(pieces, 0.001), max_delay=0.05, max_bytes=max_bytes
    )
    asyncio.run(collect(driver))
    assert store.read(stream_id).text == "x" * 120
