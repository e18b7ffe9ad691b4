"""Send messages to WebSocket clients through API Gateway's `@connections` API."""

from __future__ import annotations

import json
from typing import Any

from pts import aws


class Connections:
    """`post_to_connection` with JSON encoding; knows a gone connection from a failure."""

    def __init__(self, endpoint_url: str | None, *, client: Any = None) -> None:
        self.endpoint_url = endpoint_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            if not self.endpoint_url:
                raise RuntimeError("PTS_WS_MANAGEMENT_URL is not set: where is the WebSocket API?")
            self._client = aws.client("apigatewaymanagementapi", self.endpoint_url)
        return self._client

    @staticmethod
    def encode(message: dict[str, Any]) -> bytes:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()

    def send(self, connection_id: str, message: dict[str, Any] | bytes) -> bool:
        """Post one message; False if the connection is gone (410), raise on other errors."""
        data = message if isinstance(message, bytes) else self.encode(message)
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self.client.exceptions.GoneException:
            return False
        return True
