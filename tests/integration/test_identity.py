"""Identity against the running stack in `PTS_AUTH=jwt` mode: the local issuer, the HTTP API,
the WebSocket `$connect` authorizer (the template's, run by the local gateway) and `subscribe`.

Every attack here is sent for real, over HTTP or a WebSocket handshake, to the very handlers
Lambda runs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pts import cli
from pts.client import follow
from pts.local.functions import Invocation
from pts.local.issuer import LocalIssuer
from tests.forged_tokens import forged
from tests.support import RunningStack, running_stack

JWT_ENVIRONMENT = {
    "PTS_AUTH": "jwt",
    "PTS_MAX_ACTIVE_STREAMS_PER_USER": "3",
    # Rotations are picked up on an unknown kid, at most this often (60 s by default).
    "PTS_JWT_JWKS_MIN_REFRESH_SECONDS": "1",
}


@pytest.fixture(scope="module")
def jwt_stack() -> Iterator[RunningStack]:
    with running_stack(JWT_ENVIRONMENT) as stack:
        assert httpx.get(f"{stack.http_url}/healthz").status_code == 200
        yield stack


@pytest.fixture(scope="module")
def issuer(jwt_stack: RunningStack) -> LocalIssuer:
    assert jwt_stack.stack.issuer is not None
    return jwt_stack.stack.issuer


@pytest.fixture
def http(jwt_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=jwt_stack.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(jwt_stack: RunningStack) -> dict[str, str]:
    """Signed in through the issuer's real PKCE flow, as `pts token` does it."""
    return {user: _pts_token(user) for user in ("alice", "bob", "carol", "dave")}


def _pts_token(user: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["token", "--user", user]) == 0
    return out.getvalue().strip()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(http: httpx.Client, token: str, prompt: str, **extra: Any) -> dict[str, Any]:
    response = http.post("/chats", json={"prompt": prompt, **extra}, headers=auth(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def items_in_table() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    return client.scan(TableName=os.environ["PTS_TABLE"])["Items"]


def with_token(url: str, token: str | None) -> str:
    return url if token is None else f"{url}?token={token}"


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


# -- HTTP ---------------------------------------------------------------------------------


def test_open_routes(http: httpx.Client):
    assert http.get("/healthz").status_code == 200
    assert http.get("/").status_code == 200
    preflight = http.options(
        "/chats", headers={"Origin": "http://x.test", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200


def test_every_bad_token_is_refused_and_creates_nothing(http: httpx.Client, issuer: LocalIssuer):
    before = len(items_in_table())
    for name, header in forged(issuer).items():
        headers = {} if header is None else {"Authorization": header}
        response = http.post("/chats", json={"prompt": "echo:nope"}, headers=headers)
        assert response.status_code == 401, name
        assert_json_error(response, 401)
        assert_json_error(http.get("/chats", headers=headers), 401)
    assert len(items_in_table()) == before


def test_alice_and_bob_on_every_route(http: httpx.Client, tokens: dict[str, str]):
    alice, bob = tokens["alice"], tokens["bob"]
    private = create(http, alice, "echo:Alice's secret.")
    shared = create(http, alice, "echo:Alice's news.", shared=True)
    sid = private["streamId"]
    assert_json_error(http.get(f"/streams/{sid}", headers=auth(bob)), 404)
    assert_json_error(http.post("/chat-stream", json={"streamId": sid}, headers=auth(bob)), 404)
    assert_json_error(http.post(f"/streams/{sid}/cancel", headers=auth(bob)), 404)
    assert_json_error(http.delete(f"/chats/{private['chatId']}", headers=auth(bob)), 404)
    assert http.get("/chats", headers=auth(bob)).json()["chats"] == []
    # The owner drives without the drive token: the JWT is the credential.
    for chat in (private, shared):
        driven = http.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=auth(alice))
        assert driven.status_code == 200
    assert http.get(f"/streams/{sid}", headers=auth(alice)).json()["text"] == "Alice's secret."
    read = http.get(f"/streams/{shared['streamId']}", headers=auth(bob))
    assert read.status_code == 200 and read.json()["text"] == "Alice's news."
    assert_json_error(
        http.delete(f"/chats/{shared['chatId']}", headers=auth(bob)), 404
    )  # shared is readable, not Bob's
    mine = [c["chatId"] for c in http.get("/chats", headers=auth(alice)).json()["chats"]]
    assert private["chatId"] in mine and shared["chatId"] in mine


def test_chats_are_listed_per_user_in_pages(http: httpx.Client, tokens: dict[str, str]):
    dave = tokens["dave"]
    made = []
    for i in range(5):
        chat = create(http, dave, f"echo:{i}")
        made.append(chat["chatId"])
        http.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=auth(dave))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get("/chats", params=params, headers=auth(dave)).json()
        assert len(page["chats"]) <= 2
        seen = [c["chatId"] for c in page["chats"]] + seen
        cursor = page["cursor"]
        if not cursor:
            break
    assert seen == made


def test_at_most_three_live_streams_per_user(http: httpx.Client, tokens: dict[str, str]):
    carol = tokens["carol"]
    chats = [create(http, carol, f"echo:{i}") for i in range(3)]
    assert_json_error(http.post("/chats", json={"prompt": "x"}, headers=auth(carol)), 429)
    cancel = http.post(f"/streams/{chats[0]['streamId']}/cancel", headers=auth(carol))
    assert cancel.status_code == 202
    create(http, carol, "echo:room again")
    for chat in chats[1:]:  # leave nothing live for other tests
        http.post(f"/streams/{chat['streamId']}/cancel", headers=auth(carol))


# -- WebSocket ----------------------------------------------------------------------------


def connects(jwt_stack: RunningStack) -> list[Invocation]:
    """Every `$connect` the WebSocket function ran, from now on."""
    seen: list[Invocation] = []
    jwt_stack.stack.functions["WebSocketFunction"].observe(
        lambda done: (
            seen.append(done)
            if done.event.get("requestContext", {}).get("routeKey") == "$connect"
            else None
        )
    )
    return seen


def test_a_refused_connect_never_reaches_the_routes(
    jwt_stack: RunningStack, issuer: LocalIssuer, tokens: dict[str, str]
):
    reached = connects(jwt_stack)

    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as refusal:
            async with connect(url, open_timeout=20):
                pass
        return refusal.value.response.status_code

    async def attempts() -> list[int]:
        statuses = [await refused(jwt_stack.ws_url), await refused(f"{jwt_stack.ws_url}?token=")]
        for header in forged(issuer).values():
            if header and header.startswith("Bearer ") and len(header) < 8000:
                token = header.removeprefix("Bearer ").strip()
                if token:
                    statuses.append(await refused(with_token(jwt_stack.ws_url, token)))
        return statuses

    statuses = asyncio.run(attempts())
    assert set(statuses) == {401}, statuses
    assert reached == []

    async def allowed() -> dict[str, Any]:
        async with connect(with_token(jwt_stack.ws_url, tokens["alice"]), open_timeout=20):
            pass
        return reached[0].event["requestContext"]

    context = asyncio.run(allowed())
    assert context["authorizer"]["sub"] == "alice"
    assert context["authorizer"]["principalId"] == "alice"


async def _subscribe(ws_url: str, token: str, stream_id: str) -> dict[str, Any]:
    async with connect(with_token(ws_url, token), open_timeout=20) as ws:
        await ws.send(json.dumps({"action": "subscribe", "streamId": stream_id}))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 20))
        return reply


