"""Conversations on the local stack: a thread of three turns, the third one `history:`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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
