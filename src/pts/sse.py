"""The Vercel AI SDK's UI message stream protocol: a driven reply as server-sent events.

`useChat` (with its default transport) reads `POST /chat-stream` in this shape when it sends
`Accept: text/event-stream`: each event is `data: <JSON part>`, the parts are `start`,
`text-start`, `text-delta`…, `text-end`, then how the stream ended, then `data: [DONE]`.

The end is not known from the text: the body's pieces end the same way whether the source
finished or failed. So the caller passes the outcome too (the driver's task), awaited once the
pieces are exhausted and shielded (a client that goes away must not cancel the stream's run).
A failed source becomes an `error` part, a cancelled or timed-out stream an `abort` part, and
only a `done` stream a `finish` part. Pure: no I/O; nothing here knows storage or the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping
from typing import Any, Protocol

from pts.protocol import Status

logger = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"
HEADERS: Mapping[str, str] = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Accel-Buffering": "no",  # proxies that buffer would hold the events back
}
DONE = "data: [DONE]\n\n"
TEXT_ID = "text-1"
"""The id of the reply's one text part (ids only need to be unique within one message)."""


class Outcome(Protocol):
    """How a stream ended (`pts.driver.DriveResult` is one)."""

    @property
    def status(self) -> Status: ...

    @property
    def error(self) -> str | None: ...


def wants_event_stream(accept: str) -> bool:
    """Whether an `Accept` header asks for server-sent events (`*/*` does not)."""
    for item in accept.split(","):
        media_type, _, params = item.partition(";")
        if media_type.strip().lower() == MEDIA_TYPE and not _refused(params):
            return True
    return False


def _refused(params: str) -> bool:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) <= 0
            except ValueError:
                return False
    return False


def event(part: Mapping[str, Any]) -> str:
    """One server-sent event carrying one part (JSON on one line, so one `data:` field)."""
    return f"data: {json.dumps(part, ensure_ascii=False, separators=(',', ':'))}\n\n"


def ending(outcome: Outcome) -> dict[str, Any]:
    """The part that tells the client how the stream ended."""
    if outcome.status is Status.DONE:
        return {"type": "finish", "finishReason": "stop"}
    if outcome.status is Status.ERROR:
        return {"type": "error", "errorText": outcome.error or "unknown error"}
    return {"type": "abort", "reason": str(outcome.status)}


async def ui_message_stream(
    message_id: str, pieces: AsyncIterable[str], outcome: Awaitable[Outcome]
) -> AsyncIterator[str]:
    """The whole event stream of one reply: `pieces` as text deltas, then `outcome`."""
    yield event({"type": "start", "messageId": message_id})
    yield event({"type": "text-start", "id": TEXT_ID})
    try:
        async for piece in pieces:
            yield event({"type": "text-delta", "id": TEXT_ID, "delta": piece})
        result = await asyncio.shield(outcome)
    except Exception:
        # The 200 is sent already: the client learns of the failure from the stream alone.
        logger.exception("streaming message %s as server-sent events", message_id)
        yield event({"type": "text-end", "id": TEXT_ID})
        yield event({"type": "error", "errorText": "internal error"})
    else:
        yield event({"type": "text-end", "id": TEXT_ID})
        yield event(ending(result))
    yield DONE
