"""The stream lifecycle on the local stack when the source goes silent (docs/protocol.md,
lifecycle): alive is not idle, stop means stop even in a stall, ended is ended.

The stack runs as `pts dev` in a process of its own, with a 3 s idle timeout and a sweep
every 0.5 s, so the sweeper has every chance to time out a stream whose source is thinking.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from pts.client import follow
from pts.sources.demo import echo_pieces

IDLE_TIMEOUT = 3
TEXT = "Let me think about this for a while. Here is the answer, after all that thinking."
PREFIX = "".join(echo_pieces(TEXT)[:5])  # what streams before the pause


@dataclass(frozen=True)
class Dev:
    http_url: str
    ws_url: str
    output: list[str]


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    env = {
        **os.environ,
        "PTS_HTTP_PORT": "0",
        "PTS_WS_PORT": "0",
        "PTS_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT),
        "PTS_SWEEP_INTERVAL_SECONDS": "0.5",
        "PTS_DEMO_TOKENS_PER_SECOND": "100",
        "PTS_BATCH_MAX_DELAY_SECONDS": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pts.cli", "dev", "--in-memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "".join(output)
            output.append(line)
            if line.startswith("ready"):
                break
        text = "".join(output)
        http_url = re.search(r"chat page\s+(http://\S+)", text)
        ws_url = re.search(r"WebSocket\s+(ws://\S+)", text)
        assert http_url and ws_url, text
        # Keep reading, so a chatty log never fills the pipe and blocks the stack.
        threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()  # type: ignore[arg-type]
        yield Dev(http_url.group(1), ws_url.group(1), output)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def http_client(dev: Dev) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=dev.http_url, timeout=60) as http:
        yield http


async def create(http: httpx.AsyncClient, prompt: str) -> dict[str, str]:
    response = await http.post("/chats", json={"prompt": prompt})
    assert response.status_code == 201
    return response.json()


def auth(chat: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {chat['driveToken']}"}


class Viewer:
    """A raw WebSocket viewer: every message it receives, in order."""

    def __init__(self, ws: ClientConnection, stream_id: str) -> None:
        self.ws = ws
        self.stream_id = stream_id
        self.messages: list[dict[str, Any]] = []

    async def listen(self, until: float) -> None:
        """Keep every message until `until` (a monotonic time)."""
        while (left := until - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                return
            self.messages.append(json.loads(raw))

    def kinds(self) -> list[str]:
        return [m["type"] if m["type"] != "status" else m["status"] for m in self.messages]


@asynccontextmanager
async def viewer(dev: Dev, stream_id: str) -> AsyncIterator[Viewer]:
    async with connect(dev.ws_url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "streamId": stream_id}))
        watching = Viewer(ws, stream_id)
        watching.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        yield watching


async def until_paused(response: httpx.Response) -> tuple[str, AsyncIterator[str]]:
    """Read the HTTP body up to the pause; the rest of it is the returned iterator."""
    chunks = response.aiter_text()
    streamed = ""
    while streamed != PREFIX:
        streamed += await anext(chunks)
        assert PREFIX.startswith(streamed), streamed
    await asyncio.sleep(0.7)  # silent now: its batch stored, the source thinking
    return streamed, chunks


def test_a_thinking_source_outlives_the_idle_timeout(dev: Dev):
    """`pause-after:5:8:` with a 3 s idle timeout: the heartbeats keep the stream alive; it
    ends `done` with the exact text, for the driver, a reader and a viewer alike."""

    async def main() -> tuple[str, dict[str, Any], Any]:
        async with http_client(dev) as http:
            chat = await create(http, "pause-after:5:8:" + TEXT)
            following = asyncio.create_task(follow(dev.ws_url, chat["streamId"]))
            await asyncio.sleep(0.3)
            seen: list[str] = []

            async def poll() -> None:  # what a reader sees during the pause
                while True:
                    body = (await http.get(f"/streams/{chat['streamId']}")).json()
                    seen.append(body["status"])
                    await asyncio.sleep(0.5)

            poller = asyncio.create_task(poll())
            started = time.monotonic()
            response = await http.post(
                "/chat-stream", json={"streamId": chat["streamId"]}, headers=auth(chat)
            )
            poller.cancel()
            assert response.status_code == 200
            assert time.monotonic() - started >= 8
            assert set(seen) <= {"pending", "streaming"}, seen  # never timed out
            body = (await http.get(f"/streams/{chat['streamId']}")).json()
            return response.text, body, await asyncio.wait_for(following, 30)

    text, body, view = asyncio.run(main())
    assert text == TEXT
    assert (body["status"], body["text"]) == ("done", TEXT)
    assert (view.status, view.text) == ("done", TEXT)


def test_cancel_during_a_pause_ends_the_stream_at_once(dev: Dev):
    async def main() -> tuple[str, float, dict[str, Any], Viewer]:
        async with http_client(dev) as http:
            chat = await create(http, "pause-after:5:30:" + TEXT)
            async with (
                viewer(dev, chat["streamId"]) as watching,
                http.stream(
                    "POST", "/chat-stream", json={"streamId": chat["streamId"]}, headers=auth(chat)
                ) as response,
            ):
                streamed, rest = await until_paused(response)
                started = time.monotonic()
                cancel = await http.post(f"/streams/{chat['streamId']}/cancel", headers=auth(chat))
                assert (cancel.status_code, cancel.json()) == (202, {"status": "cancelled"})
                streamed += "".join([chunk async for chunk in rest])  # the response ends
                took = time.monotonic() - started
                await watching.listen(until=time.monotonic() + 2)
            body = (await http.get(f"/streams/{chat['streamId']}")).json()
            return streamed, took, body, watching

    streamed, took, body, watching = asyncio.run(main())
    assert took < 1.5
    assert streamed == PREFIX
    assert (body["status"], body["text"]) == ("cancelled", PREFIX)
    assert watching.kinds()[-1] == "cancelled"
    text = "".join(m["text"] for m in watching.messages if m["type"] in ("snapshot", "delta"))
    assert text == PREFIX


def test_delete_during_a_pause_leaves_nothing_behind(dev: Dev):
    """DELETE → 200 at once; viewers get `cancelled` and nothing after it; the stream stays
    gone after the source would have resumed."""

    async def main() -> tuple[httpx.Response, float, Viewer, list[int], list[str]]:
        async with http_client(dev) as http:
            chat = await create(http, "pause-after:5:3:" + TEXT)
            async with (
                viewer(dev, chat["streamId"]) as watching,
                http.stream(
                    "POST", "/chat-stream", json={"streamId": chat["streamId"]}, headers=auth(chat)
                ) as response,
            ):
                _, rest = await until_paused(response)
                started = time.monotonic()
                deleted = await http.delete(f"/chats/{chat['chatId']}", headers=auth(chat))
                [chunk async for chunk in rest]  # the response ends
                took = time.monotonic() - started
                # Past the end of the pause, when a driver still running would write again.
                await watching.listen(until=time.monotonic() + 4)
            statuses = []
            for _ in range(3):
                statuses.append((await http.get(f"/streams/{chat['streamId']}")).status_code)
                await asyncio.sleep(0.5)
            chats = [c["chatId"] for c in (await http.get("/chats")).json()["chats"]]
            return deleted, took, watching, statuses, chats

    deleted, took, watching, statuses, chats = asyncio.run(main())
    chat_id = deleted.json()["deleted"]
    assert deleted.status_code == 200
    assert took < 1.5
    assert statuses == [404, 404, 404]
    assert chat_id not in chats
    kinds = watching.kinds()
    assert kinds[-1] == "cancelled", kinds  # nothing after the final status
    assert kinds.count("cancelled") == 1
