"""`make dev`: the whole stack on 127.0.0.1, running the very handlers Lambda runs.

- DynamoDB with Streams: moto's server, tables created from `template.yaml`, their items kept
  in `StackOptions.data_dir` between runs when given one (`pts dev`: `.pts-local/`);
- each function in execution environments of its own (`functions`): the streaming function's
  `run.sh` (uvicorn, as Lambda Web Adapter starts it) on `PTS_HTTP_PORT`, the others in
  sandbox processes invoked with Lambda's events;
- the WebSocket API: `gateway` on `PTS_WS_PORT` invokes each route's function with API
  Gateway's events, and `connections_endpoint` serves `@connections` for the handlers;
- the DynamoDB stream triggers: an `event_source_mapping` poller per mapping invokes its
  function with Lambda's DynamoDB events;
- the scheduled sweeper: its handler, invoked with EventBridge's event every
  `PTS_SWEEP_INTERVAL_SECONDS`;
- with `PTS_AUTH=jwt`, a local OpenID issuer (`pts.local.issuer`) on `PTS_ISSUER_PORT`
  (default 8002), the chat page registered as its client: the template is read as deployed
  with `AuthMode=jwt` and `JwtIssuer`/`JwtAudience` naming it, so the functions verify its
  tokens and the WebSocket `$connect` runs the template's authorizer, as on AWS.

Each function sees only its own environment, as on Lambda (`function_environment`): the
variables the template gives it (and Globals), resolved locally (`Ref`s to the local tables,
the WebSocket API's `wss://`/`https://` URLs to the local gateway and `@connections`), then
Lambda's reserved variables, local credentials and the local endpoints. The caller's `PTS_*`
and `POWERTOOLS_*` knobs beat the template's literal and parameter values, and reach every
function even when the template does not declare them (unlike AWS, where only the template
sets a function's environment: they are how a developer tunes `make dev`, e.g. the demo
source's pace); the stack's own knobs (ports, sweep interval) are not passed on, and a
variable that names a local resource always names the local one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from pts import aws
from pts.local.apigateway_websocket import WebSocketApi
from pts.local.connections_endpoint import ConnectionRegistry, ManagementEndpoint
from pts.local.dynamodb import LocalDynamoDB
from pts.local.event_source_mapping import (
    EventSourceMapping,
    StreamPoller,
    release_moto_iterator,
)
from pts.local.functions import REGION, LocalFunction, WebFunction, lambda_environment
from pts.local.gateway import IDLE_TIMEOUT, MAX_DURATION, LocalGateway
from pts.local.intrinsics import refers_to
from pts.local.issuer import Client, LocalIssuer
from pts.local.lambda_endpoint import LambdaEndpoint
from pts.local.template import Function, Template

logger = logging.getLogger("pts.local")

STACK_KNOBS = frozenset(
    {"PTS_HTTP_PORT", "PTS_WS_PORT", "PTS_ISSUER_PORT", "PTS_SWEEP_INTERVAL_SECONDS"}
)
"""The stack's own settings: read here, never passed to a function."""

CHAT_CLIENT_ID = "pts-chat"
"""The chat page's client id at the local issuer (and `pts token`'s)."""

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


