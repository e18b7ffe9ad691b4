"""The domain: chats, streams and bodies as the rest of the code sees them (no I/O).

`pts.storage` maps them to and from DynamoDB items; the API, the driver, the WebSocket
routes and the sweeper work with these types only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pts.protocol import Status

ANONYMOUS = "anonymous"
"""The owner of everything in `PTS_AUTH=none` mode (the open demo): one user, everyone."""


def readable_by(owner: str, shared: bool, sub: str) -> bool:
    """The owner reads and watches a stream; anybody signed in does once it is shared."""
    return shared or owner == sub


@dataclass(frozen=True, slots=True)
class Chat:
    chat_id: str
    prompt: str
    stream_id: str
    created_at: str
    thread_id: str | None = None
    """The conversation it belongs to: the id of the thread's first chat (so a chat that
    starts a thread, or one stored before threads existed, is its own thread)."""
    owner: str = ANONYMOUS
    """The `sub` of whoever created it (its stream has the same owner)."""
    shared: bool = False
    """Readable and watchable by anybody signed in, not only the owner."""


@dataclass(frozen=True, slots=True)
class Stream:
    stream_id: str
    chat_id: str | None
    status: Status
    token_hash: str
    created_at: str
    updated_at: float
    seq: int
    error: str | None = None
    owner: str = ANONYMOUS
    shared: bool = False

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_hash, hash_token(token))

    def readable_by(self, sub: str) -> bool:
        return readable_by(self.owner, self.shared, sub)


@dataclass(frozen=True, slots=True)
class Body:
    """Batches after some sequence number, joined, with the stream's state."""

    stream_id: str
    text: str
    seq: int
    """The highest persisted sequence number (or the `after` asked for, if none is higher)."""
    status: Status
    error: str | None = None
    owner: str = ANONYMOUS
    shared: bool = False

    def readable_by(self, sub: str) -> bool:
        return readable_by(self.owner, self.shared, sub)


def new_id() -> str:
    """128 random bits, URL-safe; hex, so an id never starts with `-` (a command-line flag)."""
    return secrets.token_hex(16)


def new_token() -> str:
    """A drive token: 256 random bits, URL-safe. Only its hash is stored."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def iso_time(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds (`2026-01-02T03:04:05.678Z`), the API's time format."""
    stamp = datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
