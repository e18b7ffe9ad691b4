"""Live viewers end to end (docs/protocol.md): real WebSocket clients following the client rule
(`pts.client`), the local gateway, the DynamoDB Streams poller and the real fan-out."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import boto3
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from pts.client import StreamView, follow
from pts.subscriptions import SubscriptionStore
from tests.support import RunningStack, running_stack

ECHO = "echo:" + " ".join(f"Sentence number {i} is here." for i in range(40))


async def create(http: httpx.AsyncClient, prompt: str) -> dict[str, str]:
    response = await http.post("/chats", json={"prompt": prompt})
    assert response.status_code == 201
    return response.json()


async def drive(http: httpx.AsyncClient, chat: dict[str, str]) -> str:
    response = await http.post(
        "/chat-stream",
        json={"streamId": chat["streamId"]},
        headers={"Authorization": f"Bearer {chat['driveToken']}"},
    )
    assert response.status_code == 200
    return response.text


@asynccontextmanager
async def client(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=60) as http:
        yield http


def subscriptions() -> SubscriptionStore:
    """The connections table the local stack's functions use."""
    return SubscriptionStore(os.environ["PTS_CONNECTIONS_TABLE"])


class Recorder:
    """A viewer that keeps every message (to check seq numbers), on top of the client rule."""

    def __init__(self, ws: ClientConnection, stream_id: str, after: int = 0) -> None:
        self.ws = ws
        self.view = StreamView(stream_id, last=after)
        self.messages: list[dict[str, Any]] = []

    async def subscribe(self) -> None:
        await self.ws.send(json.dumps(self.view.subscribe_message()))

    async def run(self) -> StreamView:
        while not self.view.ended:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            self.messages.append(message)
            if request := self.view.apply(message):
                await self.ws.send(json.dumps(request))
        return self.view


def test_before_during_and_after(local_stack: RunningStack):
    async def main() -> tuple[str, StreamView, StreamView, StreamView]:
        async with client(local_stack) as http:
            chat = await create(http, "A reply to watch from three points in time")
            before = asyncio.create_task(follow(local_stack.ws_url, chat["streamId"]))
            await asyncio.sleep(0.3)  # subscribed while pending
            driving = asyncio.create_task(drive(http, chat))
            while (await http.get(f"/streams/{chat['streamId']}")).json()["seq"] < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            during = await follow(local_stack.ws_url, chat["streamId"])
            text = await driving
            after = await follow(local_stack.ws_url, chat["streamId"])
            return text, await before, during, after

    text, before, during, after = asyncio.run(main())
    for view in (before, during, after):
        assert (view.text, view.status) == (text, "done")


def test_after_resumes_where_a_viewer_left_off(local_stack: RunningStack):
    async def main() -> tuple[list[dict[str, Any]], StreamView]:
        async with client(local_stack) as http, connect(local_stack.ws_url) as ws:
            chat = await create(http, ECHO)
            recorder = Recorder(ws, chat["streamId"])
            await recorder.subscribe()
            await asyncio.gather(drive(http, chat), recorder.run())
            resumed = await follow(local_stack.ws_url, chat["streamId"], after=2)
            return recorder.messages, resumed

    messages, resumed = asyncio.run(main())
    deltas = {m["seq"]: m["text"] for m in messages if m["type"] == "delta"}
    assert len(deltas) > 3
    assert resumed.text == "".join(deltas[seq] for seq in sorted(deltas) if seq > 2)


def test_fifty_viewers_and_ten_streams_reconstruct_the_text_exactly(local_stack: RunningStack):
    async def main() -> tuple[list[str], list[list[StreamView]]]:
        async with client(local_stack) as http:
            chats = [await create(http, f"Concurrent reply number {i}") for i in range(10)]
            viewers = [
                [
                    asyncio.create_task(follow(local_stack.ws_url, chat["streamId"]))
                    for _ in range(50 if i == 0 else 3)
                ]
                for i, chat in enumerate(chats)
            ]
            await asyncio.sleep(1.0)  # let them subscribe while pending
            texts = await asyncio.gather(*(drive(http, chat) for chat in chats))
            views = [await asyncio.gather(*tasks) for tasks in viewers]
            return list(texts), views

    texts, views = asyncio.run(main())
    assert len(set(texts)) == 10
    for text, stream_views in zip(texts, views, strict=True):
        for view in stream_views:
            assert (view.text, view.status) == (text, "done")
    # Each viewer received each byte about once: no re-sent bodies.
    assert all(v.resubscribes == 0 for vs in views for v in vs)


