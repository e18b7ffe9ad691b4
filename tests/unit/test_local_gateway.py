"""The local API Gateway WebSocket endpoint, with real WebSocket clients and stub functions."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pts.local.apigateway_websocket import RouteSelector, WebSocketApi
from pts.local.gateway import LocalGateway
from pts.local.template import Template

ALL_ROUTES = ("$connect", "$disconnect", "subscribe", "unsubscribe", "$default")
API = WebSocketApi("Api", "$request.body.action", "live", dict.fromkeys(ALL_ROUTES, "Fn"))


class Recorder:
    """A stand-in function: keeps every event, answers with `answer(event)`."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer = answer or (lambda event: {"statusCode": 200})
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> Any:
        with self._lock:
            self.events.append(event)
        return self.answer(event)

    def routes(self) -> list[str]:
        return [event["requestContext"]["routeKey"] for event in self.events]


def run_gateway(
    function: Callable[[dict[str, Any]], Any],
    scenario: Callable[[LocalGateway], Awaitable[Any]],
    api: WebSocketApi = API,
) -> Any:
    async def main() -> Any:
        gateway = LocalGateway(api, {"Fn": function})
        await gateway.start()
        try:
            return await scenario(gateway)
        finally:
            await gateway.stop()

    return asyncio.run(asyncio.wait_for(main(), 20))


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- routes from the template and route selection ----------------------------------------


def test_the_templates_api_routes_every_key_to_its_function(template: Template):
    api = WebSocketApi.from_template(template)
    assert api.logical_id == "WebSocketApi"
    assert api.route_selection_expression == "$request.body.action"
    assert api.stage == "live"
    assert dict(api.routes) == dict.fromkeys(ALL_ROUTES, "WebSocketFunction")
    assert len(api.api_id) == 10 and api.api_id.isalnum() and api.api_id.islower()


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "subscribe", "streamId": "x"}', "subscribe"),
        ('{"action": "unsubscribe"}', "unsubscribe"),
        ('{"action": "nope"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ('{"action": {"nested": 1}}', "$default"),
        ('{"streamId": "x"}', "$default"),
        ('["subscribe"]', "$default"),
        ("not json", "$default"),
        ("", "$default"),
        (None, "$default"),
    ],
)
def test_route_selection(body: str | None, route: str):
    assert RouteSelector("$request.body.action", ALL_ROUTES).select(body) == route


def test_route_selection_nested_and_templated_expressions():
    nested = RouteSelector("$request.body.message.type", ["chat", "$default"])
    assert nested.select('{"message": {"type": "chat"}}') == "chat"
    templated = RouteSelector("${request.body.service}/${request.body.action}", ["a/b"])
    assert templated.select('{"service": "a", "action": "b"}') == "a/b"
    assert templated.select('{"service": "a"}') is None  # no $default: API Gateway says Forbidden


# -- connections -------------------------------------------------------------------------


def test_every_frame_is_routed_and_the_connection_lives_on():
    recorder = Recorder()

    async def scenario(gateway: LocalGateway) -> None:
        async with connect(f"{gateway.url}/live?client=test") as ws:
            await ws.send('{"action": "subscribe", "streamId": "s1"}')
            await ws.send("garbage")
            await ws.send('{"action": "what"}')
            await ws.send(b"\x00\xff")
            await ws.send('{"action": "unsubscribe", "streamId": "s1"}')
            await ws.ping()
            await _until(lambda: len(recorder.events) == 6)  # frames still waiting at a close
        await asyncio.sleep(0.2)  # are dropped

    run_gateway(recorder, scenario)
    assert recorder.routes() == [
        "$connect",
        "subscribe",
        "$default",
        "$default",
        "$default",
        "unsubscribe",
        "$disconnect",
    ]
    connect_event, subscribe, garbage, _, binary, _, disconnect = recorder.events
    ids = {event["requestContext"]["connectionId"] for event in recorder.events}
    assert len(ids) == 1
    assert connect_event["queryStringParameters"] == {"client": "test"}
    assert "Connection" not in connect_event["headers"]
    assert subscribe["body"] == '{"action": "subscribe", "streamId": "s1"}'
    assert garbage["body"] == "garbage" and garbage["isBase64Encoded"] is False
    assert binary["body"] == "AP8=" and binary["isBase64Encoded"] is True
    message_ids = {event["requestContext"]["messageId"] for event in recorder.events[1:-1]}
    assert len(message_ids) == 5
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000


