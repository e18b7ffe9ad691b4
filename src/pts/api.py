"""The HTTP API (docs/protocol.md) as a Starlette app: on AWS behind Lambda Web Adapter and
a response-streaming Function URL, locally under uvicorn — the same app either way.

Every error a client causes is a Starlette `HTTPException`, answered as `{"error": detail}`
by one handler (Starlette's own 404 and 405 included); when several apply, the checks run
in the order 413, 400, 401, 404, 403, 409. No input gets a 5xx or holds the server: a body is
read only up to its limit, and JSON that Python's parser chokes on is a 400 like any other.

Who is calling (`PTS_AUTH`): in `none` mode everybody is `anonymous` and the drive token
guards driving, cancelling and deleting. In `jwt` mode every route but the page, `/healthz`
and CORS preflights needs `Authorization: Bearer <JWT>` (`pts.auth.Verifier`, run off the
event loop: it may fetch the issuer's keys); chats belong to the token's `sub`, and
anybody else's private stream is `404`, exactly as if it did not exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from html import escape as html_escape
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from pts import observability, sse, threads
from pts.config import Settings
from pts.driver import StreamDriver
from pts.model import ANONYMOUS, Chat, Stream
from pts.protocol import Status, is_valid_id, load_json
from pts.resume import StoredReply
from pts.sources import GenerationRequest, Source, Turn, aiter_source, history_budget, load_source
from pts.storage import (
    MAX_PAGE,
    AsyncStreamStore,
    BadCursor,
    StreamStore,
    TooManyActiveStreams,
)

if TYPE_CHECKING:
    # Imported where jwt mode needs it: `none` starts without JOSE and its native crypto.
    from pts.auth import Verifier

logger = logging.getLogger(__name__)

MAX_PROMPT_BYTES = 32 * 1024
MAX_BODY_BYTES = 64 * 1024
DELETE_WAIT_SECONDS = 3.0
MISSING_TOKEN = "missing drive token: send 'Authorization: Bearer <driveToken>'"
STREAMED_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Accel-Buffering": "no",  # a proxy in front (nginx and its kin) must not hold it back
}
CORS_METHODS = ("GET", "POST", "DELETE", "OPTIONS")


# -- request parsing --------------------------------------------------------------------


def _too_large() -> HTTPException:
    # Closing the connection stops the rest of the body from being received at all.
    return HTTPException(
        413, f"request body is larger than {MAX_BODY_BYTES} bytes", {"Connection": "close"}
    )


async def _body(request: Request) -> bytes:
    """The body, read only up to `MAX_BODY_BYTES`: a longer one (declared or chunked) is
    refused as soon as that is known, never buffered whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 12 or int(declared) > MAX_BODY_BYTES):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect as error:
        raise HTTPException(400, "request body ended early (client disconnected)") from error
    return b"".join(chunks)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = load_json(await _body(request))
    except ValueError as error:
        raise HTTPException(400, f"request body is {error}") from error
    if not isinstance(body, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return body


def _utf8_size(value: str, name: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise HTTPException(400, f"{name} is not valid UTF-8 text (lone surrogate?)") from error


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"{name} must be a non-empty string")
    return value


def _thread_id(value: object) -> str | None:
    """`threadId` of `POST /chats` or `GET /chats`: absent or null (None), else a non-empty
    string (one that breaks the id rule is then looked up as unknown, like any id)."""
    if value is None:
        return None
    return _identifier(value, "threadId")


def chat_json(chat: Chat, *, sharing: bool = False) -> dict[str, Any]:
    """A chat as `GET /chats` lists it; with `sharing` (sign-in on), whether it is shared."""
    listed: dict[str, Any] = {
        "chatId": chat.chat_id,
        "prompt": chat.prompt,
        "streamId": chat.stream_id,
        "createdAt": chat.created_at,
        "threadId": chat.thread_id,
    }
    if sharing:
        listed["shared"] = chat.shared
    return listed


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _client_module() -> Path:
    """clients/js/src: in the wheel (so the Lambda layer) as `pts/web/client`, else, in a
    source checkout, beside the Python sources. One copy either way."""
    packaged = Path(str(resources.files("pts.web").joinpath("client")))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "clients" / "js" / "src"


def _page_policy(nonce: str, ws_url: str | None, token_endpoint: str | None = None) -> str:
    """The chat page's Content-Security-Policy: its own script and style, its own APIs (and,
    with sign-in, the issuer's token endpoint, where it redeems its code)."""
    connect = "'self'"
    if ws_url:
        url = urlsplit(ws_url)
        if url.scheme in ("ws", "wss") and url.netloc:
            connect += f" {url.scheme}://{url.netloc}"
    if token_endpoint:
        url = urlsplit(token_endpoint)
        if url.scheme in ("http", "https") and url.netloc:
            connect += f" {url.scheme}://{url.netloc}"
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"img-src data:; connect-src {connect}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _page_size(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return MAX_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise HTTPException(400, f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


class Api:
    """The route handlers, bound to one store, one text source and (`jwt` mode) a verifier."""

    def __init__(
        self,
        settings: Settings,
        store: StreamStore,
        source: Source,
        verifier: Verifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = AsyncStreamStore(store)
        self.source = source
        self.verifier = verifier
        self.drivers: dict[str, StreamDriver] = {}
        self._sign_in: dict[str, str] | None = None

    # -- who is calling ----------------------------------------------------------------

    async def _caller(self, request: Request) -> str:
        """The caller's `sub`: `anonymous` in `none` mode, else from a verified JWT (401)."""
        if self.verifier is None:
            return ANONYMOUS
        from pts.auth import KeysUnavailable, Unauthorized

        try:
            header = request.headers.get("authorization")
            identity = await asyncio.to_thread(self.verifier.verify_bearer, header)
        except KeysUnavailable as error:
            logger.warning("cannot verify a token: %s", error)
            raise HTTPException(
                503, "cannot verify tokens right now; try again", {"Retry-After": "5"}
            ) from None
        except Unauthorized as error:
            raise HTTPException(
                401, str(error), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        return identity.sub

    async def _owned_stream(
        self,
        request: Request,
        stream_id: str,
        *,
        missing: str = "stream",
        sub: str | None = None,
    ) -> Stream:
        """The stream, if the caller may drive, cancel or delete it (401, 404, 403 in that
        order): its owner in `jwt` mode (anybody else: 404; `sub` if already verified), the
        drive token's holder else."""
        if self.verifier is not None:
            sub = sub or await self._caller(request)
            stream = await self.store.get_stream(stream_id) if is_valid_id(stream_id) else None
            if stream is None or stream.owner != sub:
                raise HTTPException(404, f"unknown {missing}")
            return stream
        token = _bearer_token(request)
        if token is None:
            raise HTTPException(401, MISSING_TOKEN)
        stream = None
        if is_valid_id(stream_id):
            stream = await self.store.get_stream(stream_id)
        if stream is None:
            raise HTTPException(404, f"unknown {missing}")
        if not stream.token_matches(token):
            raise HTTPException(403, "wrong drive token for this stream")
        return stream

    # -- routes ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def page(self, request: Request) -> Response:
        """The chat page, told where the WebSocket API is (`PTS_WS_URL`).

        Its policy lets only the page's own script (by nonce) and what it imports run, so
        even markup that got past the page's sanitizer could not run script.
        """
        html = resources.files("pts.web").joinpath("index.html").read_text("utf-8")
        ws_url = html_escape(self.settings.ws_url or "", quote=True)
        nonce = secrets.token_urlsafe(18)
        sign_in = await self._sign_in_config()
        html = (
            html.replace("{{PTS_WS_URL}}", ws_url)
            .replace("{{CSP_NONCE}}", nonce)
            .replace("{{PTS_SIGN_IN}}", html_escape(json.dumps(sign_in) if sign_in else ""))
        )
        token_endpoint = (sign_in or {}).get("tokenEndpoint")
        policy = _page_policy(nonce, self.settings.ws_url, token_endpoint)
        return HTMLResponse(html, headers={"Content-Security-Policy": policy})

    async def _sign_in_config(self) -> dict[str, str] | None:
        """What the page needs to sign in (`jwt` mode): the issuer, the page's client id (the
        first audience) and the endpoints from the issuer's discovery document, fetched once.
        `{"issuer", "clientId"}` alone while the issuer cannot be reached (the page says so)."""
        if self.verifier is None:
            return None
        if self._sign_in is not None:
            return self._sign_in
        from pts.auth import KeysUnavailable

        issuer = self.verifier.issuer
        config = {"issuer": issuer, "clientId": self.settings.sign_in_client_id or ""}
        try:
            discovery = await asyncio.to_thread(self.verifier.keys.discovery)
        except KeysUnavailable as error:
            logger.warning("cannot read the issuer's discovery document: %s", error)
            return config
        if not isinstance(discovery, dict):
            return config
        authorize, token = discovery.get("authorization_endpoint"), discovery.get("token_endpoint")
        if not (isinstance(authorize, str) and isinstance(token, str)):
            return config
        self._sign_in = {**config, "authorizationEndpoint": authorize, "tokenEndpoint": token}
        return self._sign_in

    async def create_chat(self, request: Request) -> Response:
        body = await _json_object(request)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise HTTPException(400, "prompt must be a string")
        size = _utf8_size(prompt, "prompt")
        if not 1 <= size <= MAX_PROMPT_BYTES:
            raise HTTPException(400, f"prompt must be 1 to {MAX_PROMPT_BYTES} bytes of UTF-8")
        shared = body.get("shared", False)
        if not isinstance(shared, bool):
            raise HTTPException(400, "shared must be true or false")
        thread_id = _thread_id(body.get("threadId"))
        owner = await self._caller(request)
        # Another user's thread is unknown: continuing it would hand its history to a stranger.
        if thread_id is not None and not (
            is_valid_id(thread_id) and await self.store.thread_owner(thread_id) == owner
        ):
            raise HTTPException(404, "unknown thread")
        try:
            chat, token = await self.store.create_chat(
                prompt, thread_id=thread_id, owner=owner, shared=shared
            )
        except TooManyActiveStreams as error:
            raise HTTPException(429, str(error), {"Retry-After": "5"}) from None
        return JSONResponse(
            {
                "chatId": chat.chat_id,
                "streamId": chat.stream_id,
                "driveToken": token,
                "threadId": chat.thread_id,
            },
            status_code=201,
        )

    async def list_chats(self, request: Request) -> Response:
        """The caller's newest chats, oldest first; `cursor` pages back to older ones."""
        if "threadId" in request.query_params:
            return await self.list_thread(request)
        limit = _page_size(request)
        cursor = request.query_params.get("cursor") or None
        owner = await self._caller(request)
        try:
            page = await self.store.chat_page(owner, limit=limit, cursor=cursor)
        except BadCursor as error:
            raise HTTPException(400, str(error)) from None
        chats = [chat_json(c, sharing=self.verifier is not None) for c in page.chats]
        return JSONResponse({"chats": chats, "cursor": page.cursor})

    async def list_thread(self, request: Request) -> Response:
        """`GET /chats?threadId=…`: one thread's chats, oldest first (none: an empty list)."""
        thread_id = _thread_id(request.query_params["threadId"])
        sub = await self._caller(request)
        chats: list[Chat] = []
        if thread_id is not None and is_valid_id(thread_id):
            chats = await self.store.list_thread(thread_id)
        # Somebody else's thread lists as no thread at all.
        chats = [c for c in chats if c.owner == sub]
        sharing = self.verifier is not None
        return JSONResponse({"chats": [chat_json(c, sharing=sharing) for c in chats]})

    async def _history(self, chat: Chat | None) -> tuple[Turn, ...]:
        """The earlier turns of the chat's thread that the source is given."""
        if chat is None:
            return ()
        budget = history_budget(self.source)
        return await asyncio.to_thread(threads.history, self.store.sync, chat, budget)

    async def drive(self, request: Request) -> Response:
        body = await _json_object(request)
        stream_id = _identifier(body.get("streamId"), "streamId")
        stream = await self._owned_stream(request, stream_id)
        if stream.status is not Status.PENDING or not await self.store.claim(stream_id):
            raise HTTPException(
                409, f"stream is not pending (it is {stream.status}): driven already"
            )
        chat = None
        if stream.chat_id:
            chat = await self.store.get_chat(stream.chat_id)
        request_ = GenerationRequest(
            chat.prompt if chat else "", stream_id, stream.chat_id, await self._history(chat)
        )
        driver = StreamDriver(
            self.store,
            stream_id,
            aiter_source(self.source, request_),
            max_delay=self.settings.batch_max_delay,
            max_bytes=self.settings.batch_max_bytes,
            min_interval=self.settings.batch_min_interval,
            heartbeat_interval=self.settings.idle_timeout / 4,
        )
        self.drivers[stream_id] = driver
        task = driver.start()
        task.add_done_callback(lambda _: self.drivers.pop(stream_id, None))
        if sse.wants_event_stream(request.headers.get("accept", "")):
            # The AI SDK's UI message stream: the same pieces, then how the stream ended.
            events = sse.ui_message_stream(stream_id, driver.text(), task)
            return StreamingResponse(events, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
        return StreamingResponse(
            driver.text(),
            media_type="text/plain; charset=utf-8",
            headers=STREAMED_HEADERS,
        )

    async def get_stream(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        sub = await self._caller(request)
        body = None
        if is_valid_id(stream_id):
            body = await self.store.read(stream_id)
        if body is None or not body.readable_by(sub):
            raise HTTPException(404, "unknown stream")
        payload = {"streamId": stream_id, "text": body.text, "status": body.status, "seq": body.seq}
        if body.status is Status.ERROR:
            payload["error"] = body.error or "unknown error"
        return JSONResponse(payload)

    async def resume(self, request: Request) -> Response:
        """`GET /streams/{streamId}/events`: the stream as the AI SDK's UI message stream, for
        `useChat`'s resume: its stored text, the rest as it is persisted, then how it ended.
        `204` while it is `pending`: nobody drives it, so there is nothing to resume."""
        stream_id = request.path_params["stream_id"]
        sub = await self._caller(request)
        tail = None
        if is_valid_id(stream_id):
            tail = await self.store.read_batches(stream_id)
        if tail is None or not tail.stream.readable_by(sub):
            raise HTTPException(404, "unknown stream")
        if tail.stream.status is Status.PENDING:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        reply = StoredReply(self.store, stream_id, tail)
        events = sse.ui_message_stream(stream_id, reply.pieces(), reply.outcome)
        return StreamingResponse(events, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)

    async def cancel(self, request: Request) -> Response:
        stream = await self._owned_stream(request, request.path_params["stream_id"])
        if not await self._cancel(stream):
            raise HTTPException(409, f"stream already ended (status {stream.status})")
        return JSONResponse({"status": "cancelled"}, status_code=202)

    async def delete_chat(self, request: Request) -> Response:
        chat_id = request.path_params["chat_id"]
        sub = await self._caller(request)
        if self.verifier is None and _bearer_token(request) is None:
            raise HTTPException(401, MISSING_TOKEN)
        chat = None
        if is_valid_id(chat_id):
            chat = await self.store.get_chat(chat_id)
        if chat is None or chat.owner != sub:
            raise HTTPException(404, "unknown chat")
        stream = await self._owned_stream(request, chat.stream_id, missing="chat", sub=sub)
        # A live stream ends first (viewers get `cancelled`); once it has ended, nothing its
        # driver may still try to write is stored, so the delete cannot leave an orphan.
        if not stream.status.terminal and await self._cancel(stream):
            await self._wait_until_ended(stream)
        await self.store.delete_chat(chat)
        # Not an empty 204: an empty streamed body through Lambda Web Adapter can hang until
        # the function times out.
        return JSONResponse({"deleted": chat.chat_id})

    # -- cancelling --------------------------------------------------------------------

    async def _cancel(self, stream: Stream) -> bool:
        """Ask the stream to stop; False if it had already ended."""
        if stream.status.terminal:
            return False
        state = await self.store.request_cancel(stream.stream_id)
        if state is None:
            return False
        if state is Status.CANCELLED:  # it was pending: no driver will count it
            observability.count(observability.CANCELS)
        # The driver may run in this very process: stop it now instead of at its next poll.
        if driver := self.drivers.get(stream.stream_id):
            driver.cancel()
        return True

    async def _wait_until_ended(self, stream: Stream) -> None:
        """Give the stream's driver time to flush and store `cancelled` (viewers see it)."""
        deadline = asyncio.get_running_loop().time() + DELETE_WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            current = await self.store.get_stream(stream.stream_id)
            if current is None or current.status.terminal:
                return
            await asyncio.sleep(0.1)
        # Its driver is gone (a crashed instance): end the stream on its behalf. Should the
        # driver be merely frozen, what it writes when it thaws is refused.
        await self.store.finish(stream.stream_id, Status.CANCELLED)

    async def shutdown(self) -> None:
        """Stop live streams cleanly: each is flushed and stored as `cancelled`."""
        drivers = list(self.drivers.values())
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*(d.start() for d in drivers), return_exceptions=True)


# -- the app ----------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal error"}, status_code=500)


def _allow(methods: list[str]) -> Callable[[Request], Awaitable[Response]]:
    """A bare `OPTIONS` (no preflight headers): the path's methods, in `Allow` and the body."""
    allowed = sorted({*methods, "OPTIONS"} | ({"HEAD"} if "GET" in methods else set()))

    async def options(request: Request) -> Response:
        return JSONResponse({"methods": allowed}, headers={"Allow": ", ".join(allowed)})

    return options


def _with_options(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Every route, plus an `OPTIONS` route for each path, so no path answers it with 405.

    The answer has a body: an empty streamed one can hang behind Lambda Web Adapter.
    """
    methods: dict[str, list[str]] = {}
    for route in routes:
        if isinstance(route, Route):
            methods.setdefault(route.path, []).extend(route.methods or ())
    return [*routes, *(Route(p, _allow(m), methods=["OPTIONS"]) for p, m in methods.items())]


class _Cors(CORSMiddleware):
    """Starlette's CORS, with its refused preflight as JSON like every other error."""

    def preflight_response(self, request_headers: Any) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("access")}
        return JSONResponse(
            {"error": bytes(response.body).decode()}, response.status_code, headers=headers
        )


def cors(app: ASGIApp, settings: Settings) -> ASGIApp:
    """CORS, configured here and only here (the Function URL has none, so they cannot
    disagree). Any header a preflight asks for is allowed (reflected): browsers and SDKs
    add their own (`user-agent` from the AI SDK, `sentry-trace`, `baggage`, `x-*`), and
    there is nothing to protect by refusing them: no cookies, no credentials mode, and
    the drive token is checked on the request itself."""
    return _Cors(
        app,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(CORS_METHODS),
        allow_headers=["*"],
        max_age=600,
    )


def create_app(
    settings: Settings | None = None,
    store: StreamStore | None = None,
    source: Source | None = None,
    verifier: Verifier | None = None,
) -> Starlette:
    """The ASGI app. With no arguments everything comes from the environment (in `jwt`
    mode the verifier too; a misconfiguration fails here, at start)."""
    if observability.on_lambda():
        observability.logger()  # JSON log lines, as the other functions write them
    settings = settings or Settings.from_env()
    store = store or StreamStore(
        settings.table,
        retention_days=settings.retention_days,
        active_limit=settings.max_active_streams_per_user,
    )
    source = source or load_source(settings.source, settings.extra)
    if verifier is None and settings.auth == "jwt":
        from pts.auth import Verifier

        verifier = Verifier.from_env({**settings.extra, "PTS_AUTH": "jwt"})
    api = Api(settings, store, source, verifier)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await api.shutdown()

    routes: list[BaseRoute] = [
        Route("/", api.page, methods=["GET"]),
        Route("/healthz", api.health, methods=["GET"]),
        Route("/chats", api.create_chat, methods=["POST"]),
        Route("/chats", api.list_chats, methods=["GET"]),
        Route("/chats/{chat_id}", api.delete_chat, methods=["DELETE"]),
        Route("/chat-stream", api.drive, methods=["POST"]),
        Route("/streams/{stream_id}", api.get_stream, methods=["GET"]),
        Route("/streams/{stream_id}/cancel", api.cancel, methods=["POST"]),
        Route("/streams/{stream_id}/events", api.resume, methods=["GET"]),
        # The page's vendored libraries (scripts/vendor-web.sh), shipped inside the package,
        # and the JavaScript client that the page uses (clients/js/src).
        Mount("/static/vendor", StaticFiles(packages=[("pts.web", "vendor")])),
        Mount("/static/client", StaticFiles(directory=_client_module())),
        Mount("/static/app", StaticFiles(packages=[("pts.web", "app")])),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = Starlette(
        routes=_with_options(routes),
        middleware=[Middleware(cors, settings=settings)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.api = api
    return app