def test_a_viewer_vanishing_mid_stream_harms_nobody(local_stack: RunningStack):
    async def main() -> tuple[str, StreamView, list[str]]:
        async with client(local_stack) as http:
            chat = await create(http, "A reply one viewer walks away from")
            stayer = asyncio.create_task(follow(local_stack.ws_url, chat["streamId"]))
            leaver = await connect(local_stack.ws_url)
            await leaver.send(json.dumps({"action": "subscribe", "streamId": chat["streamId"]}))
            await leaver.recv()
            driving = asyncio.create_task(drive(http, chat))
            await leaver.recv()  # one delta, then gone without a goodbye
            leaver.transport.abort()
            text = await driving
            view = await stayer
            subscribers = await asyncio.to_thread(subscriptions().subscribers, chat["streamId"])
            return text, view, subscribers

    text, view, subscribers = asyncio.run(main())
    assert (view.text, view.status) == (text, "done")
    assert len(subscribers) <= 1  # the leaver's $disconnect removed its subscription


def test_stale_subscriptions_are_cleaned_up(local_stack: RunningStack):
    """A subscription whose connection vanished without $disconnect (410) is deleted."""
    store = subscriptions()

    async def main() -> tuple[str, list[str]]:
        async with client(local_stack) as http:
            chat = await create(http, "echo:Stale viewers. Go away.")
            await asyncio.to_thread(store.subscribe, "ghost=", chat["streamId"])
            watcher = asyncio.create_task(follow(local_stack.ws_url, chat["streamId"]))
            await asyncio.sleep(0.3)
            text = await drive(http, chat)
            view = await watcher
            assert view.text == text
            for _ in range(100):  # removed right after the posts of that invocation
                subscribers = await asyncio.to_thread(store.subscribers, chat["streamId"])
                if "ghost=" not in subscribers:
                    break
                await asyncio.sleep(0.05)
            return text, subscribers

    _, subscribers = asyncio.run(main())
    assert "ghost=" not in subscribers


def test_a_failed_delivery_is_recovered_by_the_client_rule(local_stack: RunningStack):
    """The first post of one delta to one viewer fails (@connections answers 400): the
    fan-out gives up on that viewer for that record (nobody else gets a repeat), and its
    client closes the gap."""
    endpoint = local_stack.stack.management.api
    failed: list[bytes] = []

    def fail_once(connection_id: str, message: bytes) -> int | None:
        if not failed and b'"seq":3' in message:
            failed.append(message)
            return 400
        return None

    async def main() -> tuple[str, list[StreamView]]:
        async with client(local_stack) as http:
            chat = await create(http, ECHO)
            watchers = [
                asyncio.create_task(follow(local_stack.ws_url, chat["streamId"])) for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            text = await drive(http, chat)
            return text, list(await asyncio.gather(*watchers))

    endpoint.fault = fail_once
    try:
        text, views = asyncio.run(main())
    finally:
        endpoint.fault = None
    assert failed
    for view in views:
        assert (view.text, view.status) == (text, "done")


def test_websocket_function_events_reach_dynamodb(local_stack: RunningStack):
    """Subscriptions really live in the connections table the template declares."""
    table = local_stack.stack.dynamodb.table_names["ConnectionsTable"]

    async def main() -> int:
        async with client(local_stack) as http, connect(local_stack.ws_url) as ws:
            chat = await create(http, "echo:x")
            await ws.send(json.dumps({"action": "subscribe", "streamId": chat["streamId"]}))
            await ws.recv()
            items = boto3.client("dynamodb").query(
                TableName=table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"STREAM#{chat['streamId']}"}},
            )["Items"]
            return len(items)

    assert asyncio.run(main()) == 1


@contextmanager
def posts_watched(stack: RunningStack, fail_for: set[str]) -> Iterator[list[int]]:
    """Every message the local `@connections` endpoint is asked to post, by size; posts to
    the connections in `fail_for` answer 500, as a sick connection's would."""
    management = stack.stack.management
    assert management is not None
    endpoint = management.api
    sizes: list[int] = []

    def watch(connection_id: str, data: bytes) -> int | None:
        sizes.append(len(data))
        return 500 if connection_id in fail_for else None

    endpoint.fault = watch
    try:
        yield sizes
    finally:
        endpoint.fault = None


@pytest.fixture(scope="module")
def long_reply_stack() -> Iterator[RunningStack]:
    """A stack of its own whose demo replies are 80,000 tokens long (about 320 KB)."""
    environment = {"PTS_DEMO_REPLY_TOKENS": "80000", "PTS_DEMO_TOKENS_PER_SECOND": "16000"}
    with running_stack(environment) as stack:
        yield stack


