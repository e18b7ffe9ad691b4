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
    """What a viewer knows of one stream, kept exact by the client rule.

    One subscribe is in flight at a time: deltas and a final status that arrive meanwhile
    wait in `early`, since its snapshot may already hold them; what is left after it is
    applied in order, and a gap (or a final status ahead of `last`) asks for a new snapshot.
    """

    stream_id: str
    last: int = 0
    text: str = ""
    status: str | None = None
    """The final status, once the stream has ended (`unknown` if it does not exist)."""
    error: str | None = None
    awaiting_snapshot: bool = False
    resubscribes: int = 0
    early: dict[int, str] = field(default_factory=dict, repr=False)
    final: tuple[str, int] | None = None
    on_text: Callable[[str], None] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.status is not None

    def subscribe_message(self) -> dict[str, Any]:
        """Subscribe (again) after what is shown: at start, and on every new connection."""
        self.awaiting_snapshot = True
        return {"action": "subscribe", "streamId": self.stream_id, "after": self.last}

    def apply(self, message: Any) -> dict[str, Any] | None:
        """Take one server message (others' are ignored); returns a subscribe message to
        send, if one is needed."""
        if not isinstance(message, dict) or message.get("streamId") not in (None, self.stream_id):
            return None
        kind = message.get("type")
        if kind == "error":
            self.error = str(message.get("error") or "error")
            self.status = "unknown"
        elif kind == "snapshot" and self.awaiting_snapshot:
            self.awaiting_snapshot = False
            self._append(str(message.get("text") or ""), max(self.last, int(message["seq"])))
            if message.get("status") in TERMINAL:
                self.status = message["status"]
                return None
            return self._catch_up()
        elif kind == "delta":
            seq = int(message["seq"])
            if seq > self.last:
                self.early[seq] = str(message.get("text") or "")
                if not self.awaiting_snapshot:
                    return self._catch_up()
        elif kind == "status" and message.get("status") in TERMINAL:
            self.final = (str(message["status"]), int(message.get("seq") or 0))
            if not self.awaiting_snapshot:
                return self._catch_up()
        return None

    def _append(self, text: str, seq: int) -> None:
        if text:
            self.text += text
            if self.on_text:
                self.on_text(text)
        self.last = seq

    def _catch_up(self) -> dict[str, Any] | None:
        for seq in sorted(self.early):
            if seq == self.last + 1:
                self._append(self.early[seq], seq)
        self.early = {seq: text for seq, text in self.early.items() if seq > self.last}
        if self.final is not None and self.final[1] <= self.last:
            self.status = self.final[0]
        elif self.early or self.final is not None:
            self.resubscribes += 1
            return self.subscribe_message()
        return None


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
            if request := view.apply(json.loads(await socket.recv())):
                await socket.send(json.dumps(request))
    return view
