"""Who is calling: OpenID Connect JWTs verified against the issuer's published keys.

One `Verifier` serves the HTTP API (`Authorization: Bearer …`) and the WebSocket `$connect`
authorizer (`?token=…`), so both refuse exactly the same tokens. It trusts nothing in a token
before its signature checks out, and the signature only under an algorithm it was configured
with (RS256/ES256): `alg: none` and the HMAC algorithms are refused outright, because an
HMAC "verified" with the issuer's *public* key proves nothing. Then `iss`, `aud` (id tokens)
or Cognito's `client_id` (access tokens), `exp`/`nbf`/`iat` with a small leeway, and `sub`.

Keys come from the issuer's JWKS (found by OpenID discovery unless given), cached; a token
naming an unknown `kid` triggers a refetch — that is how a rotation is picked up without a
restart — but at most once per `min_refresh` seconds, so random `kid`s cannot turn every
request into a fetch. The cache is also refetched when older than `max_age`, so a key the
issuer withdrew stops being accepted even if no new key ever shows up.

Every failure is one exception, `Unauthorized`, whose message is safe to return to the
caller; malformed input never escapes as anything else. Tokens are never logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jws
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

logger = logging.getLogger(__name__)

ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
"""The only signature algorithms a deployment may allow: asymmetric, as issuers sign."""
MAX_TOKEN_LENGTH = 8192
"""Longer input is refused before any decoding (real tokens are 1-2 KiB)."""
MAX_SUBJECT_LENGTH = 256
"""A `sub` becomes a DynamoDB key and the authorizer's context: keep it well inside both."""
DEFAULT_LEEWAY = 30.0
FETCH_TIMEOUT = 3.0

Fetcher = Callable[[str], Any]
"""GET a URL and return its JSON body; raise `KeysUnavailable` when that is not possible."""


class Unauthorized(Exception):
    """The request carries no usable identity; `str(error)` is safe to show the caller."""


class KeysUnavailable(Unauthorized):
    """The issuer's keys could not be fetched: the token may be fine, we cannot tell.

    A subclass so that catching `Unauthorized` always refuses; a caller that wants to say
    "try again later" (503) rather than 401 catches this one first.
    """


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: `sub` owns chats and streams; `claims` is the whole token payload."""

    sub: str
    claims: Mapping[str, Any] = field(default_factory=dict)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not authorization or not authorization.strip():
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("the Authorization header must use the Bearer scheme")
    token = token.strip()
    if not token:
        raise Unauthorized("missing bearer token after 'Bearer'")
    return token


def fetch_json(url: str, *, timeout: float = FETCH_TIMEOUT) -> Any:
    """The default `Fetcher`: a short-timeout GET without redirects."""
    try:
        response = httpx.get(url, timeout=timeout, headers={"Accept": "application/json"})
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise KeysUnavailable(f"could not fetch {url}: {error}") from error


def _require_secure_url(url: str, what: str) -> None:
    """Keys fetched over plain HTTP could be swapped in transit; only loopback is exempt."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return
        except ValueError:
            pass
    raise ValueError(f"{what} must be an https:// URL (http:// only on loopback): {url!r}")


