"""The WebSocket API's `$connect` Lambda REQUEST authorizer, in `PTS_AUTH=jwt` mode.

Browsers cannot set headers on a WebSocket, so the chat page passes its token as the `token`
query parameter. It is verified by the very `Verifier` the HTTP API uses; a refused token is
`Exception("Unauthorized")`, which API Gateway turns into a 401 before any route runs. An
accepted one yields an IAM policy allowing this `$connect` and the context `{"sub": …}`, which
API Gateway hands every later route of the connection as `requestContext.authorizer.sub` —
so `subscribe` checks ownership without verifying the token again.

If the issuer's keys cannot be fetched the token is neither good nor bad: that raises a
different error, a 500 the client may retry, rather than a 401 telling it to sign in again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponseWebSocket,
    parse_api_gateway_arn,
)

from pts.auth import KeysUnavailable, Unauthorized, Verifier

logger = logging.getLogger(__name__)

TOKEN_PARAMETER = "token"
"""The query-string parameter that carries the JWT (`wss://…/live?token=…`)."""
CONTEXT_SUB = "sub"
"""The authorizer context key the routes read the caller's `sub` from."""


def connected_sub(request_context: Mapping[str, Any]) -> str | None:
    """The `sub` an authorizer gave this connection (None when there was no authorizer).

    API Gateway repeats the `$connect` authorizer's context on every route of the connection
    under `requestContext.authorizer`.
    """
    authorizer = request_context.get("authorizer") or {}
    sub = authorizer.get(CONTEXT_SUB)
    return sub if isinstance(sub, str) and sub else None


class ConnectAuthorizer:
    """Turns a `$connect` REQUEST authorizer event into an allow policy, or refuses it."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConnectAuthorizer:
        """The authorizer is only deployed with `AuthMode=jwt`; anything else is a mistake."""
        verifier = Verifier.from_env(os.environ if env is None else env)
        if verifier is None:
            raise ValueError("the $connect authorizer needs PTS_AUTH=jwt")
        return cls(verifier)

    def authorize(self, event: APIGatewayAuthorizerRequestEvent) -> dict[str, Any]:
        token = (event.get("queryStringParameters") or {}).get(TOKEN_PARAMETER)
        try:
            identity = self.verifier.verify(token)
        except KeysUnavailable as error:
            logger.warning("cannot authorize a WebSocket connect: %s", error)
            raise RuntimeError("the issuer's keys are unavailable") from None
        except Unauthorized as error:
            logger.info("refused a WebSocket connect: %s", error)
            # The exact message API Gateway maps to 401 (anything else is a 500).
            raise Exception("Unauthorized") from None
        # `from_route_arn` would drop the partition (aws-cn, aws-us-gov): build it from the parts.
        arn = parse_api_gateway_arn(event.method_arn, is_websocket_authorizer=True)
        policy = APIGatewayAuthorizerResponseWebSocket(
            principal_id=identity.sub,
            region=arn.region,
            aws_account_id=arn.aws_account_id,
            api_id=arn.api_id,
            stage=arn.stage,
            context={CONTEXT_SUB: identity.sub},
            partition=arn.partition,
        )
        policy.allow_route(arn.resource)  # this `$connect`, nothing else
        return policy.asdict()
