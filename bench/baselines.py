"""The baselines every figure is compared with, on the same workload.

- **Per-token writes**: persist every piece as its own write. `replay_per_token` makes the
  very `StreamStore` calls such a persister would (create, claim, one `append` per piece,
  finish); against moto it is metered like everything else, and `DryDynamoDB` lets the same
  calls be counted without a server (for the long replies).
- **Full-body re-send** (Convex's behaviour): on every write, every viewer gets the whole body
  so far. `fullbody_messages` counts what that sends for a given sequence of batches: ours
  (the records our run wrote) or Convex's own cut (`convex_batches`: a write whenever a piece
  contains `.`, `!` or `?`).
- **HTTP-only**: the same app and driver with `NullWrites`, a store that persists nothing;
  `SlowWrites` injects latency into every write instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.metering import DynamoMeter, Tally, Usage
from pts.connections import Connections
from pts.storage import Status, StreamStore

WEBSOCKET_BILLING_UNIT = 32 * 1024
"""API Gateway meters WebSocket messages in 32 KB increments."""


# -- per-token writes ------------------------------------------------------------------


def replay_per_token(store: StreamStore, pieces: Sequence[str]) -> str:
    """Persist `pieces` one write each, in order (a stream takes only its next batch), as a
    per-token persister would; the stream id."""
    chat, _ = store.create_chat("per-token baseline")
    store.claim(chat.stream_id)
    for seq, piece in enumerate(pieces, start=1):
        store.append(chat.stream_id, seq, piece)
    store.finish(chat.stream_id, Status.DONE)
    return chat.stream_id


class DryDynamoDB:
    """Accepts the write calls `StreamStore` makes and prices them; stores nothing."""

    def __init__(self, meter: DynamoMeter) -> None:
        self._meter = meter
        self.usage = Usage()

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for table, items, units in self._meter.charges(operation, params, {}):
            key = (self._meter.tables.get(table, table), operation)
            self.usage.tallies.setdefault(key, Tally()).add(items, units)
        return {}

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        return self._call("TransactWriteItems", params)

    def put_item(self, **params: Any) -> dict[str, Any]:
        return self._call("PutItem", params)

    def update_item(self, **params: Any) -> dict[str, Any]:
        return self._call("UpdateItem", params)


def dry_per_token(meter: DynamoMeter, table: str, pieces: Sequence[str]) -> Usage:
    """The DynamoDB usage of `replay_per_token`, counted without a server."""
    dry = DryDynamoDB(meter)
    replay_per_token(StreamStore(table, client=dry), pieces)
    return dry.usage


# -- full-body re-send -----------------------------------------------------------------


def convex_batches(pieces: Iterable[str]) -> list[str]:
    """Convex's cut: write the buffer whenever a piece contains `.`, `!` or `?`; then the rest."""
    batches: list[str] = []
    buffer = ""
    for piece in pieces:
        buffer += piece
        if any(mark in piece for mark in ".!?"):
            batches.append(buffer)
            buffer = ""
    if buffer:
        batches.append(buffer)
    return batches


@dataclass(frozen=True, slots=True)
class Pushed:
    """What one viewer is sent: messages, bytes, and messages as API Gateway bills them."""

    messages: int
    bytes: int
    billed_messages: int

    def __add__(self, other: Pushed) -> Pushed:
        return Pushed(
            self.messages + other.messages,
            self.bytes + other.bytes,
            self.billed_messages + other.billed_messages,
        )


def billed(size: int) -> int:
    return max(1, math.ceil(size / WEBSOCKET_BILLING_UNIT))


def pushed(messages: Iterable[dict[str, Any]]) -> Pushed:
    sizes = [len(Connections.encode(m)) for m in messages]
    return Pushed(len(sizes), sum(sizes), sum(billed(s) for s in sizes))


def envelope(stream_id: str, seq: int, status: str = "done") -> Pushed:
    """The snapshot (empty: the viewer subscribed before the stream started) and final status."""
    return pushed(
        [
            {"type": "snapshot", "streamId": stream_id, "text": "", "status": "pending", "seq": 0},
            {"type": "status", "streamId": stream_id, "status": status, "seq": seq},
        ]
    )


