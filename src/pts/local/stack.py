"""`make dev`: the whole stack on 127.0.0.1, running the very handlers Lambda runs.

- DynamoDB with Streams: moto's server, tables created from `template.yaml`;
- the streaming function: the same ASGI app, under uvicorn instead of Lambda Web Adapter;
- the scheduled sweeper: its handler, invoked with EventBridge's event every
  `PTS_SWEEP_INTERVAL_SECONDS`.

Every function gets the environment the template gives it, with `Ref`s resolved to the local
resources; the `PTS_*` knobs of the caller's environment win over the template's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn

from pts import aws
from pts.api import create_app
from pts.local.dynamodb import LocalDynamoDB
from pts.local.functions import LocalFunction
from pts.local.template import Template

logger = logging.getLogger("pts.local")


@dataclass(frozen=True)  # no slots: from_env reads the class-level defaults
class StackOptions:
    http_port: int = 8000
    ws_port: int = 8001
    sweep_interval: float = 60.0
    host: str = "127.0.0.1"
    table_prefix: str = "pts-local"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackOptions:
        env = dict(os.environ if env is None else env)
        return cls(
            http_port=int(env.get("PTS_HTTP_PORT") or cls.http_port),
            ws_port=int(env.get("PTS_WS_PORT") or cls.ws_port),
            sweep_interval=float(env.get("PTS_SWEEP_INTERVAL_SECONDS") or cls.sweep_interval),
        )


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the stack stops its parts in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def scheduled_event(rule_arn: str, now: datetime | None = None) -> dict[str, Any]:
    """EventBridge's `Scheduled Event`, as Lambda receives it."""
    now = now or datetime.now(UTC)
    arn_parts = rule_arn.split(":")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": arn_parts[4],
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": arn_parts[3],
        "resources": [rule_arn],
        "detail": {},
    }


class LocalStack:
    """Start with `await start()`, stop with `await stop()`; or `run()` until a signal."""

    def __init__(self, options: StackOptions | None = None, template: Template | None = None):
        self.options = options or StackOptions.from_env()
        self.template = template or Template()
        self.dynamodb = LocalDynamoDB(self.template, prefix=self.options.table_prefix)
        self.functions: dict[str, LocalFunction] = {}
        self._http: _Uvicorn | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.http_url = ""
        self.ws_url = ""

    # -- environment -------------------------------------------------------------------

    def _environment(self, overrides: dict[str, str]) -> dict[str, str]:
        """What the template sets for its functions, resolved locally, then the overrides."""
        refs = {**self.template.parameter_defaults(), **self.dynamodb.table_names}
        env: dict[str, str] = {}
        for function in self.template.functions().values():
            for name, value in function.environment.items():
                resolved = self.template.resolve(value, refs)
                if resolved is not None:
                    env[name] = resolved
        # The caller's knobs (PTS_GENERATOR, PTS_DEMO_*, timeouts …) beat template defaults.
        env.update({k: v for k, v in os.environ.items() if k.startswith(("PTS_", "POWERTOOLS_"))})
        env.update(overrides)
        return env

    @staticmethod
    def _use_local_credentials() -> None:
        """Never reach a real account from the local stack."""
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            }
        )
        os.environ.pop("AWS_PROFILE", None)

    def _configure_process(self) -> None:
        endpoint = self.dynamodb.endpoint
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": endpoint,
            }
        )
        os.environ.update(
            self._environment(
                {
                    "PTS_TABLE": self.dynamodb.table_names.get("StreamsTable", ""),
                    "PTS_CONNECTIONS_TABLE": self.dynamodb.table_names.get("ConnectionsTable", ""),
                    "PTS_WS_URL": self.ws_url,
                }
            )
        )
        aws.client.cache_clear()
        aws.session.cache_clear()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.options
        self._use_local_credentials()
        await asyncio.to_thread(self.dynamodb.start)
        self.ws_url = f"ws://{opts.host}:{opts.ws_port}"
        self._configure_process()
        self.functions = {
            name: LocalFunction(function)
            for name, function in self.template.functions().items()
            if function.handler.endswith(".handler") and (function.code_uri / "app.py").exists()
        }
        await self._start_http()
        self._schedule_functions()
        logger.info("HTTP API and chat page: %s", self.http_url)

    async def _start_http(self) -> None:
        config = uvicorn.Config(
            create_app(),
            host=self.options.host,
            port=self.options.http_port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
        self._http = _Uvicorn(config)
        self._tasks.append(asyncio.create_task(self._http.serve(), name="http"))
        while not self._http.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()  # raises why it could not start
            await asyncio.sleep(0.02)
        port = self._http.servers[0].sockets[0].getsockname()[1]
        self.http_url = f"http://{self.options.host}:{port}"

    def _schedule_functions(self) -> None:
        """Run each function with a `Schedule` event every `sweep_interval` seconds."""
        for name, local in self.functions.items():
            for event_id, event in local.function.events.items():
                if event.get("Type") == "Schedule":
                    arn = f"arn:aws:events:us-east-1:000000000000:rule/{name}-{event_id}"
                    self._tasks.append(
                        asyncio.create_task(self._every(self.options.sweep_interval, local, arn))
                    )

    @staticmethod
    async def _every(interval: float, local: LocalFunction, rule_arn: str) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(local.invoke, scheduled_event(rule_arn))
            except Exception:
                logger.exception("scheduled %s failed", local.function.logical_id)

    async def stop(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.to_thread(self.dynamodb.stop)

    async def run(self, ready: Callable[[LocalStack], None] | None = None) -> None:
        """Start, report, and serve until SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if ready:
            ready(self)
        try:
            await stop.wait()
        finally:
            await self.stop()
