"""`make dev`: the whole stack on 127.0.0.1, running the very handlers Lambda runs.

- DynamoDB with Streams: moto's server, tables created from `template.yaml`;
- the streaming function: the same ASGI app, under uvicorn instead of Lambda Web Adapter;
- the WebSocket API: `gateway` on `PTS_WS_PORT` invokes each route's function with API
  Gateway's events, and `connections` serves `@connections` for the handlers' boto3 client;
- the DynamoDB stream triggers: a `streams` poller per mapping invokes its function with
  Lambda's DynamoDB events;
- the scheduled sweeper: its handler, invoked with EventBridge's event every
  `PTS_SWEEP_INTERVAL_SECONDS`.

Every function gets the environment the template gives it, with `Ref`s resolved to the local
resources and the WebSocket API's `wss://`/`https://` URLs to the local gateway and
`@connections` endpoint; the `PTS_*` knobs of the caller's environment win over the
template's defaults.
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
from pts.local.connections import ConnectionRegistry, ManagementEndpoint
from pts.local.dynamodb import LocalDynamoDB
from pts.local.functions import LocalFunction
from pts.local.gateway import LocalGateway
from pts.local.intrinsics import refers_to
from pts.local.streams import EventSourceMapping, StreamPoller, release_moto_iterator
from pts.local.template import Template
from pts.local.websocket_api import WebSocketApi

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
        self.gateway: LocalGateway | None = None
        self.management: ManagementEndpoint | None = None
        self.pollers: list[StreamPoller] = []
        self._invokers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self._http: _Uvicorn | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.http_url = ""
        self.ws_url = ""
        self.ws_management_url = ""

    # -- environment -------------------------------------------------------------------

    def _environment(self, overrides: dict[str, str]) -> dict[str, str]:
        """What the template sets for its functions, resolved locally, then the overrides."""
        refs = {**self.template.parameter_defaults(), **self.dynamodb.table_names}
        env: dict[str, str] = {}
        for function in self.template.functions().values():
            for name, value in function.environment.items():
                resolved = self.template.resolve(value, refs)
                if resolved is None:
                    resolved = self._websocket_url(value)
                if resolved is not None:
                    env[name] = resolved
        # The caller's knobs (PTS_GENERATOR, PTS_DEMO_*, timeouts …) beat template defaults.
        env.update({k: v for k, v in os.environ.items() if k.startswith(("PTS_", "POWERTOOLS_"))})
        env.update(overrides)
        return env

    def _websocket_url(self, value: Any) -> str | None:
        """The local stand-in for a `!Sub wss://${Api}…` (clients) or `https://${Api}…`
        (`@connections`) URL of the WebSocket API."""
        if self.gateway is None or not refers_to(value, self.gateway.api.logical_id):
            return None
        text = value.get("Fn::Sub", "") if isinstance(value, dict) else ""
        text = text[0] if isinstance(text, list) else text
        if text.startswith("wss://"):
            return self.ws_url
        if text.startswith("https://"):
            return self.ws_management_url
        return None

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
                    "PTS_WS_MANAGEMENT_URL": self.ws_management_url,
                }
            )
        )
        aws.client.cache_clear()
        aws.session.cache_clear()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """DynamoDB, then the sockets (so every URL is known before any function loads), the
        functions with their environment, and the services that invoke them."""
        self._use_local_credentials()
        await asyncio.to_thread(self.dynamodb.start)
        self._bind_websocket()
        self._configure_process()
        self.functions = {
            name: LocalFunction(function)
            for name, function in self.template.functions().items()
            if function.handler.endswith(".handler") and (function.code_uri / "app.py").exists()
        }
        self._invokers.update({name: local.invoke for name, local in self.functions.items()})
        await self._start_http()
        await self._start_websocket()
        await self._start_streams()
        self._schedule_functions()
        logger.info("HTTP API and chat page: %s", self.http_url)

    def _bind_websocket(self) -> None:
        apis = WebSocketApi.all_from(self.template)
        if not apis:
            return
        if len(apis) > 1:
            logger.warning("only the first WebSocket API (%s) runs locally", apis[0].logical_id)
        registry = ConnectionRegistry()
        host = self.options.host
        self.management = ManagementEndpoint(registry, host=host)
        self.gateway = LocalGateway(
            apis[0], self._invokers, host=host, port=self.options.ws_port, registry=registry
        )
        self.ws_url = self.gateway.url
        self.ws_management_url = self.management.url(apis[0].stage)

    async def _start_websocket(self) -> None:
        if self.gateway is None or self.management is None:
            return
        missing = set(self.gateway.api.routes.values()) - set(self._invokers)
        if missing:
            logger.warning("WebSocket routes to functions that did not load: %s", missing)
        await self.management.start()
        await self.gateway.start()

    async def _start_streams(self) -> None:
        client = aws.client("dynamodbstreams", endpoint_url=self.dynamodb.endpoint)
        for mapping in EventSourceMapping.all_from(self.template, self.dynamodb.stream_arns):
            local = self.functions.get(mapping.function_id)
            if local is None or not mapping.enabled:
                continue
            poller = StreamPoller(
                mapping, local.invoke, client=client, release_iterator=release_moto_iterator
            )
            await asyncio.to_thread(poller.start)
            self.pollers.append(poller)
            logger.info("%s polls %s", mapping.name, mapping.stream_arn)

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
        """Everything that invokes functions first, DynamoDB last; safe after a failed start."""
        for poller in self.pollers:
            await asyncio.to_thread(poller.stop)
        self.pollers.clear()
        if self.gateway is not None:
            # 1001 to every viewer; no $disconnect: the in-memory tables go away with us, and
            # a thousand viewers' clean-ups would hold up Ctrl-C for seconds.
            await self.gateway.stop(disconnect_events=False)
        if self.management is not None:
            await self.management.stop()
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.dynamodb.endpoint:
            await asyncio.to_thread(self.dynamodb.stop)

    async def run(self, ready: Callable[[LocalStack], None] | None = None) -> None:
        """Start, report, and serve until SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            if ready:
                ready(self)
            await stop.wait()
        finally:
            await self.stop()
