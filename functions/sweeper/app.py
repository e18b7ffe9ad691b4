"""Scheduled (EventBridge) every minute: time out stale streams."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from pts.sweeper import sweep_from_env

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return sweep_from_env().as_dict()
