"""The one interface every text source implements.

A *source* is any callable that takes a `GenerationRequest` and returns the reply as an
iterable of text pieces:

- an **async iterable** (an `async def … yield` function, httpx-style streaming), or
- a plain **sync iterable** (a `def … yield` function, boto3-style blocking calls). The
  driver advances it in a worker thread (see `aiter_source`), so it never blocks the event
  loop.

The pieces, joined, are the reply. Raising an exception ends the stream with status
`error` (its message is kept); text yielded before the error is kept too. A user-written
source is five lines:

    from pts.sources import GenerationRequest

    async def shout(request: GenerationRequest):
        for word in request.prompt.split():
            yield word.upper() + " "

and is plugged in with `PTS_SOURCE=mypackage.mymodule:make_source`, where
`make_source(env)` returns it (see `pts.sources.load_source`).

A chat that continues a thread comes with the thread's earlier turns in `request.history`
(oldest first), as many of the newest as fit in the source's `history_budget` bytes (an
attribute; `DEFAULT_HISTORY_BUDGET` when it has none). `request.conversation()` gives them as
alternating user and assistant messages, ending with the prompt, for a chat model's API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

DEFAULT_HISTORY_BUDGET = 64 * 1024
"""Bytes of earlier turns (prompts and replies, UTF-8) a source gets unless it says otherwise:
about 16k tokens, well inside any current chat model's context."""

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier exchange of a thread: a prompt and its persisted reply (whatever its
    status: a failed or cancelled reply is what the user saw)."""

    prompt: str
    reply: str

    @property
    def size(self) -> int:
        """UTF-8 bytes, what a history budget counts."""
        return len(self.prompt.encode("utf-8", "surrogatepass")) + len(
            self.reply.encode("utf-8", "surrogatepass")
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation; `texts` has more than one part only where turns with
    no reply were merged (chat APIs want user and assistant to alternate)."""

    role: Role
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a source is asked to continue."""

    prompt: str
    stream_id: str
    chat_id: str | None = None
    history: tuple[Turn, ...] = ()
    """The thread's earlier turns, oldest first, within the source's history budget."""

    def conversation(self) -> list[Message]:
        """The history and the prompt as alternating messages, `user` first and last.

        A turn without a reply (still pending, or cancelled before any text) would put two
        user messages side by side, which Bedrock refuses: its prompt joins the next one's.
        """
        messages: list[Message] = []
        for role, text in _exchange(self.history, self.prompt):
            if messages and messages[-1].role == role:
                messages[-1] = Message(role, (*messages[-1].texts, text))
            else:
                messages.append(Message(role, (text,)))
        return messages


def _exchange(history: Iterable[Turn], prompt: str) -> Iterable[tuple[Role, str]]:
    for turn in history:
        yield "user", turn.prompt
        if turn.reply:
            yield "assistant", turn.reply
    yield "user", prompt


def history_budget(source: object) -> int:
    """The bytes of history `source` wants: its `history_budget`, else the default."""
    budget = getattr(source, "history_budget", DEFAULT_HISTORY_BUDGET)
    return budget if isinstance(budget, int) and budget >= 0 else DEFAULT_HISTORY_BUDGET


class Source(Protocol):
    """A callable producing the reply to one request as text pieces (sync or async)."""

    def __call__(self, request: GenerationRequest) -> AsyncIterable[str] | Iterable[str]: ...


_END = object()


async def aiter_source(source: Source, request: GenerationRequest) -> AsyncGenerator[str, None]:
    """Run `source` for `request` and yield its pieces asynchronously, whatever its kind.

    Sync iterables are advanced one piece at a time in a worker thread, so a blocking SDK
    never stalls the event loop. Closing this iterator (a `break`, a cancellation) closes the
    underlying one as well, so a source's `finally` (closing an HTTP response) still runs.
    Blocking work must happen inside the iteration, not in the call itself: the call runs on
    the event loop.
    """
    pieces = source(request)
    if isinstance(pieces, AsyncIterable):
        inner = aiter(pieces)
        try:
            async for piece in inner:
                yield _checked(piece)
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    if isinstance(pieces, str | list | tuple):
        # Already materialised: nothing can block, so no thread hop.
        for piece in pieces:
            yield _checked(piece)
        return
    it = iter(pieces)
    # One lock owns the iterator: a `next()` still running in its thread when we are closed
    # finishes first, then the closer runs (closing a running generator is an error).
    lock = threading.Lock()

    def step() -> object:
        with lock:
            return next(it, _END)

    try:
        while True:
            next_piece = await asyncio.to_thread(step)
            if next_piece is _END:
                return
            yield _checked(next_piece)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            if lock.acquire(blocking=False):
                try:
                    close()
                finally:
                    lock.release()
            else:
                # Cancelled while a step still runs in its thread: close once it returns.
                threading.Thread(target=_close_when_free, args=(lock, close), daemon=True).start()


def _close_when_free(lock: threading.Lock, close: Callable[[], object]) -> None:
    with lock:
        close()


def _checked(piece: object) -> str:
    if not isinstance(piece, str):
        raise TypeError(f"a source must yield str pieces, got {type(piece).__name__}")
    return piece
