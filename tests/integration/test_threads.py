"""Conversations on the local stack: a thread of three turns, the third one `history:`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.support import RunningStack

pytestmark = pytest.mark.slow


def ask(http: httpx.Client, prompt: str, thread_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt}
    if thread_id is not None:
        body["threadId"] = thread_id
    created = http.post("/chats", json=body)
    assert created.status_code == 201, created.text
    chat = created.json()
    driven = http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    assert driven.status_code == 200
    return {**chat, "text": driven.text}


def test_three_turns_in_one_thread(http: httpx.Client):
    first = ask(http, "echo:Hi! Café ☕, and a list:\n- one\n- two")
    second = ask(http, "fail-after:4:this one fails half way", first["threadId"])
    third = ask(http, "history: what did we say?", first["threadId"])
    assert first["threadId"] == first["chatId"]
    assert second["threadId"] == third["threadId"] == first["threadId"]
    failed = http.get(f"/streams/{second['streamId']}").json()
    assert failed["status"] == "error" and failed["text"] == second["text"]
    assert third["text"] == (
        "user: echo:Hi! Café ☕, and a list:\\n- one\\n- two\n"
        "assistant: Hi! Café ☕, and a list:\\n- one\\n- two\n"
        "user: fail-after:4:this one fails half way\n"
        f"assistant: {failed['text']}\n"
        "user: history: what did we say?"
    )
    assert http.get(f"/streams/{third['streamId']}").json()["text"] == third["text"]
    listed = http.get("/chats", params={"threadId": first["threadId"]}).json()["chats"]
    assert [c["chatId"] for c in listed] == [first["chatId"], second["chatId"], third["chatId"]]
    assert {c["threadId"] for c in listed} == {first["threadId"]}


def test_an_unknown_thread(http: httpx.Client):
    response = http.post("/chats", json={"prompt": "hi", "threadId": "f" * 32})
    assert response.status_code == 404
    assert response.json() == {"error": "unknown thread"}


def test_pts_chat_continues_a_thread(local_stack: RunningStack):
    env = {**os.environ, "PTS_HTTP_URL": local_stack.http_url, "PTS_WS_URL": local_stack.ws_url}

    def pts_chat(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pts.cli", "chat", *args],
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done

    first = pts_chat("echo:first")
    thread_id = first.stderr.split(" thread ")[1].split()[0]
    second = pts_chat("history:", "--thread", thread_id)
    assert second.stdout == "user: echo:first\nassistant: first\nuser: history:\n"
    assert f" thread {thread_id}" in second.stderr
