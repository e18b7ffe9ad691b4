"""API Gateway WebSocket routes: $connect, $disconnect, subscribe, unsubscribe, $default."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayWebSocketEvent,
    event_source,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts import observability
from pts.config import Settings
from pts.ws_routes import WebSocketRoutes

logger = observability.logger()
tracer = observability.tracer()
routes = WebSocketRoutes.from_settings(Settings.from_env())


# Never log the event: a `$connect` carries the token in its query string.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    with observability.stream_context(observability.stream_id_of(event.body)):
        return routes.handle(event)
