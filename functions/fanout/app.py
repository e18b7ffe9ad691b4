"""DynamoDB stream (StreamsTable) → delta and status messages to WebSocket subscribers."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts.config import Settings
from pts.fanout import Fanout

logger = Logger()
fanout = Fanout.from_settings(Settings.from_env())


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return fanout.handle(event)
