"""`pts.local.issuer`: the PKCE flow a browser runs, and every way to get it wrong."""

from __future__ import annotations

import secrets
import time
import warnings
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from joserfc.jwk import RSAKey
from starlette.exceptions import StarletteDeprecationWarning

from pts.auth import Unauthorized, Verifier
from pts.local.issuer import Client, LocalIssuer, generate_key, s256, sign_in

with warnings.catch_warnings():
    # Starlette would rather drive its TestClient with httpx2; the project pins httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

URL = "http://127.0.0.1:8002"
PAGE = "http://127.0.0.1:8000/"
CHAT = Client("pts-chat", (PAGE,))
OTHER = Client("other-app", ("http://127.0.0.1:9000/callback",))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> RSAKey:
    """One key pair for the module: RSA generation is the slow part."""
    return generate_key()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(key: RSAKey, clock: Clock) -> LocalIssuer:
    return LocalIssuer(URL, [CHAT, OTHER], clock=clock, key=key)


@pytest.fixture
def http(issuer: LocalIssuer) -> TestClient:
    return TestClient(issuer.app, base_url=URL, follow_redirects=False)


@pytest.fixture
def verifier(http: TestClient, clock: Clock) -> Verifier:
    """The app's verifier, fetching discovery and JWKS over HTTP from the issuer."""
    return Verifier(URL, ["pts-chat"], fetch=lambda url: http.get(url).json(), clock=clock)


def authorization(client: Client = CHAT, **overrides: str | None) -> tuple[dict[str, str], str]:
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uris[0],
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "state": "xyz",
        "scope": "openid",
        **overrides,
    }
    return {k: v for k, v in params.items() if v is not None}, verifier


def log_in(http: TestClient, params: dict[str, str], user: str = "alice") -> dict[str, str]:
    response = http.post("/authorize", data={**params, "username": user})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(params["redirect_uri"])
    return dict(parse_qsl(urlsplit(location).query))


def redeem(http: TestClient, code: str, verifier: str, **overrides: str) -> Any:
    return http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": PAGE,
            "client_id": "pts-chat",
            "code_verifier": verifier,
            **overrides,
        },
    )


def assert_oauth_error(response: Any, error: str, status: int = 400) -> None:
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


# --- documents --------------------------------------------------------------------------------


def test_discovery_document(http):
    document = http.get("/.well-known/openid-configuration").json()
    assert document["issuer"] == URL
    assert document["jwks_uri"] == f"{URL}/.well-known/jwks.json"
    assert document["authorization_endpoint"] == f"{URL}/authorize"
    assert document["token_endpoint"] == f"{URL}/token"
    assert document["code_challenge_methods_supported"] == ["S256"]


def test_jwks_holds_only_the_public_key(http):
    (key,) = http.get("/.well-known/jwks.json").json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"].startswith("local-")
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


# --- the flow ---------------------------------------------------------------------------------


def test_full_pkce_flow(http, issuer, verifier, clock):
    params, code_verifier = authorization(nonce="n-0S6_WzA2Mj")
    page = http.get("/authorize", params=params)
    assert page.status_code == 200
    assert 'name="username"' in page.text and 'value="xyz"' in page.text
    answer = log_in(http, params)
    assert answer["state"] == "xyz"
    response = redeem(http, answer["code"], code_verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    access = verifier.verify(tokens["access_token"])
    assert access.sub == "alice"
    assert access.claims["aud"] == "pts-chat"
    assert access.claims["exp"] - access.claims["iat"] == 3600
    identity = verifier.verify(tokens["id_token"])
    assert identity.sub == "alice" and identity.claims["nonce"] == "n-0S6_WzA2Mj"


def test_wrong_verifier(http):
    params, _ = authorization()
    code = log_in(http, params)["code"]
    assert_oauth_error(redeem(http, code, secrets.token_urlsafe(48)), "invalid_grant")


def test_a_failed_redemption_burns_the_code(http):
    params, code_verifier = authorization()
    code = log_in(http, params)["code"]
    assert_oauth_error(redeem(http, code, secrets.token_urlsafe(48)), "invalid_grant")
    assert_oauth_error(redeem(http, code, code_verifier), "invalid_grant")


@pytest.mark.parametrize("bad", ["short", "x" * 129, "spaces are not allowed in a verifier!!!!!!!"])
def test_malformed_verifier(http, bad):
    params, _ = authorization()
    code = log_in(http, params)["code"]
    assert_oauth_error(redeem(http, code, bad), "invalid_grant")


def test_reused_code(http):
    params, code_verifier = authorization()
    code = log_in(http, params)["code"]
    assert redeem(http, code, code_verifier).status_code == 200
    assert_oauth_error(redeem(http, code, code_verifier), "invalid_grant")


def test_expired_code(http, clock):
    params, code_verifier = authorization()
    code = log_in(http, params)["code"]
    clock.now += 61
    assert_oauth_error(redeem(http, code, code_verifier), "invalid_grant")


def test_unknown_code(http):
    assert_oauth_error(redeem(http, "made-up", secrets.token_urlsafe(48)), "invalid_grant")


def test_code_of_another_client(http):
    params, code_verifier = authorization(OTHER)
    code = log_in(http, params)["code"]
    assert_oauth_error(redeem(http, code, code_verifier), "invalid_grant")


def test_code_with_another_redirect_uri(http):
    params, code_verifier = authorization()
    code = log_in(http, params)["code"]
    response = redeem(http, code, code_verifier, redirect_uri=OTHER.redirect_uris[0])
    assert_oauth_error(response, "invalid_grant")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_id": "stranger"}, "invalid_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"code_verifier": ""}, "invalid_request"),
        ({"redirect_uri": ""}, "invalid_request"),
    ],
)
def test_bad_token_requests(http, overrides, error):
    params, code_verifier = authorization()
    code = log_in(http, params)["code"]
    response = redeem(http, code, code_verifier, **overrides)
    assert_oauth_error(response, error, 401 if error == "invalid_client" else 400)