def test_a_long_reply_before_during_and_after(long_reply_stack: RunningStack):
    """About 320 KB: more than API Gateway's 128 KB per message. Every viewer ends with the
    exact text, a late one through a snapshot cut to fit (`more`), and nothing posted is
    over 128 KiB (the local endpoint refuses that as AWS does)."""

    async def main() -> tuple[str, list[StreamView], list[dict[str, Any]]]:
        async with (
            client(local_stack) as http,
            connect(local_stack.ws_url, max_size=None) as during_ws,
            connect(local_stack.ws_url, max_size=None) as after_ws,
        ):
            chat = await create(http, "A very long reply, please")
            before = asyncio.create_task(follow(local_stack.ws_url, chat["streamId"]))
            await asyncio.sleep(0.3)
            driving = asyncio.create_task(drive(http, chat))
            url = f"/streams/{chat['streamId']}"
            while len((await http.get(url)).json()["text"].encode()) < 150_000:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            during = Recorder(during_ws, chat["streamId"])
            await during.subscribe()
            during_view = await during.run()
            text = await driving
            after = Recorder(after_ws, chat["streamId"])
            await after.subscribe()
            after_view = await after.run()
            late = await follow(local_stack.ws_url, chat["streamId"])
            snapshots = [m for m in [*during.messages, *after.messages] if m["type"] == "snapshot"]
            return text, [await before, during_view, after_view, late], snapshots

    local_stack = long_reply_stack
    with posts_watched(local_stack, set()) as sizes:
        text, views, snapshots = asyncio.run(main())
    size = len(text.encode())
    print(f"\nreply: {size} bytes; largest message posted: {max(sizes)} bytes")
    assert size > 256 * 1024
    for view in views:
        assert (view.text, view.status) == (text, "done")
    assert max(sizes) <= 128 * 1024
    assert [s.get("more") for s in snapshots] == [True, True]  # both cut to fit
    assert views[2].resubscribes == views[3].resubscribes == 0


def test_one_sick_connection_harms_nobody(local_stack: RunningStack):
    """Every post to one connection fails (500): it is given up on alone; the other viewers
    get each message once, and the sick one catches up when it subscribes again."""
    registry = local_stack.stack.management.api.registry  # type: ignore[union-attr]

    async def main() -> tuple[str, list[Recorder], StreamView]:
        async with client(local_stack) as http:
            chat = await create(http, ECHO)
            known = {c.info.connection_id for c in registry}
            sick_ws = await connect(local_stack.ws_url)
            await asyncio.sleep(0.1)
            (sick_id,) = {c.info.connection_id for c in registry} - known
            sick = Recorder(sick_ws, chat["streamId"])
            await sick.subscribe()
            sick.view.apply(json.loads(await sick.ws.recv()))  # its snapshot, before it falls ill
            well = [Recorder(await connect(local_stack.ws_url), chat["streamId"]) for _ in "ab"]
            for recorder in well:
                await recorder.subscribe()
            with posts_watched(local_stack, {sick_id}):
                text = await drive(http, chat)
                await asyncio.gather(*(r.run() for r in well))
            # Well again: it subscribes again after what it has, and gets the rest.
            resumed = await follow(local_stack.ws_url, chat["streamId"], after=sick.view.last)
            for recorder in [*well, sick]:
                await recorder.ws.close()
            return text, well, resumed

    text, well, resumed = asyncio.run(main())
    for recorder in well:
        assert (recorder.view.text, recorder.view.status) == (text, "done")
        seqs = [m["seq"] for m in recorder.messages if m["type"] == "delta"]
        assert len(seqs) == len(set(seqs)), "a viewer got a message twice"
    assert (resumed.text, resumed.status) == (text, "done")


def test_hostile_frames_get_an_error_and_keep_the_connection(local_stack: RunningStack):
    """Through the local gateway: each frame is answered at once with an `error`, the
    connection stays open, and a normal subscribe right after is served at once."""
    frames = [
        "[" * 60_000,
        '{"action": "subscribe", "streamId": "s", "after": ' + "1" * 5_000 + "}",
        '{"action": "subscribe", "streamId": "\\ud800"}',
        '{"action": "subscribe", "streamId": "\\ud800\\udfff\\ud800"}',
        '{"action": "subscribe", "streamId": "s", "after": 1' + "0" * 2000 + "}",
        '{"action": "subscribe", "streamId": "s", "after": -1}',
        '{"action": "subscribe", "streamId": "s", "after": "1"}',
        '{"action": "\\ud800", "streamId": "s"}',
        '{"action": "subscribe", "streamId": "' + "a" * 100_000 + '"}',
    ]

    async def main() -> tuple[list[dict[str, Any]], float, StreamView]:
        async with client(local_stack) as http, connect(local_stack.ws_url) as ws:
            chat = await create(http, "echo:Still here.")
            await drive(http, chat)
            answers = []
            started = asyncio.get_running_loop().time()
            for frame in frames * 2:
                # API Gateway closes a connection on a frame over 32 KB (1009): the big
                # messages go in fragments, as a client must send them.
                await ws.send([frame[i : i + 32_768] for i in range(0, len(frame), 32_768)])
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            took = asyncio.get_running_loop().time() - started
            recorder = Recorder(ws, chat["streamId"])
            await recorder.subscribe()
            return answers, took, await asyncio.wait_for(recorder.run(), 5)

    answers, took, view = asyncio.run(main())
    assert [a["type"] for a in answers] == ["error"] * len(frames) * 2, answers
    assert took < 10
    assert (view.text, view.status) == ("Still here.", "done")