def test_a_non_2xx_connect_answer_rejects_the_handshake():
    recorder = Recorder(lambda event: {"statusCode": 403})

    async def scenario(gateway: LocalGateway) -> int:
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(gateway.url):
                pass
        return rejected.value.response.status_code

    assert run_gateway(recorder, scenario) == 403
    assert recorder.routes() == ["$connect"]  # no $disconnect for a connection never made


def test_a_failing_connect_function_rejects_with_500():
    def broken(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    async def scenario(gateway: LocalGateway) -> int:
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(gateway.url):
                pass
        return rejected.value.response.status_code

    assert run_gateway(broken, scenario) == 500


def test_an_unknown_stage_path_is_forbidden():
    async def scenario(gateway: LocalGateway) -> int:
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(f"{gateway.url}/prod"):
                pass
        return rejected.value.response.status_code

    assert run_gateway(Recorder(), scenario) == 403


def test_a_failing_route_answers_like_api_gateway_and_the_connection_stays():
    def flaky(event: dict[str, Any]) -> Any:
        if event["requestContext"]["routeKey"] == "subscribe":
            raise RuntimeError("boom")
        return {"statusCode": 200}

    async def scenario(gateway: LocalGateway) -> tuple[dict[str, Any], bool]:
        async with connect(gateway.url) as ws:
            await ws.send('{"action": "subscribe"}')
            answer = json.loads(await ws.recv())
            await ws.send('{"action": "unsubscribe"}')
            await ws.ping()
            return answer, ws.state.name == "OPEN"

    answer, still_open = run_gateway(flaky, scenario)
    assert answer["message"] == "Internal server error"
    assert set(answer) == {"message", "connectionId", "requestId"}
    assert still_open


def test_without_a_default_route_unknown_actions_are_forbidden():
    api = WebSocketApi("Api", "$request.body.action", "live", {"subscribe": "Fn"})

    async def scenario(gateway: LocalGateway) -> dict[str, Any]:
        async with connect(gateway.url) as ws:
            await ws.send("garbage")
            return json.loads(await ws.recv())

    assert run_gateway(Recorder(), scenario, api)["message"] == "Forbidden"


def test_frames_of_one_connection_in_order_connections_concurrently():
    def slow(event: dict[str, Any]) -> Any:
        if event["requestContext"]["eventType"] == "MESSAGE":
            time.sleep(0.3)
        return {"statusCode": 200}

    recorder = Recorder(slow)

    async def one_viewer(gateway: LocalGateway, name: str) -> None:
        async with connect(gateway.url) as ws:
            for i in range(2):
                await ws.send(json.dumps({"action": "subscribe", "streamId": f"{name}{i}"}))
            await _until(lambda: f'"{name}1"' in str([e.get("body") for e in recorder.events]))

    async def scenario(gateway: LocalGateway) -> float:
        started = time.monotonic()
        await asyncio.gather(*(one_viewer(gateway, name) for name in "abcd"))
        await gateway.stop()  # returns once every frame and $disconnect was handled
        return time.monotonic() - started

    elapsed = run_gateway(recorder, scenario)
    assert elapsed < 1.2  # one at a time: 4 connections, 2 frames, 0.3 s each = 2.4 s
    for name in "abcd":
        streams = [json.loads(e["body"])["streamId"] for e in recorder.events if "body" in e]
        assert [s for s in streams if s.startswith(name)] == [f"{name}0", f"{name}1"]


def test_a_message_over_128_kib_closes_with_1009():
    recorder = Recorder()

    async def scenario(gateway: LocalGateway) -> int | None:
        async with connect(gateway.url, max_size=None) as ws:
            await ws.send("x" * (128 * 1024 + 1))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    assert run_gateway(recorder, scenario) == 1009
    assert recorder.routes() == ["$connect", "$disconnect"]
    assert recorder.events[-1]["requestContext"]["disconnectStatusCode"] == 1009


def test_stopping_says_going_away_and_runs_disconnect():
    recorder = Recorder()

    async def scenario(gateway: LocalGateway) -> int | None:
        async with connect(gateway.url) as ws:
            await gateway.stop()
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    assert run_gateway(recorder, scenario) == 1001
    disconnect = recorder.events[-1]["requestContext"]
    assert (disconnect["disconnectStatusCode"], disconnect["disconnectReason"]) == (
        1001,
        "Going away",
    )


# -- AWS's limits and a closed connection's work --------------------------------------------


def test_a_frame_over_32_kib_closes_with_1009_but_a_fragmented_message_passes():
    recorder = Recorder()

    async def scenario(gateway: LocalGateway) -> int | None:
        async with connect(gateway.url) as ws:  # fragments of 32 KiB: 100 KiB in 4 frames
            await ws.send(["y" * (32 * 1024)] * 3 + ["y" * (4 * 1024)])
            await asyncio.sleep(0.2)
        async with connect(gateway.url) as ws:
            await ws.send("x" * (32 * 1024 + 1))  # one frame, under the message limit
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    assert run_gateway(recorder, scenario) == 1009
    assert recorder.routes() == ["$connect", "$default", "$disconnect", "$connect", "$disconnect"]
    assert len(recorder.events[1]["body"]) == 100 * 1024
    assert recorder.events[-1]["requestContext"]["disconnectStatusCode"] == 1009


def _lifetime_gateway(function: Any, scenario: Any, **limits: float) -> Any:
    async def main() -> Any:
        gateway = LocalGateway(API, {"Fn": function}, **limits)
        await gateway.start()
        try:
            return await scenario(gateway)
        finally:
            await gateway.stop()

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_an_idle_connection_is_closed_going_away_with_its_disconnect():
    recorder = Recorder()

    async def scenario(gateway: LocalGateway) -> tuple[int | None, str | None, float]:
        started = time.monotonic()
        async with connect(gateway.url) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason, time.monotonic() - started

    code, reason, after = _lifetime_gateway(recorder, scenario, idle_timeout=0.5)
    assert (code, reason) == (1001, "Going away")
    assert 0.4 < after < 2
    disconnect = recorder.events[-1]["requestContext"]
    assert recorder.routes() == ["$connect", "$disconnect"]
    assert (disconnect["disconnectStatusCode"], disconnect["disconnectReason"]) == (
        1001,
        "Going away",
    )


def test_frames_keep_a_connection_alive_until_its_maximum_duration():
    recorder = Recorder()

    async def scenario(gateway: LocalGateway) -> tuple[int | None, float]:
        started = time.monotonic()
        async with connect(gateway.url) as ws:
            with pytest.raises(ConnectionClosed):
                while True:  # busy all along: never idle for 0.5 s
                    await ws.send('{"action": "ping"}')
                    await asyncio.sleep(0.1)
            return ws.close_code, time.monotonic() - started

    code, after = _lifetime_gateway(recorder, scenario, idle_timeout=0.5, max_duration=1.5)
    assert code == 1001
    assert 1.4 < after < 3
    assert recorder.routes().count("$default") >= 8
    assert recorder.routes()[-1] == "$disconnect"


def test_a_closed_connections_backlog_is_dropped_and_disconnect_runs_once():
    recorder = Recorder(lambda event: time.sleep(0.05))

    async def scenario(gateway: LocalGateway) -> tuple[int, int]:
        async with connect(gateway.url) as ws:
            for i in range(400):  # 20 s of work at 0.05 s a frame
                await ws.send(json.dumps({"action": "subscribe", "streamId": f"s{i}"}))
        closed_at = len(recorder.events)
        await asyncio.sleep(1.0)
        settled = len(recorder.events)
        await asyncio.sleep(1.0)
        assert len(recorder.events) == settled  # nothing more runs for the closed connection
        return closed_at, settled

    closed_at, settled = run_gateway(recorder, scenario)
    routes = recorder.routes()
    assert settled - closed_at <= 3  # at most the frame running at the close, and $disconnect
    assert routes.count("$disconnect") == 1 and routes[-1] == "$disconnect"
    assert routes.count("subscribe") < 60
