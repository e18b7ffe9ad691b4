"""The local WebSocket API, @connections and stream trigger, wired by the stack from the
template, with a raw WebSocket client and the real handlers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import boto3
import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.support import RunningStack


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_the_stack_serves_the_websocket_api_on_a_real_port(local_stack: RunningStack):
    stack = local_stack.stack
    assert local_stack.ws_url.startswith("ws://127.0.0.1:")
    assert not local_stack.ws_url.endswith(":0")
    websocket, fanout = stack.functions["WebSocketFunction"], stack.functions["FanoutFunction"]
    assert websocket.env["PTS_WS_MANAGEMENT_URL"] == stack.ws_management_url
    assert fanout.env["PTS_WS_MANAGEMENT_URL"] == stack.ws_management_url
    assert stack.web_functions["StreamFunction"].env["PTS_WS_URL"] == local_stack.ws_url
    assert stack.ws_management_url.endswith("/live")
    assert [poller.mapping.function_id for poller in stack.pollers] == ["FanoutFunction"]


def test_garbage_gets_an_error_and_the_connection_stays_usable(local_stack: RunningStack):
    async def session() -> list[dict[str, Any]]:
        async with connect(local_stack.ws_url) as ws:
            answers = []
            for frame in ("garbage", '{"action": "dance"}', "[1, 2]", '{"action": "subscribe"}'):
                await ws.send(frame)
                answers.append(await next_message(ws))
            await ws.send(b"\x00\x01")
            answers.append(await next_message(ws))
            await ws.send(json.dumps({"action": "subscribe", "streamId": "no-such-stream"}))
            answers.append(await next_message(ws))
            return answers

    answers = asyncio.run(session())
    assert all(answer["type"] == "error" and answer["error"] for answer in answers)
    assert answers[-1]["streamId"] == "no-such-stream"


def test_a_subscriber_sees_the_snapshot_every_delta_and_the_end(local_stack: RunningStack):
    async def session() -> tuple[str, list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=local_stack.http_url, timeout=30) as http:
            chat = (await http.post("/chats", json={"prompt": "echo:One. Two! Three?"})).json()
            async with connect(local_stack.ws_url) as ws:
                await ws.send(json.dumps({"action": "subscribe", "streamId": chat["streamId"]}))
                messages = [await next_message(ws)]
                response = await http.post(
                    "/chat-stream",
                    json={"streamId": chat["streamId"]},
                    headers={"Authorization": f"Bearer {chat['driveToken']}"},
                )
                while messages[-1]["type"] != "status":
                    messages.append(await next_message(ws))
                return response.text, messages

    driven, messages = asyncio.run(session())
    snapshot, *deltas, status = messages
    assert (snapshot["type"], snapshot["status"], snapshot["seq"]) == ("snapshot", "pending", 0)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["text"] for d in deltas) == driven == "One. Two! Three?"
    assert (status["status"], status["seq"]) == ("done", len(deltas))


def test_the_handlers_management_endpoint_knows_live_connections(local_stack: RunningStack):
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=local_stack.stack.ws_management_url
    )

    async def session() -> tuple[dict[str, Any], str]:
        async with connect(local_stack.ws_url, user_agent_header="integration") as ws:
            registry = local_stack.stack.gateway.registry
            # Registered as the handshake completes, which the client may see a moment earlier.
            for _ in range(100):
                matches = [c for c in registry if c.info.user_agent == "integration"]
                if matches:
                    break
                await asyncio.sleep(0.02)
            (ours,) = matches
            connection_id = ours.info.connection_id
            info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=connection_id, Data=b"hello"
            )
            return info, await asyncio.wait_for(ws.recv(), 5)

    info, received = asyncio.run(session())
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert received == "hello"
