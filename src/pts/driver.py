"""Drive one stream: every piece goes to the HTTP response at once, and to DynamoDB beside it.

Three tasks share the work, so a slow or throttled DynamoDB never delays the HTTP stream:

- the *producer* pulls pieces from the source (see `pts.sources.aiter_source`) and hands
  each to both queues;
- the *persister* cuts the pieces into batches (`pts.batching`) and writes them in order,
  then the final status;
- the *watcher* polls for a cancel request once a second and, while the source is silent,
  sends a heartbeat (a sign of life, so the sweeper does not time the stream out).

Stop means stop, even in a stall: a cancel (here, or seen by the watcher) cancels the
producer task, which closes the source wherever it is waiting; what was generated is stored,
then `cancelled`. If the store refuses a write because the stream has ended (timed out while
this driver was frozen, or deleted), the driver stops and writes nothing more.

The tasks are not the HTTP response's body iterator (Starlette cancels that when the client
goes away): generation and persistence run to completion whoever is listening.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from pts import observability
from pts.batching import Batcher, coalesce
from pts.protocol import Status
from pts.storage import AsyncStreamStore, StorageError, StreamEnded, StreamStore

logger = logging.getLogger(__name__)

_END = None
_GAVE_UP = object()
CLOSE_GRACE_SECONDS = 1.0
"""How long a cancelled source may take to close before the driver ends without it."""


@dataclass(frozen=True, slots=True)
class DriveResult:
    status: Status
    seq: int
    error: str | None = None


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


class StreamDriver:
    """Runs one claimed stream from its source to the end, see the module docstring."""

    def __init__(
        self,
        store: StreamStore | AsyncStreamStore,
        stream_id: str,
        pieces: AsyncIterable[str],
        *,
        max_delay: float = 1.0,
        max_bytes: int = 4096,
        min_interval: float = 0.5,
        cancel_poll_interval: float = 1.0,
        heartbeat_interval: float = 30.0,
        write_retry_for: float = 30.0,
    ) -> None:
        self.store = store if isinstance(store, AsyncStreamStore) else AsyncStreamStore(store)
        self.stream_id = stream_id
        self._pieces = pieces
        self._batcher = Batcher(max_delay=max_delay, max_bytes=max_bytes, min_interval=min_interval)
        self._cancel_poll_interval = cancel_poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._write_retry_for = write_retry_for
        self._http: asyncio.Queue[str | None] = asyncio.Queue()
        self._persist: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._cancelled = False
        self._ended = False  # the stream ended under this driver: write nothing more
        self._error: str | None = None
        self._persisting = True
        self._seq = 0
        self._alive_at = time.monotonic()  # the last write the sweeper can see
        self._task: asyncio.Task[DriveResult] | None = None
        self.totals: Counter[str] = Counter()
        """This stream's metrics, written (one EMF line) once it has ended."""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[DriveResult]:
        """Start driving; the task's result is known once the final status is stored."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"drive-{self.stream_id}")
        return self._task

    def cancel(self) -> None:
        """Stop generating now, even mid-stall; what was generated is still persisted,
        status `cancelled`."""
        self._cancelled = True
        self._stop.set()

    async def text(self) -> AsyncIterator[str]:
        """The HTTP body: each piece as soon as it is generated; ends once all is stored."""
        task = self.start()
        while (piece := await self._http.get()) is not _END:
            yield piece
        await asyncio.shield(task)

    async def _run(self) -> DriveResult:
        observability.correlate(self.stream_id)  # this task and the three it starts
        try:
            return await self._drive()
        finally:
            observability.emit_stream(self.stream_id, self.totals)

    async def _drive(self) -> DriveResult:
        producer = asyncio.create_task(self._produce(), name=f"produce-{self.stream_id}")
        persister = asyncio.create_task(self._persist_all(), name=f"persist-{self.stream_id}")
        watcher = asyncio.create_task(self._watch(), name=f"watch-{self.stream_id}")
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({producer, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not producer.done():
                # Do not wait for the next piece: cancelling the task closes the source
                # wherever it waits (a model thinking, a stalled connection).
                producer.cancel()
                await asyncio.wait({producer}, timeout=CLOSE_GRACE_SECONDS)
        finally:
            for task in (producer, stop, watcher):
                task.cancel()
            self._http.put_nowait(_END)
            self._persist.put_nowait(_END)
        return await persister

    # -- the three tasks ---------------------------------------------------------------

    async def _produce(self) -> None:
        pieces = aiter(self._pieces)
        try:
            async for piece in pieces:
                if piece:
                    self._http.put_nowait(piece)
                    self._persist.put_nowait((piece, time.monotonic()))
        except Exception as error:  # the source failed: keep what it produced
            logger.warning("source of stream %s failed: %s", self.stream_id, error)
            self._error = _describe(error)
        finally:
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    logger.exception("closing the source of stream %s", self.stream_id)

    async def _watch(self) -> None:
        """Poll for a cancel request (and an end elsewhere: a delete, the sweeper); while
        nothing was written for a heartbeat interval, show the sweeper this driver lives."""
        while True:
            await asyncio.sleep(min(self._cancel_poll_interval, self._heartbeat_interval))
            try:
                status, cancel_requested = await self.store.watch(self.stream_id)
                ended = status is None or status.terminal
                idle = time.monotonic() - self._alive_at >= self._heartbeat_interval
                # The poll is an eventually consistent read: an end it shows is confirmed by
                # the heartbeat, a conditional (so consistent) write.
                if ended or idle:
                    if not await self.store.heartbeat(self.stream_id):
                        self._stream_ended(f"heartbeat refused; it is {status or 'deleted'}")
                        return
                    self._alive_at = time.monotonic()
                if cancel_requested:
                    self.cancel()
                    return
            except Exception:
                logger.exception("polling stream %s", self.stream_id)

    async def _persist_all(self) -> DriveResult:
        batcher = self._batcher
        ended = False
        while not ended:
            deadline = batcher.deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                entry = await asyncio.wait_for(self._persist.get(), timeout)
            except TimeoutError:
                await self._write(batcher.due(time.monotonic()))
                continue
            batches: list[str] = []
            # Drain what queued up while the last write was in flight: fewer, larger writes.
            while entry is not _END:
                piece, arrived = entry
                batches += batcher.add(piece, arrived)
                if self._persist.empty():
                    break
                entry = self._persist.get_nowait()
            if entry is _END:
                ended = True
                batches += batcher.flush()
            else:
                batches += batcher.due(time.monotonic())
            await self._write(coalesce(batches, batcher.max_bytes))
        return await self._finish()

    # -- storage -----------------------------------------------------------------------

    def _stream_ended(self, why: str) -> None:
        """The stream ended without this driver (timed out while it was frozen, deleted):
        stop, and write nothing more."""
        logger.warning("stream %s ended under its driver (%s): stopping", self.stream_id, why)
        self.totals[observability.STALE_WRITES_REFUSED] += 1
        self._ended = True
        self._persisting = False
        self._stop.set()

    async def _write(self, batches: list[str]) -> None:
        for text in batches:
            if not self._persisting:
                return
            seq = self._seq + 1
            if await self._retrying(partial(self.store.append, self.stream_id, seq, text)) is None:
                self._seq = seq
                self._alive_at = time.monotonic()
                self.totals[observability.BATCHES_WRITTEN] += 1
                self.totals[observability.BYTES_PERSISTED] += len(text.encode())
            elif not self._ended:
                # Stop generating: text that cannot be stored would be seen by the driver only.
                self._persisting = False
                self._error = f"could not persist batch {seq}"
                self._stop.set()

    async def _finish(self) -> DriveResult:
        if not self._ended:
            if self._error is not None:
                status = Status.ERROR
            elif self._cancelled:
                status = Status.CANCELLED
            else:
                status = Status.DONE
            finish = partial(self.store.finish, self.stream_id, status, self._error)
            finished = await self._retrying(finish)
            if finished is True:
                if status is Status.CANCELLED:
                    self.totals[observability.CANCELS] += 1
                return DriveResult(status, self._seq, self._error)
            if finished is False:  # it had ended: its final status is not this driver's
                self.totals[observability.STALE_WRITES_REFUSED] += 1
        # Someone else ended the stream (the sweeper, a delete): report what it is now.
        try:
            stream = await self.store.get_stream(self.stream_id)
        except Exception:
            logger.exception("reading stream %s", self.stream_id)
            stream = None
        if stream is None:
            return DriveResult(Status.CANCELLED, self._seq, "the stream was deleted")
        return DriveResult(stream.status, stream.seq, stream.error)

    async def _retrying(self, write: Callable[[], Awaitable[object]]) -> object:
        """Run a write, retrying beyond boto3's own retries for a while: its result, or
        `_GAVE_UP` (also when the store refused it; a refusal because the stream ended
        stops this driver)."""
        give_up = time.monotonic() + self._write_retry_for
        delay = 0.2
        while True:
            try:
                return await write()
            except StreamEnded as ended:
                self._stream_ended(str(ended))
                return _GAVE_UP
            except StorageError:
                logger.exception("stream %s refused a write", self.stream_id)
                self.totals[observability.STALE_WRITES_REFUSED] += 1
                return _GAVE_UP
            except Exception:
                logger.exception("writing stream %s", self.stream_id)
                if time.monotonic() + delay > give_up:
                    return _GAVE_UP
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
