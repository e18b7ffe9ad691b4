"""Resuming a reply from storage: what a reader that lost the driver's HTTP stream (a reload,
a dropped connection) needs to catch up, without the driver's process.

`StoredReply` reads the stream's persisted text, then polls for the batches persisted after
it until the stream's terminal status, and keeps that status as the outcome. The API serves
it as the AI SDK's UI message stream (`GET /streams/{streamId}/events`, see `pts.sse`), so
`useChat({resume: true})` picks a reply up where it is. Polling, not the WebSocket fan-out:
one reader, for the length of one reply, needs no connection of its own, and the text it
shows is exactly the stored one (the terminal status is the authority on where it ends).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pts.protocol import Status
from pts.storage import AsyncStreamStore, Tail

POLL_SECONDS = 0.4


@dataclass(frozen=True, slots=True)
class Ended:
    """How the stream ended (a `pts.sse.Outcome`)."""

    status: Status
    error: str | None = None


GONE = Ended(Status.CANCELLED)
"""The outcome of a stream deleted while it was read (a delete cancels it first)."""


class StoredReply:
    """One stream's persisted text as it grows, then how it ended."""

    def __init__(
        self,
        store: AsyncStreamStore,
        stream_id: str,
        first: Tail,
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        self.poll_seconds = poll_seconds
        self._first = first
        self._ended: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()

    @property
    def outcome(self) -> asyncio.Future[Ended]:
        """Resolved once `pieces` has yielded the last batch."""
        return self._ended

    async def pieces(self) -> AsyncIterator[str]:
        """The text stored so far as one piece, then each batch as it is persisted."""
        tail: Tail | None = self._first
        after = 0
        try:
            while tail is not None:
                text = "".join(text for seq, text in tail.batches if seq > after)
                if text:
                    yield text
                after = max([after, *(seq for seq, _ in tail.batches)])
                if tail.stream.status.terminal:
                    self._end(Ended(tail.stream.status, tail.stream.error))
                    return
                await asyncio.sleep(self.poll_seconds)
                tail = await self.store.read_batches(self.stream_id, after)
            self._end(GONE)
        finally:
            self._end(GONE)  # a reader that went away: nobody awaits this, but it is settled

    def _end(self, ended: Ended) -> None:
        if not self._ended.done():
            self._ended.set_result(ended)
