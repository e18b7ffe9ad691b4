"""A local OpenID Connect issuer for `PTS_AUTH=jwt make dev`.

The stack verifies local tokens exactly as it verifies Cognito's: discovery document, JWKS,
RS256 signatures. So this issuer publishes the same documents and answers the same flow a
browser runs against Cognito's managed login — authorization code with PKCE (S256 only) —
with a one-field dev login (the user name becomes `sub`) instead of a password.

It is no kinder than a real issuer where that matters to the client: only registered client
ids and exactly registered redirect URIs (anything else is an error page, never a redirect —
an open redirector would hand codes to strangers); codes are single-use, short-lived and
bound to their client, redirect URI and PKCE challenge; errors follow RFC 6749.

The key pair is made at start and lives in memory only: restart the stack, sign in again.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pts.auth import KeysUnavailable

TOKEN_LIFETIME = 3600.0
CODE_LIFETIME = 60.0
MAX_FORM_BYTES = 8192
USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
"""What the dev login accepts as a user name (it becomes `sub`, a key in the tables)."""
CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
"""RFC 7636 §4.1."""
CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
"""base64url(SHA-256(verifier)), unpadded: always 43 characters."""


@dataclass(frozen=True, slots=True)
class Client:
    """A registered public client (no secret: PKCE is what binds the code to it)."""

    client_id: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Grant:
    """What an authorization code stands for, until it is redeemed or expires."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    sub: str
    nonce: str | None
    expires_at: float


class OAuthError(Exception):
    """An RFC 6749 error: `error` is the code, the message its description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.status = status


def generate_key() -> RSAKey:
    """A fresh RS256 signing key with a recognizable `kid`."""
    return RSAKey.generate_key(
        2048, parameters={"kid": f"local-{secrets.token_hex(4)}", "use": "sig", "alg": "RS256"}
    )


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class LocalIssuer:
    """The issuer's state (key, clients, pending codes) and its ASGI app (`.app`)."""

    def __init__(
        self,
        url: str,
        clients: Iterable[Client],
        *,
        token_lifetime: float = TOKEN_LIFETIME,
        code_lifetime: float = CODE_LIFETIME,
        clock: Callable[[], float] = time.time,
        key: RSAKey | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        """The issuer identifier: `iss` of every token, the `PTS_JWT_ISSUER` to configure."""
        self.clients = {client.client_id: client for client in clients}
        if not self.clients:
            raise ValueError("the local issuer needs at least one registered client")
        self.token_lifetime = token_lifetime
        self.code_lifetime = code_lifetime
        self._clock = clock
        self._key = key or generate_key()
        self._grants: dict[str, _Grant] = {}
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery, methods=["GET"]),
                Route("/.well-known/jwks.json", self._jwks, methods=["GET"]),
                Route("/authorize", self._authorize, methods=["GET", "POST"]),
                Route("/token", self._token, methods=["POST"]),
            ],
            middleware=[
                # The chat page fetches discovery and redeems its code from its own origin.
                Middleware(
                    CORSMiddleware,
                    allow_origins=sorted(self._client_origins()),
                    allow_methods=["GET", "POST"],
                    allow_headers=["Content-Type"],
                )
            ],
        )

    # -- documents -------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.as_dict(private=False)]}

    def mint(self, sub: str, client_id: str | None = None, **claims: Any) -> str:
        """A signed token for `sub`, as `/token` issues it (for `pts token --user NAME`).

        `client_id` defaults to the first registered client; extra `claims` are added.
        """
        if client_id is None:
            client_id = next(iter(self.clients))
        if client_id not in self.clients:
            raise ValueError(f"unknown client {client_id!r}")
        now = int(self._clock())
        payload = {
            "iss": self.url,
            "aud": client_id,
            "sub": sub,
            "iat": now,
            "exp": now + int(self.token_lifetime),
            **claims,
        }
        header = {"alg": "RS256", "kid": self._key.kid, "typ": "JWT"}
        return jwt.encode(header, payload, self._key, algorithms=["RS256"])

    def rotate_key(self) -> None:
        """Sign with a new key from now on and stop publishing the old one (a rotation at
        its harshest: tokens signed with the old key are refused once verifiers refetch)."""
        self._key = generate_key()

    def fetch(self, url: str) -> Any:
        """An in-process `pts.auth.Fetcher` for this issuer's documents (tests, one process)."""
        documents = {
            f"{self.url}/.well-known/openid-configuration": self.discovery,
            f"{self.url}/.well-known/jwks.json": self.jwks,
        }
        if url not in documents:
            raise KeysUnavailable(f"could not fetch {url}: 404")
        return documents[url]()

    # -- endpoints -------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(self.discovery())

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    async def _authorize(self, request: Request) -> Response:
        """GET shows the login form; POST (the form) issues a code and redirects with it."""
        try:
            params = (
                _single(request.query_params.multi_items())
                if request.method == "GET"
                else await _form(request)
            )
        except OAuthError as error:
            return _error_page(str(error))
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return _error_page("unknown client_id: this issuer only serves registered clients")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _error_page("redirect_uri is not registered for this client")
        # From here on the redirect URI is trusted, so errors go back to the client (§4.1.2.1).
        state = params.get("state")
        try:
            challenge = _check_authorization_request(params)
        except OAuthError as error:
            return _redirect(
                redirect_uri, error=error.error, error_description=str(error), state=state
            )
        if request.method == "GET":
            return _login_page(params)
        user = params.get("username", "").strip()
        if not USER_NAME.fullmatch(user):
            message = "a user name is 1-64 letters, digits or . _ @ -"
            return _login_page(params, message, status=400)
        code = secrets.token_urlsafe(32)
        self._expire_grants()
        self._grants[code] = _Grant(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            sub=user,
            nonce=params.get("nonce"),
            expires_at=self._clock() + self.code_lifetime,
        )
        return _redirect(redirect_uri, code=code, state=state)

    async def _token(self, request: Request) -> Response:
        try:
            return JSONResponse(
                self._redeem(await _form(request)),
                headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
            )
        except OAuthError as error:
            return JSONResponse(
                {"error": error.error, "error_description": str(error)},
                status_code=error.status,
                headers={"Cache-Control": "no-store"},
            )

    def _redeem(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Exchange a code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.6)."""
        if params.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "only grant_type=authorization_code")
        client_id = params.get("client_id", "")
        if client_id not in self.clients:
            raise OAuthError("invalid_client", "unknown client_id", status=401)
        for name in ("code", "redirect_uri", "code_verifier"):
            if not params.get(name):
                raise OAuthError("invalid_request", f"missing {name}")
        # Single use: the code is gone whatever happens next, so a stolen one is worth one try.
        grant = self._grants.pop(params["code"], None)
        if grant is None or grant.expires_at <= self._clock():
            raise OAuthError("invalid_grant", "the code is unknown, used or expired")
        if grant.client_id != client_id or grant.redirect_uri != params["redirect_uri"]:
            raise OAuthError("invalid_grant", "the code was issued to another client or redirect")
        verifier = params["code_verifier"]
        if not CODE_VERIFIER.fullmatch(verifier) or s256(verifier) != grant.code_challenge:
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        access_token = self.mint(grant.sub, client_id)
        id_claims = {"nonce": grant.nonce} if grant.nonce else {}
        return {
            "access_token": access_token,
            "id_token": self.mint(grant.sub, client_id, **id_claims),
            "token_type": "Bearer",
            "expires_in": int(self.token_lifetime),
        }

    # -- helpers ---------------------------------------------------------------------------

    def _client_origins(self) -> set[str]:
        origins = set()
        for client in self.clients.values():
            for uri in client.redirect_uris:
                parts = urlsplit(uri)
                origins.add(f"{parts.scheme}://{parts.netloc}")
        return origins

    def _expire_grants(self) -> None:
        now = self._clock()
        for code in [c for c, g in self._grants.items() if g.expires_at <= now]:
            del self._grants[code]


def _check_authorization_request(params: Mapping[str, str]) -> str:
    """The PKCE challenge of a valid request; `OAuthError` for the client otherwise."""
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code")
    if params.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
    challenge = params.get("code_challenge", "")
    if not CODE_CHALLENGE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge must be base64url(SHA-256(verifier))")
    return challenge


def _single(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict; a repeated one is an error (RFC 6749 §3.1)."""
    params: dict[str, str] = {}
    for name, value in items:
        if name in params:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        params[name] = value
    return params


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body, bounded."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "the body is too large")
    try:
        items = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as error:
        raise OAuthError("invalid_request", "the body is not a valid form") from error
    return _single(items)


