"""The local stack for the bench: ephemeral ports, its own thread and event loop.

`BenchStack` starts `pts.local.stack.LocalStack` (the real handlers, each function in its own
processes, moto DynamoDB with Streams, the WebSocket gateway and the Streams poller) with the
bench's paced source, and can serve the same app a second or third time on the same loop with
another store (`serve_app`): that is how the HTTP-only and injected-latency drivers run
beside it. What the bench observes, it observes through the stack's seams: the functions'
invocations (`LocalFunction.observe`), DynamoDB's requests (`LocalDynamoDB.observe`), and
pausing the stream pollers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from bench.workload import TIMELINE, PacedSource
from pts import aws
from pts.api import create_app
from pts.config import Settings
from pts.local.functions import Invocation
from pts.local.stack import LocalStack, StackOptions
from pts.storage import StreamStore

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = {
    "PTS_BATCH_MAX_DELAY_SECONDS": "1",
    "PTS_BATCH_MAX_BYTES": "4096",
}
"""Knobs for every function (and the apps `serve_app` adds)."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (it runs in a thread)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class BenchStack:
    """`start()` → the stack runs in a thread; `run(coro)` runs a coroutine on its loop."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = {**STACK_ENV, **(env or {})}
        """Knobs (`PTS_*`) for every function, on top of `STACK_ENV`."""
        self.stack: LocalStack | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._servers: list[tuple[_Server, asyncio.Task[None]]] = []
        self._saved_env: dict[str, str] = {}
        self._timeline: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> BenchStack:
        self._saved_env = dict(os.environ)
        os.environ.update(self.env)
        # The functions import the paced source from this checkout (as from a layer).
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self._thread.start()
        self._timeline = tempfile.TemporaryDirectory(prefix="bench-timeline-")
        TIMELINE.share(Path(self._timeline.name))
        function_env = {
            "PTS_GENERATOR": "bench.workload:make_source",
            "PTS_BENCH_TIMELINE_DIR": self._timeline.name,
        }
        options = StackOptions(
            http_port=0,
            ws_port=0,
            sweep_interval=3600,  # no sweeper noise during a measurement
            table_prefix=f"bench{uuid.uuid4().hex[:6]}",
            function_environment={"StreamFunction": function_env},
        )
        self.stack = LocalStack(options)
        self.run(self.stack.start())
        os.environ.update(self.stack.client_environment())
        aws.client.cache_clear()
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
            TIMELINE.share(None)
            if self._timeline is not None:
                self._timeline.cleanup()
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

    def management(self) -> Any:
        """The local `@connections` API: its `post_delay` is the latency each post gets."""
        assert self.stack is not None and self.stack.management is not None
        return self.stack.management.api

    def pause_fanout(self) -> None:
        """Stop the Streams pollers: the fan-out's work is no part of the driver's overhead,
        and here it would share the machine's two cores with the driver."""
        assert self.stack is not None
        self.stack.pause_event_sources()

    def resume_fanout(self) -> None:
        """Poll again, from the stream's end (LATEST)."""
        assert self.stack is not None
        self.stack.resume_event_sources()

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


@dataclass(frozen=True, slots=True)
class FanoutInvocation:
    """One fan-out invocation: when it ran and which batches `(streamId, seq)` it carried."""

    started: float
    ended: float
    batches: tuple[tuple[str, int], ...]


class FanoutProbe:
    """Times every invocation of the fan-out function (`time.monotonic()`, from handing the
    event to its sandbox to its answer)."""

    def __init__(self) -> None:
        self.invocations: list[FanoutInvocation] = []
        self.worker_invocations: list[FanoutInvocation] = []
        """The second level's (`FanoutWorkerFunction`), with no batches."""

    def attach(
        self, stack: LocalStack, name: str = "FanoutFunction", worker: str = "FanoutWorkerFunction"
    ) -> FanoutProbe:
        stack.functions[name].observe(self._record)
        if worker in stack.functions:
            stack.functions[worker].observe(
                lambda done: self.worker_invocations.append(
                    FanoutInvocation(done.started, done.ended, ())
                )
            )
        return self

    def _record(self, invocation: Invocation) -> None:
        batches = _batches(invocation.event)
        self.invocations.append(FanoutInvocation(invocation.started, invocation.ended, batches))

    def started(self, stream_id: str, seq: int) -> float | None:
        """When the first invocation carrying batch `seq` of `stream_id` started."""
        for invocation in self.invocations:
            if (stream_id, seq) in invocation.batches:
                return invocation.started
        return None


def _batches(event: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    found = []
    for record in event.get("Records", []):
        image = record.get("dynamodb", {}).get("NewImage", {})
        if image.get("kind", {}).get("S") == "batch":
            found.append((image["streamId"]["S"], int(image["seq"]["N"])))
    return tuple(found)


def time_websocket_function(stack: LocalStack, name: str = "WebSocketFunction") -> list[float]:
    """The returned list fills with the durations (s) of `name`'s invocations."""
    durations: list[float] = []
    stack.functions[name].observe(lambda done: durations.append(done.ended - done.started))
    return durations
