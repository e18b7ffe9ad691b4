"""DynamoDB stream (StreamsTable) → delta and status messages to WebSocket subscribers.

`handler` is the fan-out (FanoutFunction); `worker` posts one slice of a big audience
(FanoutWorkerFunction, invoked asynchronously by the fan-out: `pts.fanout_workers`).
"""

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts import observability
from pts.config import Settings
from pts.fanout import Fanout
from pts.fanout_workers import post_slice

logger = observability.logger()
tracer = observability.tracer()
metrics = observability.metrics
fanout = Fanout.from_settings(Settings.from_env())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return fanout.handle(event)


@logger.inject_lambda_context
def worker(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    delivery = post_slice(fanout, event)
    return {"sent": delivery.sent, "gone": len(delivery.gone), "givenUp": len(delivery.given_up)}