@dataclass(frozen=True)  # no slots: from_env reads the class-level defaults
class StackOptions:
    http_port: int = 8000
    ws_port: int = 8001
    sweep_interval: float = 60.0
    host: str = "127.0.0.1"
    table_prefix: str = "pts-local"
    function_environment: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Extra variables by function logical id, over everything but Lambda's reserved ones."""
    max_sandboxes: int = 4
    """Concurrent execution environments per function (invocations beyond wait)."""
    connections_post_delay: float = 0.0
    """Seconds the `@connections` endpoint waits before each POST (a slow API Gateway)."""
    auth: str = "none"
    """`PTS_AUTH`: `jwt` runs the local issuer and deploys the template with `AuthMode=jwt`."""
    issuer_port: int = 8002
    data_dir: Path | None = None
    """Where the tables' items are kept between runs (`pts dev`: `.pts-local/`); None keeps
    everything in memory only."""
    save_interval: float = 30.0
    """Seconds between saves of the data dir while anything is written."""
    ws_idle_timeout: float = IDLE_TIMEOUT
    """Seconds a WebSocket connection may stay idle (API Gateway: 10 minutes)."""
    ws_max_duration: float = MAX_DURATION
    """Seconds a WebSocket connection may last (API Gateway: 2 hours)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackOptions:
        env = dict(os.environ if env is None else env)
        return cls(
            http_port=int(env.get("PTS_HTTP_PORT") or cls.http_port),
            ws_port=int(env.get("PTS_WS_PORT") or cls.ws_port),
            auth=(env.get("PTS_AUTH") or cls.auth).strip().lower(),
            issuer_port=int(env.get("PTS_ISSUER_PORT") or cls.issuer_port),
            sweep_interval=float(env.get("PTS_SWEEP_INTERVAL_SECONDS") or cls.sweep_interval),
        )


def _free_port(host: str) -> int:
    """A port nothing listens on now, for a process that binds it itself (`run.sh`)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


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
    """Start with `await start()`, stop with `await stop()`; or `run()` until a signal.

    Seams for tests and the benchmark: `functions` (each `LocalFunction.observe`s its
    invocations), `dynamodb.observe` (every request the local DynamoDB serves),
    `pause_event_sources`/`resume_event_sources`, `client_environment()`, and the options
    `function_environment` and `connections_post_delay`.
    """

    def __init__(self, options: StackOptions | None = None, template: Template | None = None):
        self.options = options or StackOptions.from_env()
        self.template = template or Template()
        self.dynamodb = LocalDynamoDB(
            self.template,
            prefix=self.options.table_prefix,
            data_dir=self.options.data_dir,
            save_interval=self.options.save_interval,
        )
        self.functions: dict[str, LocalFunction] = {}
        """The invoked functions (sandbox pools), by logical id."""
        self.web_functions: dict[str, WebFunction] = {}
        """The Lambda Web Adapter functions (the streaming app), by logical id."""
        self.gateway: LocalGateway | None = None
        self.management: ManagementEndpoint | None = None
        self.lambda_endpoint: LambdaEndpoint | None = None
        """Lambda's Invoke API (`AWS_ENDPOINT_URL_LAMBDA`): functions invoking functions."""
        self.pollers: list[StreamPoller] = []
        self._paused: list[StreamPoller] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.http_url = ""
        self.ws_url = ""
        self.ws_management_url = ""
        self.issuer: LocalIssuer | None = None
        self._issuer_server: uvicorn.Server | None = None
        self._issuer_thread: threading.Thread | None = None
        self._http_port = 0

    # -- environment -------------------------------------------------------------------

    def function_environment(self, function: Function, **local: str) -> dict[str, str]:
        """Everything `function`'s processes see (the rule is in the module's docstring);
        `local`: variables the stack sets for this function (its `PORT`)."""
        # A function's name is its logical id here (`AWS_LAMBDA_FUNCTION_NAME` says so too).
        names = {name: name for name in self.template.functions()}
        refs = {**self.template.parameter_defaults(), **names, **self.dynamodb.table_names}
        variables: dict[str, str] = {}
        resources: dict[str, str] = {}
        for name, value in function.environment.items():
            url = self._websocket_url(value)
            if url is not None:
                resources[name] = url
            elif isinstance(value, dict) and value.get("Ref") in self.dynamodb.table_names:
                resources[name] = self.dynamodb.table_names[value["Ref"]]
            elif (resolved := self.template.resolve(value, refs)) is not None:
                variables[name] = resolved
        knobs = {
            name: value
            for name, value in os.environ.items()
            if name.startswith(("PTS_", "POWERTOOLS_")) and name not in STACK_KNOBS
        }
        endpoints = {
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": self.dynamodb.endpoint,
        }
        if self.lambda_endpoint is not None:
            endpoints["AWS_ENDPOINT_URL_LAMBDA"] = self.lambda_endpoint.url
        extra = self.options.function_environment.get(function.logical_id, {})
        return lambda_environment(
            function,
            {**variables, **knobs, **resources, **local, **LOCAL_CREDENTIALS, **endpoints, **extra},
        )

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

    def client_environment(self) -> dict[str, str]:
        """What a client of the local stack (a test, the benchmark, `pts` commands) sets to
        reach its resources: credentials, endpoints, table names and URLs."""
        return {
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": self.dynamodb.endpoint,
            "PTS_TABLE": self.dynamodb.table_names.get("StreamsTable", ""),
            "PTS_CONNECTIONS_TABLE": self.dynamodb.table_names.get("ConnectionsTable", ""),
            "PTS_HTTP_URL": self.http_url,
            "PTS_WS_URL": self.ws_url,
            "PTS_WS_MANAGEMENT_URL": self.ws_management_url,
            **(
                {"PTS_ISSUER_URL": self.issuer.url, "PTS_JWT_CLIENT_ID": CHAT_CLIENT_ID}
                if self.issuer
                else {}
            ),
        }

    @staticmethod
    def _use_local_credentials() -> None:
        """The stack's own clients (table creation, stream polling) never reach a real
        account either."""
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
        os.environ.pop("AWS_PROFILE", None)
        aws.client.cache_clear()
        aws.session.cache_clear()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """DynamoDB, then the sockets (so every URL is known before any function starts),
        the functions with their environment, and the services that invoke them."""
        if self.options.auth not in ("none", "jwt"):
            raise ValueError(f"PTS_AUTH must be 'none' or 'jwt', not {self.options.auth!r}")
        self._use_local_credentials()
        self._http_port = self.options.http_port or _free_port(self.options.host)
        if self.options.auth == "jwt":
            await asyncio.to_thread(self._start_issuer)
        await asyncio.to_thread(self.dynamodb.start)
        self._bind_websocket()
        self._bind_lambda()
        await self._start_functions()
        if self.lambda_endpoint is not None:
            await self.lambda_endpoint.start()
        await self._start_websocket()
        await self._start_streams()
        self._schedule_functions()
        logger.info("HTTP API and chat page: %s", self.http_url)

    async def _start_functions(self) -> None:
        """A warm sandbox per function (init errors surface now) and the web functions,
        all at once."""
        starting = []
        for name, function in self.template.functions().items():
            if WebFunction.runs(function):
                port = self._http_port
                web = WebFunction(function, self.function_environment(function, PORT=str(port)))
                self.web_functions[name] = web
                starting.append(asyncio.to_thread(web.start))
            elif (function.code_uri / f"{function.handler.rpartition('.')[0]}.py").exists():
                local = LocalFunction(
                    function,
                    self.function_environment(function),
                    max_sandboxes=self.options.max_sandboxes,
                )
                self.functions[name] = local
                starting.append(asyncio.to_thread(local.warm))
            else:
                logger.warning("%s: no handler %s in %s", name, function.handler, function.code_uri)
        await asyncio.gather(*starting)
        if self.web_functions:
            self.http_url = next(iter(self.web_functions.values())).url

    def _start_issuer(self) -> None:
        """The local OpenID issuer on its own port and thread (uvicorn, out of the way of
        the stack's loop and signals), the chat page its client; then the template is read
        as deployed with `AuthMode=jwt` and this issuer."""
        host = self.options.host
        sock = socket.create_server((host, self.options.issuer_port))
        url = f"http://{host}:{sock.getsockname()[1]}"
        page = (f"http://{host}:{self._http_port}/", f"http://localhost:{self._http_port}/")
        self.issuer = LocalIssuer(url, [Client(CHAT_CLIENT_ID, page)])
        config = uvicorn.Config(self.issuer.app, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        self._issuer_server = server
        self._issuer_thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="local-issuer", daemon=True
        )
        self._issuer_thread.start()
        deadline = time.monotonic() + 10
        while not server.started and self._issuer_thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the local issuer did not start")
            time.sleep(0.01)
        self.template.parameters.update(
            {"AuthMode": "jwt", "JwtIssuer": url, "JwtAudience": CHAT_CLIENT_ID}
        )
        logger.info("OpenID issuer (dev): %s", url)

    def _stop_issuer(self) -> None:
        if self._issuer_server is not None and self._issuer_thread is not None:
            self._issuer_server.should_exit = True
            self._issuer_thread.join(10)

    def _bind_lambda(self) -> None:
        retries = {
            name: int(config["MaximumRetryAttempts"])
            for name, props in self.template.of_type("AWS::Serverless::Function").items()
            if "MaximumRetryAttempts" in (config := props.get("EventInvokeConfig") or {})
        }
        self.lambda_endpoint = LambdaEndpoint(
            self.functions, host=self.options.host, retry_attempts=retries
        )

    def _bind_websocket(self) -> None:
        api = WebSocketApi.from_template(self.template)
        if api is None:
            return
        registry = ConnectionRegistry()
        host = self.options.host
        self.management = ManagementEndpoint(
            registry, host=host, post_delay=self.options.connections_post_delay
        )
        self.gateway = LocalGateway(
            api,
            {},  # filled once the functions are up
            host=host,
            port=self.options.ws_port,
            registry=registry,
            idle_timeout=self.options.ws_idle_timeout,
            max_duration=self.options.ws_max_duration,
        )
        self.ws_url = self.gateway.url
        self.ws_management_url = self.management.url(api.stage)

    async def _start_websocket(self) -> None:
        if self.gateway is None or self.management is None:
            return
        self.gateway.functions = {name: local.invoke for name, local in self.functions.items()}
        missing = set(self.gateway.api.routes.values()) - set(self.functions)
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

    def pause_event_sources(self) -> None:
        """Stop every stream poller (as disabling the mappings would)."""
        for poller in self.pollers:
            poller.stop()
        self._paused += self.pollers
        self.pollers = []

    def resume_event_sources(self) -> None:
        """Poll again, from each stream's end (LATEST): unlike a re-enabled mapping on AWS,
        which resumes at its checkpoint, what was written meanwhile is never delivered."""
        for old in self._paused:
            poller = StreamPoller(
                old.mapping, old.invoke, client=old.client, release_iterator=old.release_iterator
            )
            poller.start()
            self.pollers.append(poller)
        self._paused = []

    def _schedule_functions(self) -> None:
        """Run each function with a `Schedule` event every `sweep_interval` seconds."""
        for name, local in self.functions.items():
            for event_id, event in local.function.events.items():
                if event.get("Type") == "Schedule":
                    arn = f"arn:aws:events:{REGION}:000000000000:rule/{name}-{event_id}"
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
                logger.exception("scheduled %s failed", local.name)

    @property
    def pids(self) -> dict[str, list[int]]:
        """The live processes of every function, by logical id."""
        pids = {name: function.pids for name, function in self.functions.items()}
        pids.update({name: web.pids for name, web in self.web_functions.items()})
        return pids

    async def stop(self) -> None:
        """Everything that invokes functions first, then the functions' processes, DynamoDB
        last; safe after a failed start."""
        for poller in self.pollers:
            await asyncio.to_thread(poller.stop)
        self.pollers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.gateway is not None:
            # 1001 to every viewer; no $disconnect: the in-memory tables go away with us, and
            # a thousand viewers' clean-ups would hold up Ctrl-C for seconds.
            await self.gateway.stop(disconnect_events=False)
        if self.lambda_endpoint is not None:
            await self.lambda_endpoint.stop()
        for local in self.functions.values():
            local.close()
        if self.management is not None:
            await self.management.stop()
        await asyncio.gather(*(asyncio.to_thread(web.stop) for web in self.web_functions.values()))
        if self.dynamodb.endpoint:
            await asyncio.to_thread(self.dynamodb.stop)
        await asyncio.to_thread(self._stop_issuer)

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
