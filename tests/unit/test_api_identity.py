"""The HTTP API with identity: `PTS_AUTH=jwt` (every route but the page and `/healthz` needs
a JWT, chats belong to its `sub`, anybody else's private stream is 404) and `none` (as ever,
plus `shared`, pages of chats and an optional live-stream limit)."""

from __future__ import annotations

import html
import json
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from pts.api import create_app
from pts.auth import KeysUnavailable, Verifier
from pts.config import Settings
from pts.local.issuer import Client, LocalIssuer, generate_key
from pts.sources.demo import DemoSource
from pts.storage import StreamStore
from tests.forged_tokens import forged

with warnings.catch_warnings():  # Starlette 1.x would rather use httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ISSUER_URL = "http://127.0.0.1:8002"
CHAT = Client("pts-chat", ("http://127.0.0.1:8000/",))


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return generate_key()


@pytest.fixture
def issuer(key: RSAKey) -> LocalIssuer:
    return LocalIssuer(ISSUER_URL, [CHAT], key=key)


@pytest.fixture
def jwt_store(dynamodb: Any) -> StreamStore:
    return StreamStore("StreamsTable", client=dynamodb, active_limit=3)


@pytest.fixture
def api(jwt_store: StreamStore, issuer: LocalIssuer) -> Iterator[TestClient]:
    verifier = Verifier(issuer.url, ["pts-chat"], fetch=issuer.fetch)
    settings = Settings(auth="jwt", max_active_streams_per_user=3, sign_in_client_id="pts-chat")
    source = DemoSource(reply_tokens=20, tokens_per_second=0)
    with TestClient(create_app(settings, jwt_store, source, verifier)) as client:
        yield client


def bearer(issuer: LocalIssuer, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(sub)}"}


def create(api: TestClient, who: dict[str, str], prompt: str = "echo:hi", **extra: Any) -> Any:
    response = api.post("/chats", json={"prompt": prompt, **extra}, headers=who)
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str) and response.json()["error"]


# -- bad tokens ---------------------------------------------------------------------------


def test_every_bad_token_is_a_401_and_creates_nothing(
    api: TestClient, issuer: LocalIssuer, dynamodb: Any
):
    for name, header in forged(issuer).items():
        headers = {} if header is None else {"Authorization": header}
        response = api.post("/chats", json={"prompt": "echo:nope"}, headers=headers)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"], name
        assert response.headers["www-authenticate"].startswith("Bearer")
        for method, path in [
            ("GET", "/chats"),
            ("GET", "/streams/0123456789abcdef0123456789abcdef"),
            ("POST", "/streams/0123456789abcdef0123456789abcdef/cancel"),
            ("DELETE", "/chats/0123456789abcdef0123456789abcdef"),
        ]:
            assert_error(api.request(method, path, headers=headers), 401)
        drive = api.post(
            "/chat-stream", json={"streamId": "0123456789abcdef0123456789abcdef"}, headers=headers
        )
        assert_error(drive, 401)
    assert dynamodb.scan(TableName="StreamsTable")["Items"] == []


def test_tokens_are_never_logged(
    api: TestClient, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    token = issuer.mint("alice")
    api.post("/chats", json={"prompt": "echo:x"}, headers={"Authorization": f"Bearer {token}"})
    for header in forged(issuer).values():
        if header:
            api.get("/chats", headers={"Authorization": header})
    logged = caplog.text
    assert token not in logged
    for header in forged(issuer).values():
        if header and len(header) > 20:
            assert header.removeprefix("Bearer ") not in logged


def test_open_routes_need_no_token(api: TestClient):
    assert api.get("/healthz").status_code == 200
    assert api.get("/").status_code == 200
    preflight = api.options(
        "/chats",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200


def test_the_page_is_told_how_to_sign_in(api: TestClient, issuer: LocalIssuer):
    page = api.get("/")
    assert page.status_code == 200
    meta = re.search(r'<meta name="pts-sign-in" content="([^"]*)">', page.text)
    assert meta is not None
    config = json.loads(html.unescape(meta.group(1)))
    assert config == {
        "issuer": issuer.url,
        "clientId": "pts-chat",
        "authorizationEndpoint": f"{issuer.url}/authorize",
        "tokenEndpoint": f"{issuer.url}/token",
    }
    # The page may redeem its code at the token endpoint, and connect nowhere else new.
    policy = page.headers["content-security-policy"]
    assert f"connect-src 'self' {issuer.url};" in policy


def test_without_sign_in_the_page_has_no_issuer(open_api: TestClient):
    page = open_api.get("/")
    assert '<meta name="pts-sign-in" content="">' in page.text
    assert "connect-src 'self';" in page.headers["content-security-policy"]


def test_unavailable_keys_are_a_503_not_a_401(jwt_store: StreamStore):
    def down(url: str) -> Any:
        raise KeysUnavailable(f"could not fetch {url}: connection refused")

    verifier = Verifier(ISSUER_URL, ["pts-chat"], fetch=down)
    issuer = LocalIssuer(ISSUER_URL, [CHAT])
    app = create_app(Settings(auth="jwt"), jwt_store, DemoSource(), verifier)
    with TestClient(app) as client:
        response = client.get("/chats", headers=bearer(issuer, "alice"))
    assert_error(response, 503)
    assert "internal" not in response.json()["error"]


# -- error order: 400, 401, 404, 409 -------------------------------------------------------


def test_malformed_input_is_400_before_401(api: TestClient):
    assert_error(api.post("/chats", content=b"{"), 400)
    assert_error(api.post("/chats", json={"prompt": ""}), 400)
    assert_error(api.post("/chats", json={"prompt": "x", "shared": "yes"}), 400)
    assert_error(api.post("/chat-stream", json={"streamId": 7}), 400)
    assert_error(api.get("/chats?limit=0"), 400)


def test_401_before_404_and_404_before_409(api: TestClient, issuer: LocalIssuer):
    alice = bearer(issuer, "alice")
    assert_error(api.get("/streams/nope"), 401)
    assert_error(api.get("/streams/nope", headers=alice), 404)
    chat = create(api, alice)
    assert api.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=alice).text == "hi"
    again = api.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=alice)
    assert_error(again, 409)
    bob = bearer(issuer, "bob")
    assert_error(api.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=bob), 404)


