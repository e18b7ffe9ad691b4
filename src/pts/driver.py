"""Drive one stream: every piece goes to the HTTP response at once, and to DynamoDB beside it.

Three tasks share the work, so a slow or throttled DynamoDB never delays the HTTP stream:

- the *producer* pulls pieces from the source (see `pts.sources.aiter_source`) and hands
  each to both queues;
- the *persister* cuts the pieces into batches (`pts.batching`) and writes them in order,
  then the final status;
- the *watcher* polls for a cancel request once a second.

The tasks are not the HTTP response's body iterator (Starlette cancels that when the client
goes away): generation and persistence run to completion whoever is listening.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from pts.batching import Batcher, coalesce
from pts.protocol import Status
from pts.storage import AsyncStreamStore, StorageError, StreamStore

logger = logging.getLogger(__name__)

_END = None


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
        write_retry_for: float = 30.0,
    ) -> None:
        self.store = store if isinstance(store, AsyncStreamStore) else AsyncStreamStore(store)
        self.stream_id = stream_id
        self._pieces = pieces
        self._batcher = Batcher(max_delay=max_delay, max_bytes=max_bytes, min_interval=min_interval)
        self._cancel_poll_interval = cancel_poll_interval
        self._write_retry_for = write_retry_for
        self._http: asyncio.Queue[str | None] = asyncio.Queue()
        self._persist: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self._cancelled = asyncio.Event()
        self._error: str | None = None
        self._persisting = True
        self._seq = 0
        self._task: asyncio.Task[DriveResult] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[DriveResult]:
        """Start driving; the task's result is known once the final status is stored."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"drive-{self.stream_id}")
        return self._task

    def cancel(self) -> None:
        """Stop generating; what was generated is still persisted, status `cancelled`."""
        self._cancelled.set()

    async def text(self) -> AsyncIterator[str]:
        """The HTTP body: each piece as soon as it is generated; ends once all is stored."""
        task = self.start()
        while (piece := await self._http.get()) is not _END:
            yield piece
        await asyncio.shield(task)

    async def _run(self) -> DriveResult:
        persister = asyncio.create_task(self._persist_all())
        watcher = asyncio.create_task(self._watch_for_cancel())
        try:
            await self._produce()
        finally:
            watcher.cancel()
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
                if self._cancelled.is_set():
                    break
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

    async def _watch_for_cancel(self) -> None:
        while True:
            await asyncio.sleep(self._cancel_poll_interval)
            try:
                stop = await self.store.cancel_requested(self.stream_id)
            except Exception:
                logger.exception("polling stream %s for a cancel request", self.stream_id)
                continue
            if stop:
                self._cancelled.set()
                return

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

    async def _write(self, batches: list[str]) -> None:
        for text in batches:
            if not self._persisting:
                return
            seq = self._seq + 1
            if await self._retrying(partial(self.store.append, self.stream_id, seq, text)):
                self._seq = seq
            else:
                # Stop generating: text that cannot be stored would be seen by the driver only.
                self._persisting = False
                self._error = f"could not persist batch {seq}"
                self._cancelled.set()

    async def _finish(self) -> DriveResult:
        if self._error is not None:
            status = Status.ERROR
        elif self._cancelled.is_set():
            status = Status.CANCELLED
        else:
            status = Status.DONE
        await self._retrying(
            partial(self.store.finish, self.stream_id, status, self._seq, self._error)
        )
        return DriveResult(status, self._seq, self._error)

    async def _retrying(self, write: Callable[[], Awaitable[object]]) -> bool:
        """Run a write; retry beyond boto3's own retries, for a while."""
        give_up = time.monotonic() + self._write_retry_for
        delay = 0.2
        while True:
            try:
                await write()
                return True
            except StorageError:
                logger.exception("stream %s refused a write", self.stream_id)
                return False
            except Exception:
                logger.exception("writing stream %s", self.stream_id)
                if time.monotonic() + delay > give_up:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
