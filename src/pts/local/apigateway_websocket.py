"""What API Gateway does for a WebSocket API of `template.yaml`, minus the network.

The API and its routes come from the template (its `AWS::Serverless::WebSocketApi`'s
`Routes`), routes are selected with the API's own
`RouteSelectionExpression`, and the Lambda proxy integration events are shaped as AWS shapes
them (see `events/websocket-*.json`). `gateway` puts this on a socket.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pts.local.intrinsics import function_ids
from pts.local.template import Template

CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
SAM_DEFAULT_STAGE = "default"  # what SAM names the stage when `StageName` is left out

# Handshake headers API Gateway does not pass on to the integration.
_HOP_BY_HOP = frozenset({"connection", "upgrade"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def api_gateway_id() -> str:
    """An id like API Gateway's connection, request and message ids ('LZ1xLcjYoAMCJjQ=')."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def request_time(epoch_ms: int) -> str:
    """`requestTime` as API Gateway writes it (11/Nov/2024:11:35:24 +0000), whatever the locale."""
    t = time.gmtime(epoch_ms / 1000)
    day = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}"
    return f"{day}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


@dataclass(frozen=True)
class WebSocketApi:
    """One WebSocket API of the template: its routes, each to the function it invokes."""

    logical_id: str
    route_selection_expression: str
    stage: str
    routes: Mapping[str, str]
    """Route key → logical id of the function (Lambda proxy integration)."""

    @property
    def api_id(self) -> str:
        """A stable 10-character id in API Gateway's alphabet, derived from the logical id."""
        digest = int.from_bytes(hashlib.sha256(self.logical_id.encode()).digest()[:8], "big")
        alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
        chars = []
        for _ in range(10):
            digest, index = divmod(digest, 36)
            chars.append(alphabet[index])
        return "".join(chars)

    @classmethod
    def from_template(cls, template: Template) -> WebSocketApi | None:
        """The template's `AWS::Serverless::WebSocketApi` (it declares at most one)."""
        apis = template.of_type("AWS::Serverless::WebSocketApi")
        if len(apis) > 1:
            raise ValueError(f"the local stack emulates one WebSocket API, not {sorted(apis)}")
        if not apis:
            return None
        ((name, props),) = apis.items()
        functions = template.functions()
        routes = {}
        for key, spec in props.get("Routes", {}).items():
            targets = function_ids(spec.get("FunctionArn"), functions)
            if targets:
                routes[key] = targets.pop()
        refs = template.parameter_defaults()
        stage = template.resolve(props.get("StageName", SAM_DEFAULT_STAGE), refs)
        return cls(name, props["RouteSelectionExpression"], stage or SAM_DEFAULT_STAGE, routes)


class RouteSelector:
    """Evaluates a `RouteSelectionExpression` on a message, as API Gateway does.

    Supports `$request.body.<path>` and templates of `${request.body.<path>}` parts; a frame
    that is not a JSON object, or whose selected value is missing or names no route, goes to
    `$default` (None when the API has no `$default`: API Gateway then answers "Forbidden").
    """

    _TEMPLATE = re.compile(r"\$\{request\.body\.([^}]+)\}")

    def __init__(self, expression: str, route_keys: Iterable[str]) -> None:
        self.expression = expression
        self.route_keys = frozenset(route_keys)
        whole = re.fullmatch(r"\$request\.body\.(.+)", expression)
        self._parts: list[str | list[str]]
        if whole:
            self._parts = [whole.group(1).split(".")]
        else:
            self._parts = []
            last = 0
            for match in self._TEMPLATE.finditer(expression):
                self._parts += [expression[last : match.start()], match.group(1).split(".")]
                last = match.end()
            self._parts.append(expression[last:])

    def select(self, body: str | None) -> str | None:
        key = self._evaluate(body)
        if key is not None and key in self.route_keys and key not in (CONNECT, DISCONNECT):
            return key
        return DEFAULT if DEFAULT in self.route_keys else None

    def _evaluate(self, body: str | None) -> str | None:
        if body is None:
            return None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # not JSON to API Gateway either: `$default`
            return None
        selected = []
        for part in self._parts:
            if isinstance(part, str):
                selected.append(part)
                continue
            value: Any = document
            for name in part:
                if not isinstance(value, dict) or name not in value:
                    return None
                value = value[name]
            if isinstance(value, dict | list) or value is None:
                return None
            selected.append(value if isinstance(value, str) else json.dumps(value))
        return "".join(selected)


