"""Lambda's `Invoke` API for the local functions: how one function invokes another.

boto3's `lambda` client works unchanged with `AWS_ENDPOINT_URL_LAMBDA` pointing here:
`POST /2015-03-31/functions/{name, ARN or partial ARN}/invocations`, the payload as body,
`X-Amz-Invocation-Type` saying how. As on Lambda:

- `Event` (asynchronous): the event is queued and answered `202` at once; the function runs
  in one of its sandboxes (`LocalFunction.invoke`); an invocation that fails is retried
  after 1 and then 2 minutes (the function's `EventInvokeConfig.MaximumRetryAttempts`,
  default 2), then dropped with a warning (its on-failure destination on AWS). A payload
  over 256 KB is refused (`413`);
- `RequestResponse` (the default): runs it and answers `200` with its result, or with
  `X-Amz-Function-Error: Unhandled` and Lambda's error object; over 6 MB is refused;
- `DryRun`: `204` if the function exists.

A function that does not exist answers `404 ResourceNotFoundException`. Signatures are not
checked. Served in the stack's event loop; invocations run on threads of their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

from pts.local.functions import FunctionError, LocalFunction

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 256 * 1024
MAX_REQUEST_RESPONSE_BYTES = 6 * 1024 * 1024
RETRY_DELAYS = (60.0, 120.0)
"""Lambda's waits before retrying a failed asynchronous invocation."""
_PREFIX = b"/2015-03-31/functions/"
_SUFFIX = b"/invocations"
_REASON = {200: b"OK", 202: b"Accepted", 204: b"No Content", 400: b"Bad Request"}
_REASON |= {404: b"Not Found", 413: b"Payload Too Large"}


def function_name(raw: str) -> str:
    """The function's name in a name, an ARN or a partial ARN, without its qualifier."""
    parts = raw.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return parts[0]


class LambdaEndpoint:
    """`Invoke` over HTTP/1.1 on 127.0.0.1 for the functions in `functions` (by logical id,
    which is each local function's name); bind at construction, `start()` to serve."""

    def __init__(
        self,
        functions: Mapping[str, LocalFunction],
        *,
        host: str = "127.0.0.1",
        retry_attempts: Mapping[str, int] | None = None,
    ) -> None:
        self.functions = functions
        self.retry_attempts = dict(retry_attempts or {})
        """Per function, `EventInvokeConfig.MaximumRetryAttempts` (default 2)."""
        self.host = host
        self._socket = socket.create_server((host, 0))
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._threads = ThreadPoolExecutor(64, thread_name_prefix="lambda-event")
        self._pending: set[asyncio.Task[None]] = set()
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self._socket)

    async def stop(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._server is None:
            self._socket.close()
        else:
            self._server.close()
            for writer in list(self._clients):
                writer.close()  # idle keep-alive connections: their readers end at once
            if self._clients:
                await asyncio.wait(list(self._clients.values()), timeout=5)
            await self._server.wait_closed()
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- HTTP ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[writer] = task
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head[:-4].split(b"\r\n")
                method, target, _ = request_line.split(b" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower().decode("latin-1")] = value.strip().decode()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self._invoke(method, target, headers, body)
                head_lines = [b"HTTP/1.1 %d %s" % (status, _REASON.get(status, b"Error"))]
                head_lines.append(b"Content-Length: %d" % len(payload))
                head_lines += [f"{k}: {v}".encode() for k, v in extra.items()]
                writer.write(b"\r\n".join(head_lines) + b"\r\n\r\n" + payload)
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.pop(writer, None)
            writer.close()

    async def _invoke(
        self, method: bytes, target: bytes, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path = target.partition(b"?")[0]
        if method != b"POST" or not path.startswith(_PREFIX) or not path.endswith(_SUFFIX):
            return _error(404, "UnknownOperationException", "Unknown operation")
        name = function_name(unquote(path[len(_PREFIX) : -len(_SUFFIX)].decode()))
        function = self.functions.get(name)
        if function is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}")
        kind = headers.get("x-amz-invocation-type", "RequestResponse")
        if kind == "DryRun":
            return 204, {}, b""
        limit = MAX_EVENT_BYTES if kind == "Event" else MAX_REQUEST_RESPONSE_BYTES
        if len(body) > limit:
            return _error(413, "RequestTooLargeException", "Request must be smaller than limit")
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body")
        if kind == "Event":
            task = asyncio.create_task(self._run_async(function, event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return 202, {}, b""
        if kind != "RequestResponse":
            return _error(400, "InvalidParameterValueException", f"bad invocation type {kind}")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._threads, function.invoke, event)
        except FunctionError as failure:
            error = {"errorMessage": failure.error_message, "errorType": failure.error_type}
            return 200, {"X-Amz-Function-Error": "Unhandled"}, json.dumps(error).encode()
        return 200, {"X-Amz-Executed-Version": "$LATEST"}, json.dumps(result).encode()

    async def _run_async(self, function: LocalFunction, event: Any) -> None:
        loop = asyncio.get_running_loop()
        retries = self.retry_attempts.get(function.name, 2)
        for attempt in range(retries + 1):
            try:
                await loop.run_in_executor(self._threads, function.invoke, event)
                return
            except Exception as failure:  # FunctionError, or the sandbox would not start
                if attempt == retries:
                    logger.warning(
                        "%s: asynchronous invocation failed %d time(s), dropped: %s",
                        function.name,
                        attempt + 1,
                        failure,
                    )
                    return
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])


def _error(status: int, error_type: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"Type": "User", "message": message}).encode()
    return status, {"x-amzn-ErrorType": error_type, "Content-Type": "application/json"}, body
