"""Every kind of bad bearer token, made against a `LocalIssuer` (for the API's security tests,
in-process and against the running stack alike)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from pts.local.issuer import LocalIssuer, generate_key


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    parts = [b64(json.dumps(part).encode()) for part in (header, payload)]
    return ".".join([*parts, b64(signature)])


def claims(issuer: LocalIssuer, sub: str = "alice", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": issuer.url,
        "aud": next(iter(issuer.clients)),
        "sub": sub,
        "iat": now,
        "exp": now + 3600,
    }
    return {**base, **overrides}


def forged(issuer: LocalIssuer) -> dict[str, str | None]:
    """Attack name → the `Authorization` header value it sends (None: no header at all)."""
    jwk = issuer.jwks()["keys"][0]
    kid = jwk["kid"]
    public_pem = RSAKey.import_key(jwk).as_pem(private=False)
    now = int(time.time())
    good = issuer.mint("alice")
    header, payload, signature = good.split(".")
    edited = dict(json.loads(base64.urlsafe_b64decode(payload + "==")))
    edited["sub"] = "bob"
    stranger = generate_key()
    hs_header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    hs_signing_input = ".".join(
        b64(json.dumps(part).encode()) for part in (hs_header, claims(issuer))
    ).encode()
    hs_signature = hmac.new(public_pem, hs_signing_input, hashlib.sha256).digest()

    def sign_with_stranger(**header_overrides: Any) -> str:
        return jwt.encode(
            {"alg": "RS256", "kid": stranger.kid, **header_overrides},
            claims(issuer),
            stranger,
            algorithms=["RS256"],
        )

    return {
        "missing": None,
        "empty": "",
        "not bearer": f"Basic {b64(b'alice:secret')}",
        "bearer without token": "Bearer",
        "malformed": "Bearer not-a-jwt",
        "three garbage parts": "Bearer a.b.c",
        "huge": "Bearer " + "a" * 20_000,
        "expired": "Bearer " + issuer.mint("alice", exp=now - 3600, iat=now - 7200),
        "not yet valid": "Bearer " + issuer.mint("alice", nbf=now + 3600),
        "wrong issuer": "Bearer " + issuer.mint("alice", iss="http://127.0.0.1:1/evil"),
        "wrong audience": "Bearer " + issuer.mint("alice", aud="somebody-elses-app"),
        "no subject": "Bearer " + issuer.mint(""),
        "unknown kid": "Bearer " + sign_with_stranger(),
        "another key under the issuer's kid": "Bearer " + sign_with_stranger(kid=kid),
        "alg none": "Bearer " + unsigned({"alg": "none", "typ": "JWT"}, claims(issuer)),
        "alg none with kid": "Bearer "
        + unsigned({"alg": "none", "kid": kid, "typ": "JWT"}, claims(issuer)),
        "HMAC with the public key": "Bearer " + hs_signing_input.decode() + "." + b64(hs_signature),
        "claims edited after signing": f"Bearer {header}.{b64(json.dumps(edited).encode())}"
        f".{signature}",
        "signature stripped": f"Bearer {header}.{payload}.",
    }
