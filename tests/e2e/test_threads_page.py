"""Threads on the chat page: a prompt continues the selected thread, "New chat" starts one,
the selector shows each thread, and the selection survives a reload."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.test_chat_page import OpenPage, chat_item, reply_text, send, stored, unique

pytestmark = pytest.mark.slow


def test_a_prompt_continues_the_selected_thread(new_page: OpenPage, http: httpx.Client):
    page = new_page()
    first_prompt = unique("echo:Remember the word *heron*.")
    first = send(page, first_prompt)
    expect(first).to_have_attribute("data-status", "done")
    thread_id = first.get_attribute("data-thread-id")
    assert thread_id == first.get_attribute("data-chat-id")
    expect(page).to_have_url(re.compile(f"#thread={thread_id}$"))
    expect(page.locator("#thread")).to_have_value(thread_id)

    # The next prompt continues it: the source is given the earlier turn.
    second = send(page, unique("history: which word?"))
    expect(second).to_have_attribute("data-status", "done")
    assert second.get_attribute("data-thread-id") == thread_id
    second_prompt = second.locator(".prompt").text_content()
    assert reply_text(second) == (
        f"user: {first_prompt}\n"
        f"assistant: {first_prompt.removeprefix('echo:')}\n"
        f"user: {second_prompt}"
    )
    listed = http.get("/chats", params={"threadId": thread_id}).json()["chats"]
    assert [c["prompt"] for c in listed] == [first_prompt, second_prompt]
    expect(page.locator("#thread option:checked")).to_have_text(re.compile(r"heron.*\(2\)$"))

    # Someone else's chat is listed under "All chats", not in this thread.
    other = http.post("/chats", json={"prompt": unique("echo:elsewhere")}).json()
    other_item = page.locator(f'li.chat[data-chat-id="{other["chatId"]}"]')
    expect(other_item).to_have_count(1)
    expect(other_item).to_be_hidden()

    # "New chat": everything is shown, and the next prompt starts a thread of its own.
    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#thread")).to_have_value("")
    expect(other_item).to_be_visible()
    expect(first).to_be_visible()
    fresh = send(page, unique("history:"))
    expect(fresh).to_have_attribute("data-status", "done")
    fresh_thread = fresh.get_attribute("data-thread-id")
    assert fresh_thread and fresh_thread != thread_id
    assert reply_text(fresh).count("\n") == 0  # nothing earlier: just `user: <prompt>`
    expect(first).to_be_hidden()

    # Back to the first thread with the selector; a reload keeps the selection.
    page.locator("#thread").select_option(thread_id)
    expect(first).to_be_visible()
    expect(fresh).to_be_hidden()
    page.reload()
    expect(page.locator("#conversation")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#thread")).to_have_value(thread_id)
    expect(chat_item(page, first_prompt)).to_be_visible()
    third = send(page, unique("echo:and a third turn"))
    expect(third).to_have_attribute("data-status", "done")
    assert third.get_attribute("data-thread-id") == thread_id
    stream_id = third.get_attribute("data-stream-id")
    assert stream_id and stored(http, stream_id)["status"] == "done"
    assert len(http.get("/chats", params={"threadId": thread_id}).json()["chats"]) == 3
