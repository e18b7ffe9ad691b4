"""API Gateway WebSocket `$connect` authorizer: the `token` query parameter → the caller's `sub`."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts.authorizer import ConnectAuthorizer

logger = Logger()
authorizer = ConnectAuthorizer.from_env()


# Never log the event, whatever POWERTOOLS_LOGGER_LOG_EVENT says: it carries the token.
@logger.inject_lambda_context(log_event=False)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict:
    return authorizer.authorize(event)
