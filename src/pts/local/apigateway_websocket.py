"""What API Gateway does for a WebSocket API of `template.yaml`, minus the network.

The API and its routes come from the template (its `AWS::Serverless::WebSocketApi`'s
`Routes`, and `AWS::ApiGatewayV2::Route`s of that API declared apart, with their integration
and, if their `AuthorizationType` is `CUSTOM`, their Lambda REQUEST authorizer), routes are
selected with the API's own
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

from pts.local.functions import REGION
from pts.local.intrinsics import function_ids, refers_to
from pts.local.template import Template

CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
SAM_DEFAULT_STAGE = "default"  # what SAM names the stage when `StageName` is left out
ACCOUNT = "000000000000"

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
class Authorizer:
    """A Lambda REQUEST authorizer of a route (on WebSocket APIs: `$connect` only)."""

    logical_id: str
    function: str
    """Logical id of the function it invokes."""
    identity_sources: tuple[str, ...] = ()
    """`route.request.querystring.NAME` / `route.request.header.NAME`: without them API
    Gateway refuses the request (401) without invoking the authorizer."""

    def missing_identity(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The first identity source the request lacks (or has empty), else None."""
        lower = {name.lower(): value for name, value in headers.items()}
        for source in self.identity_sources:
            kind, _, name = source.removeprefix("route.request.").partition(".")
            value = query.get(name) if kind == "querystring" else lower.get(name.lower())
            if not value:
                return source
        return None


@dataclass(frozen=True)
class WebSocketApi:
    """One WebSocket API of the template: its routes, each to the function it invokes."""

    logical_id: str
    route_selection_expression: str
    stage: str
    routes: Mapping[str, str]
    """Route key → logical id of the function (Lambda proxy integration)."""
    authorizers: Mapping[str, Authorizer] = field(default_factory=dict)
    """Route key → its authorizer, for routes with `AuthorizationType: CUSTOM`."""

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
        authorizers = {}
        integrations = template.of_type("AWS::ApiGatewayV2::Integration")
        for route in template.of_type("AWS::ApiGatewayV2::Route").values():
            if not refers_to(route.get("ApiId"), name):
                continue
            key = str(route["RouteKey"])
            target = route.get("Target")
            for integration_id, integration in integrations.items():
                if refers_to(target, integration_id):
                    found = function_ids(integration.get("IntegrationUri"), functions)
                    if found:
                        routes[key] = found.pop()
            if template.resolve(route.get("AuthorizationType", "NONE"), refs) == "CUSTOM":
                authorizers[key] = cls._authorizer(template, route.get("AuthorizerId"))
        stage = template.resolve(props.get("StageName", SAM_DEFAULT_STAGE), refs)
        return cls(
            name,
            props["RouteSelectionExpression"],
            stage or SAM_DEFAULT_STAGE,
            routes,
            authorizers,
        )

    @staticmethod
    def _authorizer(template: Template, authorizer_id: Any) -> Authorizer:
        chosen = template.choose(authorizer_id)
        for logical_id, props in template.of_type("AWS::ApiGatewayV2::Authorizer").items():
            if not refers_to(chosen, logical_id):
                continue
            if props.get("AuthorizerType") != "REQUEST":
                raise ValueError(f"{logical_id}: the local gateway runs REQUEST authorizers only")
            found = function_ids(props.get("AuthorizerUri"), template.functions())
            if not found:
                raise ValueError(f"{logical_id}: no function of the template behind it")
            sources = tuple(str(s) for s in props.get("IdentitySource", []))
            return Authorizer(logical_id, found.pop(), sources)
        raise ValueError(f"a CUSTOM route names no authorizer of the template: {authorizer_id!r}")


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
    authorizer: Mapping[str, Any] | None = None
    """What its `$connect` authorizer returned (`principalId` and context): API Gateway
    repeats it as `requestContext.authorizer` in every event of the connection."""

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
            **({"authorizer": dict(connection.authorizer)} if connection.authorizer else {}),
        }

    def method_arn(self, route_key: str) -> str:
        """The `methodArn` an authorizer is asked about (the local account is all zeros)."""
        api = f"{self.api.api_id}/{self.api.stage}"
        return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api}/{route_key}"

    def authorizer_request(
        self,
        connection: ConnectionInfo,
        headers: Iterable[tuple[str, str]],
        query: Iterable[tuple[str, str]] = (),
    ) -> dict[str, Any]:
        """A Lambda REQUEST authorizer's event for `$connect` (events/websocket-authorizer-
        request.json): the handshake's headers and query, and the connect's context."""
        connect = self.connect(connection, headers, query)
        return {
            "type": "REQUEST",
            "methodArn": self.method_arn(CONNECT),
            "headers": connect["headers"],
            "multiValueHeaders": connect["multiValueHeaders"],
            "queryStringParameters": connect.get("queryStringParameters", {}),
            "multiValueQueryStringParameters": connect.get("multiValueQueryStringParameters", {}),
            "stageVariables": {},
            "requestContext": connect["requestContext"],
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
