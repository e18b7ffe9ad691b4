"""`pts chat`, `pts get` and `pts watch`, run as the real command in a subprocess:
against the local stack, and `watch` also against a scripted gateway that misbehaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from pts.subscriptions import SubscriptionStore
from tests.support import RunningStack

pytestmark = pytest.mark.slow


def pts_env(http_url: str, ws_url: str) -> dict[str, str]:
    return {**os.environ, "PTS_HTTP_URL": http_url, "PTS_WS_URL": ws_url}


def pts(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pts.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def start_pts(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pts.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def env(local_stack: RunningStack) -> dict[str, str]:
    assert local_stack.ws_url.startswith("ws://") and not local_stack.ws_url.endswith(":0")
    return pts_env(local_stack.http_url, local_stack.ws_url)


def create(http: httpx.Client, prompt: str) -> dict[str, str]:
    response = http.post("/chats", json={"prompt": prompt})
    assert response.status_code == 201, response.text
    return response.json()


def drive(http: httpx.Client, chat: dict[str, str]) -> str:
    response = http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    assert response.status_code == 200, response.text
    return response.text


def wait_for_subscriber(stream_id: str, within: float = 10) -> None:
    """Until the local gateway has registered a viewer of `stream_id`."""
    subscriptions = SubscriptionStore(os.environ["PTS_CONNECTIONS_TABLE"])
    deadline = time.monotonic() + within
    while not subscriptions.subscribers(stream_id):
        assert time.monotonic() < deadline, "pts watch never subscribed"
        time.sleep(0.05)


@dataclass
class Output:
    """A child's stdout, read as it comes, with when each piece came."""

    pieces: list[tuple[float, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, process: subprocess.Popen[bytes]) -> tuple[Output, threading.Thread]:
        output = cls()

        def read() -> None:
            assert process.stdout is not None
            while piece := os.read(process.stdout.fileno(), 65536):
                output.pieces.append((time.monotonic(), piece))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return output, thread

    @property
    def text(self) -> str:
        return b"".join(piece for _, piece in self.pieces).decode()


# -- chat and get ------------------------------------------------------------------------


def test_chat_prints_exactly_the_reply_and_get_reads_it_back(env: dict[str, str]):
    text = "Hello, world! Ünïcödé, 中文。 and 🙂👍🏽 — all of it.\nA second line."
    chat = pts(env, "chat", f"echo:{text}")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == text + "\n"
    stream_id = chat.stderr.split(" stream ")[1].split()[0]

    got = pts(env, "get", stream_id)
    assert got.returncode == 0, got.stderr
    assert got.stdout == text + "\n"
    as_json = json.loads(pts(env, "get", "--json", stream_id).stdout)
    assert as_json == {
        "streamId": stream_id,
        "text": text,
        "status": "done",
        "seq": as_json["seq"],
    }
    assert as_json["seq"] >= 1


def test_chat_that_fails_exits_1_with_the_text_so_far(env: dict[str, str]):
    chat = pts(env, "chat", "fail-after:4:this reply will not make it to the end")
    assert chat.returncode == 1
    assert chat.stdout.strip() and "this reply will not make it to the end".startswith(
        chat.stdout.strip()
    )
    assert "error" in chat.stderr


def test_get_of_an_unknown_stream_exits_1(env: dict[str, str]):
    got = pts(env, "get", "no-such-stream")
    assert got.returncode == 1
    assert "unknown stream" in got.stderr


# -- watch against the local stack ---------------------------------------------------------


def test_watch_a_finished_stream_prints_it_and_exits_0(env: dict[str, str], http: httpx.Client):
    chat = create(http, "Tell me about estuaries")
    text = drive(http, chat)
    watched = pts(env, "watch", chat["streamId"])
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout == text + "\n"


def test_watch_while_driven_prints_everything_once_live(env: dict[str, str], http: httpx.Client):
    body = " ".join(f"Sentence number {i} flows on and on." for i in range(80))
    chat = create(http, f"echo:{body}")
    watcher = start_pts(env, "watch", chat["streamId"])
    output, reader = Output.of(watcher)
    try:
        wait_for_subscriber(chat["streamId"])
        text = drive(http, chat)
        driven_at = time.monotonic()
        assert watcher.wait(30) == 0, watcher.stderr.read() if watcher.stderr else ""
        reader.join(5)
    finally:
        watcher.kill()
    assert text == body
    assert output.text == text + "\n"  # every batch exactly once, in order
    # Live: the text came in many pieces, most of them before the driver was done.
    early = [t for t, _ in output.pieces if t < driven_at]
    assert len(early) >= 5, output.pieces[:10]


def test_watch_a_failed_stream_exits_1(env: dict[str, str], http: httpx.Client):
    chat = create(http, "fail-after:6:Off to a good start, then nothing more")
    text = drive(http, chat)
    watched = pts(env, "watch", chat["streamId"])
    assert watched.returncode == 1
    assert watched.stdout == text + "\n"
    assert "error" in watched.stderr and "fail" in watched.stderr


def test_watch_a_cancelled_stream_exits_1(env: dict[str, str], http: httpx.Client):
    chat = create(http, "never driven")
    cancelled = http.post(
        f"/streams/{chat['streamId']}/cancel",
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    assert cancelled.status_code == 202
    watched = pts(env, "watch", chat["streamId"])
    assert watched.returncode == 1
    assert "cancelled" in watched.stderr


def test_watch_an_unknown_stream_exits_1(env: dict[str, str]):
    watched = pts(env, "watch", "no-such-stream")
    assert watched.returncode == 1
    assert "unknown stream" in watched.stderr
    assert watched.stdout == ""


def test_watch_without_a_gateway_exits_2_quickly(local_stack: RunningStack):
    env = pts_env(local_stack.http_url, "ws://127.0.0.1:9")
    started = time.monotonic()
    watched = pts(env, "watch", "whatever")
    assert watched.returncode == 2
    assert "cannot reach ws://127.0.0.1:9" in watched.stderr
    assert time.monotonic() - started < 10


# -- watch against a scripted gateway: the client rule -----------------------------------------

Script = Callable[[ServerConnection, int, dict[str, Any]], None]
"""Answers one subscribe: (connection, how many subscribes came before, the message)."""


@dataclass
class ScriptedGateway:
    script: Script
    subscribes: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def handle(self, connection: ServerConnection) -> None:
        try:
            for raw in connection:
                message = json.loads(raw)
                self.subscribes.append(message)
                self.script(connection, len(self.subscribes) - 1, message)
        except ConnectionClosed:
            pass


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], ScriptedGateway]]:
    servers = []

    def start(script: Script) -> ScriptedGateway:
        gateway = ScriptedGateway(script)
        server = serve(gateway.handle, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        gateway.url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        servers.append(server)
        return gateway

    yield start
    for server in servers:
        server.shutdown()


def send(connection: ServerConnection, kind: str, **fields: Any) -> None:
    connection.send(json.dumps({"type": kind, "streamId": "s1", **fields}))


def test_watch_applies_the_client_rule(scripted: Callable[[Script], ScriptedGateway]):
    """Batches 1 "Hel", 2 "lo", 3 " wo", 4 "rld", 5 "!" — with repeats, a gap, a delta that
    overtakes its snapshot, and a final status ahead of what the watcher has."""

    def script(ws: ServerConnection, index: int, message: dict[str, Any]) -> None:
        if index == 0:
            send(ws, "snapshot", text="Hel", status="streaming", seq=1)
            send(ws, "delta", seq=1, text="Hel")  # already in the snapshot: ignored
            send(ws, "delta", seq=2, text="lo")
            send(ws, "delta", seq=2, text="lo")  # a repeat: ignored
            send(ws, "delta", seq=4, text="rld")  # a gap: resubscribe after 2
        elif index == 1:
            send(ws, "delta", seq=3, text=" wo")  # before the snapshot that holds it
            send(ws, "snapshot", text=" world", status="streaming", seq=4)
            send(ws, "status", status="done", seq=5)  # batch 5 not seen: resubscribe after 4
        else:
            send(ws, "snapshot", text="!", status="done", seq=5)

    gateway = scripted(script)
    watched = pts(pts_env("http://127.0.0.1:9", gateway.url), "watch", "s1", timeout=15)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout == "Hello world!\n"
    assert [(m["action"], m["streamId"], m["after"]) for m in gateway.subscribes] == [
        ("subscribe", "s1", 0),
        ("subscribe", "s1", 2),
        ("subscribe", "s1", 4),
    ]


def test_watch_resumes_after_a_dropped_connection(scripted: Callable[[Script], ScriptedGateway]):
    def script(ws: ServerConnection, index: int, message: dict[str, Any]) -> None:
        if index == 0:
            send(ws, "snapshot", text="", status="pending", seq=0)
            send(ws, "delta", seq=1, text="Hi")
            ws.close(1011, "gone")
        else:
            send(ws, "snapshot", text=" there", status="cancelled", seq=2)

    gateway = scripted(script)
    watched = pts(pts_env("http://127.0.0.1:9", gateway.url), "watch", "s1", timeout=15)
    assert watched.returncode == 1  # cancelled
    assert watched.stdout == "Hi there\n"
    assert [m["after"] for m in gateway.subscribes] == [0, 1]
    assert "cancelled" in watched.stderr


def test_watch_ctrl_c_exits_130_quietly(scripted: Callable[[Script], ScriptedGateway]):
    subscribed = threading.Event()

    def script(ws: ServerConnection, index: int, message: dict[str, Any]) -> None:
        send(ws, "snapshot", text="so far", status="streaming", seq=1)
        subscribed.set()

    gateway = scripted(script)
    watcher = start_pts(pts_env("http://127.0.0.1:9", gateway.url), "watch", "s1")
    try:
        assert subscribed.wait(10)
        time.sleep(0.2)  # let it print the snapshot and block on the next message
        watcher.send_signal(signal.SIGINT)
        stdout, stderr = watcher.communicate(timeout=10)
    finally:
        watcher.kill()
    assert watcher.returncode == 130
    assert stdout.decode() == "so far\n"
    assert stderr == b""
