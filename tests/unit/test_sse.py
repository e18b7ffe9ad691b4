"""The UI message stream encoding (`pts.sse`): parts, their order, and how a stream's end shows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pts import sse
from pts.driver import DriveResult
from pts.protocol import Status


async def pieces_of(*pieces: str) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


async def ended(status: Status, error: str | None = None) -> DriveResult:
    return DriveResult(status, 3, error)


class NeverAwaited:
    """An outcome that must not be awaited: the body broke before it was due."""

    def __await__(self) -> Any:
        raise AssertionError("awaited")


def parse(events: list[str]) -> list[Any]:
    """Each event as a client reads it: one `data:` line, a blank line, JSON or `[DONE]`."""
    parsed = []
    for raw in events:
        assert raw.endswith("\n\n") and raw.count("\n") == 2, raw
        assert raw.startswith("data: ")
        data = raw.removeprefix("data: ").removesuffix("\n\n")
        parsed.append(data if data == "[DONE]" else json.loads(data))
    return parsed


def run(message_id: str, pieces: AsyncIterator[str], outcome: Any) -> list[Any]:
    async def collect() -> list[str]:
        return [e async for e in sse.ui_message_stream(message_id, pieces, outcome)]

    return parse(asyncio.run(collect()))


def test_a_done_stream_is_start_text_finish_done():
    parts = run("s1", pieces_of("Hel", "lo"), ended(Status.DONE))
    assert parts == [
        {"type": "start", "messageId": "s1"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hel"},
        {"type": "text-delta", "id": "text-1", "delta": "lo"},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish", "finishReason": "stop"},
        "[DONE]",
    ]


def test_a_failed_source_ends_in_an_error_part_not_a_finish():
    parts = run("s1", pieces_of("par", "tial"), ended(Status.ERROR, "model overloaded"))
    assert parts[-3:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "model overloaded"},
        "[DONE]",
    ]
    assert not any(isinstance(p, dict) and p["type"] == "finish" for p in parts)


@pytest.mark.parametrize("status", [Status.CANCELLED, Status.TIMEOUT])
def test_a_stopped_stream_ends_in_an_abort_part(status: Status):
    parts = run("s1", pieces_of("a"), ended(status))
    assert parts[-2:] == [{"type": "abort", "reason": str(status)}, "[DONE]"]


def test_an_empty_reply_still_has_a_text_part():
    parts = run("s1", pieces_of(), ended(Status.DONE))
    assert [p if p == "[DONE]" else p["type"] for p in parts] == [
        "start", "text-start", "text-end", "finish", "[DONE]"
    ]  # fmt: skip


def test_a_broken_body_becomes_an_error_part():
    async def broken() -> AsyncIterator[str]:
        yield "so far"
        raise RuntimeError("the store went away")

    parts = run("s1", broken(), NeverAwaited())
    assert parts[-3:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "internal error"},
        "[DONE]",
    ]


def test_a_client_going_away_does_not_cancel_the_outcome():
    async def scenario() -> bool:
        finished = asyncio.Event()

        async def outcome() -> DriveResult:
            await finished.wait()
            return DriveResult(Status.DONE, 1)

        task = asyncio.create_task(outcome())
        events = sse.ui_message_stream("s1", pieces_of("x"), task)
        reader = asyncio.create_task(anext_n(events, 10))
        await asyncio.sleep(0.01)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        finished.set()
        return (await task).status is Status.DONE

    async def anext_n(events: AsyncIterator[str], n: int) -> None:
        for _ in range(n):
            await anext(events)

    assert asyncio.run(scenario())


@given(st.lists(st.text(min_size=1), max_size=8))
def test_any_text_round_trips_through_one_line_events(pieces: list[str]):
    """Newlines, quotes, emoji, lone control characters: JSON keeps each event on one line."""
    parts = run("s1", pieces_of(*pieces), ended(Status.DONE))
    deltas = [p["delta"] for p in parts if isinstance(p, dict) and p["type"] == "text-delta"]
    assert deltas == pieces


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        ("application/json, text/event-stream", True),
        ("text/event-stream;q=0", False),
        ("text/event-stream;q=0.5", True),
        ("*/*", False),
        ("text/*", False),
        ("", False),
        ("text/plain", False),
    ],
)
def test_only_an_explicit_accept_asks_for_events(accept: str, wanted: bool):
    assert sse.wants_event_stream(accept) is wanted
