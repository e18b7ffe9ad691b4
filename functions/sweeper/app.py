"""Scheduled (EventBridge) every minute: time out stale streams."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts.sweeper import sweep_from_env

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    return sweep_from_env().as_dict()