# -- Alice and Bob ------------------------------------------------------------------------


def test_a_private_stream_is_the_owners_alone(api: TestClient, issuer: LocalIssuer):
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    chat = create(api, alice, "echo:for alice only")
    stream_id, chat_id = chat["streamId"], chat["chatId"]
    # Bob: every route says it does not exist, and nothing changes.
    assert_error(api.get(f"/streams/{stream_id}", headers=bob), 404)
    assert_error(api.post("/chat-stream", json={"streamId": stream_id}, headers=bob), 404)
    assert_error(api.post(f"/streams/{stream_id}/cancel", headers=bob), 404)
    assert_error(api.delete(f"/chats/{chat_id}", headers=bob), 404)
    assert api.get("/chats", headers=bob).json()["chats"] == []
    # Nor does the drive token help anybody: in this mode only a JWT is a credential.
    token = {"Authorization": f"Bearer {chat['driveToken']}"}
    assert_error(api.post("/chat-stream", json={"streamId": stream_id}, headers=token), 401)
    # Alice: all of it.
    assert api.get(f"/streams/{stream_id}", headers=alice).json()["status"] == "pending"
    driven = api.post("/chat-stream", json={"streamId": stream_id}, headers=alice)
    assert driven.text == "for alice only"
    assert api.get(f"/streams/{stream_id}", headers=alice).json()["text"] == "for alice only"
    assert_error(api.post(f"/streams/{stream_id}/cancel", headers=alice), 409)
    listed = api.get("/chats", headers=alice).json()["chats"]
    assert [c["chatId"] for c in listed] == [chat_id]
    assert listed[0]["shared"] is False
    assert api.delete(f"/chats/{chat_id}", headers=bob).status_code == 404
    assert api.delete(f"/chats/{chat_id}", headers=alice).status_code < 300
    assert_error(api.get(f"/streams/{stream_id}", headers=alice), 404)


def test_a_shared_stream_is_readable_by_anybody_signed_in_but_still_the_owners(
    api: TestClient, issuer: LocalIssuer
):
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    chat = create(api, alice, "echo:for everyone", shared=True)
    stream_id = chat["streamId"]
    assert api.get(f"/streams/{stream_id}", headers=bob).status_code == 200
    assert_error(api.get(f"/streams/{stream_id}"), 401)  # signed in, not anonymous
    assert_error(api.post("/chat-stream", json={"streamId": stream_id}, headers=bob), 404)
    assert_error(api.post(f"/streams/{stream_id}/cancel", headers=bob), 404)
    assert_error(api.delete(f"/chats/{chat['chatId']}", headers=bob), 404)
    assert api.get("/chats", headers=bob).json()["chats"] == []  # shared is not listed
    assert api.post(f"/streams/{stream_id}/cancel", headers=alice).status_code == 202
    assert api.get(f"/streams/{stream_id}", headers=bob).json()["status"] == "cancelled"


