"""The WebSocket routes: `$connect`, `$disconnect`, `subscribe`, `unsubscribe`, `$default`.

Replies go back to the caller through API Gateway's `@connections` API; their shapes are
`pts.protocol`'s (docs/protocol.md describes them)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from pts import protocol
from pts.config import Settings
from pts.connections import Connections
from pts.storage import StreamStore
from pts.subscriptions import SubscriptionStore

logger = logging.getLogger(__name__)

OK = {"statusCode": 200}


class BadMessage(ValueError):
    """A frame the client should fix; answered with an `error` message."""


def _stream_id(body: dict[str, Any]) -> str:
    stream_id = body.get("streamId")
    if not isinstance(stream_id, str) or not 0 < len(stream_id) <= protocol.MAX_ID_LENGTH:
        raise BadMessage("streamId must be a non-empty string")
    return stream_id


def _after(body: dict[str, Any]) -> int:
    after: object = body.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise BadMessage("after must be a whole number >= 0")
    return after


@dataclass
class WebSocketRoutes:
    streams: StreamStore
    subscriptions: SubscriptionStore
    connections: Connections

    @classmethod
    def from_settings(cls, settings: Settings) -> WebSocketRoutes:
        return cls(
            StreamStore(settings.table, retention_days=settings.retention_days),
            SubscriptionStore(settings.connections_table),
            Connections(settings.ws_management_url),
        )

    def handle(self, event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        context = event.request_context
        connection_id = context.connection_id
        route = context.route_key
        if route == "$connect":
            return OK
        if route == "$disconnect":
            self.subscriptions.remove_connection(connection_id)
            return OK
        try:
            body = self._body(event)
            if route == "subscribe":
                self.subscribe(connection_id, _stream_id(body), _after(body))
            elif route == "unsubscribe":
                self.subscriptions.unsubscribe(connection_id, _stream_id(body))
            else:
                raise BadMessage(
                    'unknown action: send {"action": "subscribe", "streamId": "…"} '
                    'or {"action": "unsubscribe", "streamId": "…"}'
                )
        except BadMessage as error:
            self.connections.send(connection_id, protocol.error_message(str(error)))
        return OK

    @staticmethod
    def _body(event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        try:
            body = json.loads(event.decoded_body or "")
        except (ValueError, UnicodeDecodeError) as error:
            raise BadMessage("message is not valid JSON") from error
        if not isinstance(body, dict):
            raise BadMessage("message must be a JSON object")
        return body

    def subscribe(self, connection_id: str, stream_id: str, after: int) -> None:
        # Register first, read second: a batch written in between reaches this viewer
        # through the fan-out (maybe also in the snapshot; the client drops seq <= last).
        self.subscriptions.subscribe(connection_id, stream_id)
        body = self.streams.read(stream_id, after)
        if body is None:
            self.subscriptions.unsubscribe(connection_id, stream_id)
            self.connections.send(
                connection_id, protocol.error_message("unknown stream", stream_id)
            )
            return
        snapshot = protocol.snapshot_message(stream_id, body.text, body.status.value, body.seq)
        if not self.connections.send(connection_id, snapshot):
            self.subscriptions.remove_connection(connection_id)  # it left meanwhile
