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


# -- stop means stop, alive is not idle, ended is ended -------------------------------------


class Stall:
    """A source that yields some pieces, then goes silent (a model thinking) for a minute;
    records whether it was closed."""

    def __init__(self, pieces: list[str], silence: float = 60.0) -> None:
        self.pieces = pieces
        self.silence = silence
        self.closed = False
        self.yielded = 0

    async def __call__(self) -> AsyncIterator[str]:
        try:
            for piece in self.pieces:
                self.yielded += 1
                yield piece
            await asyncio.sleep(self.silence)
            yield "after the silence"
        finally:
            self.closed = True


async def drive_until_stalled(driver: StreamDriver, stall: Stall) -> tuple[list[str], float]:
    """Read the HTTP body until the source stalls, then return what came and the time."""
    body = driver.text()
    out = [await anext(body) for _ in stall.pieces]
    await asyncio.sleep(0.3)  # the source is silent now, the batch stored
    started = time.monotonic()
    out += [piece async for piece in body]  # ends once the driver stopped
    return out, started


@pytest.mark.parametrize("how", ["here", "elsewhere"])
def test_cancel_ends_a_stalled_stream_within_a_second(store: StreamStore, how: str):
    """Cancel in this process (`driver.cancel()`) or through the store (another instance's
    API, seen by the watcher): the driver does not wait for the next piece."""
    stream_id = claimed(store)
    stall = Stall(["Thinking", " about it. "])
    driver = StreamDriver(store, stream_id, stall(), max_delay=0.05, cancel_poll_interval=0.2)

    async def run() -> tuple[str, float]:
        async def cancel_soon() -> None:
            await asyncio.sleep(0.4)
            if how == "here":
                driver.cancel()
            else:
                await asyncio.to_thread(store.request_cancel, stream_id)

        canceller = asyncio.create_task(cancel_soon())
        out, started = await drive_until_stalled(driver, stall)
        await canceller
        return "".join(out), time.monotonic() - started

    streamed, took = asyncio.run(run())
    assert took < 1.0
    assert streamed == "Thinking about it. "
    assert stall.closed
    body = store.read(stream_id)
    assert (body.status, body.text) == (Status.CANCELLED, streamed)


def test_cancel_ends_a_stream_whose_sync_source_blocks(store: StreamStore):
    """A blocking SDK call that never returns in time: the driver ends without it, and the
    source is closed once the call comes back."""
    release = threading.Event()
    closed = threading.Event()

    def blocking() -> Iterator[str]:
        try:
            yield "Hello. "
            release.wait(30)
            yield "late"
        finally:
            closed.set()

    stream_id = claimed(store)
    pieces = aiter_source(lambda request: blocking(), GenerationRequest("p", stream_id))
    driver = StreamDriver(store, stream_id, pieces, max_delay=0.05)

    async def run() -> tuple[str, float]:
        body = driver.text()
        first = await anext(body)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        driver.cancel()
        rest = [piece async for piece in body]
        return first + "".join(rest), time.monotonic() - started

    streamed, took = asyncio.run(run())
    release.set()
    assert took < 1.0
    assert streamed == "Hello. "
    assert store.read(stream_id).status is Status.CANCELLED
    assert closed.wait(5)


class Recording:
    """A store that counts heartbeats and can end the stream (as the sweeper would) just
    before a given batch is written."""

    def __init__(self, store: StreamStore, end_before: int | None = None) -> None:
        self._store = store
        self.end_before = end_before
        self.heartbeats = 0
        self.finishes = 0
        self.appends: list[int] = []

    def heartbeat(self, stream_id: str) -> bool:
        self.heartbeats += 1
        return self._store.heartbeat(stream_id)

    def append(self, stream_id: str, seq: int, text: str) -> None:
        if seq == self.end_before:
            seen = self._store.get_stream(stream_id)
            assert self._store.time_out(stream_id, Status.STREAMING, seen.updated_at, "gone")
        self.appends.append(seq)
        self._store.append(stream_id, seq, text)

    def finish(self, *args: object) -> bool:
        self.finishes += 1
        return self._store.finish(*args)  # type: ignore[arg-type]

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_a_silent_source_gets_heartbeats_a_talking_one_does_not(store: StreamStore):
    silent_id, talking_id = claimed(store), claimed(store)
    silent, talking = Recording(store), Recording(store)
    stall = Stall(["Hm. "], silence=2.0)
    drivers = [
        StreamDriver(
            silent,  # type: ignore[arg-type]
            silent_id,
            stall(),
            max_delay=0.02,
            cancel_poll_interval=0.05,
            heartbeat_interval=0.2,
        ),
        StreamDriver(
            talking,  # type: ignore[arg-type]
            talking_id,
            paced([f"{i}. " for i in range(200)], 0.02),  # about 4 s of steady text
            max_delay=0.02,
            cancel_poll_interval=0.05,
            heartbeat_interval=1.0,
        ),
    ]

    async def run() -> None:
        await asyncio.gather(*(collect(d) for d in drivers))

    asyncio.run(run())
    assert silent.heartbeats >= 3  # 2 s of silence, one every 0.2 s (fewer under load)
    # Every batch is a sign of life already: without that it would send three or more; one
    # may slip in when a loaded machine delays a write past the interval.
    assert talking.heartbeats <= 1
    assert store.read(silent_id).text == "Hm. after the silence"


