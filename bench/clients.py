"""The load: HTTP drivers and WebSocket viewers, run in a separate process.

`run_load` connects every viewer and waits for its snapshot, then drives every stream, and
returns what each client received and when (`time.monotonic()`, the machine-wide clock the
generator's timestamps use too). Running it in its own process (`LoadProcess`) keeps the
clients off the stack's interpreter lock: on two cores the stack gets one to itself.
Viewers follow the client rule of docs/protocol.md (apply `seq == last + 1`, ignore older,
re-subscribe with `after` on a gap).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from pts.client import StreamView

CONNECT_CONCURRENCY = 50


@dataclass(frozen=True, slots=True)
class Drive:
    http_url: str
    stream_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Watch:
    """`viewers` connections, each following every stream of `stream_ids`.

    `extra`: deltas to wait for after a stream's final status (the bench writes batches past
    the end of a reply to time the fan-out alone; a real stream never does).
    """

    ws_url: str
    stream_ids: tuple[str, ...]
    viewers: int
    extra: int = 0


@dataclass
class DriveResult:
    stream_id: str
    status: int
    text: str
    arrivals: list[tuple[int, float]]
    """(bytes received so far, when) per chunk read from the socket."""
    ended: float
    """When the response was complete (after the final batch and status were stored)."""


@dataclass
class ViewerResult:
    stream_id: str
    text: str = ""
    status: str | None = None
    messages: int = 0
    wire_bytes: int = 0
    """Payload bytes of every message received (snapshot, deltas, status)."""
    received: list[tuple[int, float]] = field(default_factory=list)
    """(text bytes held, when) after each message that added text."""
    resubscribes: int = 0


@dataclass
class LoadResult:
    drives: list[DriveResult]
    viewers: list[ViewerResult]
    drive_started: float
    finished: float


# -- one viewer ----------------------------------------------------------------------------


class _Followed:
    """One stream a viewer follows: the client rule (`pts.client.StreamView`) and what it
    received, with when."""

    def __init__(self, stream_id: str, extra: int) -> None:
        self.result = ViewerResult(stream_id)
        self.extra = extra
        self.view = StreamView(stream_id, on_text=self.add)
        self.held = 0
        self.at = 0.0
        """When the message being applied arrived."""
        self.snapshot = asyncio.Event()
        self.done = asyncio.Event()

    def apply(self, message: dict[str, Any], at: float) -> dict[str, Any] | None:
        self.at = at
        request = self.view.apply(message)
        if request is not None:
            self.result.resubscribes += 1
        if message.get("type") == "snapshot":
            self.snapshot.set()
        view = self.view
        if view.final is not None:
            self.result.status, final_seq = view.final
        elif view.ended:
            self.result.status, final_seq = view.status, view.last
        else:
            return request
        if view.last >= final_seq + self.extra:
            self.done.set()
        return request

    def add(self, text: str) -> None:
        self.result.text += text
        self.held += len(text.encode())
        self.result.received.append((self.held, self.at))


class Viewer:
    """One WebSocket connection following one or more streams to their final status."""

    def __init__(self, ws_url: str, stream_ids: tuple[str, ...], extra: int = 0) -> None:
        self.ws_url = ws_url
        self.streams = {s: _Followed(s, extra) for s in stream_ids}
        self._socket: ClientConnection | None = None

    async def open(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            self._socket = await connect(
                self.ws_url, compression=None, max_size=None, open_timeout=120
            )
            for followed in self.streams.values():
                await self._socket.send(json.dumps(followed.view.subscribe_message()))
            while not all(f.snapshot.is_set() for f in self.streams.values()):
                await self._next()

    async def follow(self) -> None:
        """Receive until every followed stream has its final status (and all its text)."""
        while not all(f.done.is_set() for f in self.streams.values()):
            await self._next()

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()

    async def _next(self) -> None:
        assert self._socket is not None
        raw = await self._socket.recv()
        at = time.monotonic()
        data = raw.encode() if isinstance(raw, str) else raw
        message = json.loads(data)
        followed = self.streams.get(message.get("streamId", ""))
        if followed is None:
            return
        followed.result.messages += 1
        followed.result.wire_bytes += len(data)
        if request := followed.apply(message, at):
            assert self._socket is not None
            await self._socket.send(json.dumps(request))


# -- one driver ----------------------------------------------------------------------------


async def drive(client: httpx.AsyncClient, plan: Drive) -> DriveResult:
    arrivals: list[tuple[int, float]] = []
    chunks: list[bytes] = []
    held = 0
    async with client.stream(
        "POST",
        f"{plan.http_url}/chat-stream",
        json={"streamId": plan.stream_id},
        headers={"Authorization": f"Bearer {plan.token}"},
    ) as response:
        async for chunk in response.aiter_raw():
            held += len(chunk)
            arrivals.append((held, time.monotonic()))
            chunks.append(chunk)
        ended = time.monotonic()
        status = response.status_code
    return DriveResult(plan.stream_id, status, b"".join(chunks).decode(), arrivals, ended)


# -- the load --------------------------------------------------------------------------------


async def _load(drives: list[Drive], watches: list[Watch], seconds: float) -> LoadResult:
    viewers = [Viewer(w.ws_url, w.stream_ids, w.extra) for w in watches for _ in range(w.viewers)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    try:
        await asyncio.wait_for(asyncio.gather(*(v.open(gate) for v in viewers)), seconds)
        following = [asyncio.create_task(v.follow()) for v in viewers]
        limits = httpx.Limits(max_connections=len(drives) + 1)
        async with httpx.AsyncClient(timeout=seconds, limits=limits) as client:
            started = time.monotonic()
            results = await asyncio.wait_for(
                asyncio.gather(*(drive(client, d) for d in drives)), seconds
            )
        done, pending = await asyncio.wait(following, timeout=seconds) if following else ((), ())
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
        followed = [f.result for v in viewers for f in v.streams.values()]
        return LoadResult(results, followed, started, time.monotonic())
    finally:
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)


def run_load(drives: list[Drive], watches: list[Watch], timeout: float = 300) -> LoadResult:
    """Connect the viewers, drive the streams, return what everybody received (blocking)."""
    return asyncio.run(_load(drives, watches, timeout))


class LoadProcess:
    """One worker process for `run_load`, reused across measurements."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)

    def submit(
        self, drives: list[Drive], watches: list[Watch], timeout: float = 300
    ) -> Future[LoadResult]:
        return self._pool.submit(run_load, drives, watches, timeout)

    def run(self, drives: list[Drive], watches: list[Watch], timeout: float = 300) -> LoadResult:
        return self.submit(drives, watches, timeout).result(timeout + 60)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
