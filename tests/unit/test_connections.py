"""`pts.connections` sends the very request boto3 would, and reads the answers right."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from pts.connections import Connections, PostFailed
from pts.local.apigateway_websocket import ConnectionInfo
from pts.local.connections_endpoint import ConnectionRegistry, LiveConnection, ManagementEndpoint


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[str | bytes] = []

    async def send(self, message: str | bytes) -> None:
        self.frames.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


class RawBody:
    def stream(self) -> Any:
        yield b""


def capture_boto3_request(endpoint: str, connection_id: str, data: bytes) -> Any:
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    captured: list[Any] = []

    def before_send(request: Any, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, RawBody())

    client.meta.events.register("before-send.apigatewaymanagementapi.*", before_send)
    client.post_to_connection(ConnectionId=connection_id, Data=data)
    return captured[0]


def test_same_request_as_boto3(aws_credentials: None, monkeypatch: pytest.MonkeyPatch):
    endpoint = "https://abc123.execute-api.us-east-1.amazonaws.com/live"
    connection_id = "LZ1x/LcjY+oAMCJjQ="
    data = b'{"type":"delta","seq":1,"text":"Hi. "}'
    expected = capture_boto3_request(endpoint, connection_id, data)
    sent: list[tuple[str, str, bytes, dict[str, str]]] = []

    class Response:
        status = 200
        data = b""

    connections = Connections(endpoint)
    monkeypatch.setattr(
        connections._pool,
        "request",
        lambda method, url, body, headers, **_: (
            sent.append((method, url, body, headers)) or Response()
        ),
    )
    assert connections.send(connection_id, data)
    method, url, body, headers = sent[0]
    assert (method, url, body) == (expected.method, expected.url, expected.body)
    ours, theirs = headers["Authorization"], expected.headers["Authorization"].decode()
    assert ours.split("Signature=")[0] == theirs.split("Signature=")[0]  # scope, signed headers
    assert "x-amz-security-token" in ours.lower() or "X-Amz-Security-Token" in headers


def test_against_the_local_endpoint(aws_credentials: None):
    registry = ConnectionRegistry()
    socket = FakeSocket()
    info = ConnectionInfo("LZ1xLcjYoAMCJjQ=", "127.0.0.1")
    registry.add(LiveConnection(info, socket))
    loop = asyncio.new_event_loop()
    endpoint = ManagementEndpoint(registry)
    loop.run_until_complete(endpoint.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        connections = Connections(endpoint.url("live"))
        assert connections.send(info.connection_id, {"type": "delta", "seq": 1, "text": "é"})
        assert socket.frames == ['{"type":"delta","seq":1,"text":"é"}']
        assert connections.send("not-connected", b"{}") is False
        with pytest.raises(PostFailed):
            connections.send(info.connection_id, b"x" * (128 * 1024 + 1))
    finally:
        asyncio.run_coroutine_threadsafe(endpoint.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_no_endpoint_is_a_clear_error():
    with pytest.raises(RuntimeError, match="PTS_WS_MANAGEMENT_URL"):
        Connections(None).send("c", b"{}")
