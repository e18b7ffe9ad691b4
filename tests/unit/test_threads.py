"""Conversations: the thread model in storage, the history budget, what a source is given,
the demo's `history:` directive, and the API's `threadId` (in-process, on moto)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from pts import threads
from pts.api import create_app
from pts.config import Settings
from pts.model import new_id
from pts.protocol import Status
from pts.sources import GenerationRequest, Message, Turn
from pts.sources.demo import DemoSource, demo_script, history_transcript
from pts.storage import StreamStore


def reply(store: StreamStore, stream_id: str, text: str) -> None:
    assert store.claim(stream_id)
    store.append(stream_id, 1, text)
    assert store.finish(stream_id, Status.DONE)


# -- storage ------------------------------------------------------------------------------


def test_a_chat_starts_its_own_thread_and_others_continue_it(store: StreamStore):
    first, _ = store.create_chat("one")
    assert first.thread_id == first.chat_id
    second, _ = store.create_chat("two", thread_id=first.thread_id)
    other, _ = store.create_chat("elsewhere")
    assert second.thread_id == first.chat_id
    assert [c.chat_id for c in store.list_thread(first.chat_id)] == [first.chat_id, second.chat_id]
    assert store.list_thread(other.chat_id) == [other]
    assert [c.thread_id for c in store.list_chats()] == [first.chat_id] * 2 + [other.chat_id]
    assert store.get_chat(second.chat_id) == second


def test_thread_exists_by_its_first_chat_or_what_is_left_of_it(store: StreamStore):
    first, _ = store.create_chat("one")
    second, _ = store.create_chat("two", thread_id=first.chat_id)
    assert store.thread_exists(first.chat_id)
    assert not store.thread_exists(second.chat_id)  # a chat, but not a thread
    assert not store.thread_exists(new_id())
    store.delete_chat(first)
    assert store.thread_exists(first.chat_id)  # its second turn is still there
    store.delete_chat(second)
    assert not store.thread_exists(first.chat_id)


# -- history ------------------------------------------------------------------------------


def test_within_budget_keeps_the_newest_whole_turns():
    turns = [Turn("a" * 10, "b" * 10), Turn("é", "ü" * 4), Turn("c", "d")]  # 20, 10, 2 bytes
    newest_first = list(reversed(turns))
    assert threads.within_budget(newest_first, 100) == tuple(turns)
    assert threads.within_budget(newest_first, 31) == tuple(turns[1:])
    assert threads.within_budget(newest_first, 12) == tuple(turns[1:])
    assert threads.within_budget(newest_first, 11) == (turns[2],)
    assert threads.within_budget(newest_first, 1) == ()
    # Nothing older than a turn that does not fit, even if an older one would.
    assert threads.within_budget([Turn("x", "y"), Turn("big" * 10, ""), Turn("p", "")], 5) == (
        Turn("x", "y"),
    )


def test_within_budget_reads_no_further_than_it_needs():
    pulled: list[int] = []

    def newest_first() -> Iterator[Turn]:
        for i in range(100):
            pulled.append(i)
            yield Turn("q", "r" * 9)

    assert len(threads.within_budget(newest_first(), 35)) == 3
    assert pulled == [0, 1, 2, 3]


def test_history_is_the_earlier_turns_with_their_stored_replies(store: StreamStore):
    first, _ = store.create_chat("first question")
    reply(store, first.stream_id, "first answer")
    second, _ = store.create_chat("second question", thread_id=first.chat_id)
    assert store.claim(second.stream_id)
    store.append(second.stream_id, 1, "half an answer")
    assert store.finish(second.stream_id, Status.ERROR, "boom")  # shown whatever its status
    pending, _ = store.create_chat("never driven", thread_id=first.chat_id)
    third, _ = store.create_chat("third question", thread_id=first.chat_id)
    later, _ = store.create_chat("after the third", thread_id=first.chat_id)
    store.create_chat("another thread")

    assert threads.history(store, first, 10_000) == ()
    assert threads.history(store, third, 10_000) == (
        Turn("first question", "first answer"),
        Turn("second question", "half an answer"),
        Turn("never driven", ""),
    )
    assert later.chat_id not in {c.chat_id for c in threads.earlier_chats(store, third)}
    assert pending.chat_id in {c.chat_id for c in threads.earlier_chats(store, third)}
    assert threads.history(store, third, 40) == (Turn("never driven", ""),)
    assert threads.history(store, third, 41) == (
        Turn("second question", "half an answer"),
        Turn("never driven", ""),
    )


def test_conversation_alternates_and_ends_with_the_prompt():
    request = GenerationRequest(
        "now", "s", history=(Turn("a", "A"), Turn("b", ""), Turn("c", ""), Turn("d", "D"))
    )
    assert request.conversation() == [
        Message("user", ("a",)),
        Message("assistant", ("A",)),
        Message("user", ("b", "c", "d")),
        Message("assistant", ("D",)),
        Message("user", ("now",)),
    ]
    assert GenerationRequest("only", "s").conversation() == [Message("user", ("only",))]


# -- the demo's history: ------------------------------------------------------------------


def test_history_directive_streams_back_what_it_was_given():
    history = (Turn("echo:hi", "hi"), Turn("two\nlines", "reply\nin two"), Turn("x", ""))
    expected = (
        "user: echo:hi\nassistant: hi\n"
        "user: two\\nlines\nassistant: reply\\nin two\n"
        "user: x\nassistant: \n"
        "user: history: and now?"
    )
    assert history_transcript("history: and now?", history) == expected
    script = demo_script("history: and now?", 10, history)
    assert "".join(script.pieces) == expected and script.fail_after is None
    assert "".join(demo_script("history:", 10)[0]) == "user: history:"


# -- the API ------------------------------------------------------------------------------


@pytest.fixture
def client(store: StreamStore) -> Iterator[TestClient]:
    app = create_app(Settings(), store, DemoSource(reply_tokens=20, tokens_per_second=0))
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


def ask(client: TestClient, prompt: str, thread_id: str | None = None) -> tuple[dict, str]:
    body = {"prompt": prompt} | ({"threadId": thread_id} if thread_id else {})
    created = client.post("/chats", json=body)
    assert created.status_code == 201, created.text
    chat = created.json()
    driven = client.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    assert driven.status_code == 200
    return chat, driven.text


def test_api_threads_a_conversation(client: TestClient):
    first, _ = ask(client, "echo:Hello")
    assert first["threadId"] == first["chatId"]
    second, _ = ask(client, "echo:Again\nand again", first["threadId"])
    third, text = ask(client, "history:", first["threadId"])
    assert second["threadId"] == third["threadId"] == first["threadId"]
    assert text == (
        "user: echo:Hello\nassistant: Hello\n"
        "user: echo:Again\\nand again\nassistant: Again\\nand again\n"
        "user: history:"
    )
    listed = client.get("/chats", params={"threadId": first["threadId"]}).json()["chats"]
    assert [c["chatId"] for c in listed] == [first["chatId"], second["chatId"], third["chatId"]]
    assert {c["threadId"] for c in listed} == {first["threadId"]}
    assert set(listed[0]) == {"chatId", "prompt", "streamId", "createdAt", "threadId"}
    other, _ = ask(client, "history:")
    assert other["threadId"] == other["chatId"] != first["threadId"]
    everything = client.get("/chats").json()["chats"]
    assert [c["threadId"] for c in everything] == [first["threadId"]] * 3 + [other["threadId"]]
    assert client.get("/chats", params={"threadId": new_id()}).json() == {"chats": []}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"prompt": "hi", "threadId": 7}, 400, "threadId must be a non-empty string"),
        ({"prompt": "hi", "threadId": ""}, 400, "threadId must be a non-empty string"),
        ({"prompt": "", "threadId": 7}, 400, "prompt must be"),  # the prompt first
        ({"prompt": "hi", "threadId": "../x"}, 404, "unknown thread"),  # breaks the id rule
        ({"prompt": "hi", "threadId": "0" * 32}, 404, "unknown thread"),
    ],
)
def test_api_refuses_a_bad_thread(client: TestClient, body: dict, status: int, error: str):
    response = client.post("/chats", json=body)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)


def test_api_null_thread_starts_a_new_one_and_filters_by_any_thread_id(client: TestClient):
    response = client.post("/chats", json={"prompt": "hi", "threadId": None})
    assert response.status_code == 201
    assert response.json()["threadId"] == response.json()["chatId"]
    assert client.get("/chats", params={"threadId": "not an id"}).json() == {"chats": []}
    bad = client.get("/chats", params={"threadId": ""})
    assert bad.status_code == 400 and bad.json()["error"] == "threadId must be a non-empty string"


class Recording:
    """A source that declares a small history budget and records what it is given."""

    history_budget = 30

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []

    def __call__(self, request: GenerationRequest) -> list[str]:
        self.requests.append(request)
        return [f"re: {request.prompt}"]


def test_api_gives_the_source_what_fits_its_declared_budget(store: StreamStore):
    source = Recording()
    with TestClient(create_app(Settings(), store, source)) as client:
        first, _ = ask(client, "one")  # reply "re: one": 3 + 7 bytes
        ask(client, "two", first["threadId"])  # 10 bytes
        ask(client, "three", first["threadId"])  # 14 bytes
        ask(client, "four", first["threadId"])
    assert [r.history for r in source.requests] == [
        (),
        (Turn("one", "re: one"),),
        (Turn("one", "re: one"), Turn("two", "re: two")),
        (Turn("two", "re: two"), Turn("three", "re: three")),  # 24 of 30 bytes; one is out
    ]
    assert all(r.chat_id for r in source.requests)
