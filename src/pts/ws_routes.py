"""The WebSocket routes: `$connect`, `$disconnect`, `subscribe`, `unsubscribe`, `$default`.

Replies go back to the caller through API Gateway's `@connections` API; their shapes are
`pts.protocol`'s (docs/protocol.md describes them). A bad frame is answered at once with an
`error` and never reaches DynamoDB (an id that cannot be ours is simply unknown), and no
route raises because a post failed: the client recovers by subscribing again.

With `PTS_AUTH=jwt`, `$connect` has a Lambda authorizer (`pts.authorizer`) whose context, the
caller's `sub`, API Gateway hands every later route of the connection: `subscribe` serves
the stream's owner, and anybody signed in when it is shared; anybody else gets the very
`unknown stream` a missing stream gets. That is checked *before* the subscription is stored,
so the fan-out never sends a private stream's deltas to a stranger, not even for a moment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from pts import protocol
from pts.authorizer import connected_sub
from pts.config import Settings
from pts.connections import Connections
from pts.keys import MAX_SEQ
from pts.storage import StreamStore, Tail
from pts.subscriptions import SubscriptionStore

logger = logging.getLogger(__name__)

OK = {"statusCode": 200}
MAX_ECHOED_ID = 256
"""An invalid `streamId` longer than this is not echoed back in its `error`."""


class BadMessage(ValueError):
    """A frame the client should fix; answered with an `error` message."""

    def __init__(self, error: str, stream_id: str | None = None) -> None:
        super().__init__(error)
        self.stream_id = stream_id


def _stream_id(body: dict[str, Any]) -> str:
    stream_id = body.get("streamId")
    if not isinstance(stream_id, str) or not stream_id:
        raise BadMessage("streamId must be a non-empty string")
    return stream_id


def _after(body: dict[str, Any]) -> int:
    after: object = body.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_SEQ:
        raise BadMessage(f"after must be a whole number >= 0 (at most {MAX_SEQ})")
    return after


def _echo(stream_id: str) -> str | None:
    """The id to name in an `error`: only text that can be sent back as it came."""
    if len(stream_id) <= MAX_ECHOED_ID and protocol.is_utf8(stream_id):
        return stream_id
    return None


def subscribe_replies(stream_id: str, tail: Tail, after: int) -> Iterator[protocol.ServerMessage]:
    """The answer to `subscribe`, cut to fit: one `snapshot` of the first batches whose text
    fits `MAX_TEXT_BYTES`, and if some did not, `"more": true` on it, each remaining batch as
    a `delta`, and the `status` if the stream has ended (docs/protocol.md, Size)."""
    status = tail.stream.status
    size, fits = 0, 0
    for _, text in tail.batches:
        size += protocol.text_size(text)
        if size > protocol.MAX_TEXT_BYTES:
            break
        fits += 1
    held, rest = tail.batches[:fits], tail.batches[fits:]
    text = "".join(text for _, text in held)
    if not rest:
        yield protocol.snapshot_message(stream_id, text, status.value, tail.last)
        return
    seq = held[-1][0] if held else after
    yield protocol.snapshot_message(stream_id, text, status.value, seq, more=True)
    for seq, text in rest:
        yield protocol.delta_message(stream_id, seq, text)
    if status.terminal:
        yield protocol.status_message(stream_id, status.value, tail.stream.seq, tail.stream.error)


UNAUTHORIZED = {"statusCode": 401}


@dataclass
class WebSocketRoutes:
    streams: StreamStore
    subscriptions: SubscriptionStore
    connections: Connections
    require_identity: bool = False
    """`PTS_AUTH=jwt`: every connection has an authorizer's `sub`, and streams an owner."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WebSocketRoutes:
        return cls(
            StreamStore(settings.table, retention_days=settings.retention_days),
            SubscriptionStore(settings.connections_table),
            Connections(settings.ws_management_url),
            require_identity=settings.auth == "jwt",
        )

    def handle(self, event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        context = event.request_context
        connection_id = context.connection_id
        route = context.route_key
        sub = connected_sub(event.raw_event.get("requestContext") or {})
        if route == "$connect":
            # Without the authorizer (a misconfigured API) nobody gets in, rather than all.
            return UNAUTHORIZED if self.require_identity and sub is None else OK
        if route == "$disconnect":
            self.subscriptions.remove_connection(connection_id)
            return OK
        try:
            body = self._body(event)
            if route == "subscribe":
                self.subscribe(connection_id, _stream_id(body), _after(body), sub)
            elif route == "unsubscribe":
                self.unsubscribe(connection_id, _stream_id(body))
            else:
                raise BadMessage(
                    'unknown action: send {"action": "subscribe", "streamId": "…"} '
                    'or {"action": "unsubscribe", "streamId": "…"}'
                )
        except BadMessage as error:
            self._send(connection_id, protocol.error_message(str(error), error.stream_id))
        return OK

    @staticmethod
    def _body(event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        try:
            text = event.decoded_body or ""
        except ValueError as error:  # a binary frame that is not UTF-8
            raise BadMessage("message is not valid UTF-8") from error
        try:
            body = protocol.load_json(text)
        except ValueError as error:
            raise BadMessage(f"message is {error}") from error
        if not isinstance(body, dict):
            raise BadMessage("message must be a JSON object")
        return body

    def subscribe(
        self, connection_id: str, stream_id: str, after: int, sub: str | None = None
    ) -> None:
        if not protocol.is_valid_id(stream_id):
            raise BadMessage("unknown stream", _echo(stream_id))
        if self.require_identity:
            # Owner and sharing never change, so checking them before registering is safe.
            stream = self.streams.get_stream(stream_id) if sub is not None else None
            if stream is None or not stream.readable_by(sub or ""):
                raise BadMessage("unknown stream", stream_id)
        # Register first, read second: a batch written in between reaches this viewer
        # through the fan-out (maybe also in the snapshot; the client drops seq <= last).
        self.subscriptions.subscribe(connection_id, stream_id)
        tail = self.streams.read_batches(stream_id, after)
        if tail is None or tail.last < after:
            self.subscriptions.unsubscribe(connection_id, stream_id)
            if tail is None:
                raise BadMessage("unknown stream", stream_id)
            raise BadMessage("after is past the stream's last batch", stream_id)
        for message in subscribe_replies(stream_id, tail, after):
            if not self._send(connection_id, message):
                return  # the client subscribes again after a gap or a reconnect

    def unsubscribe(self, connection_id: str, stream_id: str) -> None:
        if protocol.is_valid_id(stream_id):  # any other id has no subscription to drop
            self.subscriptions.unsubscribe(connection_id, stream_id)

    def _send(self, connection_id: str, message: protocol.ServerMessage) -> bool:
        """Post one reply; False if it did not arrive. Never raises: a gone connection (410)
        loses its subscriptions, any other failure is logged."""
        try:
            if self.connections.send(connection_id, message):
                return True
            self.subscriptions.remove_connection(connection_id)  # it left meanwhile
        except Exception:
            logger.exception("posting a reply to %s", connection_id)
        return False
