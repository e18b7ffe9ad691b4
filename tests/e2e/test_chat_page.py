"""The chat page in headless Chromium against the whole local stack: a driver window
streaming over HTTP, other windows following over the WebSocket API."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from tests.support import RunningStack

pytestmark = pytest.mark.slow

SCREENSHOT = "/tmp/pts-chat.png"
OpenPage = Callable[..., Page]

# Records every change of each reply's text, to tell a live stream from text set at once.
RECORD_UPDATES = """() => {
  window.updates = [];
  new MutationObserver(() => {
    for (const li of document.querySelectorAll("li.chat")) {
      const text = li.querySelector(".text").textContent;
      const last = window.updates.findLast((u) => u.streamId === li.dataset.streamId);
      if (!last || last.length !== text.length) {
        window.updates.push({streamId: li.dataset.streamId, length: text.length,
                             status: li.dataset.status, at: Date.now()});
      }
    }
  }).observe(document.getElementById("conversation"),
             {subtree: true, childList: true, characterData: true});
}"""


WORDS = ["the", "river", "carries", "light", "and", "silt", "down", "to", "the", "sea"]


def unique(prompt: str) -> str:
    return f"{prompt} [{uuid.uuid4().hex[:8]}]"


def long_echo(sentences: int = 60) -> str:
    """An `echo:` prompt whose reply streams for a few seconds at the test stack's pace."""
    body = " ".join(
        f"Sentence {i} says {' '.join(WORDS[i % 5 : i % 5 + 6])}." for i in range(sentences)
    )
    return unique(f"echo:{body}")


def chat_item(page: Page, prompt: str) -> Locator:
    """The chat whose prompt has the marker that `unique` gave `prompt`."""
    marker = prompt[prompt.rindex(" [") + 1 :]
    return page.locator("li.chat").filter(has=page.locator(".prompt", has_text=marker))


def reply_text(item: Locator) -> str:
    """The reply's Markdown source, as the page holds it (it shows the rendered HTML)."""
    return item.locator(".text").evaluate("element => element.dataset.source ?? ''")


def send(page: Page, prompt: str) -> Locator:
    page.locator("#prompt").fill(prompt)
    page.locator("#prompt").press("Enter")
    return chat_item(page, prompt)


def stored(http: httpx.Client, stream_id: str) -> dict[str, Any]:
    response = http.get(f"/streams/{stream_id}")
    assert response.status_code == 200, response.text
    return response.json()


def create_and_drive(http: httpx.Client, prompt: str) -> tuple[dict[str, str], threading.Thread]:
    """A chat made by someone else (plain HTTP), driven in the background."""
    chat = http.post("/chats", json={"prompt": prompt}).json()

    def drive() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as client:
            client.post(
                "/chat-stream",
                json={"streamId": chat["streamId"]},
                headers={"Authorization": f"Bearer {chat['driveToken']}"},
            )

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    return chat, thread


def frames_of(page_frames: list[dict[str, Any]], stream_id: str, kind: str) -> list[dict]:
    return [f for f in page_frames if f.get("streamId") == stream_id and f.get("type") == kind]


def test_enter_sends_and_the_reply_streams_live(new_page: OpenPage, http: httpx.Client):
    page = new_page()
    page.evaluate(RECORD_UPDATES)
    prompt = long_echo(40)  # about 2 s of streaming
    item = send(page, prompt)

    expect(item).to_have_attribute("data-status", "done")
    expect(page.locator("#prompt")).to_have_value("")
    expect(page.locator("#prompt")).to_be_focused()
    stream_id = item.get_attribute("data-stream-id")
    assert stream_id
    body = stored(http, stream_id)
    assert body["status"] == "done"
    assert reply_text(item) == body["text"] == prompt.removeprefix("echo:")
    # Token-smooth: the text grew in many steps, all through the stream's run.
    updates = page.evaluate("() => window.updates")
    live = [u for u in updates if u["streamId"] == stream_id and u["status"] == "streaming"]
    assert len(live) >= 10, live
    assert live[-1]["at"] - live[0]["at"] > 500, live
    # This window made the chat: it holds the drive token, so it may delete it.
    expect(item.locator("button.delete")).to_be_visible()
    expect(item.locator("button.stop")).to_be_hidden()


