"""The AI SDK's UI message stream protocol on `POST /chat-stream`, read by the real `ai` package.

tests/node/ai-sdk.mjs sends each prompt as `useChat` does (the SDK's chat class and default
transport, with the `prepareSendMessagesRequest` of docs/protocol.md); the SDK parses our
server-sent events itself. Node is required (CI has it); `npm ci` installs the pinned `ai`
from tests/node/package-lock.json when node_modules is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import RunningStack

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the AI SDK tests (Node 20 or newer)")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return node


def use_chat(node: str, http_url: str, *prompts: str) -> list[dict[str, Any]]:
    """What the SDK's chat ended with, for each prompt."""
    done = subprocess.run(
        [node, "ai-sdk.mjs", http_url, *prompts],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def stored(http: httpx.Client, stream_id: str) -> dict[str, Any]:
    response = http.get(f"/streams/{stream_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_use_chat_reads_a_reply_and_its_clean_finish(
    node: str, local_stack: RunningStack, http: httpx.Client
):
    prompts = [
        "echo:Plain ASCII, then accents: café, naïve. CJK: 流式文本。 Emoji: 🚀👩‍💻.",
        'echo:```python\nprint("a\\nb")\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n',
        "Tell me about rivers.",  # the demo's English reply, about 120 tokens here
    ]
    for result in use_chat(node, local_stack.http_url, *prompts):
        body = stored(http, result["streamId"])
        assert body["status"] == "done"
        assert result["text"] == body["text"]
        assert result["messageId"] == result["streamId"]
        assert result["status"] == "ready" and result["error"] is None
        assert result["finished"] == {"isError": False, "isAbort": False, "finishReason": "stop"}
        parts = result["parts"]
        assert parts[:2] == ["start", "text-start"] and parts[-2:] == ["text-end", "finish"]
        assert set(parts[2:-2]) == {"text-delta"}
    echoed = use_chat(node, local_stack.http_url, prompts[0])[0]
    assert echoed["text"] == prompts[0].removeprefix("echo:")


def test_use_chat_holds_a_conversation_in_one_thread(
    node: str, local_stack: RunningStack, http: httpx.Client
):
    prompts = ["echo:Remember: heron.", "echo:And egret.", "history: which birds?"]
    first, second, third = use_chat(node, local_stack.http_url, "--one-chat", *prompts)
    assert first["threadId"] == second["threadId"] == third["threadId"]
    assert third["text"] == (
        "user: echo:Remember: heron.\nassistant: Remember: heron.\n"
        "user: echo:And egret.\nassistant: And egret.\n"
        "user: history: which birds?"
    )
    assert third["parts"][-2:] == ["text-end", "finish"]
    listed = http.get("/chats", params={"threadId": first["threadId"]}).json()["chats"]
    assert [c["streamId"] for c in listed] == [r["streamId"] for r in (first, second, third)]


def test_use_chat_sees_a_failing_source_as_an_error(
    node: str, local_stack: RunningStack, http: httpx.Client
):
    (result,) = use_chat(node, local_stack.http_url, "fail-after:3:It starts well, and then")
    body = stored(http, result["streamId"])
    assert body["status"] == "error"
    assert result["status"] == "error"
    assert result["error"] == body["error"] == "demo source failed after 3 pieces (fail-after)"
    assert result["text"] == body["text"] and body["text"]
    assert result["parts"][-2:] == ["text-end", "error"]
    assert "finish" not in result["parts"]
    assert result["finished"]["isError"] is True


def test_the_event_stream_on_the_wire(http: httpx.Client):
    chat = http.post("/chats", json={"prompt": "echo:line one\nline two"}).json()
    response = http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={
            "Authorization": f"Bearer {chat['driveToken']}",
            "Accept": "text/event-stream",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    events = response.text.split("\n\n")
    assert events.pop() == ""  # every event ends in a blank line
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    assert events[-1] == "data: [DONE]"
    parts = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert parts[0] == {"type": "start", "messageId": chat["streamId"]}
    assert parts[-1] == {"type": "finish", "finishReason": "stop"}
    text = "".join(p["delta"] for p in parts if p["type"] == "text-delta")
    assert text == "line one\nline two" == stored(http, chat["streamId"])["text"]


@pytest.mark.parametrize("accept", [None, "*/*", "text/plain"])
def test_without_asking_for_events_the_body_stays_plain_text(
    http: httpx.Client, accept: str | None
):
    chat = http.post("/chats", json={"prompt": "echo:just text"}).json()
    headers = {"Authorization": f"Bearer {chat['driveToken']}"}
    if accept:
        headers["Accept"] = accept
    response = http.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "x-vercel-ai-ui-message-stream" not in response.headers
    assert response.text == "just text"


def test_errors_before_streaming_stay_json(http: httpx.Client):
    response = http.post(
        "/chat-stream",
        json={"streamId": "nope"},
        headers={"Authorization": "Bearer x", "Accept": "text/event-stream"},
    )
    assert response.status_code == 404
    assert response.json() == {"error": "unknown stream"}


def test_a_cancelled_stream_ends_in_an_abort_part(http: httpx.Client):
    words = " ".join(f"word{i}" for i in range(3000))  # seconds of streaming at the test pace
    chat = http.post("/chats", json={"prompt": f"echo:{words}"}).json()
    headers = {"Authorization": f"Bearer {chat['driveToken']}", "Accept": "text/event-stream"}
    parts: list[Any] = []
    with http.stream(
        "POST", "/chat-stream", json={"streamId": chat["streamId"]}, headers=headers
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            parts.append(data if data == "[DONE]" else json.loads(data))
            if len(parts) == 5:
                cancel = http.post(f"/streams/{chat['streamId']}/cancel", headers=headers)
                assert cancel.status_code == 202
    assert parts[-2:] == [{"type": "abort", "reason": "cancelled"}, "[DONE]"]
    body = stored(http, chat["streamId"])
    assert body["status"] == "cancelled"
    deltas = [p["delta"] for p in parts[:-1] if p["type"] == "text-delta"]
    assert "".join(deltas) == body["text"]


# -- resuming after a reload ---------------------------------------------------------------


def resume(node: str, http_url: str, stream_id: str) -> dict[str, Any]:
    done = subprocess.run(
        [node, "ai-sdk-resume.mjs", http_url, stream_id],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_use_chat_resumes_a_reply_mid_stream(
    node: str, local_stack: RunningStack, http: httpx.Client
):
    words = " ".join(f"wörd{i}" for i in range(500))  # a few seconds at the test pace
    chat = http.post("/chats", json={"prompt": f"echo:{words}"}).json()
    driving = threading.Thread(
        target=lambda: httpx.post(
            f"{local_stack.http_url}/chat-stream",
            json={"streamId": chat["streamId"]},
            headers={"Authorization": f"Bearer {chat['driveToken']}"},
            timeout=60,
        ),
        daemon=True,
    )
    driving.start()
    deadline = time.monotonic() + 10
    while not (seen := stored(http, chat["streamId"]))["text"]:
        assert time.monotonic() < deadline, "the stream never stored a batch"
        time.sleep(0.05)
    assert seen["status"] == "streaming"
    result = resume(node, local_stack.http_url, chat["streamId"])
    driving.join(30)
    body = stored(http, chat["streamId"])
    assert body["status"] == "done"
    assert result["text"] == body["text"] == words
    assert result["messageId"] == chat["streamId"] and result["messages"] == 1
    assert result["status"] == "ready" and result["error"] is None
    assert result["finished"] == {"isError": False, "isAbort": False, "finishReason": "stop"}
    parts = result["parts"]
    assert parts[:2] == ["start", "text-start"] and parts[-2:] == ["text-end", "finish"]
    assert parts.count("text-delta") > 1  # the stored text, then batches as they came


def test_use_chat_resumes_an_ended_reply_and_its_error(
    node: str, local_stack: RunningStack, http: httpx.Client
):
    (failed,) = use_chat(node, local_stack.http_url, "fail-after:3:It starts well, and then")
    result = resume(node, local_stack.http_url, failed["streamId"])
    body = stored(http, failed["streamId"])
    assert result["text"] == body["text"] and body["text"]
    assert result["status"] == "error" and result["error"] == body["error"]
    assert result["parts"][-2:] == ["text-end", "error"]


def test_use_chat_has_nothing_to_resume_for_a_pending_stream(
    node: str, local_stack: RunningStack, http: httpx.Client
):
    chat = http.post("/chats", json={"prompt": "echo:never driven"}).json()
    response = http.get(f"/streams/{chat['streamId']}/events")
    assert response.status_code == 204 and response.content == b""
    result = resume(node, local_stack.http_url, chat["streamId"])
    assert result == {
        "messages": 0,
        "messageId": None,
        "text": None,
        "status": "ready",
        "error": None,
        "parts": [],
        "finished": None,
    }


def test_the_resume_endpoint_on_the_wire(http: httpx.Client):
    assert http.get("/streams/nope/events").json() == {"error": "unknown stream"}
    assert http.get(f"/streams/{'0' * 32}/events").status_code == 404
    chat = http.post("/chats", json={"prompt": "echo:one\ntwo"}).json()
    http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    response = http.get(f"/streams/{chat['streamId']}/events")
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.text == (
        f'data: {{"type":"start","messageId":"{chat["streamId"]}"}}\n\n'
        'data: {"type":"text-start","id":"text-1"}\n\n'
        'data: {"type":"text-delta","id":"text-1","delta":"one\\ntwo"}\n\n'
        'data: {"type":"text-end","id":"text-1"}\n\n'
        'data: {"type":"finish","finishReason":"stop"}\n\n'
        "data: [DONE]\n\n"
    )
