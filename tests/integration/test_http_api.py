"""The HTTP API of docs/protocol.md against the running local stack, with a real HTTP client."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support import RunningStack


def create(http: httpx.Client, prompt: str) -> dict[str, str]:
    response = http.post("/chats", json={"prompt": prompt})
    assert response.status_code == 201, response.text
    return response.json()


def drive(http: httpx.Client, chat: dict[str, str]) -> httpx.Response:
    return http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )


def wait_for_status(http: httpx.Client, stream_id: str, status: str, within: float = 10) -> dict:
    deadline = time.monotonic() + within
    while True:
        body = http.get(f"/streams/{stream_id}").json()
        if body.get("status") == status or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_healthz(http: httpx.Client):
    assert http.get("/healthz").status_code == 200


def test_the_quickstart(http: httpx.Client):
    chat = create(http, "Tell me about rivers")
    assert set(chat) == {"chatId", "streamId", "driveToken", "threadId"}
    response = drive(http, chat)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    stored = http.get(f"/streams/{chat['streamId']}").json()
    assert stored["status"] == "done"
    assert stored["text"] == response.text
    assert len(response.text.split()) > 50
    assert stored["seq"] >= 1


def test_first_bytes_arrive_while_the_source_is_still_running(http: httpx.Client):
    chat = create(http, "A long answer please")
    with http.stream(
        "POST",
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    ) as response:
        chunks = response.iter_text()
        first = next(chunks)
        assert first
        during = http.get(f"/streams/{chat['streamId']}").json()
        assert during["status"] == "streaming"
        rest = "".join(chunks)
    assert http.get(f"/streams/{chat['streamId']}").json()["text"] == first + rest


@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII. With two sentences! And a question?",
        "Accents: déjà vu, naïve café, Ærøskøbing. Über straße.",
        "中文没有空格。日本語の文章です！한국어 문장입니다？",
        "Emoji 🙂👍🏽 and a family 👨‍👩‍👧‍👦 with flags 🇫🇷🇯🇵 … ellipsis… done",
        "def f(x):\n    return [i * i for i in range(x)]\n\nclass A:\n    pass\n",
        "no punctuation at all just a long run of words " * 8,
    ],
)
def test_persisted_text_is_exactly_the_streamed_text(http: httpx.Client, text: str):
    chat = create(http, f"echo:{text}")
    streamed = drive(http, chat).text
    assert streamed == text
    assert http.get(f"/streams/{chat['streamId']}").json()["text"] == text


def test_a_failing_source_keeps_the_partial_text(http: httpx.Client):
    chat = create(http, "fail-after:5:This text will be cut off somewhere in the middle.")
    streamed = drive(http, chat).text
    assert streamed and "This text will be cut off".startswith(streamed[:10])
    stored = http.get(f"/streams/{chat['streamId']}").json()
    assert stored["status"] == "error"
    assert stored["text"] == streamed
    assert "fail" in stored["error"]


def test_second_drive_is_409(http: httpx.Client):
    chat = create(http, "echo:once")
    assert drive(http, chat).status_code == 200
    again = drive(http, chat)
    assert again.status_code == 409
    assert "error" in again.json()


def test_token_errors(http: httpx.Client):
    chat = create(http, "echo:secret")
    missing = http.post("/chat-stream", json={"streamId": chat["streamId"]})
    assert missing.status_code == 401
    wrong = http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": "Bearer not-the-token"},
    )
    assert wrong.status_code == 403
    unknown = http.post(
        "/chat-stream", json={"streamId": "nope"}, headers={"Authorization": "Bearer x"}
    )
    assert unknown.status_code == 404
    # 401 wins over 404, 400 wins over everything.
    assert http.post("/chat-stream", json={"streamId": "nope"}).status_code == 401
    assert http.post("/chat-stream", content=b"{").status_code == 400
    for response in (missing, wrong, unknown):
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"prompt": 42}',
        b'{"prompt": ""}',
        b'{"prompt": "\\ud800 lone surrogate"}',
        b"\xff\xfe invalid utf-8",
        json.dumps({"prompt": "x" * (32 * 1024 + 1)}).encode(),
    ],
)
def test_bad_chat_requests_are_400_json(http: httpx.Client, body: bytes):
    response = http.post("/chats", content=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_prompt_of_exactly_32_kib_is_accepted(http: httpx.Client):
    assert http.post("/chats", json={"prompt": "é" * (16 * 1024)}).status_code == 201


@pytest.mark.parametrize("body", [{}, {"streamId": 7}, {"streamId": ""}])
def test_bad_drive_requests_are_400(http: httpx.Client, body: dict):
    assert http.post("/chat-stream", json=body).status_code == 400


def test_unknown_things_are_404_json(http: httpx.Client):
    assert http.get("/streams/does-not-exist").status_code == 404
    assert http.get("/streams/..%2F..").status_code == 404
    nowhere = http.get("/nowhere")
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]


def test_list_chats_oldest_first(http: httpx.Client):
    made = [create(http, f"echo:list {i}")["chatId"] for i in range(3)]
    listed = http.get("/chats").json()["chats"]
    ids = [c["chatId"] for c in listed]
    assert [i for i in ids if i in made] == made
    entry = next(c for c in listed if c["chatId"] == made[0])
    assert entry["prompt"] == "echo:list 0"
    assert entry["createdAt"].endswith("Z")


def test_client_disconnect_does_not_stop_the_stream(http: httpx.Client):
    chat = create(http, "Please write a long reply for a client that leaves early")
    with http.stream(
        "POST",
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    ) as response:
        next(response.iter_raw())
    # The connection is closed here, mid-stream.
    stored = wait_for_status(http, chat["streamId"], "done")
    assert stored["status"] == "done"
    assert len(stored["text"].split()) > 50


def test_cancel(http: httpx.Client, local_stack: RunningStack):
    chat = create(http, "A reply that will be cancelled")
    auth = {"Authorization": f"Bearer {chat['driveToken']}"}
    with http.stream(
        "POST", "/chat-stream", json={"streamId": chat["streamId"]}, headers=auth
    ) as response:
        chunks = response.iter_text()
        first = next(chunks)
        cancelled = http.post(f"/streams/{chat['streamId']}/cancel", headers=auth)
        assert cancelled.status_code == 202
        assert cancelled.json() == {"status": "cancelled"}
        streamed = first + "".join(chunks)
    stored = http.get(f"/streams/{chat['streamId']}").json()
    assert stored["status"] == "cancelled"
    assert stored["text"] == streamed
    assert http.post(f"/streams/{chat['streamId']}/cancel", headers=auth).status_code == 409
    pending = create(http, "never driven")
    assert (
        http.post(
            f"/streams/{pending['streamId']}/cancel",
            headers={"Authorization": f"Bearer {pending['driveToken']}"},
        ).status_code
        == 202
    )


def test_delete_chat(http: httpx.Client):
    chat = create(http, "echo:to be deleted")
    drive(http, chat)
    auth = {"Authorization": f"Bearer {chat['driveToken']}"}
    assert http.delete(f"/chats/{chat['chatId']}").status_code == 401
    assert (
        http.delete(f"/chats/{chat['chatId']}", headers={"Authorization": "Bearer x"}).status_code
        == 403
    )
    assert http.delete("/chats/unknown", headers=auth).status_code == 404
    deleted = http.delete(f"/chats/{chat['chatId']}", headers=auth)
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": chat["chatId"]})
    assert http.get(f"/streams/{chat['streamId']}").status_code == 404
    assert chat["chatId"] not in [c["chatId"] for c in http.get("/chats").json()["chats"]]


def test_delete_a_live_chat_cancels_it_first(http: httpx.Client):
    chat = create(http, "A long reply that is deleted while it streams")
    auth = {"Authorization": f"Bearer {chat['driveToken']}"}
    with http.stream(
        "POST", "/chat-stream", json={"streamId": chat["streamId"]}, headers=auth
    ) as response:
        chunks = response.iter_text()
        next(chunks)
        assert http.delete(f"/chats/{chat['chatId']}", headers=auth).status_code == 200
        "".join(chunks)
    assert http.get(f"/streams/{chat['streamId']}").status_code == 404


def test_cors_preflight_is_answered(http: httpx.Client):
    response = http.options(
        "/chat-stream",
        headers={
            "Origin": "https://example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://example.org")
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    simple = http.get("/chats", headers={"Origin": "https://example.org"})
    assert simple.headers["access-control-allow-origin"] in ("*", "https://example.org")


def test_cors_accepts_the_headers_browsers_and_sdks_send(http: httpx.Client):
    requested = "authorization, content-type, user-agent, sentry-trace, baggage, x-request-id"
    response = http.options(
        "/chat-stream",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": requested,
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-headers"] == requested
    bare = http.options("/streams/abc")  # no preflight headers: not a 405
    assert bare.status_code == 200
    assert bare.headers["allow"] == "GET, HEAD, OPTIONS"


def test_streamed_bodies_say_not_to_buffer(http: httpx.Client):
    chat = create(http, "echo:unbuffered")
    response = drive(http, chat)
    assert response.headers["x-accel-buffering"] == "no"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[" * 60_000, "nested too deeply"),
        (b'{"prompt": ' + b"1" * 5_000 + b"}", "number is too long"),
        (b'{"prompt": "\\udfff"}', "not valid UTF-8"),
    ],
)
def test_hostile_json_is_a_400(http: httpx.Client, body: bytes, expected: str):
    response = http.post("/chats", content=body)
    assert response.status_code == 400
    assert expected in response.json()["error"]


def test_an_endless_chunked_body_is_refused_while_reading(local_stack: RunningStack):
    """300 MB offered in chunks: the server answers 413 and hangs up after about 64 KiB,
    instead of reading (and holding) it all."""
    host, port = local_stack.http_url.removeprefix("http://").split(":")
    chunk = b"x" * 65_536
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /chats HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            while sent < 300 * 1024 * 1024:
                sock.sendall(framed)
                sent += len(chunk)
        except OSError:
            pass  # the server hung up: what we want
        answer = b""
        try:
            while part := sock.recv(65_536):
                answer += part
        except OSError:
            pass
    assert sent < 16 * 1024 * 1024  # socket buffers, not the body
    if answer:  # a reset can beat the answer to the client; the hang-up is what counts
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b'"error"' in answer