class IssuerKeys:
    """The issuer's JWKS, cached, with bounded refetches (see the module docstring)."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None = None,
        *,
        fetch: Fetcher = fetch_json,
        clock: Callable[[], float] = time.monotonic,
        min_refresh: float = 60.0,
        max_age: float = 3600.0,
    ) -> None:
        _require_secure_url(issuer, "the issuer")
        if jwks_url is not None:
            _require_secure_url(jwks_url, "the JWKS URL")
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._fetch = fetch
        self._clock = clock
        self.min_refresh = min_refresh
        self.max_age = max_age
        self._keys: KeySet | None = None
        self._loaded_at = -math.inf
        self._attempted_at = -math.inf
        self._lock = threading.Lock()
        """Serializes refreshes (one fetch for a burst); lookups in a fresh cache skip it."""

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def discovery(self) -> Any:
        """The issuer's OpenID discovery document (the chat page signs in with its
        endpoints); `KeysUnavailable` if it cannot be fetched."""
        return self._fetch(self.discovery_url)

    def key(self, kid: str, alg: str) -> Key:
        """The signing key named `kid`, usable with `alg`; refetches the JWKS if needed."""
        if not self._stale():
            found = self._find(kid, alg)
            if found is not None:
                return found
        with self._lock:
            if self._stale() and self._may_refresh():
                self._refresh()
            found = self._find(kid, alg)
            if found is None and self._may_refresh():
                logger.info("token names a key not in the cached JWKS; refetching it")
                self._refresh()
                found = self._find(kid, alg)
            if found is not None:
                return found
            if self._keys is None:
                raise KeysUnavailable("the issuer's signing keys are unavailable; try again")
            raise Unauthorized("token is signed with a key the issuer does not publish")

    def _stale(self) -> bool:
        return self._clock() - self._loaded_at >= self.max_age

    def _may_refresh(self) -> bool:
        return self._clock() - self._attempted_at >= self.min_refresh

    def _find(self, kid: str, alg: str) -> Key | None:
        if self._keys is None:
            return None
        for key in self._keys:
            if key.kid != kid or key.get("use") not in (None, "sig"):
                continue
            if key.get("alg") not in (None, alg):
                continue
            return key
        return None

    def _refresh(self) -> None:
        """Fetch the JWKS; on failure keep the keys we had (an outage is not a rotation)."""
        self._attempted_at = self._clock()
        try:
            document = self._fetch(self._locate_jwks())
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise KeysUnavailable("the JWKS document has no 'keys' list")
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (KeysUnavailable, JoseError, ValueError, TypeError, KeyError) as error:
            logger.warning("could not refresh the signing keys of %s: %s", self.issuer, error)
            return
        self._keys = keys
        self._loaded_at = self._clock()
        logger.info("loaded %d signing keys of %s", len(keys.keys), self.issuer)

    def _locate_jwks(self) -> str:
        """`jwks_uri` from OpenID discovery, once; the document must name our issuer."""
        if self._jwks_url is None:
            document = self._fetch(self.discovery_url)
            if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                raise KeysUnavailable(f"{self.discovery_url} does not describe {self.issuer}")
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise KeysUnavailable(f"{self.discovery_url} has no jwks_uri")
            _require_secure_url(jwks_uri, "jwks_uri")
            self._jwks_url = jwks_uri
        return self._jwks_url


class Verifier:
    """Verifies a JWT from one issuer for one or more audiences (client ids)."""

    def __init__(
        self,
        issuer: str,
        audiences: Collection[str],
        *,
        jwks_url: str | None = None,
        algorithms: Collection[str] = ALGORITHMS,
        leeway: float = DEFAULT_LEEWAY,
        fetch: Fetcher = fetch_json,
        clock: Callable[[], float] = time.time,
        min_refresh: float = 60.0,
        max_age: float = 3600.0,
    ) -> None:
        if not issuer:
            raise ValueError("a JWT issuer URL is required")
        if not audiences or not all(audiences):
            raise ValueError("at least one JWT audience (client id) is required")
        unsupported = set(algorithms) - set(ALGORITHMS)
        if unsupported or not algorithms:
            raise ValueError(f"algorithms must be a subset of {ALGORITHMS}, not {unsupported}")
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self._clock = clock
        self._registry = jws.JWSRegistry(algorithms=list(self.algorithms))
        self.keys = IssuerKeys(
            issuer,
            jwks_url,
            fetch=fetch,
            clock=clock,
            min_refresh=min_refresh,
            max_age=max_age,
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, fetch: Fetcher = fetch_json
    ) -> Verifier | None:
        """`PTS_AUTH=jwt` → a verifier for `PTS_JWT_ISSUER`/`PTS_JWT_AUDIENCE`; `none` → None.

        `PTS_JWT_AUDIENCE` is comma-separated (several app clients may share the API);
        `PTS_JWT_JWKS_URL` skips discovery; `PTS_JWT_JWKS_MIN_REFRESH_SECONDS` (default 60)
        bounds refetches on unknown `kid`s. A misconfiguration fails at start, not per request.
        """
        env = os.environ if env is None else env
        mode = (env.get("PTS_AUTH") or "none").strip().lower()
        if mode == "none":
            return None
        if mode != "jwt":
            raise ValueError(f"PTS_AUTH must be 'none' or 'jwt', not {mode!r}")
        issuer = (env.get("PTS_JWT_ISSUER") or "").strip()
        audiences = [a.strip() for a in (env.get("PTS_JWT_AUDIENCE") or "").split(",")]
        audiences = [a for a in audiences if a]
        if not issuer or not audiences:
            raise ValueError("PTS_AUTH=jwt needs PTS_JWT_ISSUER and PTS_JWT_AUDIENCE")
        try:
            min_refresh = float(env.get("PTS_JWT_JWKS_MIN_REFRESH_SECONDS") or 60)
        except ValueError:
            raise ValueError("PTS_JWT_JWKS_MIN_REFRESH_SECONDS must be a number") from None
        return cls(
            issuer,
            audiences,
            jwks_url=(env.get("PTS_JWT_JWKS_URL") or "").strip() or None,
            fetch=fetch,
            min_refresh=min_refresh,
        )

    def verify_bearer(self, authorization: str | None) -> Identity:
        """`verify` the token of an `Authorization` header value."""
        return self.verify(bearer_token(authorization))

    def verify(self, token: str | None) -> Identity:
        """The caller the token proves, or `Unauthorized` saying why not."""
        if not token:
            raise Unauthorized("missing token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        signed = self._parse(token)
        header = signed.headers()
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Unauthorized(
                f"token algorithm {str(alg)[:16]!r} is not allowed "
                f"(expected {' or '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token header has no 'kid'")
        self._check_signature(signed, self.keys.key(kid, alg))
        claims = self._claims(signed.payload)
        self._check_claims(claims)
        return Identity(sub=claims["sub"], claims=MappingProxyType(claims))

    @staticmethod
    def _parse(token: str) -> jws.CompactSignature:
        try:
            signed = jws.extract_compact(token.encode("ascii"))
            if not isinstance(signed.headers(), dict):
                raise ValueError("header is not a JSON object")
        except (JoseError, ValueError, TypeError, AttributeError, KeyError):
            raise Unauthorized(
                "malformed token: not a signed JWT (header.payload.signature)"
            ) from None
        return signed

    def _check_signature(self, signed: jws.CompactSignature, key: Key) -> None:
        try:
            valid = jws.validate_compact(signed, key, registry=self._registry)
        except (JoseError, ValueError, TypeError) as error:
            raise Unauthorized("token signature cannot be checked with the issuer's key") from error
        if not valid:
            raise Unauthorized("token signature is invalid")

    @staticmethod
    def _claims(payload: bytes | None) -> dict[str, Any]:
        try:
            claims = json.loads(payload or b"")
        except (ValueError, TypeError) as error:
            raise Unauthorized("malformed token: the payload is not JSON") from error
        if not isinstance(claims, dict):
            raise Unauthorized("malformed token: the payload is not a JSON object")
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=int(self.leeway),
            iss={"essential": True, "value": self.issuer},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise Unauthorized("token has expired") from error
        except MissingClaimError as error:
            raise Unauthorized(f"token has no {error.claim!r} claim") from error
        except InvalidClaimError as error:
            raise Unauthorized(
                _INVALID_CLAIM.get(error.claim, "token claims are invalid")
            ) from error
        if len(claims["sub"]) > MAX_SUBJECT_LENGTH:
            raise Unauthorized("token subject is too long")
        self._check_audience(claims)

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        """`aud` when present (id tokens, most issuers), else Cognito's `client_id`."""
        aud = claims.get("aud")
        if aud is not None:
            values = [aud] if isinstance(aud, str) else aud
            if not isinstance(values, list) or not self.audiences.intersection(
                v for v in values if isinstance(v, str)
            ):
                raise Unauthorized("token audience is not this application")
            return
        if claims.get("client_id") not in self.audiences:
            raise Unauthorized("token is not for this application (no matching aud or client_id)")


_INVALID_CLAIM = {
    "iss": "token issuer is not the configured issuer",
    "sub": "token subject is not a non-empty string",
    "aud": "token audience is not this application",
    "exp": "token expiry is not a valid time",
    "nbf": "token is not valid yet",
    "iat": "token was issued in the future",
}
