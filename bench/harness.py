"""The local stack for the bench: ephemeral ports, its own thread and event loop.

`BenchStack` starts `pts.local.stack.LocalStack` (the real handlers, moto DynamoDB with
Streams, the WebSocket gateway and the Streams poller) with the bench's paced source, and can
serve the same app a second or third time on the same loop with another store
(`serve_app`): that is how the HTTP-only and injected-latency drivers run beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import httpx
import uvicorn
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from bench.workload import PacedSource
from pts import aws
from pts.api import create_app
from pts.config import Settings
from pts.local.dynamodb import LocalDynamoDB, create_tables, one_request_at_a_time
from pts.local.event_source_mapping import StreamPoller
from pts.local.stack import LocalStack, StackOptions
from pts.local.template import Template
from pts.storage import StreamStore

T = TypeVar("T")

STACK_ENV = {
    "PTS_GENERATOR": "bench.workload:make_source",
    "PTS_SWEEP_INTERVAL_SECONDS": "3600",  # no sweeper noise during a measurement
    "PTS_BATCH_MAX_DELAY_SECONDS": "1",
    "PTS_BATCH_MAX_BYTES": "4096",
}


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (it runs in a thread)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class BenchStack:
    """`start()` → the stack runs in a thread; `run(coro)` runs a coroutine on its loop."""

    def __init__(self, *, moto_in_process: bool = False) -> None:
        self.moto_in_process = moto_in_process
        self.stack: LocalStack | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._servers: list[tuple[_Server, asyncio.Task[None]]] = []
        self._saved_env: dict[str, str] = {}
        self._moto: ProcessDynamoDB | None = None
        self._paused: list[StreamPoller] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> BenchStack:
        self._saved_env = dict(os.environ)
        os.environ.update(STACK_ENV)
        self._thread.start()
        options = StackOptions(
            http_port=0,
            ws_port=0,
            sweep_interval=3600,
            table_prefix=f"bench{uuid.uuid4().hex[:6]}",
        )
        self.stack = LocalStack(options)
        if not self.moto_in_process:
            self._moto = ProcessDynamoDB(self.stack.template, prefix=options.table_prefix)
            self.stack.dynamodb = self._moto
        self.run(self.stack.start())
        if httpx.get(f"{self.http_url}/healthz", timeout=10).status_code != 200:
            raise RuntimeError("the local stack did not come up")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            for server, task in self._servers:
                server.should_exit = True
                await task
            if self.stack is not None:
                await self.stack.stop()

        # Closing viewers' sockets under a busy gateway logs its aborted handlers: expected.
        for name in ("asyncio", "websockets", "uvicorn", "pts"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            self.run(shutdown(), timeout=30)
        except TimeoutError:
            # Viewers' $disconnects still queued (a thousand take a minute): not worth waiting.
            sys.unraisablehook = lambda _: None
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if self._moto is not None:
                self._moto.stop()  # even if the stack did not stop cleanly
            os.environ.clear()
            os.environ.update(self._saved_env)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- what the bench needs ----------------------------------------------------------

    @property
    def http_url(self) -> str:
        assert self.stack is not None
        return self.stack.http_url

    @property
    def ws_url(self) -> str:
        assert self.stack is not None
        return self.stack.ws_url

    @property
    def tables(self) -> dict[str, str]:
        """Physical table name → logical id in the template."""
        assert self.stack is not None
        return {name: logical for logical, name in self.stack.dynamodb.table_names.items()}

    def store(self) -> StreamStore:
        settings = Settings.from_env()
        return StreamStore(settings.table, retention_days=settings.retention_days)

    def dynamodb_client(self) -> Any:
        """The client every handler in this process shares (what the meter hooks)."""
        return aws.client("dynamodb")

    def pause_fanout(self) -> None:
        """Stop the Streams pollers. On AWS the fan-out is another function; here it would
        share the driver's interpreter, which is no part of the driver's own overhead."""
        assert self.stack is not None
        for poller in self.stack.pollers:
            poller.stop()
        self._paused += self.stack.pollers
        self.stack.pollers.clear()

    def resume_fanout(self) -> None:
        """New pollers for the paused mappings, from the stream's end (LATEST)."""
        assert self.stack is not None
        for old in self._paused:
            poller = StreamPoller(
                old.mapping, old.invoke, client=old.client, release_iterator=old.release_iterator
            )
            poller.start()
            self.stack.pollers.append(poller)
        self._paused.clear()

    def serve_app(self, store: Any) -> str:
        """Serve the streaming app once more, with `store`, on this loop; its URL."""
        app = create_app(Settings.from_env(), store=store, source=PacedSource())

        async def serve() -> str:
            config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
            server = _Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            self._servers.append((server, task))
            port = server.servers[0].sockets[0].getsockname()[1]
            return f"http://127.0.0.1:{port}"

        return self.run(serve())