def test_token_request_must_be_a_form(http):
    response = http.post("/token", json={"grant_type": "authorization_code"})
    assert_oauth_error(response, "invalid_request")


def test_token_request_with_a_repeated_parameter(http):
    body = "grant_type=authorization_code&code=a&code=b"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert_oauth_error(http.post("/token", content=body, headers=headers), "invalid_request")


def test_huge_token_request(http):
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = http.post("/token", content="code=" + "a" * 100_000, headers=headers)
    assert_oauth_error(response, "invalid_request")


# --- the authorization endpoint never redirects to a stranger --------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_client(http, method):
    params, _ = authorization(client_id="stranger")
    response = (
        http.get("/authorize", params=params)
        if method == "get"
        else http.post("/authorize", data={**params, "username": "alice"})
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "unknown client_id" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.test/",
        "http://127.0.0.1:8000/evil",
        "http://127.0.0.1:8000/?next=evil",
        "http://127.0.0.1:8000",
        "http://127.0.0.1:9000/callback",  # registered, but for another client
        None,
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_unregistered_redirect_uri(http, redirect_uri, method):
    params, _ = authorization(redirect_uri=redirect_uri)
    response = (
        http.get("/authorize", params=params)
        if method == "get"
        else http.post("/authorize", data={**params, "username": "alice"})
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "redirect_uri is not registered" in response.text


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "unsupported_response_type"),
    ],
)
def test_bad_authorization_requests_go_back_to_the_client(http, overrides, error):
    params, _ = authorization(**overrides)
    response = http.get("/authorize", params=params)
    assert response.status_code == 303
    answer = dict(parse_qsl(urlsplit(response.headers["location"]).query))
    assert answer["error"] == error and answer["state"] == "xyz"
    assert "code" not in answer


def test_repeated_authorization_parameter(http):
    params, _ = authorization()
    query = "&".join(f"{k}={v}" for k, v in params.items()) + "&client_id=other-app"
    response = http.get(f"/authorize?{query}")
    assert response.status_code == 400 and "location" not in response.headers


@pytest.mark.parametrize("user", ["", " ", "a" * 65, "<script>", "bob smith", "é"])
def test_bad_user_names(http, user):
    params, _ = authorization()
    response = http.post("/authorize", data={**params, "username": user})
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "<script>" not in response.text


def test_the_login_page_escapes_what_it_echoes(http):
    params, _ = authorization(state='"><script>alert(1)</script>')
    page = http.get("/authorize", params=params)
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert log_in(http, params)["state"] == '"><script>alert(1)</script>'


def test_a_redirect_uri_with_a_query_keeps_it(clock, key):
    client = Client("with-query", ("http://127.0.0.1:8000/cb?tab=chat",))
    issuer = LocalIssuer(URL, [client], clock=clock, key=key)
    http = TestClient(issuer.app, base_url=URL, follow_redirects=False)
    params, _ = authorization(client)
    answer = log_in(http, params)
    assert answer["tab"] == "chat" and answer["code"]


# --- CORS: the chat page redeems its code from its own origin --------------------------------


def test_cors_allows_registered_origins_only(http):
    preflight = {"access-control-request-method": "POST"}
    ok = http.options("/token", headers={"origin": "http://127.0.0.1:8000", **preflight})
    assert ok.headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    bad = http.options("/token", headers={"origin": "https://evil.example.test", **preflight})
    assert "access-control-allow-origin" not in bad.headers


# --- minting and the CLI's flow ---------------------------------------------------------------


def test_minted_tokens_pass_verification(issuer, clock):
    verifier = Verifier(URL, ["pts-chat"], fetch=issuer.fetch, clock=clock)
    identity = verifier.verify(issuer.mint("bob"))
    assert identity.sub == "bob" and identity.claims["iss"] == URL
    other = issuer.mint("bob", "other-app")
    with pytest.raises(Unauthorized, match="audience"):
        verifier.verify(other)
    with pytest.raises(ValueError, match="unknown client"):
        issuer.mint("bob", "stranger")


def test_tokens_of_another_local_issuer_are_refused(issuer, clock):
    """A restart makes a new key: old tokens stop verifying, as after a real rotation."""
    restarted = LocalIssuer(URL, [CHAT], clock=clock)
    verifier = Verifier(URL, ["pts-chat"], fetch=restarted.fetch, clock=clock)
    with pytest.raises(Unauthorized, match="does not publish"):
        verifier.verify(issuer.mint("alice"))


def test_sign_in_runs_the_flow_like_a_browser(http, verifier):
    tokens = sign_in(URL, "carol", "pts-chat", PAGE, http=http)
    assert verifier.verify(tokens["access_token"]).sub == "carol"


def test_a_client_is_required():
    with pytest.raises(ValueError, match="at least one"):
        LocalIssuer(URL, [])


def test_sign_in_reports_a_refusal(http):
    with pytest.raises(RuntimeError, match="refused"):
        sign_in(URL, "carol", "pts-chat", "https://evil.example.test/", http=http)
