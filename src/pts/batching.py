"""Where streamed text is cut into persisted batches (docs/protocol.md, lifecycle).

Every batch is one DynamoDB write and one WebSocket message to every viewer (API Gateway
bills messages, not bytes), so batches should be few but arrive soon, and should end where a
reader would pause. `Batcher` decides the cuts; it is pure and synchronous, and the caller
supplies the (monotonic) time, so the driver can run it beside the HTTP stream and tests can
run it without sleeping.

A batch is cut:

1. after the *last* sentence boundary in the buffer, once at least `min_interval` seconds
   have passed since the previous batch (0: at every boundary). A boundary ends
   - right after the first whitespace character (`str.isspace`) that directly follows
     `.`, `!`, `?` or `…` (so `"Hi.  Yo"` cuts as `"Hi. "` + `" Yo"`);
   - right after a newline `\\n`;
   - right after CJK `。`, `！` or `？` (no whitespace needed).

   Punctuation at the very end of the buffer is not a boundary yet (`"3.14"`, `"e.g.x"`,
   `"v1."` may continue); it becomes one if the next piece starts with whitespace.
2. of the whole buffer, once its oldest character has waited `max_delay` seconds and
   `min_interval` has passed since the previous batch, so text without punctuation (code,
   lists) still persists within about a second (a character waits at most
   `max_delay + min_interval`);
3. into chunks of at most `max_bytes` UTF-8 bytes whenever the buffer would exceed that,
   never inside a character: preferably after the last boundary, else after the last
   whitespace, in the second half of the chunk, else as late as a character allows.

Only rule 3 may cut sooner than `min_interval` after the previous batch. No batch is empty or
longer than `max_bytes` bytes, and the batches joined are exactly the text added. The buffer
is never rescanned: only a new piece (plus the one character before it, which may be the
punctuation of a boundary) is searched, and the buffer's last boundary is remembered.
"""

from __future__ import annotations

import math
import re
from collections import deque

_PUNCT = ".!?\u2026"  # . ! ? …  (a boundary only when whitespace follows)
_MARKS = "\n\u3002\uff01\uff1f"  # newline 。 ！ ？  (a boundary on their own)
_BOUNDARY = rf"(?:[{re.escape(_PUNCT)}]\s|[{_MARKS}])"

# Greedy `.*` backtracks from the end, so `match` finds the last boundary (or whitespace)
# in linear time; `m.end()` is where to cut.
_LAST_BOUNDARY = re.compile(rf"(?s:.*){_BOUNDARY}")
_LAST_SPACE = re.compile(r"(?s:.*)\s")

# Lone surrogates cannot be encoded strictly; the API rejects them, but counting them as
# the 3 bytes `surrogatepass` gives keeps this module total instead of raising.
_ERRORS = "surrogatepass"


def _nbytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", _ERRORS))


