"""The `@connections` management API of the local WebSocket gateway.

The handlers' boto3 `apigatewaymanagementapi` client works unchanged with
`endpoint_url=PTS_WS_MANAGEMENT_URL` (`http://127.0.0.1:PORT/{stage}`): boto3 sends
`POST|GET|DELETE /{stage}/@connections/{urlencoded id}` (the stage prefix is optional here),
and a gone connection answers 410 with `x-amzn-ErrorType: GoneException`, which botocore raises
as `GoneException`. Served in the gateway's event loop, so a POST hands its frame straight to
the live connection. Signatures are not checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote

from websockets.exceptions import ConnectionClosed

from pts.local.apigateway_websocket import ConnectionInfo

logger = logging.getLogger(__name__)

MAX_POST_BYTES = 128 * 1024  # API Gateway's WebSocket message payload limit
MAX_FRAME_BYTES = 32 * 1024
"""API Gateway sends a message over 32 KB to the client in frames of 32 KB at most."""


class Socket(Protocol):
    """What the management API needs of a live WebSocket connection."""

    async def send(self, message: str | bytes | Iterable[str] | Iterable[bytes]) -> None:
        """A message, or its fragments (one frame each)."""

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class LiveConnection:
    """An open connection: what API Gateway knows about it, and its socket."""

    __slots__ = ("info", "socket")

    def __init__(self, info: ConnectionInfo, socket: Socket) -> None:
        self.info = info
        self.socket = socket


class ConnectionRegistry:
    """Open connections by id; only connections past `$connect` and not yet closed."""

    def __init__(self) -> None:
        self._connections: dict[str, LiveConnection] = {}

    def add(self, connection: LiveConnection) -> None:
        self._connections[connection.info.connection_id] = connection

    def remove(self, connection_id: str) -> None:
        self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> LiveConnection | None:
        return self._connections.get(connection_id)

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[LiveConnection]:
        return iter(list(self._connections.values()))


def _frames(message: str | bytes) -> list[str] | list[bytes]:
    """A message cut into fragments of at most `MAX_FRAME_BYTES` (text on character
    boundaries, as each text fragment is UTF-8 of its own)."""
    if isinstance(message, bytes):
        return [message[i : i + MAX_FRAME_BYTES] for i in range(0, len(message), MAX_FRAME_BYTES)]
    fragments: list[str] = []
    data = message.encode()
    start = 0
    while start < len(data):
        end = min(start + MAX_FRAME_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # inside a character
            end -= 1
        fragments.append(data[start:end].decode())
        start = end
    return fragments


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class Reply(NamedTuple):
    status: int
    error_type: str | None = None
    body: Any = None
    """JSON-able, or None for an empty body."""


_ERROR_TYPES = {
    400: "BadRequestException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
}
_GONE = Reply(410, "GoneException", {"message": None})
_FORBIDDEN = Reply(403, "ForbiddenException", {"message": "Forbidden"})


class ManagementApi:
    """`/@connections/{id}` and `/{stage}/@connections/{id}` over the registry, sans HTTP."""

    def __init__(self, registry: ConnectionRegistry, *, post_delay: float = 0.0) -> None:
        self.registry = registry
        self.post_delay = post_delay
        """Seconds each POST waits first: API Gateway under load, for tests and the bench."""
        self.fault: Callable[[str, bytes], int | None] | None = None
        """Tests' hook: given a POST's connection id and data, an error status to answer
        instead (400, 429 or 500, with API Gateway's error type), or None to deliver."""
        self._closing: set[asyncio.Task[None]] = set()

    async def handle(self, method: str, raw_path: bytes, body: bytes) -> Reply:
        # The raw path: boto3 percent-encodes the id ('=' → %3D, '/' → %2F), so split first.
        head, marker, encoded = raw_path.partition(b"?")[0].rpartition(b"/@connections/")
        if not marker or head.count(b"/") > 1 or not encoded or b"/" in encoded:
            return _FORBIDDEN
        connection_id = unquote(encoded.decode("latin-1"))
        if method == "POST":
            return await self._post(connection_id, body)
        if method == "GET":
            return self._get(connection_id)
        if method == "DELETE":
            return self._delete(connection_id)
        return _FORBIDDEN

    async def _post(self, connection_id: str, data: bytes) -> Reply:
        if len(data) > MAX_POST_BYTES:
            return Reply(413, "PayloadTooLargeException", {"message": "Request entity too large"})
        if self.post_delay:
            await asyncio.sleep(self.post_delay)
        if self.fault is not None and (status := self.fault(connection_id, data)) is not None:
            return Reply(status, _ERROR_TYPES.get(status, "InternalServerErrorException"))
        connection = self.registry.get(connection_id)
        if connection is None:
            return _GONE
        try:
            message: str | bytes = data.decode()
        except UnicodeDecodeError:
            message = data
        try:
            if len(data) > MAX_FRAME_BYTES:
                await connection.socket.send(_frames(message))
            else:
                await connection.socket.send(message)
        except ConnectionClosed:
            self.registry.remove(connection_id)
            return _GONE
        return Reply(200)

    def _get(self, connection_id: str) -> Reply:
        connection = self.registry.get(connection_id)
        if connection is None:
            return _GONE
        info = connection.info
        identity = {"sourceIp": info.source_ip}
        if info.user_agent:
            identity["userAgent"] = info.user_agent
        body = {
            "connectedAt": _iso(info.connected_at),
            "identity": identity,
            "lastActiveAt": _iso(info.last_active_at),
        }
        return Reply(200, None, body)

    def _delete(self, connection_id: str) -> Reply:
        connection = self.registry.get(connection_id)
        if connection is None:
            return _GONE
        self.registry.remove(connection_id)
        # Answer at once, like API Gateway; the closing handshake goes on in the background.
        task = asyncio.create_task(connection.socket.close(1000, "Connection closed by API"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return Reply(204)


_REASON = {200: b"OK", 204: b"No Content", 400: b"Bad Request", 403: b"Forbidden"}
_REASON |= {410: b"Gone", 411: b"Length Required", 413: b"Payload Too Large"}


def _response(reply: Reply, *, close: bool = False) -> bytes:
    payload = b"" if reply.body is None else json.dumps(reply.body).encode()
    lines = [b"HTTP/1.1 %d %s" % (reply.status, _REASON.get(reply.status, b"Error"))]
    lines.append(b"Content-Length: %d" % len(payload))
    if reply.body is not None:
        lines.append(b"Content-Type: application/json")
    if reply.error_type:
        lines.append(b"x-amzn-ErrorType: " + reply.error_type.encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


class ManagementEndpoint:
    """`ManagementApi` over HTTP/1.1 on 127.0.0.1 (ephemeral port unless given), in the loop.

    A minimal keep-alive HTTP/1.1 server on asyncio streams, not uvicorn: the fan-out may POST
    to a thousand connections per delta, and this costs a fraction of a general server's
    per-request work. It understands what HTTP clients send to `@connections`: requests with
    a `Content-Length` body (or none).
    """

    def __init__(
        self,
        registry: ConnectionRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        post_delay: float = 0.0,
    ):
        self.api = ManagementApi(registry, post_delay=post_delay)
        self.host = host
        self._socket = socket.create_server((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    def url(self, stage: str) -> str:
        """The endpoint boto3 is given: API Gateway's `https://{domain}/{stage}`, locally."""
        return f"http://{self.host}:{self.port}/{stage}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self._socket)
        logger.info("@connections on http://%s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            self._socket.close()
            return
        self._server.close()
        for writer in list(self._clients):
            writer.close()  # idle keep-alive connections: their readers end at once
        if self._clients:
            await asyncio.wait(list(self._clients.values()), timeout=5)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[writer] = task
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._clients.pop(writer, None)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its response; whether the connection stays open."""
        head = await reader.readuntil(b"\r\n\r\n")
        try:
            request_line, *header_lines = head[:-4].split(b"\r\n")
            method, target, version = request_line.split(b" ", 2)
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            writer.write(_response(Reply(400), close=True))
            return False
        keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
        if b"transfer-encoding" in headers:
            writer.write(_response(Reply(411), close=True))
            return False
        body = await reader.readexactly(length) if length else b""
        reply = await self.api.handle(method.decode("latin-1"), target, body)
        writer.write(_response(reply, close=not keep_alive))
        await writer.drain()
        return keep_alive