def test_a_refused_append_stops_the_driver(store: StreamStore):
    """The stream was timed out under a (frozen) driver: its next batch is refused, and it
    stops generating, writes nothing more (not even a status) and ends its HTTP body."""
    stream_id = claimed(store)
    recording = Recording(store, end_before=2)
    stall = Stall(["One. ", "Two. ", "Three. "], silence=60)
    source = stall()

    async def run() -> tuple[str, object]:
        driver = StreamDriver(
            recording,  # type: ignore[arg-type]
            stream_id,
            paced_from(source, 0.15),
            max_delay=0.01,
            min_interval=0,  # a batch per sentence: "Two. " is written before "Three. "
        )
        started = time.monotonic()
        text = await asyncio.wait_for(collect(driver), 5)
        assert time.monotonic() - started < 2.0  # not the minute of silence
        return text, await driver.start()

    streamed, result = asyncio.run(run())
    assert recording.appends == [1, 2]  # the refused one, then nothing
    assert recording.finishes == 0
    assert stall.closed and stall.yielded == 2  # stopped before the third piece
    assert streamed == "One. Two. "  # the HTTP body showed what was generated
    assert result.status is Status.TIMEOUT and result.seq == 1
    body = store.read(stream_id)
    assert (body.status, body.text, body.seq) == (Status.TIMEOUT, "One. ", 1)


def test_a_refused_heartbeat_stops_the_driver(store: StreamStore):
    """A stream deleted while its source thinks: the watcher's heartbeat is refused, the
    driver stops and stores nothing."""
    chat, _ = store.create_chat("p")
    store.claim(chat.stream_id)
    recording = Recording(store)
    stall = Stall(["Hm. "], silence=60)
    driver = StreamDriver(
        recording,  # type: ignore[arg-type]
        chat.stream_id,
        stall(),
        max_delay=0.01,
        cancel_poll_interval=10,
        heartbeat_interval=0.1,
    )

    async def run() -> str:
        body = driver.text()
        out = [await anext(body)]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(store.delete_chat, chat)
        out += [piece async for piece in body]
        return "".join(out)

    assert asyncio.run(asyncio.wait_for(run(), 5)) == "Hm. "
    assert stall.closed
    assert recording.finishes == 0
    assert store.get_stream(chat.stream_id) is None
    assert store.read(chat.stream_id) is None


async def paced_from(source: AsyncIterator[str], interval: float) -> AsyncIterator[str]:
    """`source`, one piece every `interval`, closing it when closed."""
    try:
        async for piece in source:
            yield piece
            await asyncio.sleep(interval)
    finally:
        await source.aclose()  # type: ignore[attr-defined]


def test_a_stale_poll_does_not_stop_a_live_driver(store: StreamStore):
    """The cancel poll is an eventually consistent read: an end it seems to show is checked
    with a (consistent) heartbeat before the driver gives up."""

    class Stale(Recording):
        def watch(self, stream_id: str) -> tuple[Status | None, bool]:
            return None, False  # as if deleted, while it is not

    stream_id = claimed(store)
    stale = Stale(store)
    stall = Stall(["Still ", "here. "], silence=0.5)
    driver = StreamDriver(
        stale,  # type: ignore[arg-type]
        stream_id,
        stall(),
        max_delay=0.02,
        cancel_poll_interval=0.1,
    )
    assert asyncio.run(collect(driver)) == "Still here. after the silence"
    assert stale.heartbeats >= 2
    assert store.read(stream_id).status is Status.DONE
