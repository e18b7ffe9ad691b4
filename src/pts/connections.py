"""Send messages to WebSocket clients: API Gateway's `@connections` API.

The fan-out makes one call per viewer per batch, so the cost of one call is the cost of the
product at scale. boto3's `apigatewaymanagementapi` client spends about 3 ms of CPU on each
`post_to_connection` (endpoint rules, validation, user agent, hooks); the same request built
here, signed by botocore's own `SigV4Auth` and sent on a urllib3 pool, about 1 ms (measured
on this project's 2-core dev box against the local `@connections` server). Same method,
path and body as boto3's, same signature scheme, same credentials chain.
"""

from __future__ import annotations

import random
import time
from urllib.parse import quote

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from pts import aws, protocol

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 4
RETRY_SECONDS = 2.0
"""No retry of a post starts later than this after its first attempt."""
TIMEOUT = urllib3.Timeout(connect=3.0, read=10.0)
"""Per attempt: 3 s to connect, 10 s for the answer (`Timeout(3, 10)` would be 3 s in total)."""


class PostFailed(Exception):
    """`@connections` refused a message for a reason other than a gone connection."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"@connections answered {status}: {body[:200]!r}")
        self.status = status


class Connections:
    """`POST {endpoint}/@connections/{id}`; knows a gone connection (410) from a failure."""

    def __init__(self, endpoint_url: str | None, *, pool_size: int = 64) -> None:
        self.endpoint_url = (endpoint_url or "").rstrip("/")
        self._pool = urllib3.PoolManager(
            maxsize=pool_size, block=True, retries=False, timeout=TIMEOUT
        )

    encode = staticmethod(protocol.encode)
    """Kept for callers that encode before sending; `pts.protocol.encode` is the owner."""

    def send(self, connection_id: str, message: protocol.ServerMessage | bytes) -> bool:
        """Post one message; False if the connection is gone, raise on other errors.

        Throttling, 5xx and network errors (timeouts, resets) are retried with jittered
        exponential backoff, briefly: no attempt starts after `RETRY_SECONDS`, so one bad
        connection cannot hold its caller for long. Anything else (a 413, say) is final.
        """
        if not self.endpoint_url:
            raise RuntimeError("PTS_WS_MANAGEMENT_URL is not set: where is the WebSocket API?")
        data = message if isinstance(message, bytes) else protocol.encode(message)
        url = f"{self.endpoint_url}/@connections/{quote(connection_id, safe='')}"
        deadline = time.monotonic() + RETRY_SECONDS
        for attempt in range(MAX_ATTEMPTS):
            final = attempt == MAX_ATTEMPTS - 1 or time.monotonic() >= deadline
            try:
                status, body = self._post(url, data)
            except urllib3.exceptions.HTTPError:
                if final:
                    raise
            else:
                if status < 300:
                    return True
                if status == 410:
                    return False
                if status not in RETRYABLE or final:
                    raise PostFailed(status, body)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    def _post(self, url: str, data: bytes) -> tuple[int, bytes]:
        session = aws.session()
        found = session.get_credentials()
        if found is None:
            raise RuntimeError("no AWS credentials to sign @connections requests with")
        credentials = found.get_frozen_credentials()
        request = AWSRequest(method="POST", url=url, data=data)
        SigV4Auth(credentials, "execute-api", session.region_name or "us-east-1").add_auth(request)
        response = self._pool.request(
            "POST", url, body=data, headers=dict(request.headers.items()), preload_content=True
        )
        return response.status, response.data
