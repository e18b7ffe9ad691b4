"""`pts.auth`: every way a bearer token can be wrong is one `Unauthorized`, never a crash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from pts.auth import (
    MAX_TOKEN_LENGTH,
    Identity,
    KeysUnavailable,
    Unauthorized,
    Verifier,
    bearer_token,
)

ISSUER = "https://issuer.example.test/pool"
JWKS_URL = "https://issuer.example.test/pool/.well-known/jwks.json"
CLIENT = "chat-page"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeIssuer:
    """Serves discovery and a JWKS that tests can rotate; counts the JWKS fetches."""

    def __init__(self, *keys: RSAKey | ECKey) -> None:
        self.keys = list(keys)
        self.jwks_fetches = 0
        self.down = False

    def __call__(self, url: str) -> Any:
        if self.down:
            raise KeysUnavailable(f"could not fetch {url}: connection refused")
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {"issuer": ISSUER, "jwks_uri": JWKS_URL}
        if url == JWKS_URL:
            self.jwks_fetches += 1
            return {"keys": [key.as_dict(private=False) for key in self.keys]}
        raise KeysUnavailable(f"could not fetch {url}: 404")


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def key1() -> RSAKey:
    return rsa_key("k1")


@pytest.fixture(scope="module")
def key2() -> RSAKey:
    return rsa_key("k2")


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "e1"})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(key1: RSAKey) -> FakeIssuer:
    return FakeIssuer(key1)


@pytest.fixture
def verifier(issuer: FakeIssuer, clock: Clock) -> Verifier:
    return Verifier(ISSUER, [CLIENT], fetch=issuer, clock=clock)


def claims(clock: Clock, **overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "alice",
        "iat": int(clock.now),
        "exp": int(clock.now) + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: RSAKey | ECKey, payload: dict[str, Any], alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, payload, key, algorithms=[alg])


def refused(verifier: Verifier, token: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        verifier.verify(token)


# --- accepted ---------------------------------------------------------------------------------


def test_a_valid_id_token_is_the_caller(verifier, key1, clock):
    identity = verifier.verify(sign(key1, claims(clock, email="alice@example.test")))
    assert identity == Identity("alice", identity.claims)
    assert identity.claims["email"] == "alice@example.test"


def test_a_cognito_access_token_is_matched_by_client_id(verifier, key1, clock):
    token = sign(key1, claims(clock, aud=None, client_id=CLIENT, token_use="access"))
    assert verifier.verify(token).sub == "alice"


def test_an_audience_list_needs_one_of_ours(verifier, key1, clock):
    assert verifier.verify(sign(key1, claims(clock, aud=["other", CLIENT]))).sub == "alice"
    refused(verifier, sign(key1, claims(clock, aud=["other", "another"])), "audience")


def test_es256_is_allowed(clock, ec_key):
    verifier = Verifier(ISSUER, [CLIENT], fetch=FakeIssuer(ec_key), clock=clock)
    assert verifier.verify(sign(ec_key, claims(clock), alg="ES256")).sub == "alice"


def test_within_the_leeway_clock_skew_is_tolerated(verifier, key1, clock):
    token = sign(key1, claims(clock, exp=int(clock.now) - 10, nbf=int(clock.now) + 10))
    assert verifier.verify(token).sub == "alice"


def test_verify_bearer_reads_the_header(verifier, key1, clock):
    assert verifier.verify_bearer(f"Bearer {sign(key1, claims(clock))}").sub == "alice"


# --- the Authorization header -----------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_authorization_header(value):
    with pytest.raises(Unauthorized, match="missing"):
        bearer_token(value)


@pytest.mark.parametrize("value", ["Basic YWxpY2U6cHc=", "Token abc", "abc.def.ghi"])
def test_another_scheme(value):
    with pytest.raises(Unauthorized, match="Bearer scheme"):
        bearer_token(value)


def test_bearer_without_a_token():
    with pytest.raises(Unauthorized, match="missing bearer token"):
        bearer_token("Bearer ")


def test_the_scheme_is_case_insensitive():
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"


# --- malformed --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_missing(verifier, token):
    refused(verifier, token, "missing token")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",  # header not base64url
        f"{b64(b'{not json')}.e30.sig",
        f"{b64(b'[1, 2]')}.e30.sig",
        b64(b'"alg"') + ".e30.sig",  # a JSON string, not an object
        f"{b64(b'{}')}.e30.sig",  # no alg
        "eyJhbGciOiJSUzI1NiJ9.e30.sig\u00e9",  # not ASCII
        "\x00\x01\x02",
        b64(b'{"alg":"RS256","x":' + b"[" * 2900 + b"]" * 2900 + b"}") + ".e30.sig",  # deep
    ],
)
def test_malformed(verifier, token, issuer):
    refused(verifier, token, "malformed token|algorithm")
    assert issuer.jwks_fetches == 0, "garbage must not cost a fetch"


def test_huge_token_is_refused_before_decoding(verifier, issuer):
    refused(verifier, "a" * (MAX_TOKEN_LENGTH + 1), "longer than")
    assert issuer.jwks_fetches == 0


def test_signed_payload_that_is_not_json(verifier, key1):
    token = jws.serialize_compact({"alg": "RS256", "kid": "k1"}, b"not json", key1)
    refused(verifier, token, "payload is not JSON")


def test_signed_payload_that_is_not_an_object(verifier, key1):
    token = jws.serialize_compact({"alg": "RS256", "kid": "k1"}, b"[1]", key1)
    refused(verifier, token, "not a JSON object")


def test_no_kid(verifier, key1, clock):
    token = jwt.encode({"alg": "RS256"}, claims(clock), key1, algorithms=["RS256"])
    refused(verifier, token, "no 'kid'")


# --- time -------------------------------------------------------------------------------------


def test_expired(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, exp=int(clock.now) - 60)), "expired")


def test_expires_while_cached(verifier, key1, clock):
    token = sign(key1, claims(clock, exp=int(clock.now) + 5))
    verifier.verify(token)
    clock.now += 60
    refused(verifier, token, "expired")


def test_not_yet_valid(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, nbf=int(clock.now) + 300)), "not valid yet")


def test_issued_in_the_future(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, iat=int(clock.now) + 300)), "in the future")


def test_no_expiry(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, exp=None)), "no 'exp' claim")


@pytest.mark.parametrize("exp", ["tomorrow", True, 1e400])
def test_expiry_that_is_not_a_number(verifier, key1, clock, exp):
    token = sign(key1, {**claims(clock), "exp": exp}) if exp != 1e400 else None
    if token is None:  # 1e400 is Infinity, which JSON cannot carry: forge the payload
        payload = json.dumps(claims(clock)).replace(str(int(clock.now) + 3600), "1e400")
        token = jws.serialize_compact({"alg": "RS256", "kid": "k1"}, payload.encode(), key1)
    refused(verifier, token, "expiry")


# --- who issued it, for whom, about whom ------------------------------------------------------


def test_wrong_issuer(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, iss="https://evil.example.test")), "issuer")


def test_missing_issuer(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, iss=None)), "no 'iss' claim")


def test_wrong_audience(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, aud="someone-else")), "audience")


def test_wrong_client_id(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, aud=None, client_id="other")), "not for this")


def test_neither_audience_nor_client_id(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, aud=None)), "not for this")


def test_a_wrong_aud_is_not_excused_by_a_right_client_id(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, aud="other", client_id=CLIENT)), "audience")


@pytest.mark.parametrize("aud", [42, {"a": CLIENT}, [42]])
def test_audience_of_the_wrong_type(verifier, key1, clock, aud):
    refused(verifier, sign(key1, {**claims(clock), "aud": aud}), "audience")


def test_missing_subject(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, sub=None)), "no 'sub' claim")


@pytest.mark.parametrize("sub", ["", 42, ["alice"]])
def test_subject_that_is_not_a_string(verifier, key1, clock, sub):
    refused(verifier, sign(key1, {**claims(clock), "sub": sub}), "subject")


def test_overlong_subject(verifier, key1, clock):
    refused(verifier, sign(key1, claims(clock, sub="a" * 1000)), "subject is too long")


# --- forgeries --------------------------------------------------------------------------------


def test_alg_none(verifier, clock):
    header = b64(json.dumps({"alg": "none", "kid": "k1"}).encode())
    payload = b64(json.dumps(claims(clock)).encode())
    refused(verifier, f"{header}.{payload}.", "'none' is not allowed")


def test_rs256_public_key_as_an_hs256_secret(verifier, key1, clock):
    """The classic key confusion: sign with HMAC keyed by the published public key."""
    payload = b64(json.dumps(claims(clock)).encode())
    for secret in (
        key1.as_pem(private=False),
        json.dumps(key1.as_dict(private=False)).encode(),
        key1.as_dict(private=False)["n"].encode(),
    ):
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            header = b64(json.dumps({"alg": alg, "kid": "k1", "typ": "JWT"}).encode())
            mac = hmac.new(secret, f"{header}.{payload}".encode(), digest).digest()
            refused(verifier, f"{header}.{payload}.{b64(mac)}", f"'{alg}' is not allowed")


def test_rs256_header_on_an_ec_key(verifier, clock, ec_key):
    """A kid that names an EC key cannot be used with RS256 (nor the reverse)."""
    issuer = FakeIssuer(ec_key)
    verifier = Verifier(ISSUER, [CLIENT], fetch=issuer, clock=clock)
    header = b64(json.dumps({"alg": "RS256", "kid": "e1"}).encode())
    payload = b64(json.dumps(claims(clock)).encode())
    refused(verifier, f"{header}.{payload}.{b64(b'x' * 256)}", "signature")


def test_claims_edited_after_signing(verifier, key1, clock):
    header, _, signature = sign(key1, claims(clock)).split(".")
    forged = b64(json.dumps(claims(clock, sub="mallory")).encode())
    refused(verifier, f"{header}.{forged}.{signature}", "signature is invalid")


def test_header_edited_after_signing(verifier, key1, clock):
    _, payload, signature = sign(key1, claims(clock)).split(".")
    header = b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "evil"}).encode())
    refused(verifier, f"{header}.{payload}.{signature}", "signature is invalid")


def test_signed_by_another_key_with_a_known_kid(verifier, clock):
    impostor = rsa_key("k1")
    refused(verifier, sign(impostor, claims(clock)), "signature is invalid")


def test_truncated_signature(verifier, key1, clock):
    token = sign(key1, claims(clock))
    refused(verifier, token[:-10], "signature|malformed")
    refused(verifier, token.rsplit(".", 1)[0] + ".", "signature|malformed")


# --- keys: discovery, rotation, the refresh bound, outages ------------------------------------


def test_unknown_kid(verifier, issuer, clock):
    refused(verifier, sign(rsa_key("stranger"), claims(clock)), "key the issuer does not publish")


def test_rotation_is_picked_up_without_a_restart(verifier, issuer, key1, key2, clock):
    assert verifier.verify(sign(key1, claims(clock))).sub == "alice"
    issuer.keys = [key2]  # the issuer rotates: k2 added, k1 withdrawn
    clock.now += 61  # past the refresh bound
    assert verifier.verify(sign(key2, claims(clock, sub="bob"))).sub == "bob"
    refused(verifier, sign(key1, claims(clock)), "key the issuer does not publish")


def test_a_withdrawn_key_expires_from_the_cache(verifier, issuer, key1, key2, clock):
    verifier.verify(sign(key1, claims(clock)))
    issuer.keys = [key2]
    clock.now += 3601  # no new kid was ever seen, but the cache aged out
    refused(verifier, sign(key1, claims(clock)), "key the issuer does not publish")


def test_random_kids_cannot_force_a_fetch_per_request(verifier, issuer, key1, clock):
    verifier.verify(sign(key1, claims(clock)))
    assert issuer.jwks_fetches == 1
    clock.now += 61
    forger = rsa_key("x")
    header = b64(json.dumps(claims(clock)).encode())
    for _ in range(500):
        kid = uuid.uuid4().hex
        token = f"{b64(json.dumps({'alg': 'RS256', 'kid': kid}).encode())}.{header}.sig"
        refused(verifier, token, "key the issuer does not publish")
    refused(verifier, sign(forger, claims(clock)), "key the issuer does not publish")
    assert issuer.jwks_fetches == 2, "one refetch for the whole burst"
    clock.now += 61
    for _ in range(100):
        refused(verifier, sign(forger, claims(clock)), "key the issuer does not publish")
    assert issuer.jwks_fetches == 3
    assert verifier.verify(sign(key1, claims(clock))).sub == "alice"


def test_concurrent_unknown_kids_share_one_fetch(issuer, key1, clock):
    slow_fetches: list[str] = []

    def slow(url: str) -> Any:
        slow_fetches.append(url)
        time.sleep(0.05)
        return issuer(url)

    verifier = Verifier(ISSUER, [CLIENT], jwks_url=JWKS_URL, fetch=slow, clock=clock)
    tokens = [sign(rsa_key(f"r{i}"), claims(clock)) for i in range(8)]

    def attempt(token: str) -> str:
        try:
            return verifier.verify(token).sub
        except Unauthorized as error:
            return str(error)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, [*tokens, sign(key1, claims(clock))]))
    assert results[-1] == "alice"
    assert all("does not publish" in r for r in results[:-1])
    assert len(slow_fetches) == 1


def test_discovery_is_done_once(verifier, issuer, key1, clock):
    calls: list[str] = []

    def fetch(url: str) -> Any:
        calls.append(url)
        return issuer(url)

    verifier = Verifier(ISSUER, [CLIENT], fetch=fetch, clock=clock, min_refresh=0)
    for _ in range(3):
        verifier.verify(sign(key1, claims(clock)))
        refused(verifier, sign(rsa_key("other"), claims(clock)), "does not publish")
    assert calls.count(f"{ISSUER}/.well-known/openid-configuration") == 1


def test_a_given_jwks_url_skips_discovery(key1, clock):
    calls: list[str] = []

    def fetch(url: str) -> Any:
        calls.append(url)
        return {"keys": [key1.as_dict(private=False)]}

    verifier = Verifier(ISSUER, [CLIENT], jwks_url=JWKS_URL, fetch=fetch, clock=clock)
    assert verifier.verify(sign(key1, claims(clock))).sub == "alice"
    assert calls == [JWKS_URL]


def test_discovery_for_another_issuer_is_refused(key1, clock):
    def fetch(url: str) -> Any:
        if url.endswith("openid-configuration"):
            return {"issuer": "https://evil.example.test", "jwks_uri": JWKS_URL}
        return {"keys": [key1.as_dict(private=False)]}

    verifier = Verifier(ISSUER, [CLIENT], fetch=fetch, clock=clock)
    with pytest.raises(KeysUnavailable):
        verifier.verify(sign(key1, claims(clock)))


def test_issuer_down_at_start_is_keys_unavailable(verifier, issuer, key1, clock):
    issuer.down = True
    with pytest.raises(KeysUnavailable):
        verifier.verify(sign(key1, claims(clock)))
    issuer.down = False
    with pytest.raises(KeysUnavailable):  # the bound holds for failed fetches too
        verifier.verify(sign(key1, claims(clock)))
    clock.now += 61
    assert verifier.verify(sign(key1, claims(clock))).sub == "alice"


def test_issuer_down_later_keeps_the_cached_keys(verifier, issuer, key1, clock):
    verifier.verify(sign(key1, claims(clock)))
    issuer.down = True
    clock.now += 3601
    assert verifier.verify(sign(key1, claims(clock))).sub == "alice"


@pytest.mark.parametrize("document", [None, [], {"keys": "x"}, {"keys": []}, {"keys": [{}]}])
def test_a_broken_jwks_is_an_outage(key1, clock, document):
    verifier = Verifier(ISSUER, [CLIENT], jwks_url=JWKS_URL, fetch=lambda url: document)
    with pytest.raises(KeysUnavailable):
        verifier.verify(sign(key1, claims(clock)))


# --- configuration ----------------------------------------------------------------------------


def test_from_env_none_mode():
    assert Verifier.from_env({}) is None
    assert Verifier.from_env({"PTS_AUTH": "none"}) is None


def test_from_env_jwt_mode():
    verifier = Verifier.from_env(
        {
            "PTS_AUTH": "jwt",
            "PTS_JWT_ISSUER": ISSUER,
            "PTS_JWT_AUDIENCE": " chat-page, cli ,",
            "PTS_JWT_JWKS_URL": JWKS_URL,
        }
    )
    assert verifier is not None
    assert verifier.issuer == ISSUER
    assert verifier.audiences == {"chat-page", "cli"}
    assert verifier.algorithms == ("RS256", "ES256")


@pytest.mark.parametrize(
    "env",
    [
        {"PTS_AUTH": "yes"},
        {"PTS_AUTH": "jwt"},
        {"PTS_AUTH": "jwt", "PTS_JWT_ISSUER": ISSUER},
        {"PTS_AUTH": "jwt", "PTS_JWT_AUDIENCE": CLIENT},
        {
            "PTS_AUTH": "jwt",
            "PTS_JWT_ISSUER": "http://issuer.example.test",
            "PTS_JWT_AUDIENCE": "c",
        },
        {
            "PTS_AUTH": "jwt",
            "PTS_JWT_ISSUER": ISSUER,
            "PTS_JWT_AUDIENCE": "c",
            "PTS_JWT_JWKS_URL": "http://evil.example.test/jwks",
        },
    ],
)
def test_from_env_refuses_a_misconfiguration(env):
    with pytest.raises(ValueError, match=r"PTS_|https"):
        Verifier.from_env(env)


def test_loopback_issuers_may_use_http():
    assert Verifier(ISSUER.replace("https://issuer.example.test", "http://127.0.0.1:8002"), ["c"])
    assert Verifier("http://localhost:8002", ["c"])


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["RS256", "HS256"], []])
def test_only_asymmetric_algorithms_can_be_configured(algorithms):
    with pytest.raises(ValueError, match="algorithms"):
        Verifier(ISSUER, [CLIENT], algorithms=algorithms)


# --- tokens stay secret -----------------------------------------------------------------------


def test_tokens_never_reach_the_logs_or_the_messages(verifier, issuer, key1, key2, clock, caplog):
    caplog.set_level(logging.DEBUG)
    good = sign(key1, claims(clock))
    tokens = [
        good,
        sign(key1, claims(clock, exp=int(clock.now) - 60)),
        sign(key2, claims(clock)),  # unknown kid: triggers a logged refetch
        good[:-4] + "AAAA",
    ]
    messages = []
    verifier.verify(good)
    issuer.down = True
    clock.now += 3601  # a logged, failed refresh too
    for token in tokens:
        try:
            verifier.verify(token)
        except Unauthorized as error:
            messages.append(str(error))
    assert caplog.records, "the refreshes are logged"
    for token in tokens:
        signature = token.rsplit(".", 1)[1]
        assert signature not in caplog.text
        assert token.split(".")[1] not in caplog.text
        assert not any(signature in m for m in messages)


# --- fuzz -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_\-]{0,80}(\.[A-Za-z0-9_\-=]{0,80}){2}"))
def test_any_input_is_unauthorized_not_a_crash(text):
    verifier = Verifier(ISSUER, [CLIENT], fetch=FakeIssuer())
    with pytest.raises(Unauthorized):
        verifier.verify(text)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_character_edit_of_a_token_is_refused(key1, data):
    clock = Clock()
    token = sign(key1, claims(clock))
    verifier = Verifier(ISSUER, [CLIENT], fetch=FakeIssuer(key1), clock=clock)
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from("ABCDEFabcdef0189-_.="))
    edited = token[:index] + char + token[index + 1 :]
    if edited == token:
        return
    with pytest.raises(Unauthorized):
        verifier.verify(edited)
