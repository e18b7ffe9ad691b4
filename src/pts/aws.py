"""AWS clients, created once per process and shared.

boto3 clients are thread-safe; the driver and the fan-out call them from worker threads.
Endpoints come from the standard variables (`AWS_ENDPOINT_URL_DYNAMODB`, …), which is how
the local stack points the very same code at its emulators.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Standard retry mode: exponential backoff with jitter on throttling and 5xx, bounded.
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=64,
)


@cache
def session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    """A shared client for `service` (e.g. `"dynamodb"`), with the project's retry config."""
    # The stubs type `Session.client` per service name (a literal); this takes any name.
    factory: Callable[..., Any] = session().client
    return factory(service, endpoint_url=endpoint_url, config=RETRY_CONFIG)


def dynamodb() -> DynamoDBClient:
    """The shared DynamoDB client, typed."""
    client_: DynamoDBClient = client("dynamodb")
    return client_