def delta_messages(stream_id: str, batches: Sequence[str]) -> Pushed:
    """Ours: one delta per batch, each carrying only that batch."""
    return pushed(
        {"type": "delta", "streamId": stream_id, "seq": seq, "text": text}
        for seq, text in enumerate(batches, start=1)
    )


def fullbody_messages(stream_id: str, batches: Sequence[str]) -> Pushed:
    """The full-body re-send: one message per batch, each carrying the whole body so far."""

    def bodies() -> Iterable[dict[str, Any]]:
        body = ""
        for seq, text in enumerate(batches, start=1):
            body += text
            yield {"type": "delta", "streamId": stream_id, "seq": seq, "text": body}

    return pushed(bodies())


def fullbody_read_units(batches: Sequence[str], item_overhead: int) -> float:
    """RRU a full-body fan-out spends re-reading the body (one consistent Query per batch).

    `item_overhead`: the bytes of a batch item besides its text (keys and attributes).
    """
    total = 0
    read = 0
    for text in batches:
        read += len(text.encode()) + item_overhead
        total += max(1, math.ceil(read / 4096))
    return float(total)


def merge_min_interval(
    batches: Sequence[str], written_at: Sequence[float], interval: float
) -> list[str]:
    """A projection: the batches of a writer that also kept writes `interval` s apart.

    Consecutive batches are joined until one was written at least `interval` after the
    previous write; each joined batch still ends where its last part ended, at a boundary.
    """
    merged: list[str] = []
    buffer = ""
    last = -math.inf
    for text, at in zip(batches, written_at, strict=True):
        buffer += text
        if at - last >= interval:
            merged.append(buffer)
            buffer, last = "", at
    if buffer:
        merged.append(buffer)
    return merged


# -- HTTP-only and injected latency ----------------------------------------------------


class NullWrites:
    """A store that persists no text: `append` and `finish` do nothing, the rest is real."""

    def __init__(self, store: StreamStore) -> None:
        self._store = store

    def append(self, stream_id: str, seq: int, text: str) -> None:
        return None

    def finish(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class SlowWrites:
    """A store whose `append` and `finish` each take `delay` seconds longer."""

    def __init__(self, store: StreamStore, delay: float) -> None:
        self._store = store
        self.delay = delay

    def append(self, stream_id: str, seq: int, text: str) -> None:
        time.sleep(self.delay)
        self._store.append(stream_id, seq, text)

    def finish(self, *args: Any, **kwargs: Any) -> bool:
        time.sleep(self.delay)
        return self._store.finish(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


# -- the batching rule, replayed -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replayed:
    """The batches `pts.batching.Batcher` cuts from a paced reply, and when."""

    batches: list[str]
    cut_at: list[float]
    waits: list[float]
    """Per piece: seconds from leaving the generator to its batch being cut."""


def replay_batcher(
    pieces: Sequence[str],
    rate: float,
    min_interval: float,
    max_delay: float = 1.0,
    max_bytes: int = 4096,
) -> Replayed:
    """Cut `pieces` arriving at `rate` per second as the driver does (sleeping to the
    batcher's deadline between pieces), with no write time: the rule alone, not measured."""
    from pts.batching import Batcher

    batcher = Batcher(max_delay=max_delay, max_bytes=max_bytes, min_interval=min_interval)
    batches: list[str] = []
    cut_at: list[float] = []

    def took(got: list[str], at: float) -> None:
        batches.extend(got)
        cut_at.extend([at] * len(got))

    for i, piece in enumerate(pieces):
        now = i / rate
        while (deadline := batcher.deadline()) is not None and deadline <= now:
            took(batcher.due(deadline), deadline)
        took(batcher.add(piece, now), now)
    end = len(pieces) / rate
    while (deadline := batcher.deadline()) is not None and deadline <= end:
        took(batcher.due(deadline), deadline)
    took(batcher.flush(), end)
    waits, offset, k = [], 0, 0
    ends = [sum(len(b) for b in batches[: j + 1]) for j in range(len(batches))]
    for i, piece in enumerate(pieces):
        offset += len(piece)
        while ends[k] < offset:
            k += 1
        waits.append(cut_at[k] - i / rate)
    return Replayed(batches, cut_at, waits)
