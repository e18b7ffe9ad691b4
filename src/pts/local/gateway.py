"""The local API Gateway WebSocket endpoint: `websockets` on 127.0.0.1, Lambda proxy events.

Per connection, like API Gateway: the handshake waits for the `$connect` function (a non-2xx
`statusCode` rejects it with that status), each frame is routed with the API's
`RouteSelectionExpression` and handed to its function as a `MESSAGE` event, and the close
becomes a `DISCONNECT` event. Functions run in a thread pool, never on the event loop; one
connection's frames are handled one at a time, in order, while connections run concurrently.

As API Gateway does, a frame with no matching route (and no `$default`) gets
`{"message": "Forbidden", "connectionId", "requestId"}`, one whose function raises gets
`{"message": "Internal server error", ...}`, and binary frames go to `$default`, base64-encoded.

AWS's limits (its "Quotas for configuring and running a WebSocket API"), enforced:
- a frame over 32 KB, or a message over 128 KB, closes the connection with 1009 (message too
  big); messages to the client go out in frames of 32 KB at most (`connections_endpoint`);
- a connection idle for 10 minutes (no frame from the client), or open for 2 hours, is closed
  with 1001 (going away), its `$disconnect` run: `idle_timeout` and `max_duration` shorten
  them for tests.

A closed connection's work stops: its frames not yet handed to a function are dropped (only
the one running finishes), then `$disconnect` runs, once. Frames are read as they arrive, so a
close is seen behind any backlog; at most `MAX_BACKLOG` frames wait per connection, and one
beyond gets API Gateway's throttling answer ("Too Many Requests").

Deviations from AWS (kept deliberately simple):
- clients connect to `ws://host:port` or `ws://host:port/{stage}`; anything else is a 403;
- a connection's frames are handled one at a time, in order (API Gateway may run them
  concurrently); no permessage-deflate; keepalive pings every 20 s;
- `$connect` answers only accept or reject (no subprotocol or header mapping); a `$connect`
  function that raises rejects the handshake with 500; route responses are ignored;
- a `$connect` with a Lambda REQUEST authorizer runs it first, as API Gateway does: a missing
  identity source is a 401 without invoking it, `Unauthorized` raised is a 401, any other
  error a 500, a policy that does not allow this `$connect` a 403; an allowed connection's
  `principalId` and context become `requestContext.authorizer` of `$connect` and of every
  later event. No result caching (WebSocket authorizers have none);
- `disconnectReason` texts are approximations of API Gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import http
import json
import logging
import socket
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pts.local.apigateway_websocket import (
    CONNECT,
    DISCONNECT,
    Authorizer,
    ConnectionInfo,
    EventFactory,
    RouteSelector,
    WebSocketApi,
    api_gateway_id,
)
from pts.local.connections_endpoint import ConnectionRegistry, LiveConnection
from pts.local.functions import FunctionError

logger = logging.getLogger(__name__)
logging.getLogger("websockets.server").setLevel(logging.WARNING)  # a line per connection

MAX_MESSAGE_BYTES = 128 * 1024
MAX_FRAME_BYTES = 32 * 1024
IDLE_TIMEOUT = 10 * 60.0
"""Seconds without a frame from the client before API Gateway closes a connection."""
MAX_DURATION = 2 * 60 * 60.0
"""Seconds a connection may last, however busy."""
MAX_BACKLOG = 1000
"""Frames of one connection waiting for its function (a local bound: memory)."""
GOING_AWAY = 1001
Invoke = Callable[[dict[str, Any]], Any]
"""Runs one function synchronously with an event and returns its result (or raises)."""

_REASONS = {
    1000: "Normal closure",
    1001: "Going away",
    1005: "Client-side close frame status not set",
    1006: "Connection was closed abnormally",
    1009: "Message too big",
    1011: "Internal error",
}


class LocalGateway:
    """One WebSocket API of the template on a socket: `start()`, then `stop()`."""

    def __init__(
        self,
        api: WebSocketApi,
        functions: Mapping[str, Invoke],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: ConnectionRegistry | None = None,
        max_workers: int = 16,
        idle_timeout: float = IDLE_TIMEOUT,
        max_duration: float = MAX_DURATION,
    ) -> None:
        self.api = api
        self.functions = functions
        """Function logical id → how to invoke it; looked up per event (so it may fill late)."""
        self.registry = registry if registry is not None else ConnectionRegistry()
        self.selector = RouteSelector(api.route_selection_expression, api.routes)
        self.idle_timeout = idle_timeout
        self.max_duration = max_duration
        self._socket = socket.create_server((host, port))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.events = EventFactory(api, f"{host}:{self.port}")
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ws-route")
        self._server: Server | None = None
        self._disconnect_events = True
        self._opening: weakref.WeakKeyDictionary[ServerConnection, ConnectionInfo] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Accept connections (the socket is bound since construction, so `url` is known)."""
        self._server = await serve(
            self._connection,
            sock=self._socket,
            process_request=self._handshake,
            # API Gateway does not negotiate permessage-deflate; compressing every delta
            # once per viewer would also cost the fan-out dearly.
            compression=None,
            max_size=(MAX_MESSAGE_BYTES, MAX_FRAME_BYTES),
            open_timeout=30,  # a cold $connect function may take a while
            server_header=None,
        )
        logger.info(
            "WebSocket API %s on %s (stage %s)", self.api.logical_id, self.url, self.api.stage
        )

    async def stop(self, *, disconnect_events: bool = True) -> None:
        """Close every connection with 1001 (going away), run their `$disconnect`s (unless
        told not to: pointless when the tables they clean go away too), stop."""
        self._disconnect_events = disconnect_events
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        else:
            self._socket.close()
        self._executor.shutdown(wait=True)

    # -- one connection ----------------------------------------------------------------

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """`$connect`: runs during the opening handshake; a non-2xx answer rejects it."""
        url = urlsplit(request.path)
        if url.path.rstrip("/") not in ("", f"/{self.api.stage}"):
            return connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        info = ConnectionInfo(
            connection_id=api_gateway_id(),
            source_ip=connection.remote_address[0],
            user_agent=request.headers.get("User-Agent"),
        )
        headers = list(request.headers.raw_items())
        query = parse_qsl(url.query, keep_blank_values=True)
        authorizer = self.api.authorizers.get(CONNECT)
        if authorizer is not None:
            status = await self._authorize(authorizer, info, headers, query)
            if status != 200:
                return _refuse(connection, status)
        if CONNECT in self.api.routes:
            status = await self._connect_status(self.events.connect(info, headers, query))
            if not 200 <= status < 300:
                return _refuse(connection, status)
        self._opening[connection] = info
        return None

    async def _authorize(
        self,
        authorizer: Authorizer,
        info: ConnectionInfo,
        headers: list[tuple[str, str]],
        query: list[tuple[str, str]],
    ) -> int:
        """Run the `$connect` authorizer; 200 once `info` carries what it allowed."""
        if authorizer.missing_identity(dict(headers), dict(query)) is not None:
            return 401
        event = self.events.authorizer_request(info, headers, query)
        started = time.monotonic()
        try:
            invoke = self.functions[authorizer.function]
            result = await asyncio.get_running_loop().run_in_executor(self._executor, invoke, event)
        except FunctionError as error:
            if error.error_message == "Unauthorized":
                return 401
            logger.error("the $connect authorizer failed: %s", error.error_type)
            return 500
        except Exception:
            logger.exception("the $connect authorizer failed")
            return 500
        if not _allows(result, event["methodArn"]):
            return 403
        context = result.get("context") or {}
        info.authorizer = {
            **{k: v for k, v in context.items() if isinstance(v, str | int | float | bool)},
            "principalId": str(result.get("principalId", "")),
            "integrationLatency": int((time.monotonic() - started) * 1000),
        }
        return 200

    async def _connect_status(self, event: dict[str, Any]) -> int:
        try:
            result = await self._invoke(CONNECT, event)
        except Exception:
            logger.exception("$connect failed")
            return 500
        if isinstance(result, dict) and "statusCode" in result:
            return int(result["statusCode"])
        return 200

    async def _connection(self, connection: ServerConnection) -> None:
        """After the handshake: frames → `MESSAGE` events in order, then `$disconnect`."""
        info = self._opening.pop(connection)
        self.registry.add(LiveConnection(info, connection))
        frames: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        worker = asyncio.create_task(self._work(connection, info, frames))
        lifetime = asyncio.create_task(self._limit_lifetime(connection, info))
        try:
            while True:
                try:
                    data = await connection.recv()
                except ConnectionClosed:
                    break
                info.last_active_at = _now_ms()
                if frames.qsize() >= MAX_BACKLOG:
                    await _error(connection, info, "Too Many Requests", api_gateway_id())
                else:
                    frames.put_nowait(data)
        finally:
            # Closed: drop what waits, let the running frame finish (its function cannot be
            # stopped halfway), then clean up after the connection, once.
            lifetime.cancel()
            while not frames.empty():
                frames.get_nowait()
            frames.put_nowait(None)
            await asyncio.gather(worker, lifetime, return_exceptions=True)
            self.registry.remove(info.connection_id)
            if DISCONNECT in self.api.routes and self._disconnect_events:
                code, reason = _close_status(connection)
                try:
                    await self._invoke(DISCONNECT, self.events.disconnect(info, code, reason))
                except Exception:
                    logger.exception("$disconnect failed")

    async def _work(
        self,
        connection: ServerConnection,
        info: ConnectionInfo,
        frames: asyncio.Queue[str | bytes | None],
    ) -> None:
        """One connection's frames, one at a time, in order, until told to stop (None)."""
        while (data := await frames.get()) is not None:
            await self._message(connection, info, data)

    async def _limit_lifetime(self, connection: ServerConnection, info: ConnectionInfo) -> None:
        """Close the connection as API Gateway does when idle too long or open too long."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.max_duration
        while True:
            idle_ends = loop.time() + self.idle_timeout - (_now_ms() - info.last_active_at) / 1000
            await asyncio.sleep(max(0.0, min(ends, idle_ends) - loop.time()))
            now = loop.time()
            idle = (_now_ms() - info.last_active_at) / 1000 >= self.idle_timeout
            if now >= ends or idle:
                # Shielded: the connection's end cancels this task, not its closing handshake.
                await asyncio.shield(connection.close(GOING_AWAY, _REASONS[GOING_AWAY]))
                return

    async def _message(self, connection: ServerConnection, info: ConnectionInfo, data: Any) -> None:
        route_key = self.selector.select(data if isinstance(data, str) else None)
        if route_key is None:  # no such route and no $default
            await _error(connection, info, "Forbidden", api_gateway_id())
            return
        event = self.events.message(route_key, info, data)
        try:
            await self._invoke(route_key, event)
        except Exception:
            logger.exception("route %s failed", route_key)
            request_id = event["requestContext"]["requestId"]
            await _error(connection, info, "Internal server error", request_id)

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> Any:
        invoke = self.functions[self.api.routes[route_key]]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, invoke, event)


def _refuse(connection: ServerConnection, status: int) -> Response:
    try:
        reason = http.HTTPStatus(status)
    except ValueError:
        reason = http.HTTPStatus.FORBIDDEN
    return connection.respond(reason, f"{reason.phrase}\n")


def _allows(result: Any, method_arn: str) -> bool:
    """Whether an authorizer's IAM policy allows `execute-api:Invoke` on `method_arn` (and
    denies it nowhere): the check API Gateway makes on the answer."""
    if not isinstance(result, dict) or not result.get("principalId"):
        return False
    statements = (result.get("policyDocument") or {}).get("Statement") or []
    allowed = False
    for statement in statements if isinstance(statements, list) else []:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _close_status(connection: ServerConnection) -> tuple[int, str]:
    """`disconnectStatusCode` and `disconnectReason`: the close frame of whichever side
    closed first (1006 if the connection just dropped)."""
    protocol = connection.protocol
    if protocol.close_rcvd_then_sent:
        frame = protocol.close_rcvd
    else:
        frame = protocol.close_sent or protocol.close_rcvd
    code = int(frame.code) if frame else 1006
    return code, (frame.reason if frame else "") or _REASONS.get(code, "")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _error(
    connection: ServerConnection, info: ConnectionInfo, message: str, request_id: str
) -> None:
    """What API Gateway sends the client when it cannot route or integrate a message."""
    body = {"message": message, "connectionId": info.connection_id, "requestId": request_id}
    with contextlib.suppress(ConnectionClosed):
        await connection.send(json.dumps(body))
