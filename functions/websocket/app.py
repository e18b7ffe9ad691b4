"""API Gateway WebSocket routes: $connect, $disconnect, subscribe, unsubscribe, $default."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayWebSocketEvent,
    event_source,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts.config import Settings
from pts.ws_routes import WebSocketRoutes

logger = Logger()
routes = WebSocketRoutes.from_settings(Settings.from_env())


@logger.inject_lambda_context
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    return routes.handle(event)
