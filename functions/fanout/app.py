"""DynamoDB stream (StreamsTable) → delta and status messages to WebSocket subscribers."""

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts import observability
from pts.config import Settings
from pts.fanout import Fanout

logger = observability.logger()
tracer = observability.tracer()
metrics = observability.metrics
fanout = Fanout.from_settings(Settings.from_env())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return fanout.handle(event)
