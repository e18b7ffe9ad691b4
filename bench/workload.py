"""The reply-2000 workload: a deterministic English reply, streamed at a fixed rate.

The text is `pts.sources.demo.demo_reply_tokens(seed, tokens)`, one token per piece. The
bench plugs `PacedSource` into the streaming app (`PTS_GENERATOR=bench.workload:make_source`);
the prompt says which workload to stream, so one stack serves every length and rate. The
source stamps each piece (`time.monotonic()`, one clock for every process on the machine)
the moment it leaves the generator: all latencies are measured from there. The streaming
function runs in a process of its own, so the stamps go through files in a directory both
see (`PTS_BENCH_TIMELINE_DIR`).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pts.sources import GenerationRequest
from pts.sources.demo import demo_reply_tokens

SEED = "reply-2000"
_PROMPT = re.compile(r"bench:tokens=(\d+):rate=([0-9.]+):seed=(.+)", re.ASCII | re.DOTALL)


@cache
def reply_pieces(seed: str, tokens: int) -> tuple[str, ...]:
    return tuple(demo_reply_tokens(seed, tokens))


@dataclass(frozen=True, slots=True)
class Workload:
    """`tokens` tokens of the seeded reply, `rate` tokens per second (0: unpaced)."""

    tokens: int = 2000
    rate: float = 200.0
    seed: str = SEED

    @property
    def prompt(self) -> str:
        return f"bench:tokens={self.tokens}:rate={self.rate:g}:seed={self.seed}"

    @classmethod
    def from_prompt(cls, prompt: str) -> Workload:
        match = _PROMPT.fullmatch(prompt)
        if match is None:
            raise ValueError(f"not a bench prompt: {prompt[:60]!r}")
        return cls(int(match[1]), float(match[2]), match[3])

    @property
    def pieces(self) -> tuple[str, ...]:
        return reply_pieces(self.seed, self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def reply_bytes(self) -> int:
        return len(self.text.encode())

    @property
    def seconds(self) -> float:
        """How long streaming takes at `rate`."""
        return self.tokens / self.rate if self.rate > 0 else 0.0

    def scaled(self, factor: int) -> Workload:
        return Workload(self.tokens * factor, self.rate, self.seed)


class Timeline:
    """When each piece of each stream left the generator: `(end byte offset, monotonic s)`.

    In memory, or, once `share(directory)` is called, one file per stream in `directory`,
    so that a source in another process records where this one reads."""

    def __init__(self, directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, list[tuple[int, float]]] = {}
        self.directory = directory

    def share(self, directory: Path | None) -> None:
        self.directory = directory

    def _file(self, stream_id: str) -> Path:
        assert self.directory is not None
        return self.directory / stream_id.replace("/", "_")

    def record(self, stream_id: str, end: int, at: float) -> None:
        if self.directory is not None:
            with self._file(stream_id).open("a") as file:
                file.write(f"{end} {at!r}\n")
            return
        with self._lock:
            self._streams.setdefault(stream_id, []).append((end, at))

    def of(self, stream_id: str) -> list[tuple[int, float]]:
        if self.directory is not None:
            path = self._file(stream_id)
            lines = path.read_text().splitlines() if path.exists() else []
            return [(int(end), float(at)) for end, at in (line.split() for line in lines)]
        with self._lock:
            return list(self._streams.get(stream_id, ()))

    def clear(self) -> None:
        if self.directory is not None:
            for path in self.directory.iterdir():
                path.unlink()
        with self._lock:
            self._streams.clear()


TIMELINE = Timeline()
"""Filled by every `PacedSource` made by `make_source` (the app builds its own source)."""


class PacedSource:
    """A text source streaming the workload its prompt names, on an absolute schedule."""

    def __init__(self, timeline: Timeline = TIMELINE) -> None:
        self.timeline = timeline

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[str]:
        workload = Workload.from_prompt(request.prompt)
        start = time.monotonic()
        end = 0
        for i, piece in enumerate(workload.pieces):
            if workload.rate > 0:
                # Piece i is due at start + i/rate, so a late wake-up never shifts the rest.
                await asyncio.sleep(max(0.0, start + i / workload.rate - time.monotonic()))
            else:
                await asyncio.sleep(0)
            end += len(piece.encode())
            self.timeline.record(request.stream_id, end, time.monotonic())
            yield piece


def make_source(env: Mapping[str, str]) -> PacedSource:
    """`PTS_GENERATOR=bench.workload:make_source` (with `PTS_BENCH_TIMELINE_DIR`, shared)."""
    directory = env.get("PTS_BENCH_TIMELINE_DIR")
    return PacedSource(Timeline(Path(directory)) if directory else TIMELINE)
