"""The Bedrock source: against a fake client, and a real boto3 client against a local server
that speaks the `converse-stream` wire format (AWS event stream, binary framed)."""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import EventStreamError

from pts.sources import GenerationRequest, Turn, aiter_source
from pts.sources.bedrock import BedrockSource, BedrockSourceError

REQUEST = GenerationRequest(prompt="Say hello", stream_id="s1")
DELTAS = ["Hel", "lo", ", wor", "ld! ", "Ünï ✓ 🎉"]
STREAM_ERROR = {
    "modelStreamErrorException": {"message": "model crashed", "originalStatusCode": 500}
}


def converse_events(texts: list[str]) -> list[dict[str, Any]]:
    """Events in the shape boto3 yields them from `response["stream"]`."""
    return [
        {"messageStart": {"role": "assistant"}},
        *(
            {"contentBlockDelta": {"delta": {"text": text}, "contentBlockIndex": 0}}
            for text in texts
        ),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {
                "usage": {"inputTokens": 9, "outputTokens": 5, "totalTokens": 14},
                "metrics": {"latencyMs": 321},
            }
        },
    ]


class FakeStream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = iter(events)
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._events

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.calls: list[dict[str, Any]] = []
        self.stream: FakeStream | None = None

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        self.stream = FakeStream(self.events)
        return {"stream": self.stream, "ResponseMetadata": {"HTTPStatusCode": 200}}


def test_streams_the_text_deltas_with_the_right_request() -> None:
    client = FakeClient(converse_events(DELTAS))
    source = BedrockSource(model_id="anthropic.claude-3-haiku-20240307-v1:0", max_tokens=256)
    source._client = client  # injected, as a test would
    assert list(source(REQUEST)) == DELTAS
    assert client.calls == [
        {
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
            "inferenceConfig": {"maxTokens": 256},
        }
    ]
    assert client.stream is not None and client.stream.closed


def test_client_injected_by_constructor_and_run_through_aiter_source() -> None:
    client = FakeClient(converse_events(DELTAS))
    source = BedrockSource(client=client)

    async def main() -> list[str]:
        return [piece async for piece in aiter_source(source, REQUEST)]

    assert asyncio.run(main()) == DELTAS


def test_nothing_is_called_until_iterated() -> None:
    client = FakeClient(converse_events(DELTAS))
    pieces = BedrockSource(client=client)(REQUEST)
    assert client.calls == []  # the call happens in the (worker-thread) iteration
    assert next(iter(pieces)) == "Hel"


def test_non_text_deltas_are_skipped() -> None:
    events = converse_events(["a"])
    events.insert(2, {"contentBlockDelta": {"delta": {"reasoningContent": {"text": "hmm"}}}})
    events.insert(2, {"contentBlockStart": {"start": {"toolUse": {}}, "contentBlockIndex": 1}})
    assert list(BedrockSource(client=FakeClient(events))(REQUEST)) == ["a"]


def test_error_event_raises_after_the_text() -> None:
    events = [*converse_events(["partial "])[:2], STREAM_ERROR]
    client = FakeClient(events)
    got: list[str] = []
    with pytest.raises(BedrockSourceError, match="modelStreamErrorException: model crashed"):
        for piece in BedrockSource(client=client)(REQUEST):
            got.append(piece)
    assert got == ["partial "]
    assert client.stream is not None and client.stream.closed


def test_from_env() -> None:
    source = BedrockSource.from_env({})
    assert source.model_id == "anthropic.claude-3-haiku-20240307-v1:0"
    assert source.max_tokens == 1024
    source = BedrockSource.from_env(
        {
            "PTS_BEDROCK_MODEL_ID": "m",
            "PTS_BEDROCK_MAX_TOKENS": "9",
            "PTS_BEDROCK_REGION": "eu-west-1",
        }
    )
    assert (source.model_id, source.max_tokens, source.region) == ("m", 9, "eu-west-1")
    with pytest.raises(ValueError, match="PTS_BEDROCK_MAX_TOKENS"):
        BedrockSource.from_env({"PTS_BEDROCK_MAX_TOKENS": "lots"})


