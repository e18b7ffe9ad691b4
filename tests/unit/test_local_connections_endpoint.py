"""The local `@connections` API with the real boto3 client the handlers use."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pts.local.apigateway_websocket import ConnectionInfo, WebSocketApi
from pts.local.connections_endpoint import (
    ConnectionRegistry,
    LiveConnection,
    ManagementApi,
    ManagementEndpoint,
)
from pts.local.gateway import LocalGateway

API = WebSocketApi("Api", "$request.body.action", "live", {"$connect": "Fn", "$disconnect": "Fn"})


def management_client(endpoint_url: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


def test_post_get_delete_and_gone_with_boto3():
    connect_events: list[dict[str, Any]] = []

    def function(event: dict[str, Any]) -> dict[str, int]:
        if event["requestContext"]["eventType"] == "CONNECT":
            connect_events.append(event)
        return {"statusCode": 200}

    async def main() -> None:
        gateway = LocalGateway(API, {"Fn": function})
        endpoint = ManagementEndpoint(gateway.registry)
        await endpoint.start()
        await gateway.start()
        try:
            async with connect(gateway.url, user_agent_header="viewer/1.0") as ws:
                connection_id = connect_events[0]["requestContext"]["connectionId"]
                # Registered as the handshake completes, which the client may see a moment
                # earlier (as on AWS, a connection is not postable during its $connect).
                for _ in range(500):
                    if gateway.registry.get(connection_id):
                        break
                    await asyncio.sleep(0.01)
                staged = management_client(endpoint.url("live"))
                bare = management_client(f"http://127.0.0.1:{endpoint.port}")

                await asyncio.to_thread(
                    staged.post_to_connection, ConnectionId=connection_id, Data=b'{"a":1}'
                )
                assert await ws.recv() == '{"a":1}'  # UTF-8: a text frame
                await asyncio.to_thread(
                    bare.post_to_connection, ConnectionId=connection_id, Data=b"\xff\x00"
                )
                assert await ws.recv() == b"\xff\x00"  # not UTF-8: a binary frame

                info = await asyncio.to_thread(staged.get_connection, ConnectionId=connection_id)
                assert isinstance(info["ConnectedAt"], datetime)
                assert isinstance(info["LastActiveAt"], datetime)
                assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "viewer/1.0"}

                with pytest.raises(staged.exceptions.GoneException) as gone:
                    await asyncio.to_thread(
                        staged.post_to_connection, ConnectionId="LZ1xLcjYoAMCJjQ=", Data=b"x"
                    )
                assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410

                with pytest.raises(staged.exceptions.PayloadTooLargeException):
                    await asyncio.to_thread(
                        staged.post_to_connection,
                        ConnectionId=connection_id,
                        Data=b"x" * (128 * 1024 + 1),
                    )

                await asyncio.to_thread(staged.delete_connection, ConnectionId=connection_id)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1000
                for call in (staged.get_connection, staged.delete_connection):
                    with pytest.raises(staged.exceptions.GoneException):
                        await asyncio.to_thread(call, ConnectionId=connection_id)
                with pytest.raises(staged.exceptions.GoneException):
                    await asyncio.to_thread(
                        staged.post_to_connection, ConnectionId=connection_id, Data=b"x"
                    )
        finally:
            await gateway.stop()
            await endpoint.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str | bytes] = []

    async def send(self, message: str | bytes) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (b"/@connections/a%2Bb%2Fc%3D", 200),
        (b"/live/@connections/a%2Bb%2Fc%3D", 200),
        (b"/live/@connections/a%2Bb%2Fc%3D?x=1", 200),
        (b"/live/@connections/other", 410),
        (b"/a/b/@connections/a%2Bb%2Fc%3D", 403),
        (b"/live/@connections/", 403),
        (b"/live/connections/a%2Bb%2Fc%3D", 403),
    ],
)
def test_the_path_boto3_builds_is_understood(path: bytes, status: int):
    registry = ConnectionRegistry()
    socket = FakeSocket()
    registry.add(LiveConnection(ConnectionInfo("a+b/c=", "127.0.0.1"), socket))
    reply = asyncio.run(ManagementApi(registry).handle("POST", path, b"hi"))
    assert reply.status == status
    assert socket.sent == (["hi"] if status == 200 else [])


def test_posts_can_be_slowed_down_and_failed_for_tests():
    registry = ConnectionRegistry()
    socket = FakeSocket()
    registry.add(LiveConnection(ConnectionInfo("a", "127.0.0.1"), socket))
    registry.add(LiveConnection(ConnectionInfo("b", "127.0.0.1"), socket))
    api = ManagementApi(registry, post_delay=0.2)
    api.fault = lambda connection_id, data: 500 if connection_id == "b" else None

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(
                api.handle("POST", b"/live/@connections/a", b"to a"),
                api.handle("POST", b"/live/@connections/b", b"to b"),
            )
        )

    started = time.monotonic()
    delivered, failed = asyncio.run(main())
    assert 0.2 <= time.monotonic() - started < 1  # each waits, concurrently
    assert delivered.status == 200 and socket.sent == ["to a"]
    assert (failed.status, failed.error_type) == (500, "InternalServerErrorException")


def test_an_idle_keep_alive_connection_does_not_hold_up_stop():
    async def main() -> None:
        endpoint = ManagementEndpoint(ConnectionRegistry())
        await endpoint.start()
        client = management_client(endpoint.url("live"))
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(client.get_connection, ConnectionId="nobody")
        await asyncio.wait_for(endpoint.stop(), 2)

    asyncio.run(main())


def test_other_http_clients_and_bad_requests():
    async def main() -> None:
        registry = ConnectionRegistry()
        socket = FakeSocket()
        registry.add(LiveConnection(ConnectionInfo("c1=", "127.0.0.1"), socket))
        endpoint = ManagementEndpoint(registry)
        await endpoint.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{endpoint.port}") as http:
                posted = await http.post("/live/@connections/c1%3D", content=b"hi")
                gone = await http.get("/live/@connections/c2%3D")
            assert (posted.status_code, gone.status_code) == (200, 410)
            assert gone.headers["x-amzn-errortype"] == "GoneException"
            assert gone.json() == {"message": None}
            assert socket.sent == ["hi"]
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.write(b"nonsense\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
            writer.close()
        finally:
            await endpoint.stop()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_post_up_to_128_kib_arrives_in_frames_of_32_kib_and_one_byte_more_is_413():
    connected: list[str] = []

    def function(event: dict[str, Any]) -> dict[str, int]:
        if event["requestContext"]["eventType"] == "CONNECT":
            connected.append(event["requestContext"]["connectionId"])
        return {"statusCode": 200}

    async def main() -> None:
        gateway = LocalGateway(API, {"Fn": function})
        endpoint = ManagementEndpoint(gateway.registry)
        await endpoint.start()
        await gateway.start()
        try:
            # A client that refuses any frame over 32 KiB, as API Gateway never sends one.
            async with connect(gateway.url, max_size=(None, 32 * 1024)) as ws:
                for _ in range(500):
                    if connected and gateway.registry.get(connected[0]):
                        break
                    await asyncio.sleep(0.01)
                client = management_client(endpoint.url("live"))
                text = ("é" * 30 + "x") * (128 * 1024 // 61) + "x" * (128 * 1024 % 61)
                assert len(text.encode()) == 128 * 1024
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId=connected[0], Data=text.encode()
                )
                assert await ws.recv() == text
                with pytest.raises(client.exceptions.PayloadTooLargeException) as refused:
                    await asyncio.to_thread(
                        client.post_to_connection,
                        ConnectionId=connected[0],
                        Data=text.encode() + b"x",
                    )
                answer = refused.value.response
                assert answer["ResponseMetadata"]["HTTPStatusCode"] == 413
                assert answer["Error"]["Code"] == "PayloadTooLargeException"
        finally:
            await gateway.stop()
            await endpoint.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
