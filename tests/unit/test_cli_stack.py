"""`pts --stack-name NAME …`: the URLs come from the stack's CloudFormation outputs (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from pts import cli

FUNCTION_URL = "https://abcdefghijklmnop.lambda-url.eu-west-1.on.aws/"
WS_URL = "wss://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod"


def stack_template(outputs: dict[str, str]) -> str:
    return json.dumps(
        {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items()},
        }
    )


@pytest.fixture
def cloudformation(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("cloudformation", region_name="eu-west-1")
        client.create_stack(
            StackName="pts-demo",
            TemplateBody=stack_template(
                {"StreamFunctionUrl": FUNCTION_URL, "WebSocketUrl": WS_URL, "Other": "x"}
            ),
        )
        client.create_stack(
            StackName="unrelated", TemplateBody=stack_template({"Something": "else"})
        )
        yield client


def test_reads_the_urls_from_the_outputs(cloudformation: Any):
    endpoints = cli.stack_endpoints("pts-demo", client=cloudformation)
    assert endpoints == cli.Endpoints(FUNCTION_URL.rstrip("/"), WS_URL)
    # The real client, made from the region given.
    assert cli.stack_endpoints("pts-demo", region="eu-west-1") == endpoints


def test_a_missing_stack_or_output_is_a_clear_error(cloudformation: Any):
    with pytest.raises(cli.StackError, match="stack 'nope': Stack with id nope does not exist"):
        cli.stack_endpoints("nope", client=cloudformation)
    with pytest.raises(cli.StackError, match="has no output StreamFunctionUrl, WebSocketUrl"):
        cli.stack_endpoints("unrelated", client=cloudformation)


def test_commands_use_the_stacks_urls(
    cloudformation: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("PTS_HTTP_URL", "http://127.0.0.1:9")  # the stack wins over these
    asked: list[str] = []

    def get(url: str, **kwargs: Any) -> httpx.Response:
        asked.append(url)
        body = {"streamId": "s1", "text": "stored text", "status": "done", "seq": 1}
        return httpx.Response(200, json=body)

    monkeypatch.setattr(cli.httpx, "get", get)
    code = cli.main(["--stack-name", "pts-demo", "--region", "eu-west-1", "get", "s1"])
    assert code == 0
    assert asked == [f"{FUNCTION_URL}streams/s1"]
    assert capsys.readouterr().out == "stored text\n"

    watched: list[tuple[str, str, str | None]] = []

    class Watch:
        def __init__(self, url: str, stream_id: str, http_url: str | None = None) -> None:
            watched.append((url, stream_id, http_url))

        def run(self) -> int:
            return 0

    monkeypatch.setattr(cli, "Watch", Watch)
    assert cli.main(["--stack-name", "pts-demo", "--region", "eu-west-1", "watch", "s1"]) == 0
    assert watched == [(WS_URL, "s1", FUNCTION_URL.rstrip("/"))]


def test_an_unknown_stack_exits_2(cloudformation: Any, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["--stack-name", "nope", "--region", "eu-west-1", "get", "s1"]) == 2
    assert "pts: stack 'nope'" in capsys.readouterr().err