def test_shift_enter_is_a_new_line_and_send_also_sends(new_page: OpenPage, http: httpx.Client):
    page = new_page()
    chats_before = page.locator("li.chat").count()
    prompt_box = page.locator("#prompt")
    prompt_box.press_sequentially("echo:first line")
    prompt_box.press("Shift+Enter")
    prompt_box.press_sequentially("second line")
    expect(prompt_box).to_have_value("echo:first line\nsecond line")
    assert page.locator("li.chat").count() == chats_before

    page.get_by_role("button", name="Send").click()
    item = page.locator("li.chat").nth(chats_before)
    expect(item).to_have_attribute("data-status", "done")
    assert item.locator(".prompt").evaluate("e => e.textContent") == (
        "echo:first line\nsecond line"
    )
    assert reply_text(item) == "first line\nsecond line"


def test_another_window_sees_the_chat_within_2_s_and_its_reply_live(
    new_page: OpenPage, http: httpx.Client, local_stack: RunningStack
):
    frames: list[dict[str, Any]] = []

    def record_frames(page: Page) -> None:
        def on_socket(ws: Any) -> None:
            ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

        page.on("websocket", on_socket)

    driver = new_page()
    viewer = new_page(setup=record_frames)
    expect(viewer.locator("#connection")).to_have_attribute("data-state", "live")
    viewer.evaluate(RECORD_UPDATES)
    prompt = long_echo()

    pressed_at = time.time() * 1000  # the browser's Date.now() reads the same clock
    mine = send(driver, prompt)
    theirs = chat_item(viewer, prompt)
    expect(theirs).to_have_attribute("data-status", "done", timeout=20_000)
    expect(mine).to_have_attribute("data-status", "done")

    stream_id = theirs.get_attribute("data-stream-id")
    assert stream_id
    seen = [u for u in viewer.evaluate("() => window.updates") if u["streamId"] == stream_id]
    assert seen[0]["at"] - pressed_at < 2000, "the other window took longer than 2 s"
    # It saw the reply grow while it was streaming, not just the end.
    growing = {u["length"] for u in seen if u["status"] == "streaming" and u["length"]}
    assert len(growing) >= 2, seen
    text = stored(http, stream_id)["text"]
    assert text == prompt.removeprefix("echo:")
    assert reply_text(mine) == text
    assert reply_text(theirs) == text
    # The viewer got the reply over the WebSocket, mostly as deltas, each byte about once.
    deltas = frames_of(frames, stream_id, "delta")
    snapshots = frames_of(frames, stream_id, "snapshot")
    assert len(deltas) >= 2, frames
    received = sum(len(f["text"]) for f in deltas + snapshots)
    assert len(text) <= received <= 1.5 * len(text)
    assert frames_of(frames, stream_id, "status")[-1]["status"] == "done"
    # Not this window's chat: no drive token, so no Stop or Delete.
    expect(theirs.locator("button.delete")).to_be_hidden()


def test_reload_shows_the_whole_conversation(new_page: OpenPage, http: httpx.Client):
    page = new_page()
    ok_prompt = unique("What is a delta?")
    failed_prompt = unique("fail-after:6:It starts well enough, and then")
    for prompt in (ok_prompt, failed_prompt):
        _, driving = create_and_drive(http, prompt)
        driving.join(30)
    expect(chat_item(page, ok_prompt)).to_have_attribute("data-status", "done")
    assert len(reply_text(chat_item(page, ok_prompt)).split()) > 50  # the demo's English reply
    mine = send(page, unique("echo:And one from this window. Thanks!"))
    expect(mine).to_have_attribute("data-status", "done")

    page.reload()
    chats = http.get("/chats").json()["chats"]
    items = page.locator("li.chat")
    expect(items).to_have_count(len(chats))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    for item in items.all():
        expect(item).not_to_have_attribute("data-status", "pending")
    on_page = items.evaluate_all(
        """items => items.map(li => ({
            chatId: li.dataset.chatId, streamId: li.dataset.streamId, status: li.dataset.status,
            prompt: li.querySelector(".prompt").textContent,
            text: li.querySelector(".text").dataset.source ?? "",
            error: li.querySelector(".error-message").textContent}))"""
    )
    assert [c["chatId"] for c in on_page] == [c["chatId"] for c in chats]  # oldest first
    for shown, chat in zip(on_page, chats, strict=True):
        body = stored(http, chat["streamId"])
        assert shown["prompt"] == chat["prompt"]
        assert (shown["text"], shown["status"]) == (body["text"], body["status"])
        assert shown["error"] == body.get("error", "")
    failed = chat_item(page, failed_prompt)
    expect(failed).to_have_attribute("data-status", "error")
    expect(failed.locator(".error-message")).to_contain_text("fail")
    # The drive token outlives the reload: this window may still delete its own chat.
    expect(mine.locator("button.delete")).to_be_visible()

    mine.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT)


