"""API Gateway WebSocket `$connect` authorizer: the `token` query parameter → the caller's `sub`."""

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts import observability
from pts.authorizer import ConnectAuthorizer

logger = observability.logger()
tracer = observability.tracer()
authorizer = ConnectAuthorizer.from_env()


# Never log the event, whatever POWERTOOLS_LOGGER_LOG_EVENT says: it carries the token; nor
# put the response (the caller's identity, the policy) in the trace.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict:
    return authorizer.authorize(event)