@dataclass
class ConnectionInfo:
    """What API Gateway remembers about a connection, for its events and `GET @connections`."""

    connection_id: str
    source_ip: str
    user_agent: str | None = None
    connected_at: int = field(default_factory=lambda: int(time.time() * 1000))
    """Epoch milliseconds."""
    last_active_at: int = 0

    def __post_init__(self) -> None:
        self.last_active_at = self.last_active_at or self.connected_at


class EventFactory:
    """Builds the Lambda proxy integration events of one API's stage."""

    def __init__(self, api: WebSocketApi, domain_name: str) -> None:
        self.api = api
        self.domain_name = domain_name

    def _context(
        self, route_key: str, event_type: str, connection: ConnectionInfo, now: int
    ) -> dict[str, Any]:
        request_id = api_gateway_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(now),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "connectedAt": connection.connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": connection.source_ip},
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": connection.connection_id,
            "apiId": self.api.api_id,
        }

    def connect(
        self,
        connection: ConnectionInfo,
        headers: Iterable[tuple[str, str]],
        query: Iterable[tuple[str, str]] = (),
    ) -> dict[str, Any]:
        """`$connect`: the handshake's headers (plus the ones API Gateway adds) and query."""
        now = int(time.time() * 1000)
        all_headers = [
            *((name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP),
            ("X-Amzn-Trace-Id", f"Root=1-{now // 1000:08x}-{os.urandom(12).hex()}"),
            ("X-Forwarded-For", connection.source_ip),
            ("X-Forwarded-Port", self.domain_name.rpartition(":")[2] or "443"),
            ("X-Forwarded-Proto", "http"),
        ]
        event: dict[str, Any] = {
            "headers": dict(all_headers),
            "multiValueHeaders": _multi(all_headers),
        }
        query = list(query)
        if query:
            event["queryStringParameters"] = dict(query)
            event["multiValueQueryStringParameters"] = _multi(query)
        event["requestContext"] = self._context(CONNECT, "CONNECT", connection, now)
        event["isBase64Encoded"] = False
        return event

    def message(
        self, route_key: str, connection: ConnectionInfo, data: str | bytes
    ) -> dict[str, Any]:
        """A frame for `route_key`; binary frames arrive base64-encoded."""
        now = int(time.time() * 1000)
        context = self._context(route_key, "MESSAGE", connection, now)
        context = {"routeKey": route_key, "messageId": api_gateway_id(), **context}
        binary = isinstance(data, bytes)
        body = base64.b64encode(data).decode() if isinstance(data, bytes) else data
        return {
            "requestContext": context,
            "body": body,
            "isBase64Encoded": binary,
        }

    def disconnect(self, connection: ConnectionInfo, code: int, reason: str) -> dict[str, Any]:
        """`$disconnect`, with the close frame's code and reason."""
        now = int(time.time() * 1000)
        # API Gateway's $disconnect carries these headers, not the handshake's.
        headers = [
            ("Host", self.domain_name),
            ("x-api-key", ""),
            ("X-Forwarded-For", ""),
            ("x-restapi", ""),
        ]
        context = self._context(DISCONNECT, "DISCONNECT", connection, now)
        context = {
            "routeKey": DISCONNECT,
            "disconnectStatusCode": code,
            **context,
            "disconnectReason": reason,
        }
        return {
            "headers": dict(headers),
            "multiValueHeaders": _multi(headers),
            "requestContext": context,
            "isBase64Encoded": False,
        }


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return multi
