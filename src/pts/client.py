"""Watching a stream from Python: the client rule, and the one WebSocket follow loop.

`StreamView` is the rule alone (no I/O), shared by `pts watch`, the tests and the
benchmark: apply a delta only when `seq == last + 1`, ignore `seq <= last`, and on a gap,
or a final status ahead of `last`, subscribe again with `after = last` and append that
snapshot (docs/protocol.md). `follow()` runs it over a WebSocket until the stream ends,
reconnecting after a drop; `pts watch` is `follow()` printing as it goes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from pts import protocol
from pts.protocol import IDLE_RESYNC_SECONDS

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Pauses before reconnecting after drops in a row that made no progress; then give up."""
BACKLOG_WAIT_SECONDS = 2.0
"""How long a gap may stay open without progress, after a snapshot with `more`, before the
view subscribes again: the missing batches are normally on their way already."""


@dataclass
class StreamView:
    """What a viewer knows of one stream, kept exact by the client rule.

    One subscribe is in flight at a time: deltas and a final status that arrive meanwhile
    wait in `early`, since its snapshot may already hold them; what is left after it is
    applied in order, and a gap (or a final status ahead of `last`) asks for a new snapshot.

    A snapshot with `more` is not the end, whatever its status: the rest of its batches
    follow as deltas, and the fan-out's newer deltas can overtake them. So after one, a gap
    is waited out (`waiting_for_backlog`; `follow` gives it `BACKLOG_WAIT_SECONDS` without
    progress, then calls `resync`) instead of asking again at once for what is on its way.
    """

    stream_id: str
    last: int = 0
    text: str = ""
    status: str | None = None
    """The final status, once the stream has ended (`unknown` if it does not exist)."""
    error: str | None = None
    awaiting_snapshot: bool = False
    backlog: bool = False
    """The last snapshot said `more`: its remaining batches are on their way as deltas."""
    resubscribes: int = 0
    early: dict[int, str] = field(default_factory=dict, repr=False)
    final: tuple[str, int] | None = None
    on_text: Callable[[str], None] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.status is not None

    @property
    def gap(self) -> bool:
        """Something newer than `last` is known (a delta or the final status), not yet shown."""
        return bool(self.early) or self.final is not None

    @property
    def waiting_for_backlog(self) -> bool:
        return self.backlog and self.gap and not self.awaiting_snapshot and not self.ended

    def subscribe_message(self) -> protocol.SubscribeRequest:
        """Subscribe (again) after what is shown: at start, and on every new connection."""
        self.awaiting_snapshot = True
        return protocol.subscribe_request(self.stream_id, self.last)

    def apply(self, message: Any) -> protocol.SubscribeRequest | None:
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
            self.backlog = message.get("more") is True
            self._append(str(message.get("text") or ""), max(self.last, int(message["seq"])))
            if not self.backlog and protocol.is_terminal(message.get("status")):
                self.status = message["status"]
                return None
            return self._catch_up()
        elif kind == "delta":
            seq = int(message["seq"])
            if seq > self.last:
                self.early[seq] = str(message.get("text") or "")
                if not self.awaiting_snapshot:
                    return self._catch_up()
        elif kind == "status" and protocol.is_terminal(message.get("status")):
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

    def _catch_up(self) -> protocol.SubscribeRequest | None:
        for seq in sorted(self.early):
            if seq == self.last + 1:
                self._append(self.early[seq], seq)
        self.early = {seq: text for seq, text in self.early.items() if seq > self.last}
        if self.final is not None and self.final[1] <= self.last:
            self.status = self.final[0]
        elif self.gap and not self.backlog:
            self.resubscribes += 1
            return self.subscribe_message()
        return None

    def resync(self) -> protocol.SubscribeRequest | None:
        """Nothing arrived for a while (or a backlog stopped short): subscribe again, unless
        a subscribe is already in flight."""
        if self.awaiting_snapshot or self.ended:
            return None
        if self.gap:
            self.resubscribes += 1
        return self.subscribe_message()


async def follow(
    ws_url: str,
    stream_id: str,
    *,
    after: int = 0,
    on_text: Callable[[str], None] | None = None,
    open_timeout: float = 10,
    reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
) -> StreamView:
    """Subscribe to `stream_id` and follow it until it ends; the view holds the text.

    A dropped connection is opened again and resumes after what is shown; a drop right
    after another with nothing new in between waits `reconnect_delays` longer each time,
    then the error is raised. So is the first connection's error (nothing to resume):
    an unreachable URL fails fast. A bad URL raises `websockets.exceptions.InvalidURI`.
    """
    view = StreamView(stream_id, last=after, on_text=on_text)
    connected = False
    failures = 0
    while True:
        shown = view.last
        try:
            async with connect(ws_url, open_timeout=open_timeout, max_size=None) as socket:
                connected = True
                await _follow_on(socket, view)
            return view
        except (ConnectionClosed, OSError, InvalidHandshake):
            # A connection that made progress resets the count; one never made fails fast.
            failures = 0 if view.last > shown else failures + 1
            if not connected or failures > len(reconnect_delays):
                raise
            await asyncio.sleep(reconnect_delays[failures - 1] if failures else 0.1)


async def _follow_on(socket: ClientConnection, view: StreamView) -> None:
    """Follow on one connection until the stream ends (or the connection drops)."""
    await socket.send(json.dumps(view.subscribe_message()))
    loop = asyncio.get_running_loop()
    deadline: float | None = None  # for a gap left by a `more` snapshot's backlog
    shown = view.last
    while not view.ended:
        if view.waiting_for_backlog:
            if deadline is None or view.last != shown:
                deadline, shown = loop.time() + BACKLOG_WAIT_SECONDS, view.last
            timeout = max(deadline - loop.time(), 0.0)
        else:
            deadline, timeout = None, IDLE_RESYNC_SECONDS
        try:
            raw = await asyncio.wait_for(socket.recv(), timeout)
        except TimeoutError:
            # Delivery is at least once, not exactly: a long silence gets a fresh look.
            deadline = None
            if request := view.resync():
                await socket.send(json.dumps(request))
            continue
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if request := view.apply(message):
            await socket.send(json.dumps(request))