def test_subscribe_serves_owner_and_shared_only(
    jwt_stack: RunningStack, http: httpx.Client, tokens: dict[str, str]
):
    alice, bob = tokens["alice"], tokens["bob"]
    private = create(http, alice, "echo:Only for Alice.")
    shared = create(http, alice, "echo:For all of us.", shared=True)
    ws = jwt_stack.ws_url
    mine = asyncio.run(_subscribe(ws, alice, private["streamId"]))
    assert mine["type"] == "snapshot" and mine["status"] == "pending"
    refused = asyncio.run(_subscribe(ws, bob, private["streamId"]))
    unknown = asyncio.run(_subscribe(ws, bob, "0" * 32))
    assert refused == {"type": "error", "error": "unknown stream", "streamId": private["streamId"]}
    assert unknown == {"type": "error", "error": "unknown stream", "streamId": "0" * 32}

    # Bob follows the shared stream live while Alice drives it.
    async def watch_and_drive() -> str:
        watching = asyncio.create_task(follow(with_token(ws, bob), shared["streamId"]))
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=jwt_stack.http_url, timeout=30) as client:
            driven = await client.post(
                "/chat-stream", json={"streamId": shared["streamId"]}, headers=auth(alice)
            )
            assert driven.status_code == 200
        view = await asyncio.wait_for(watching, 30)
        assert view.status == "done"
        return view.text

    assert asyncio.run(watch_and_drive()) == "For all of us."


def test_a_key_rotation_is_picked_up_without_a_restart(
    jwt_stack: RunningStack, http: httpx.Client, issuer: LocalIssuer
):
    old = issuer.mint("erin")
    assert http.get("/chats", headers=auth(old)).status_code == 200
    issuer.rotate_key()
    time.sleep(1.2)  # PTS_JWT_JWKS_MIN_REFRESH_SECONDS
    new = issuer.mint("erin")
    assert http.get("/chats", headers=auth(new)).status_code == 200

    async def connect_with(token: str) -> None:
        async with connect(with_token(jwt_stack.ws_url, token), open_timeout=20):
            pass

    asyncio.run(connect_with(new))
    # The old key is gone from the JWKS: once the cache is refreshed, its tokens are refused.
    # (It is refreshed now: the new kid was unknown, so the JWKS was fetched again.)
    assert_json_error(http.get("/chats", headers=auth(old)), 401)


# -- the pts command ----------------------------------------------------------------------


def run_pts(*argv: str, token: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.pop("PTS_TOKEN", None)
    if token is not None:
        os.environ["PTS_TOKEN"] = token
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(list(argv))
    finally:
        os.environ.pop("PTS_TOKEN", None)
        if saved is not None:
            os.environ["PTS_TOKEN"] = saved
    return status, out.getvalue(), err.getvalue()


def test_pts_chat_get_and_watch_send_pts_token(jwt_stack: RunningStack):
    # Fresh tokens: the rotation test may have retired the module's key.
    tokens = {user: _pts_token(user) for user in ("alice", "bob")}
    status, out, err = run_pts("chat", "echo:Signed in from a terminal.", token=tokens["alice"])
    assert status == 0, err
    assert out == "Signed in from a terminal.\n"
    stream_id = err.split("stream ")[1].split()[0]
    assert run_pts("get", stream_id, token=tokens["alice"])[:2] == (0, out)
    assert run_pts("watch", stream_id, token=tokens["alice"])[:2] == (0, out)
    # Without a token, or as somebody else: refused, and the token never shows in errors.
    assert run_pts("chat", "echo:anonymous")[0] == 1
    refused, _, message = run_pts("get", stream_id, token=tokens["bob"])
    assert refused == 1 and "404" in message
    assert run_pts("watch", stream_id)[0] == 2  # the $connect is refused: 401
    watched, _, message = run_pts("watch", stream_id, token=tokens["bob"])
    assert watched == 1 and "unknown stream" in message
    assert tokens["bob"] not in message
