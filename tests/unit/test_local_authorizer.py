"""The local gateway runs the template's `$connect` Lambda REQUEST authorizer as API Gateway
does; the template is read as deployed with `AuthMode=jwt` or `none`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pts.auth import Verifier
from pts.authorizer import ConnectAuthorizer
from pts.local.apigateway_websocket import Authorizer, WebSocketApi
from pts.local.functions import FunctionError
from pts.local.gateway import LocalGateway
from pts.local.issuer import Client, LocalIssuer
from pts.local.template import Template
from tests.unit.test_local_gateway import ALL_ROUTES, Recorder

JWT = {"AuthMode": "jwt", "JwtIssuer": "http://127.0.0.1:8002", "JwtAudience": "pts-chat"}
AUTHORIZER = Authorizer("Auth", "AuthFn", ("route.request.querystring.token",))
API = WebSocketApi(
    "Api", "$request.body.action", "live", dict.fromkeys(ALL_ROUTES, "Fn"), {"$connect": AUTHORIZER}
)


def test_the_template_as_deployed_with_jwt():
    api = WebSocketApi.from_template(Template(parameters=JWT))
    assert api is not None
    assert dict(api.authorizers) == {
        "$connect": Authorizer(
            "WebSocketConnectAuthorizer", "AuthorizerFunction", ("route.request.querystring.token",)
        )
    }
    assert api.routes["$connect"] == "WebSocketFunction"
    template = Template(parameters=JWT)
    assert "AuthorizerFunction" in template.functions()
    env = template.functions()["StreamFunction"].environment
    refs = template.parameter_defaults()
    assert template.resolve(env["PTS_AUTH"], refs) == "jwt"
    assert template.resolve(env["PTS_JWT_ISSUER"], refs) == JWT["JwtIssuer"]
    assert template.resolve(env["PTS_JWT_AUDIENCE"], refs) == "pts-chat"
    assert template.resolve(env["PTS_MAX_ACTIVE_STREAMS_PER_USER"], refs) == "3"


def test_the_template_as_deployed_with_none():
    template = Template()
    api = WebSocketApi.from_template(template)
    assert api is not None and dict(api.authorizers) == {}
    assert "AuthorizerFunction" not in template.functions()
    env = template.functions()["StreamFunction"].environment
    refs = template.parameter_defaults()
    assert template.resolve(env["PTS_MAX_ACTIVE_STREAMS_PER_USER"], refs) == ""
    assert not template.condition("JwtAuth") and not template.condition("CreateUserPool")
    assert Template(parameters={"AuthMode": "jwt"}).condition("CreateUserPool")


def handshake(authorize: Any, query: str = "") -> tuple[int, Recorder]:
    """Open a connection with `query`; the handshake's status and the routes' recorder."""
    routes = Recorder()

    async def main() -> int:
        gateway = LocalGateway(API, {"Fn": routes, "AuthFn": authorize})
        await gateway.start()
        try:
            try:
                async with connect(gateway.url + query) as ws:
                    await ws.send('{"action": "subscribe", "streamId": "x"}')
                    await asyncio.sleep(0.3)
                return 200
            except InvalidStatus as refused:
                return refused.response.status_code
        finally:
            await gateway.stop()

    return asyncio.run(asyncio.wait_for(main(), 20)), routes


def allow(sub: str) -> Any:
    def answer(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "principalId": sub,
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
            "context": {"sub": sub},
        }

    return answer


def test_without_the_identity_source_the_authorizer_is_not_even_asked():
    asked = Recorder(allow("alice"))
    for query in ("", "?token=", "?other=1"):
        status, routes = handshake(asked, query)
        assert status == 401 and routes.events == []
    assert asked.events == []


def test_unauthorized_is_401_and_reaches_no_route():
    def refuse(event: dict[str, Any]) -> Any:
        raise FunctionError("AuthFn", "Exception", "Unauthorized")

    status, routes = handshake(refuse, "?token=abc")
    assert status == 401 and routes.events == []


def test_any_other_failure_is_500():
    def broken(event: dict[str, Any]) -> Any:
        raise FunctionError("AuthFn", "RuntimeError", "the issuer's keys are unavailable")

    assert handshake(broken, "?token=abc")[0] == 500


@pytest.mark.parametrize(
    "answer",
    [
        lambda event: {**allow("a")(event), "policyDocument": {"Statement": []}},
        lambda event: {
            **allow("a")(event),
            "policyDocument": {
                "Statement": [
                    {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "*"},
                    allow("a")(event)["policyDocument"]["Statement"][0],
                ]
            },
        },
        lambda event: {**allow("a")(event), "principalId": ""},
        lambda event: {
            **allow("a")(event),
            "policyDocument": {
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow",
                        "Resource": "arn:aws:execute-api:*:*:otherapi/live/$connect",
                    }
                ]
            },
        },
        lambda event: None,
    ],
)
def test_a_policy_that_does_not_allow_this_connect_is_403(answer: Any):
    status, routes = handshake(answer, "?token=abc")
    assert status == 403 and routes.events == []


def test_an_allowed_connection_carries_the_context_on_every_event():
    asked = Recorder(allow("alice"))
    status, routes = handshake(asked, "?token=abc")
    assert status == 200
    (request,) = asked.events
    assert request["type"] == "REQUEST"
    assert request["methodArn"].endswith("/live/$connect")
    assert request["queryStringParameters"] == {"token": "abc"}
    assert routes.routes() == ["$connect", "subscribe", "$disconnect"]
    for event in routes.events:
        authorizer = event["requestContext"]["authorizer"]
        assert authorizer["sub"] == "alice" and authorizer["principalId"] == "alice"


def test_the_real_authorizer_behind_the_local_gateway():
    issuer = LocalIssuer("http://127.0.0.1:8002", [Client("pts-chat", ("http://x/",))])
    authorizer = ConnectAuthorizer(Verifier(issuer.url, ["pts-chat"], fetch=issuer.fetch))

    def function(event: dict[str, Any]) -> Any:
        """As the sandbox runs it: an exception becomes a FunctionError."""
        try:
            return authorizer.authorize(APIGatewayAuthorizerRequestEvent(event))
        except Exception as error:
            raise FunctionError("AuthFn", type(error).__name__, str(error)) from None

    status, routes = handshake(function, f"?token={issuer.mint('bob')}")
    assert status == 200
    assert routes.events[0]["requestContext"]["authorizer"]["sub"] == "bob"
    assert handshake(function, "?token=not.a.jwt")[0] == 401
