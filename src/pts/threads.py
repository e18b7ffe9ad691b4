"""Conversations: what a source is told of a thread's earlier turns.

A thread is the chats created with the same `threadId` (the id of its first chat). When one
of them is driven, its source gets the turns before it — each prompt and its persisted reply,
whatever the reply's status — oldest first, as many of the newest as fit in the source's
history budget. Bodies are read newest first and only until the budget is spent, so a long
thread costs a few reads, not one per turn ever made.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pts.model import Chat
from pts.sources import Turn
from pts.storage import StreamStore


def within_budget(newest_first: Iterable[Turn], budget: int) -> tuple[Turn, ...]:
    """The leading `newest_first` turns that fit in `budget` bytes together, oldest first.

    Whole turns only, and nothing older than one that does not fit (a gap in the middle of
    a conversation would mislead a model more than a shorter memory). Lazy: it stops pulling
    turns at the first one that does not fit.
    """
    kept: list[Turn] = []
    left = budget
    for turn in newest_first:
        if turn.size > left:
            break
        kept.append(turn)
        left -= turn.size
    return tuple(reversed(kept))


def earlier_chats(store: StreamStore, chat: Chat) -> list[Chat]:
    """The chats of `chat`'s thread created before it, oldest first."""
    if chat.thread_id is None:
        return []
    mine = (chat.created_at, chat.chat_id)
    return [c for c in store.list_thread(chat.thread_id) if (c.created_at, c.chat_id) < mine]


def history(store: StreamStore, chat: Chat, budget: int) -> tuple[Turn, ...]:
    """The earlier turns of `chat`'s thread that a source with `budget` bytes is given."""

    def newest_first() -> Iterator[Turn]:
        for earlier in reversed(earlier_chats(store, chat)):
            body = store.read(earlier.stream_id)
            yield Turn(earlier.prompt, body.text if body is not None else "")

    return within_budget(newest_first(), budget)