def serve_dynamodb(host: str, port: int) -> None:
    """moto's server as the local stack runs it (one request at a time), in this process."""
    app = one_request_at_a_time(DomainDispatcherApplication(create_backend_app))
    make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler).serve_forever()


class ProcessDynamoDB(LocalDynamoDB):
    """`LocalDynamoDB` with moto's server in a child process.

    On AWS, DynamoDB's work happens elsewhere; in the stack's process every write would cost
    the streaming app's interpreter lock twice (client and server), and moto's memory (every
    item and stream record) would grow inside the process being measured.
    """

    def __init__(self, template: Template, *, prefix: str) -> None:
        super().__init__(template, prefix=prefix)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        host = "127.0.0.1"
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        code = f"from bench.harness import serve_dynamodb; serve_dynamodb({host!r}, {port})"
        self._process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.endpoint = f"http://{host}:{port}"
        self._wait_until_up()
        client = boto3.client("dynamodb", endpoint_url=self.endpoint)
        self.table_names, self.stream_arns = create_tables(client, self.template, self.prefix)

    def _wait_until_up(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("moto's server exited at start")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("moto's server did not start within 30 s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@dataclass(frozen=True, slots=True)
class Invocation:
    """One fan-out invocation: when it ran and which batches `(streamId, seq)` it carried."""

    started: float
    ended: float
    batches: tuple[tuple[str, int], ...]


class FanoutProbe:
    """Times every invocation the local Streams pollers make (`time.monotonic()`)."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []

    def attach(self, stack: LocalStack) -> FanoutProbe:
        for poller in stack.pollers:
            poller.invoke = self._timed(poller.invoke)
        return self

    def _timed(self, invoke: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def timed(event: dict[str, Any]) -> Any:
            started = time.monotonic()
            try:
                return invoke(event)
            finally:
                self.invocations.append(Invocation(started, time.monotonic(), _batches(event)))

        return timed

    def started(self, stream_id: str, seq: int) -> float | None:
        """When the first invocation carrying batch `seq` of `stream_id` started."""
        for invocation in self.invocations:
            if (stream_id, seq) in invocation.batches:
                return invocation.started
        return None


def _batches(event: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    found = []
    for record in event.get("Records", []):
        image = record.get("dynamodb", {}).get("NewImage", {})
        if image.get("kind", {}).get("S") == "batch":
            found.append((image["streamId"]["S"], int(image["seq"]["N"])))
    return tuple(found)


def time_websocket_function(stack: LocalStack, name: str = "WebSocketFunction") -> list[float]:
    """Wrap the gateway's invoker of `name`; the returned list fills with durations (s)."""
    durations: list[float] = []
    assert stack.gateway is not None
    invoke = stack.gateway.functions[name]

    def timed(event: dict[str, Any]) -> Any:
        started = time.monotonic()
        try:
            return invoke(event)
        finally:
            durations.append(time.monotonic() - started)

    stack.gateway.functions[name] = timed  # type: ignore[index]
    return durations