def test_stop_and_delete_own_chat_seen_from_another_window(new_page: OpenPage, http: httpx.Client):
    driver = new_page()
    viewer = new_page()
    prompt = long_echo(120)
    mine = send(driver, prompt)
    theirs = chat_item(viewer, prompt)
    expect(mine.locator(".text")).not_to_be_empty()
    expect(mine.locator("button.stop")).to_be_hidden()  # this window drives: the composer's
    driver.get_by_role("button", name="Stop the reply").click()
    expect(driver.get_by_role("button", name="Stop the reply")).to_be_hidden()
    expect(mine).to_have_attribute("data-status", "cancelled")
    expect(theirs).to_have_attribute("data-status", "cancelled")
    stream_id = mine.get_attribute("data-stream-id")
    assert stream_id
    text = stored(http, stream_id)["text"]
    assert 0 < len(text) < len(prompt) - len("echo:")
    assert reply_text(mine) == reply_text(theirs) == text

    mine.locator("button.delete").click()
    expect(mine).to_have_count(0)
    assert http.get(f"/streams/{stream_id}").status_code == 404
    expect(theirs).to_have_count(0, timeout=2500)


def test_the_client_rule_survives_duplicates_a_gap_and_a_dropped_socket(
    new_page: OpenPage, http: httpx.Client, local_stack: RunningStack
):
    """Between the page and the gateway: every delta twice, one lost, the socket cut once."""
    state = {"connections": 0, "deltas": 0, "dropped": 0, "cut": False}
    sent_by_page: list[dict[str, Any]] = []

    def hostile(route: WebSocketRoute) -> None:
        state["connections"] += 1
        server = route.connect_to_server()

        def to_server(message: str | bytes) -> None:
            sent_by_page.append(json.loads(message))
            server.send(message)

        def to_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") != "delta":
                route.send(message)
                return
            state["deltas"] += 1
            if not state["dropped"]:
                state["dropped"] = frame["seq"]  # the next delta shows a gap
                return
            route.send(message)
            route.send(message)
            if state["deltas"] >= 6 and not state["cut"]:
                state["cut"] = True
                route.close(code=1001, reason="going away")

        route.on_message(to_server)
        server.on_message(to_page)

    def intercept(page: Page) -> None:
        page.route_web_socket(lambda url: url.startswith(local_stack.ws_url), hostile)

    viewer = new_page(setup=intercept)
    expect(viewer.locator("#connection")).to_have_attribute("data-state", "live")
    prompt = long_echo(80)
    chat, driving = create_and_drive(http, prompt)
    item = chat_item(viewer, prompt)
    expect(item).to_have_attribute("data-status", "done", timeout=20_000)
    driving.join(30)

    text = stored(http, chat["streamId"])["text"]
    assert reply_text(item) == text == prompt.removeprefix("echo:")
    assert state["dropped"] and state["cut"], state
    assert state["connections"] >= 2
    resubscribes = [
        m for m in sent_by_page if m.get("streamId") == chat["streamId"] and m.get("after")
    ]
    assert resubscribes, sent_by_page


def test_without_a_websocket_url_the_page_polls(new_page: OpenPage, http: httpx.Client):
    def no_websocket(page: Page) -> None:
        def without_url(route: Any) -> None:
            response = route.fetch()
            html = response.text()
            start = html.index('name="pts-ws-url" content="') + len('name="pts-ws-url" content="')
            html = html[:start] + html[html.index('"', start) :]
            route.fulfill(response=response, body=html)

        page.route("**/", without_url)

    viewer = new_page(setup=no_websocket)
    expect(viewer.locator("#connection")).to_have_attribute("data-state", "polling")
    prompt = unique("echo:Nobody configured a WebSocket here. Polling still works!")
    chat, driving = create_and_drive(http, prompt)
    item = chat_item(viewer, prompt)
    expect(item).to_have_attribute("data-status", "done", timeout=5000)
    driving.join(30)
    assert reply_text(item) == stored(http, chat["streamId"])["text"]
