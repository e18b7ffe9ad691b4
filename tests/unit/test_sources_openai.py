"""The OpenAI-compatible source against a real local HTTP server streaming genuine SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from pts.sources import GenerationRequest, Turn, aiter_source
from pts.sources.openai import OpenAISource, OpenAISourceError

API_KEY = "sk-test-123"
PIECES = ["Hel", "lo", ", wor", "ld! ", "Ünï ✓ 🎉", "\n\nBye."]


def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
    body = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        **extra,
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def sse_body(pieces: list[str]) -> list[bytes]:
    """The events one streamed completion is made of, as OpenAI sends them."""
    usage = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    return [
        b": keep-alive comment\n\n",
        chunk({"role": "assistant", "content": "", "refusal": None}),
        *(chunk({"content": piece}) for piece in pieces),
        chunk({}, finish_reason="stop"),
        b'data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","choices":[],'
        + b'"usage":'
        + json.dumps(usage).encode()
        + b"}\n\n",
        b"data: [DONE]\n\n",
    ]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    """A minimal HTTP/1.1 server: chunked transfer encoding, writes split mid-event."""

    events: list[bytes] = field(default_factory=lambda: sse_body(PIECES))
    received: list[Received] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, path, _ = request_line.split(" ")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (h.partition(":") for h in header_lines if h)
        }
        body = json.loads(await reader.readexactly(int(headers["content-length"])))
        self.received.append(Received(method, path, headers, body))
        try:
            if headers.get("authorization") != f"Bearer {API_KEY}":
                await self.reply_401(writer)
            else:
                await self.stream(writer)
        except ConnectionError:
            pass  # the client went away early: fine
        finally:
            writer.close()

    async def reply_401(self, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": "Incorrect API key provided: sk-wrong.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for event in self.events:
            # Split each event into two chunks on two TCP writes: mid-JSON, and for the
            # non-ASCII piece mid-character, as a proxy or a slow network can.
            emoji = event.find("🎉".encode())
            cut = emoji + 2 if emoji >= 0 else len(event) // 2
            for part in (event[:cut], event[cut:]):
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.002)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@asynccontextmanager
async def serving(fake: FakeOpenAI) -> AsyncIterator[FakeOpenAI]:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def with_server(
    test: Callable[[FakeOpenAI], Awaitable[None]], fake: FakeOpenAI | None = None
) -> None:
    async def main() -> None:
        async with serving(fake or FakeOpenAI()) as running:
            await test(running)

    asyncio.run(main())


async def collect(source: OpenAISource, prompt: str = "Say hello") -> list[str]:
    return [piece async for piece in aiter_source(source, GenerationRequest(prompt, "s1"))]


def test_streams_the_content_deltas() -> None:
    async def test(fake: FakeOpenAI) -> None:
        source = OpenAISource(fake.base_url, API_KEY, "gpt-4o-mini", max_tokens=64)
        assert await collect(source) == PIECES
        [received] = fake.received
        assert (received.method, received.path) == ("POST", "/v1/chat/completions")
        assert received.headers["authorization"] == f"Bearer {API_KEY}"
        assert received.headers["content-type"] == "application/json"
        assert received.body == {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": True,
            "max_tokens": 64,
        }

    with_server(test)


def test_stops_at_done() -> None:
    events = [*sse_body(["one"]), chunk({"content": "after DONE, never read"})]

    async def test(fake: FakeOpenAI) -> None:
        assert await collect(OpenAISource(fake.base_url, API_KEY)) == ["one"]

    with_server(test, FakeOpenAI(events=events))


def test_crlf_and_multiline_data_and_other_fields() -> None:
    events = [
        b"event: message\r\nid: 1\r\n" + chunk({"content": "crlf "}).replace(b"\n\n", b"\r\n\r\n"),
        b'data: {"choices":[{"index":0,\ndata: "delta":{"content":"multi-line"}}]}\n\n',
        b"retry: 1000\n\n",
        b"data: [DONE]\n\n",
    ]

    async def test(fake: FakeOpenAI) -> None:
        assert await collect(OpenAISource(fake.base_url, API_KEY)) == ["crlf ", "multi-line"]

    with_server(test, FakeOpenAI(events=events))


def test_http_error_carries_status_and_body() -> None:
    async def test(fake: FakeOpenAI) -> None:
        with pytest.raises(OpenAISourceError) as info:
            await collect(OpenAISource(fake.base_url, "sk-wrong"))
        error = info.value
        assert error.status == 401
        assert json.loads(error.body)["error"]["code"] == "invalid_api_key"
        assert "401" in str(error) and "Incorrect API key provided" in str(error)

    with_server(test)


def test_error_inside_the_stream() -> None:
    events = [
        chunk({"content": "partial "}),
        b'data: {"error": {"message": "The server is overloaded", "type": "server_error"}}\n\n',
    ]

    async def test(fake: FakeOpenAI) -> None:
        got: list[str] = []
        with pytest.raises(OpenAISourceError, match="overloaded"):
            async for piece in aiter_source(
                OpenAISource(fake.base_url, API_KEY), GenerationRequest("x", "s")
            ):
                got.append(piece)
        assert got == ["partial "]

    with_server(test, FakeOpenAI(events=events))


def test_no_key_means_no_authorization_header() -> None:
    async def test(fake: FakeOpenAI) -> None:
        with pytest.raises(OpenAISourceError):
            await collect(OpenAISource(fake.base_url, None))
        assert "authorization" not in fake.received[0].headers

    with_server(test)


def test_stopping_early_closes_the_response() -> None:
    async def test(fake: FakeOpenAI) -> None:
        pieces = aiter_source(OpenAISource(fake.base_url, API_KEY), GenerationRequest("x", "s"))
        assert await anext(pieces) == "Hel"
        await asyncio.wait_for(pieces.aclose(), 5)

    with_server(test)


def test_injected_client_is_used() -> None:
    import httpx

    async def test(fake: FakeOpenAI) -> None:
        async with httpx.AsyncClient(headers={"X-Test": "yes"}) as client:
            source = OpenAISource(fake.base_url, API_KEY, client=client)
            assert await collect(source) == PIECES
            assert not client.is_closed  # borrowed, not closed
        assert fake.received[0].headers["x-test"] == "yes"

    with_server(test)


def test_from_env() -> None:
    source = OpenAISource.from_env({})
    assert source.url == "https://api.openai.com/v1/chat/completions"
    assert (source.api_key, source.model, source.max_tokens) == (None, "gpt-4o-mini", None)
    source = OpenAISource.from_env(
        {
            "PTS_OPENAI_BASE_URL": "http://localhost:11434/v1",
            "PTS_OPENAI_API_KEY": "k",
            "PTS_OPENAI_MODEL": "llama3.2",
            "PTS_OPENAI_MAX_TOKENS": "100",
        }
    )
    assert source.url == "http://localhost:11434/v1/chat/completions"
    assert (source.api_key, source.model, source.max_tokens) == ("k", "llama3.2", 100)
    assert source.body_for(GenerationRequest("p", "s"))["max_tokens"] == 100
    with pytest.raises(ValueError, match="PTS_OPENAI_MAX_TOKENS"):
        OpenAISource.from_env({"PTS_OPENAI_MAX_TOKENS": "x"})


def test_history_goes_in_as_alternating_messages() -> None:
    history = (
        Turn("What is a stream?", "A sequence of batches."),
        Turn("Still there?", ""),  # no reply stored: joins the next prompt
        Turn("And a batch?", "Text cut at a sentence boundary.\nWith ü."),
    )

    async def test(fake: FakeOpenAI) -> None:
        source = OpenAISource(fake.base_url, API_KEY, "gpt-4o-mini")
        request = GenerationRequest("And the fan-out?", "s1", history=history)
        assert [p async for p in aiter_source(source, request)] == PIECES
        [received] = fake.received
        assert received.body["messages"] == [
            {"role": "user", "content": "What is a stream?"},
            {"role": "assistant", "content": "A sequence of batches."},
            {"role": "user", "content": "Still there?\n\nAnd a batch?"},
            {"role": "assistant", "content": "Text cut at a sentence boundary.\nWith ü."},
            {"role": "user", "content": "And the fan-out?"},
        ]

    with_server(test)
