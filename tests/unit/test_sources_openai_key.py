"""The openai source's key read from Secrets Manager or SSM Parameter Store (moto), as on AWS:
found where the template says, cached, read again after a rotation, never logged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pts import aws
from pts.sources.openai import OpenAISource, OpenAISourceError, StoredKey
from tests.unit.test_sources_openai import API_KEY, PIECES, FakeOpenAI, collect, with_server

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's Secrets Manager and SSM, with fresh shared clients."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.client.cache_clear()
    aws.session.cache_clear()
    with mock_aws():
        yield
    aws.client.cache_clear()
    aws.session.cache_clear()


def secrets() -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def ssm() -> Any:
    return boto3.client("ssm", region_name=REGION)


def a_secret(value: str) -> str:
    return secrets().create_secret(Name="pts/openai-api-key", SecretString=value)["ARN"]


def test_secret_named_by_arn_or_name() -> None:
    arn = a_secret(API_KEY)
    source = OpenAISource.from_env({"PTS_OPENAI_API_KEY_SECRET": arn})
    assert isinstance(source.api_key, StoredKey)
    assert source.api_key() == API_KEY
    assert StoredKey(secret="pts/openai-api-key")() == API_KEY


def test_secret_in_key_value_form() -> None:
    arn = a_secret(json.dumps({"api_key": f" {API_KEY}\n"}))
    assert StoredKey(secret=arn)() == API_KEY


def test_securestring_parameter() -> None:
    ssm().put_parameter(Name="/pts/openai-api-key", Value=API_KEY, Type="SecureString")
    source = OpenAISource.from_env({"PTS_OPENAI_API_KEY_PARAMETER": "/pts/openai-api-key"})
    assert isinstance(source.api_key, StoredKey)
    assert source.api_key() == API_KEY


def test_the_key_is_cached_until_max_age_or_a_refresh() -> None:
    arn = a_secret("sk-old")
    key = StoredKey(secret=arn)
    assert key() == "sk-old"
    secrets().put_secret_value(SecretId=arn, SecretString="sk-new")
    assert key() == "sk-old"  # within max_age: no request
    assert key(refresh=True) == "sk-new"
    assert StoredKey(secret=arn, max_age=0)() == "sk-new"


def test_nothing_is_read_before_the_first_request() -> None:
    source = OpenAISource.from_env({"PTS_OPENAI_API_KEY_SECRET": "pts/not-created-yet"})
    assert "pts/not-created-yet" in repr(source.api_key)
    a_secret(API_KEY)  # created after the source (a cold start), found at the first request
    assert StoredKey(secret="pts/openai-api-key")() == API_KEY


def test_a_missing_or_empty_store_is_a_clear_source_error() -> None:
    with pytest.raises(OpenAISourceError, match="secret pts/missing"):
        StoredKey(secret="pts/missing")()
    with pytest.raises(OpenAISourceError, match="parameter /pts/missing"):
        StoredKey(parameter="/pts/missing")()
    arn = a_secret(json.dumps({"other": "x"}))
    with pytest.raises(OpenAISourceError, match="holds no API key"):
        StoredKey(secret=arn)()


def test_only_one_way_to_name_the_key() -> None:
    with pytest.raises(ValueError, match="only one of"):
        OpenAISource.from_env(
            {"PTS_OPENAI_API_KEY": "k", "PTS_OPENAI_API_KEY_SECRET": "pts/openai-api-key"}
        )
    with pytest.raises(ValueError):
        StoredKey()
    # Empty values, as the template passes when no store is named, count as unset.
    source = OpenAISource.from_env(
        {
            "PTS_OPENAI_API_KEY_SECRET": "",
            "PTS_OPENAI_API_KEY_PARAMETER": "",
            "PTS_OPENAI_API_KEY": "k",
        }
    )
    assert source.api_key == "k"


def test_requests_carry_the_stored_key_and_a_rotation_is_picked_up() -> None:
    arn = a_secret("sk-revoked")
    source = OpenAISource.from_env({"PTS_OPENAI_API_KEY_SECRET": arn})
    assert source.api_key() == "sk-revoked"  # cached, then rotated
    secrets().put_secret_value(SecretId=arn, SecretString=API_KEY)

    async def test(fake: FakeOpenAI) -> None:
        source.base_url = fake.base_url
        assert await collect(source) == PIECES
        auth = [r.headers["authorization"] for r in fake.received]
        assert auth == ["Bearer sk-revoked", f"Bearer {API_KEY}"]  # 401, read again, retried
        assert await collect(source) == PIECES
        assert len(fake.received) == 3  # the fresh key is cached now

    with_server(test)
    assert API_KEY not in repr(source)


def test_a_key_that_stays_wrong_is_refused_once_more_then_reported() -> None:
    arn = a_secret("sk-wrong")
    source = OpenAISource.from_env({"PTS_OPENAI_API_KEY_SECRET": arn})

    async def test(fake: FakeOpenAI) -> None:
        source.base_url = fake.base_url
        with pytest.raises(OpenAISourceError) as refused:
            await collect(source)
        assert refused.value.status == 401
        assert len(fake.received) == 2

    with_server(test)
