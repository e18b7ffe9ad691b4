"""The `$connect` authorizer, fed with events/websocket-authorizer-request.json."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)

from pts.auth import KeysUnavailable, Verifier
from pts.authorizer import ConnectAuthorizer, connected_sub
from pts.local.issuer import Client, LocalIssuer
from pts.local.sandbox import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:8002"
ENV = {"PTS_AUTH": "jwt", "PTS_JWT_ISSUER": URL, "PTS_JWT_AUDIENCE": "pts-chat"}


def sample(token: str | None = None) -> dict[str, Any]:
    """The sample event; its own token is a forgery (a made-up signature) unless replaced."""
    event = json.loads((ROOT / "events" / "websocket-authorizer-request.json").read_text())
    if token is not None:
        event["queryStringParameters"]["token"] = token
        event["multiValueQueryStringParameters"]["token"] = [token]
    return event


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer(URL, [Client("pts-chat", ("http://127.0.0.1:8000/",))])


@pytest.fixture
def authorizer(issuer: LocalIssuer) -> ConnectAuthorizer:
    return ConnectAuthorizer(Verifier(URL, ["pts-chat"], fetch=issuer.fetch))


def authorize(authorizer: ConnectAuthorizer, event: dict[str, Any]) -> dict[str, Any]:
    return authorizer.authorize(APIGatewayAuthorizerRequestEvent(event))


def assert_unauthorized(authorizer: ConnectAuthorizer, event: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$") as caught:
        authorize(authorizer, event)
    assert type(caught.value) is Exception, "API Gateway answers 401 for exactly this"


def test_the_sample_is_a_websocket_connect_authorizer_request():
    event = APIGatewayAuthorizerRequestEvent(sample())
    assert event.get_type == "REQUEST"
    assert event.method_arn.endswith("/live/$connect")
    assert "token" in event.query_string_parameters
    # The same request context the `$connect` route then gets (minus the authorizer's output).
    connect = json.loads((ROOT / "events" / "websocket-connect.json").read_text())
    assert event["requestContext"].keys() == connect["requestContext"].keys()
    assert event["requestContext"]["routeKey"] == "$connect"


def test_a_valid_token_allows_this_connect_and_passes_the_sub(authorizer, issuer):
    event = sample(issuer.mint("alice"))
    assert authorize(authorizer, event) == {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": [event["methodArn"]],
                }
            ],
        },
        "context": {"sub": "alice"},
    }


def test_the_partition_is_kept(authorizer, issuer):
    event = sample(issuer.mint("alice"))
    event["methodArn"] = "arn:aws-cn:execute-api:cn-north-1:123456789012:a1b2c3d4e5/live/$connect"
    (statement,) = authorize(authorizer, event)["policyDocument"]["Statement"]
    assert statement["Resource"] == [event["methodArn"]]


def test_the_samples_forged_token_is_refused(authorizer):
    assert_unauthorized(authorizer, sample())


@pytest.mark.parametrize("query", [None, {}, {"token": ""}, {"client": "pts-watch"}])
def test_no_token(authorizer, query):
    event = sample()
    event["queryStringParameters"] = query
    assert_unauthorized(authorizer, event)


def test_a_header_is_not_a_substitute_for_the_query_parameter(authorizer, issuer):
    event = sample()
    del event["queryStringParameters"]["token"]
    event["headers"]["Authorization"] = f"Bearer {issuer.mint('alice')}"
    assert_unauthorized(authorizer, event)


def test_an_expired_token(authorizer, issuer):
    assert_unauthorized(authorizer, sample(issuer.mint("alice", exp=1)))


def test_another_audience(authorizer, issuer):
    assert_unauthorized(authorizer, sample(issuer.mint("alice", aud="other-app")))


def test_garbage(authorizer):
    assert_unauthorized(authorizer, sample("x" * 100_000))
    assert_unauthorized(authorizer, sample("a.b.c"))


def test_keys_unavailable_is_not_a_401(issuer):
    def down(url: str) -> Any:
        raise KeysUnavailable(f"could not fetch {url}")

    authorizer = ConnectAuthorizer(Verifier(URL, ["pts-chat"], fetch=down))
    with pytest.raises(RuntimeError, match="unavailable"):
        authorize(authorizer, sample(issuer.mint("alice")))


def test_from_env_needs_jwt_mode():
    assert isinstance(ConnectAuthorizer.from_env(ENV), ConnectAuthorizer)
    with pytest.raises(ValueError, match="PTS_AUTH=jwt"):
        ConnectAuthorizer.from_env({"PTS_AUTH": "none"})


# --- the routes' side -------------------------------------------------------------------------


def test_connected_sub_reads_the_authorizer_context():
    context = sample()["requestContext"]
    assert connected_sub(context) is None
    context["authorizer"] = {"principalId": "alice", "sub": "alice", "integrationLatency": 5}
    assert connected_sub(context) == "alice"
    context["authorizer"] = {"sub": ""}
    assert connected_sub(context) is None


# --- the Lambda handler -----------------------------------------------------------------------


@pytest.fixture
def handler_module(monkeypatch, authorizer):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")  # must not leak the token anyway
    path = ROOT / "functions" / "authorizer" / "app.py"
    spec = importlib.util.spec_from_file_location("_pts_test_authorizer_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    module.authorizer = authorizer  # the same code, with keys served in-process
    return module


def test_the_handler_allows_and_refuses(handler_module, issuer, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    good, forged = issuer.mint("alice"), sample()["queryStringParameters"]["token"]
    context = LambdaContext(
        function_name="AuthorizerFunction",
        function_version="$LATEST",
        memory_limit_in_mb=128,
        log_group_name="/aws/lambda/AuthorizerFunction",
        log_stream_name="local",
        aws_request_id="c6af9ac6-7b61-11e6-9a41-93e812345678",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:AuthorizerFunction",
        deadline_ms=int(time.time() * 1000) + 10_000,
    )
    response = handler_module.handler(sample(good), context)
    assert response["context"] == {"sub": "alice"}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler_module.handler(copy.deepcopy(sample()), context)
    logged = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    for token in (good, forged):
        assert token.rsplit(".", 1)[1] not in logged
