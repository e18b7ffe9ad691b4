"""Fuzzing the HTTP API: no input gets a 5xx, a non-JSON error, or holds the server.

Hypothesis builds bodies, paths and headers, favouring the shapes that broke Python web apps
before: deep nesting, numbers past Python's 4,300-digit limit, lone surrogates (JSON's
`"\\ud800"`), bytes that are not UTF-8, JSON that is not an object, bodies past the limit.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pts.api import MAX_BODY_BYTES, create_app
from pts.config import Settings
from pts.sources.demo import DemoSource
from pts.storage import StreamStore

with warnings.catch_warnings():  # Starlette 1.x would rather use httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any code point, lone surrogates included (Hypothesis leaves them out unless asked).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ASCII: a surrogate travels as its `\ud800` escape


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


hostile_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(as_json),
    st.dictionaries(st.sampled_from(["prompt", "streamId", "after"]), json_values).map(as_json),
    st.integers(1, 60_000).map(lambda n: b"[" * n),
    st.integers(1, 30_000).map(nested),
    st.integers(4_000, 20_000).map(lambda n: b'{"prompt": ' + b"7" * n + b"}"),
    st.sampled_from(
        [
            b'{"prompt": "\\ud800"}',
            b'{"prompt": "ok", "x": "\\udfff\\ud800"}',
            b'{"streamId": "\\ud800"}',
            b'{"streamId": "' + b"a" * 5000 + b'"}',
            b'{"prompt": 1e999999}',
            b'{"prompt": -0, "prompt": NaN}',
            b"\xef\xbb\xbf{}",  # a byte order mark
            b"{" * 40_000,
            b'"' + b"\\" * 50_000 + b'"',
        ]
    ),
)


@pytest.fixture
def client(store: StreamStore) -> Iterator[TestClient]:
    app = create_app(Settings(), store, DemoSource(reply_tokens=20, tokens_per_second=0))
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


def assert_clean(response: Any) -> None:
    """A 2xx/3xx, or a 4xx whose body is `{"error": "..."}`."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert isinstance(error, str) and error


@FUZZ
@given(path=st.sampled_from(["/chats", "/chat-stream"]), body=hostile_bodies)
def test_hostile_bodies(client: TestClient, path: str, body: bytes):
    response = client.post(path, content=body, headers={"Authorization": "Bearer t"})
    assert_clean(response)
    if path == "/chat-stream":
        assert response.status_code >= 400  # nothing here names a real stream


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]),
    template=st.sampled_from(
        ["/streams/{}", "/streams/{}/cancel", "/chats/{}", "/{}", "/chats", "/chat-stream"]
    ),
    segment=any_text,
    token=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30),
)
def test_any_path_method_and_token(
    client: TestClient, method: str, template: str, segment: str, token: str
):
    encoded = quote(segment.encode("utf-8", "surrogatepass"), safe="")
    headers = {"Authorization": f"Bearer {token}".encode("latin-1")}
    response = client.request(method, template.format(encoded), headers=headers)
    assert_clean(response)


@FUZZ
@given(
    origin=st.sampled_from(["https://example.org", "null", "http://127.0.0.1:3000"]),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "OPTIONS"]),
    headers=st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,30}", fullmatch=True), max_size=8),
    path=st.sampled_from(["/chats", "/chat-stream", "/streams/x", "/chats/x", "/healthz"]),
)
def test_preflights(client: TestClient, origin: str, method: str, headers: list[str], path: str):
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = ", ".join(headers)
    response = client.options(path, headers=request)
    if method == "PUT":
        assert response.status_code == 400 and "method" in response.json()["error"]
        return
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    if headers:
        allowed = response.headers["access-control-allow-headers"].lower()
        assert all(h.lower() in allowed for h in headers)


def test_a_body_past_the_limit_is_refused_while_reading(client: TestClient):
    """Straight through ASGI (the test client would read the whole body first): a chunked
    300 MiB body is refused once 64 KiB are past, having pulled just over that."""
    pulled: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 16_384, "more_body": len(pulled) < 19_200}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/chats",
        "raw_path": b"/chats",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(body) == {"error": f"request body is larger than {MAX_BODY_BYTES} bytes"}
    assert len(pulled) == MAX_BODY_BYTES // 16_384 + 1


def test_a_declared_length_past_the_limit_is_refused_unread(client: TestClient):
    response = client.post(
        "/chats", content=b"{}", headers={"Content-Length": str(MAX_BODY_BYTES + 1)}
    )
    assert response.status_code == 413


def test_exactly_the_limit_is_read(client: TestClient):
    body = json.dumps({"prompt": "x", "pad": "y" * (MAX_BODY_BYTES - 30)}).encode()
    body += b" " * (MAX_BODY_BYTES - len(body))
    assert len(body) == MAX_BODY_BYTES
    assert client.post("/chats", content=body).status_code == 201
    assert client.post("/chats", content=body + b" ").status_code == 413


def test_bare_options_on_every_route(client: TestClient):
    for path, allowed in [
        ("/chats", "GET, HEAD, OPTIONS, POST"),
        ("/chats/abc", "DELETE, OPTIONS"),
        ("/chat-stream", "OPTIONS, POST"),
        ("/streams/abc", "GET, HEAD, OPTIONS"),
        ("/streams/abc/cancel", "OPTIONS, POST"),
        ("/healthz", "GET, HEAD, OPTIONS"),
        ("/", "GET, HEAD, OPTIONS"),
    ]:
        response = client.options(path)
        assert response.status_code == 200, path
        assert response.headers["allow"] == allowed
        assert response.json() == {"methods": allowed.split(", ")}
    assert client.options("/nowhere").status_code == 404


def test_streamed_bodies_are_not_buffered_by_proxies(client: TestClient):
    chat = client.post("/chats", json={"prompt": "echo:hi"}).json()
    response = client.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    assert response.text == "hi"
    assert response.headers["x-accel-buffering"] == "no"
