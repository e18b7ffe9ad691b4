"""The local Lambda `Invoke` API, through boto3's own `lambda` client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from pts.local.functions import FunctionError
from pts.local.lambda_endpoint import LambdaEndpoint, function_name


class FakeFunction:
    """What the endpoint needs of a `LocalFunction`."""

    def __init__(self, name: str, fail: int = 0) -> None:
        self.name = name
        self.events: list[Any] = []
        self.fail = fail
        self.called = threading.Event()

    def invoke(self, event: Any) -> Any:
        self.events.append(event)
        self.called.set()
        if self.fail:
            self.fail -= 1
            raise FunctionError(self.name, "ValueError", "bad event")
        return {"echo": event}


@pytest.fixture
def served() -> Iterator[tuple[Any, dict[str, FakeFunction], LambdaEndpoint]]:
    functions = {"Worker": FakeFunction("Worker"), "Broken": FakeFunction("Broken", fail=99)}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    endpoint = LambdaEndpoint(functions, retry_attempts={"Broken": 0})  # type: ignore[arg-type]
    asyncio.run_coroutine_threadsafe(endpoint.start(), loop).result(5)
    client = boto3.client(
        "lambda",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}),
    )
    yield client, functions, endpoint
    asyncio.run_coroutine_threadsafe(endpoint.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_names_arns_and_partial_arns() -> None:
    assert function_name("Worker") == "Worker"
    assert function_name("arn:aws:lambda:us-east-1:123456789012:function:Worker:live") == "Worker"
    assert function_name("123456789012:function:Worker") == "Worker"


def test_event_invocations_are_queued_and_answered_202(served) -> None:
    client, functions, _ = served
    answer = client.invoke(FunctionName="Worker", InvocationType="Event", Payload=b'{"n": 1}')
    assert answer["StatusCode"] == 202
    assert functions["Worker"].called.wait(5)
    assert functions["Worker"].events == [{"n": 1}]


def test_request_response_returns_the_result_or_the_error(served) -> None:
    client, _, _ = served
    answer = client.invoke(
        FunctionName="arn:aws:lambda:us-east-1:0:function:Worker", Payload=b"[1]"
    )
    assert answer["StatusCode"] == 200 and json.load(answer["Payload"]) == {"echo": [1]}
    failed = client.invoke(FunctionName="Broken", Payload=b"{}")
    assert failed["FunctionError"] == "Unhandled"
    assert json.load(failed["Payload"])["errorType"] == "ValueError"


def test_unknown_functions_and_oversized_events_are_refused(served) -> None:
    client, functions, _ = served
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="Nope", InvocationType="Event", Payload=b"{}")
    big = json.dumps({"x": "a" * 300_000}).encode()
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName="Worker", InvocationType="Event", Payload=big)
    assert client.invoke(FunctionName="Worker", InvocationType="DryRun")["StatusCode"] == 204
    time.sleep(0.1)
    assert functions["Worker"].events == []


def test_a_failed_event_is_retried_as_configured_then_dropped(served, caplog) -> None:
    client, functions, _ = served
    client.invoke(FunctionName="Broken", InvocationType="Event", Payload=b"{}")
    deadline = time.monotonic() + 5
    while "dropped" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(functions["Broken"].events) == 1  # MaximumRetryAttempts 0
    assert "dropped" in caplog.text