def test_chats_are_paged_per_caller(api: TestClient, issuer: LocalIssuer, jwt_store: StreamStore):
    alice = bearer(issuer, "alice")
    jwt_store.active_limit = None
    made = [create(api, alice, f"echo:{i}")["chatId"] for i in range(5)]
    create(api, bearer(issuer, "bob"), "echo:bob's")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/chats", params=query, headers=alice).json()
        seen = [c["chatId"] for c in page["chats"]] + seen
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == made
    assert_error(api.get("/chats", params={"cursor": "garbage!"}, headers=alice), 400)
    assert_error(api.get("/chats", params={"limit": "101"}, headers=alice), 400)


def test_at_most_three_live_streams_per_user(api: TestClient, issuer: LocalIssuer):
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    chats = [create(api, alice, f"echo:{i}") for i in range(3)]
    refused = api.post("/chats", json={"prompt": "echo:4th"}, headers=alice)
    assert_error(refused, 429)
    create(api, bob)  # Bob has his own allowance
    # Ending one (driving it to the end, or cancelling) frees a slot.
    done = api.post("/chat-stream", json={"streamId": chats[0]["streamId"]}, headers=alice)
    assert done.text == "0"
    create(api, alice, "echo:now there is room")
    assert_error(api.post("/chats", json={"prompt": "echo:x"}, headers=alice), 429)
    assert api.post(f"/streams/{chats[1]['streamId']}/cancel", headers=alice).status_code == 202
    create(api, alice, "echo:room again")


# -- none mode ----------------------------------------------------------------------------


@pytest.fixture
def open_api(store: StreamStore) -> Iterator[TestClient]:
    app = create_app(Settings(), store, DemoSource(reply_tokens=20, tokens_per_second=0))
    with TestClient(app) as client:
        yield client


def test_none_mode_has_no_limit_and_pages_everybodys_chats(open_api: TestClient):
    made = [open_api.post("/chats", json={"prompt": f"echo:{i}"}).json() for i in range(5)]
    listed = open_api.get("/chats").json()
    assert [c["chatId"] for c in listed["chats"]] == [c["chatId"] for c in made]
    assert listed["cursor"] is None
    page = open_api.get("/chats", params={"limit": 2}).json()
    assert [c["chatId"] for c in page["chats"]] == [c["chatId"] for c in made[3:]]
    assert page["cursor"]


def test_none_mode_limit_when_configured(store: StreamStore):
    store.active_limit = 1
    app = create_app(Settings(max_active_streams_per_user=1), store, DemoSource())
    with TestClient(app) as client:
        assert client.post("/chats", json={"prompt": "x"}).status_code == 201
        assert_error(client.post("/chats", json={"prompt": "y"}), 429)


def test_settings_choose_the_limit():
    assert Settings.from_env({}).max_active_streams_per_user is None
    assert Settings.from_env({"PTS_AUTH": "jwt"}).max_active_streams_per_user == 3
    jwt5 = {"PTS_AUTH": "jwt", "PTS_MAX_ACTIVE_STREAMS_PER_USER": "5"}
    assert Settings.from_env(jwt5).max_active_streams_per_user == 5
    jwt0 = {"PTS_AUTH": "jwt", "PTS_MAX_ACTIVE_STREAMS_PER_USER": "0"}
    assert Settings.from_env(jwt0).max_active_streams_per_user is None
    assert Settings.from_env({"PTS_MAX_ACTIVE_STREAMS_PER_USER": "2"}).max_active_streams_per_user
    with pytest.raises(ValueError, match="PTS_AUTH"):
        Settings.from_env({"PTS_AUTH": "maybe"})


def test_threads_and_resume_are_the_owners(api: TestClient, issuer: LocalIssuer):
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    first = create(api, alice, "echo:Alice's first turn.")
    thread = first["threadId"]
    # Bob cannot continue Alice's thread (its history would go to his reply), nor list it.
    refused = api.post("/chats", json={"prompt": "history:", "threadId": thread}, headers=bob)
    assert_error(refused, 404)
    assert api.get("/chats", params={"threadId": thread}, headers=bob).json()["chats"] == []
    assert_error(api.get("/chats", params={"threadId": thread}), 401)
    second = create(api, alice, "echo:Alice's second turn.", threadId=thread)
    listed = api.get("/chats", params={"threadId": thread}, headers=alice).json()["chats"]
    assert [c["chatId"] for c in listed] == [first["chatId"], second["chatId"]]
    # Resuming a reply: the owner's, or anybody's signed in when shared.
    api.post("/chat-stream", json={"streamId": first["streamId"]}, headers=alice)
    assert_error(api.get(f"/streams/{first['streamId']}/events", headers=bob), 404)
    assert_error(api.get(f"/streams/{first['streamId']}/events"), 401)
    assert api.get(f"/streams/{first['streamId']}/events", headers=alice).status_code == 200
