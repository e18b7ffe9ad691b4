"""`pts.connections` sends the very request boto3 would, and reads the answers right."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import boto3
import pytest
import urllib3
from botocore.awsrequest import AWSResponse

from pts.connections import MAX_ATTEMPTS, RETRY_SECONDS, Connections, PostFailed
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


def test_the_timeout_is_connect_3_s_and_read_10_s():
    # `urllib3.Timeout(3, 10)` reads like that but means total=3, connect=10.
    timeout = Connections("http://127.0.0.1:1")._pool.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout._read, timeout.total) == (3.0, 10.0, None)


class Answers:
    """Stands in for `Connections._post`: answers or raises, one item per attempt."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, url: str, data: bytes) -> tuple[int, bytes]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer, b"{}"


@pytest.mark.parametrize(
    ("answers", "result", "calls"),
    [
        ((200,), True, 1),
        ((410,), False, 1),
        ((429, 503, 200), True, 3),
        ((urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"), 200), True, 2),
        ((urllib3.exceptions.NewConnectionError(None, "refused"), 410), False, 2),
    ],
)
def test_throttling_5xx_and_network_errors_are_retried(monkeypatch, answers, result, calls):
    connections = Connections("http://127.0.0.1:1")
    post = Answers(*answers)
    monkeypatch.setattr(connections, "_post", post)
    assert connections.send("c", b"{}") is result
    assert post.calls == calls


def test_retries_are_brief(monkeypatch):
    connections = Connections("http://127.0.0.1:1")
    post = Answers(*[503] * MAX_ATTEMPTS)
    monkeypatch.setattr(connections, "_post", post)
    with pytest.raises(PostFailed) as failed:
        connections.send("c", b"{}")
    assert failed.value.status == 503 and post.calls == MAX_ATTEMPTS
    # A refusal that another try cannot fix is final at once.
    post = Answers(413, 200)
    monkeypatch.setattr(connections, "_post", post)
    with pytest.raises(PostFailed):
        connections.send("c", b"{}")
    assert post.calls == 1
    # No attempt starts after RETRY_SECONDS (here, a first attempt that took that long).
    clock = iter([0.0, RETRY_SECONDS + 1])
    monkeypatch.setattr("pts.connections.time.monotonic", lambda: next(clock, 99.0))
    post = Answers(urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"), 200)
    monkeypatch.setattr(connections, "_post", post)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        connections.send("c", b"{}")
    assert post.calls == 1


def test_a_read_timeout_against_a_silent_server(aws_credentials: None, monkeypatch):
    """A server that accepts and never answers costs the read timeout, not the total."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        monkeypatch.setattr("pts.connections.TIMEOUT", urllib3.Timeout(connect=3.0, read=0.3))
        connections = Connections(f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr("pts.connections.RETRY_SECONDS", 0.0)
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            connections.send("c", b"{}")
    finally:
        server.close()
