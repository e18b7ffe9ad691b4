"""Shared fixtures: moto-backed tables made from `template.yaml`'s own definitions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pts import aws
from pts.local.dynamodb import create_table_request
from pts.local.template import Template
from pts.storage import StreamStore

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def template() -> Template:
    return Template()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # The shared session caches the credentials it found first (an earlier test's, say).
    aws.session.cache_clear()
    aws.client.cache_clear()


@pytest.fixture
def dynamodb(aws_credentials: None, template: Template) -> Iterator[Any]:
    """A moto DynamoDB client with the template's tables, named after their logical ids."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for logical_id, properties in template.tables().items():
            client.create_table(**create_table_request(logical_id, properties))
        yield client


@pytest.fixture
def store(dynamodb: Any) -> StreamStore:
    return StreamStore("StreamsTable", client=dynamodb)
