"""Watching a stream from Python: the client rule of SPEC §5, and a WebSocket follower.

`StreamView` is the rule alone (no I/O), shared by `pts watch`, the tests and the
benchmark: apply a delta only when `seq == last + 1`, ignore `seq <= last`, and on a gap,
or a final status ahead of `last`, subscribe again with `after = last` and append that
snapshot. `follow()` runs it over a WebSocket until the stream ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

TERMINAL = frozenset({"done", "error", "cancelled", "timeout"})


@dataclass
class StreamView:
    """What a viewer knows of one stream, kept exact by the client rule."""

    stream_id: str
    last: int = 0
    text: str = ""
    status: str | None = None
    error: str | None = None
    awaiting_snapshot: bool = True
    """A subscribe is in flight: deltas wait for its snapshot (it holds them, or a gap shows)."""
    resubscribes: int = 0
    on_text: Callable[[str], None] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL or self.status == "unknown"

    def subscribe_message(self) -> dict[str, Any]:
        return {"action": "subscribe", "streamId": self.stream_id, "after": self.last}

    def apply(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Take one server message; returns a subscribe message to send, if one is needed."""
        kind = message.get("type")
        if kind == "snapshot":
            self.awaiting_snapshot = False
            self._append(message.get("text", ""))
            self.last = max(self.last, int(message.get("seq", 0)))
            self.status = message.get("status")
        elif kind == "delta" and not self.awaiting_snapshot:
            seq = int(message["seq"])
            if seq == self.last + 1:
                self._append(message["text"])
                self.last = seq
            elif seq > self.last + 1:
                return self._resubscribe()
        elif kind == "status" and not self.awaiting_snapshot:
            if int(message.get("seq", 0)) > self.last:
                return self._resubscribe()
            self.status = message["status"]
        elif kind == "error" and self.awaiting_snapshot:
            self.status, self.error = "unknown", message.get("error")
        return None

    def _append(self, text: str) -> None:
        if text:
            self.text += text
            if self.on_text:
                self.on_text(text)

    def _resubscribe(self) -> dict[str, Any]:
        self.awaiting_snapshot = True
        self.resubscribes += 1
        return self.subscribe_message()


async def follow(
    ws_url: str,
    stream_id: str,
    *,
    after: int = 0,
    on_text: Callable[[str], None] | None = None,
    open_timeout: float = 10,
) -> StreamView:
    """Subscribe to `stream_id` and follow it until it ends; the view holds the text."""
    view = StreamView(stream_id, last=after, on_text=on_text)
    async with connect(ws_url, open_timeout=open_timeout, max_size=None) as socket:
        await socket.send(json.dumps(view.subscribe_message()))
        while not view.ended:
            message = json.loads(await socket.recv())
            if message.get("streamId") not in (None, stream_id):
                continue
            if request := view.apply(message):
                await socket.send(json.dumps(request))
    return view
