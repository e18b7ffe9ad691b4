"""Scheduled (EventBridge) every minute: time out stale streams."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pts import observability
from pts.sweeper import sweep_from_env

logger = observability.logger()
tracer = observability.tracer()
metrics = observability.metrics


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    return sweep_from_env().as_dict()