class Batcher:
    """Buffers streamed text and says which batches are ready to persist.

    `add` applies all three rules at time `now`; `due` applies the two timed ones (the
    only ones that can fire without new text) at the `deadline()` the caller sleeps to;
    `flush` empties the buffer at the end of the stream.
    """

    def __init__(
        self, max_delay: float = 1.0, max_bytes: int = 4096, min_interval: float = 0.5
    ) -> None:
        if not max_delay >= 0:  # also rejects NaN; math.inf disables the rule
            raise ValueError(f"max_delay must be >= 0, got {max_delay!r}")
        if not 0 <= min_interval < math.inf:
            raise ValueError(f"min_interval must be >= 0 and finite, got {min_interval!r}")
        if max_bytes < 4:  # one UTF-8 character may take 4 bytes
            raise ValueError(f"max_bytes must be >= 4, got {max_bytes!r}")
        self.max_delay = max_delay
        self.max_bytes = max_bytes
        self.min_interval = min_interval
        self._boundary = 0  # characters up to the buffer's last boundary (0: none)
        self._last_cut: float | None = None  # when the previous batch was returned
        self._parts: list[str] = []  # the buffer, unjoined so appending stays O(piece)
        self._len = 0  # characters buffered
        self._bytes = 0  # UTF-8 bytes buffered
        self._offset = 0  # stream offset (characters) of the buffer's first character
        # (stream offset just past a piece, its arrival time), oldest first; only the
        # pieces still (partly) buffered, so [0] is the arrival of the oldest character.
        self._arrivals: deque[tuple[int, float]] = deque()

    @property
    def pending(self) -> str:
        """The buffered text that no returned batch holds yet."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def deadline(self) -> float | None:
        """When `due()` will cut: the previous batch + `min_interval` if a boundary is
        buffered, else the oldest buffered character's arrival + `max_delay` (not before
        the previous batch + `min_interval`)."""
        if not self._arrivals:
            return None
        at = self._arrivals[0][1] + self.max_delay
        if self._boundary:
            at = min(at, self._next_allowed())
        return max(at, self._next_allowed())

    def add(self, piece: str, now: float) -> list[str]:
        """Buffer `piece` (received at `now`); return the batches now ready, maybe none."""
        if piece:
            before = self._parts[-1][-1] if self._parts else ""
            m = _LAST_BOUNDARY.match(before + piece)
            if m:
                self._boundary = self._len - len(before) + m.end()
            self._parts.append(piece)
            self._len += len(piece)
            self._bytes += _nbytes(piece)
            end = self._offset + self._len
            # Clamp so arrivals stay ordered even if a caller's clock steps back.
            t = max(now, self._arrivals[-1][1]) if self._arrivals else now
            if self._arrivals and self._arrivals[-1][1] == t:
                self._arrivals[-1] = (end, t)
            else:
                self._arrivals.append((end, t))
        over = self._bytes > self.max_bytes
        batches = self._cut(now, force=over)
        if self._bytes > self.max_bytes:
            # No boundary left in the buffer: cut off full chunks, keep the tail buffered.
            *full, _ = self._split(self.pending)
            batches.extend(full)
            self._take(sum(map(len, full)))
        if batches:
            self._last_cut = now
        return batches

    def due(self, now: float) -> list[str]:
        """What the timed rules cut at `now`: up to the last boundary once `min_interval`
        has passed, the whole buffer once its oldest character has waited `max_delay`."""
        batches = self._cut(now)
        if batches:
            self._last_cut = now
        return batches

    def flush(self) -> list[str]:
        """Everything still buffered (end of stream); `[]` if nothing is."""
        return self._split(self._take(self._len))

    def _next_allowed(self) -> float:
        return -math.inf if self._last_cut is None else self._last_cut + self.min_interval

    def _cut(self, now: float, force: bool = False) -> list[str]:
        """The batches rules 1 and 2 cut at `now`; `force`: ignore `min_interval`."""
        if not self._arrivals or not (force or now >= self._next_allowed()):
            return []
        if now >= self._arrivals[0][1] + self.max_delay:
            return self._split(self._take(self._len))
        return self._split(self._take(self._boundary)) if self._boundary else []

    def _take(self, n: int) -> str:
        """Remove and return the first `n` buffered characters."""
        if n <= 0:
            return ""
        text = self.pending
        head, tail = text[:n], text[n:]
        self._parts = [tail] if tail else []
        self._len = len(tail)
        self._bytes -= _nbytes(head)
        self._offset += n
        self._boundary = max(0, self._boundary - n)
        while self._arrivals and self._arrivals[0][0] <= self._offset:
            self._arrivals.popleft()
        return head

    def _split(self, text: str) -> list[str]:
        """Cut `text` into non-empty chunks of at most `max_bytes` UTF-8 bytes."""
        data = text.encode("utf-8", _ERRORS)
        chunks: list[str] = []
        start = 0  # byte offset in `data`
        while len(data) - start > self.max_bytes:
            end = start + self.max_bytes
            while data[end] & 0xC0 == 0x80:  # `end` must start a character
                end -= 1
            window = data[start:end].decode("utf-8", _ERRORS)
            cut = _soft_cut(window)
            chunks.append(window[:cut])
            start += end - start if cut == len(window) else _nbytes(window[:cut])
        if start < len(data):
            chunks.append(data[start:].decode("utf-8", _ERRORS))
        return chunks


def _soft_cut(window: str) -> int:
    """Where to cut a full chunk: a boundary, else whitespace, in its second half."""
    half = len(window) // 2
    m = _LAST_BOUNDARY.match(window, half) or _LAST_SPACE.match(window, half)
    return m.end() if m else len(window)


def coalesce(batches: list[str], max_bytes: int) -> list[str]:
    """Join consecutive batches while the result stays within `max_bytes`.

    Batches that queued up behind a slow write go out as one write: each joined batch still
    ends where its last part did, at a boundary.
    """
    merged: list[str] = []
    size = 0
    for batch in batches:
        n = _nbytes(batch)
        if merged and size + n <= max_bytes:
            merged[-1] += batch
            size += n
        else:
            merged.append(batch)
            size = n
    return merged
