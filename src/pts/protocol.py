"""The wire protocol, in one place: statuses, ids, WebSocket messages and the client rule.

Everything a client can see is defined here and only here (docs/protocol.md describes it in
prose): the fan-out, the WebSocket routes, the Python client and the benchmark build and read
messages through these types and builders, so a change to the protocol is a change to this
module.

Client → server (API Gateway routes on `action`): `subscribe` (`after` optional, default 0)
and `unsubscribe`. Server → client: a `snapshot` answers a subscribe, a `delta` carries one
persisted batch, a `status` announces the end, an `error` a bad message or an unknown stream.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Literal, NotRequired, TypedDict


class Status(StrEnum):
    """A stream's lifecycle: `pending` → `streaming` → one of the terminal statuses."""

    PENDING = "pending"
    STREAMING = "streaming"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[Status] = frozenset(
    {Status.DONE, Status.ERROR, Status.CANCELLED, Status.TIMEOUT}
)
"""The statuses a stream ends in; once there, it never changes again."""


def is_terminal(status: object) -> bool:
    """Whether `status` (a `Status` or its wire string) is a terminal status."""
    return isinstance(status, str) and status in TERMINAL_STATUSES


# -- ids ---------------------------------------------------------------------------------

MAX_ID_LENGTH = 64
ID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")
"""What a chat or stream id can look like (ours are 32 hex digits); anything else is unknown."""


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def is_utf8(value: str) -> bool:
    """Whether `value` can be sent as UTF-8 (JSON's `"\\ud800"` decodes to a lone surrogate,
    which cannot): such text is refused, never stored, looked up or echoed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_json(data: bytes | str) -> object:
    """A client's JSON (an HTTP body, a WebSocket frame), or `ValueError` saying what is wrong.

    Python's parser raises more than `JSONDecodeError` on hostile input: `RecursionError` on
    deep nesting (60,000 `[`) and a plain `ValueError` on an integer over 4,300 digits;
    both are bad input like any other, never a server error.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not valid UTF-8") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error.msg}") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    except ValueError:
        raise ValueError("not valid JSON: a number is too long") from None


# -- client → server ---------------------------------------------------------------------


class SubscribeRequest(TypedDict):
    action: Literal["subscribe"]
    streamId: str
    after: NotRequired[int]
    """Send what comes after this sequence number (0, the default, is everything)."""


class UnsubscribeRequest(TypedDict):
    action: Literal["unsubscribe"]
    streamId: str


ClientRequest = SubscribeRequest | UnsubscribeRequest


def subscribe_request(stream_id: str, after: int = 0) -> SubscribeRequest:
    return {"action": "subscribe", "streamId": stream_id, "after": after}


def unsubscribe_request(stream_id: str) -> UnsubscribeRequest:
    return {"action": "unsubscribe", "streamId": stream_id}


# -- server → client ---------------------------------------------------------------------


class SnapshotMessage(TypedDict):
    """The answer to `subscribe`: the batches after `after`, joined; `seq` the highest one.

    With `more`, the text owed was too long for one message: `seq` is the last batch this
    snapshot holds, and the rest follow as `delta`s (then a `status`, if the stream ended).
    """

    type: Literal["snapshot"]
    streamId: str
    text: str
    status: str
    seq: int
    more: NotRequired[Literal[True]]


class DeltaMessage(TypedDict):
    """One persisted batch; batches are numbered 1, 2, 3, … per stream."""

    type: Literal["delta"]
    streamId: str
    seq: int
    text: str


class StatusMessage(TypedDict):
    """The stream ended; `seq` is its last batch. An `error` stream's carries its message."""

    type: Literal["status"]
    streamId: str
    status: str
    seq: int
    error: NotRequired[str]


class ErrorMessage(TypedDict):
    """A bad message or an unknown stream; the connection stays open."""

    type: Literal["error"]
    error: str
    streamId: NotRequired[str]


ServerMessage = SnapshotMessage | DeltaMessage | StatusMessage | ErrorMessage


def snapshot_message(
    stream_id: str, text: str, status: str, seq: int, *, more: bool = False
) -> SnapshotMessage:
    message: SnapshotMessage = {
        "type": "snapshot",
        "streamId": stream_id,
        "text": text,
        "status": status,
        "seq": seq,
    }
    if more:
        message["more"] = True
    return message


def delta_message(stream_id: str, seq: int, text: str) -> DeltaMessage:
    return {"type": "delta", "streamId": stream_id, "seq": seq, "text": text}


def status_message(
    stream_id: str, status: str, seq: int, error: str | None = None
) -> StatusMessage:
    """`error` is sent only with status `error` (as `GET /streams/{id}` shows it)."""
    message: StatusMessage = {"type": "status", "streamId": stream_id, "status": status, "seq": seq}
    if status == Status.ERROR:
        message["error"] = error or "unknown error"
    return message


def error_message(error: str, stream_id: str | None = None) -> ErrorMessage:
    message: ErrorMessage = {"type": "error", "error": error}
    if stream_id is not None:
        message["streamId"] = stream_id
    return message


MAX_MESSAGE_BYTES = 128 * 1024
"""API Gateway refuses a WebSocket message (client to server or server to client) over this."""
MAX_TEXT_BYTES = 96 * 1024
"""The most text one server message carries, as encoded in it (`text_size`): the rest of the
128 KiB is headroom for the envelope. A longer snapshot is cut (`more`)."""


def text_size(text: str) -> int:
    """The bytes `text` takes inside an encoded message: its UTF-8, plus JSON's escapes (a
    control character is six bytes, so raw length alone could overshoot the limit)."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def encode(message: ServerMessage | ClientRequest) -> bytes:
    """Compact UTF-8 JSON (no spaces, no `\\u` escapes), as posted to `@connections`."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


# -- the client rule ---------------------------------------------------------------------
#
# Delivery is at least once and, per stream, normally in order; retries can repeat or reorder
# messages. So a client applies a delta only when `seq == last + 1`, ignores `seq <= last`,
# and on a gap, or a final `status` whose `seq` is above `last`, subscribes again with
# `after = last` and appends that snapshot's text (`pts.client.StreamView` is the rule).

IDLE_RESYNC_SECONDS = 30.0
"""A follower that hears nothing for this long subscribes again: a lost message is not
announced, so a long silence gets a fresh look."""