def _redirect(uri: str, **params: str | None) -> Response:
    parts = urlsplit(uri)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{query}" if parts.query else query
    # 303: the browser follows a POST's redirect with a GET.
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=303)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
input,button{{font:inherit;padding:.4rem}} .error{{color:#b00020}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _error_page(message: str) -> Response:
    body = f'<p class="error">{html.escape(message)}</p>'
    return HTMLResponse(_PAGE.format(title="Sign-in error", body=body), status_code=400)


def _login_page(params: Mapping[str, str], error: str = "", status: int = 200) -> Response:
    """One field: the user name. The request's parameters ride along as hidden fields and
    are checked again on submit, like everything a browser sends."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k != "username"
    )
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = (
        f"<p>Local development issuer: no password, the name is who you are.</p>{message}"
        f'<form method="post" action="authorize">{hidden}'
        '<label>User name <input name="username" autofocus required '
        'pattern="[A-Za-z0-9._@\\-]{1,64}" autocomplete="username"></label> '
        "<button>Sign in</button></form>"
    )
    return HTMLResponse(
        _PAGE.format(title="Sign in", body=body),
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def sign_in(
    issuer_url: str,
    user: str,
    client_id: str,
    redirect_uri: str,
    *,
    http: httpx.Client | None = None,
) -> dict[str, Any]:
    """Run the whole PKCE flow against a running issuer, as a browser would; the token
    response (`access_token`, `id_token`, …). For `pts token --user NAME`: a separate process
    has no access to the issuer's key, and needs no back door."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    request = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "state": state,
        "scope": "openid",
    }
    base = issuer_url.rstrip("/")
    client = http or httpx.Client(timeout=10.0)
    try:
        response = client.post(
            f"{base}/authorize", data={**request, "username": user}, follow_redirects=False
        )
        location = response.headers.get("location")
        if response.status_code != 303 or not location:
            raise RuntimeError(f"sign-in refused ({response.status_code}): {response.text[:200]}")
        answer = dict(parse_qsl(urlsplit(location).query))
        if answer.get("state") != state or "code" not in answer:
            raise RuntimeError(f"sign-in failed: {answer.get('error_description') or answer}")
        response = client.post(
            f"{base}/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
        )
        response.raise_for_status()
        tokens: dict[str, Any] = response.json()
        return tokens
    finally:
        if http is None:
            client.close()