def test_lazy_real_client_needs_no_network() -> None:
    source = BedrockSource(region="us-west-2")
    assert source._client is None
    client = source.client
    assert client.meta.service_model.service_name == "bedrock-runtime"
    assert client.meta.region_name == "us-west-2"
    assert source.client is client  # created once


# --- the real wire format --------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack(">B", len(raw_name))
        + raw_name
        + b"\x07"
        + struct.pack(">H", len(raw_value))
        + raw_value
    )


def event_message(headers: dict[str, str], payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    body = json.dumps(payload).encode()
    total = 12 + len(raw_headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + raw_headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def wire_event(event: dict[str, Any]) -> bytes:
    ((event_type, payload),) = event.items()
    if event_type.endswith("Exception"):
        headers = {":message-type": "exception", ":exception-type": event_type}
    else:
        headers = {":message-type": "event", ":event-type": event_type}
    headers[":content-type"] = "application/json"
    return event_message(headers, payload)


class FakeBedrock(ThreadingHTTPServer):
    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events = events
        self.requests: list[tuple[str, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeBedrock

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("x-amzn-RequestId", "11111111-2222-3333-4444-555555555555")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in self.server.events:
            data = wire_event(event)
            half = len(data) // 2  # every message split across two TCP writes
            for part in (data[:half], data[half:]):
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(0.002)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _served(events: list[dict[str, Any]]) -> tuple[FakeBedrock, BedrockSource]:
    server = FakeBedrock(events)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    client = session.client("bedrock-runtime", endpoint_url=server.url)
    return server, BedrockSource(model_id="anthropic.claude-3-haiku-20240307-v1:0", client=client)


def test_real_boto3_client_against_the_wire_format() -> None:
    server, source = _served(converse_events(DELTAS))
    try:

        async def main() -> list[str]:
            return [piece async for piece in aiter_source(source, REQUEST)]

        assert asyncio.run(main()) == DELTAS
        [(path, body)] = server.requests
        assert path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
        assert body == {
            "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
            "inferenceConfig": {"maxTokens": 1024},
        }
    finally:
        server.shutdown()
        server.server_close()


def test_real_boto3_client_error_event() -> None:
    events = [*converse_events(["partial "])[:2], STREAM_ERROR]
    server, source = _served(events)
    try:
        got: list[str] = []
        with pytest.raises(EventStreamError, match=r"modelStreamErrorException.*model crashed"):
            for piece in source(REQUEST):
                got.append(piece)
        assert got == ["partial "]
    finally:
        server.shutdown()
        server.server_close()


# --- conversations ---------------------------------------------------------------------------

HISTORY = (
    Turn("What is a stream?", "A sequence of batches."),
    Turn("Still there?", ""),  # no reply stored (cancelled before any text)
    Turn("And a batch?", "Text cut at a sentence boundary.\nWith ü."),
)


def test_history_goes_in_as_alternating_messages_over_the_wire() -> None:
    server, source = _served(converse_events(DELTAS))
    try:
        request = GenerationRequest("And the fan-out?", "s1", history=HISTORY)
        assert list(source(request)) == DELTAS
        [(_, body)] = server.requests
        assert body["messages"] == [
            {"role": "user", "content": [{"text": "What is a stream?"}]},
            {"role": "assistant", "content": [{"text": "A sequence of batches."}]},
            # The turn without a reply joins the next prompt: roles must alternate.
            {"role": "user", "content": [{"text": "Still there?"}, {"text": "And a batch?"}]},
            {
                "role": "assistant",
                "content": [{"text": "Text cut at a sentence boundary.\nWith ü."}],
            },
            {"role": "user", "content": [{"text": "And the fan-out?"}]},
        ]
    finally:
        server.shutdown()
        server.server_close()
