"""Metrics (CloudWatch's embedded metric format, on stdout) and `streamId` in log lines, from
the driver, the fan-out and the sweeper, as CloudWatch Logs would receive them."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pts import observability
from pts.driver import StreamDriver
from pts.fanout import Fanout
from pts.storage import Status, StreamStore
from pts.subscriptions import SubscriptionStore
from pts.sweeper import sweep
from tests.unit.test_ws_routes_and_fanout import FakeConnections, batch_record, status_record


class Stdout:
    """Whatever `sys.stdout` is when written to (capsys swaps it between test phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def json_logs() -> Iterator[None]:
    """The process's Logger (as a function sets it up), writing where `print` writes, as
    on Lambda; the shared Lambda metrics start empty."""
    handler = observability.logger().logger_handler
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(Stdout())
    observability.metrics.clear_metrics()
    yield
    observability.metrics.clear_metrics()


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF documents: each declares its metrics under `_aws`."""
    documents = [line for line in lines(out) if "_aws" in line]
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == observability.NAMESPACE
        assert document["service"] == observability.SERVICE
    return documents


def metric(document: dict[str, Any], name: str) -> tuple[list[float], str]:
    """A metric's values (Powertools writes a list) and its unit."""
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    values = document[name]
    return (values if isinstance(values, list) else [values]), units[name]


def logs(out: str) -> list[dict[str, Any]]:
    return [line for line in lines(out) if "level" in line]


def claimed(store: StreamStore) -> tuple[str, str]:
    chat, token = store.create_chat("p")
    assert store.claim(chat.stream_id)
    return chat.stream_id, token


async def paced(pieces: list[str], interval: float = 0.0) -> AsyncIterator[str]:
    for piece in pieces:
        await asyncio.sleep(interval)
        yield piece


async def drain(driver: StreamDriver) -> str:
    return "".join([piece async for piece in driver.text()])


# -- the driver: one EMF line per stream -------------------------------------------------


def test_each_stream_flushes_its_own_metrics_once(store: StreamStore, capsys):
    """Two streams driven at once in one process: each EMF line is one stream's alone."""
    (a, token_a), (b, token_b) = claimed(store), claimed(store)
    texts = {a: ["Hello ", "world. ", "Ça va? "], b: ["日本語。"]}

    async def both() -> None:
        drivers = [StreamDriver(store, s, paced(texts[s], 0.01), max_delay=0.001) for s in texts]
        await asyncio.gather(*(drain(d) for d in drivers))

    asyncio.run(both())
    out = capsys.readouterr().out
    documents = {d["streamId"]: d for d in emf(out)}
    assert set(documents) == {a, b} and len(emf(out)) == 2
    for stream_id, pieces in texts.items():
        document = documents[stream_id]
        assert metric(document, "BatchesWritten") == ([store.get_stream(stream_id).seq], "Count")
        assert metric(document, "BytesPersisted") == ([len("".join(pieces).encode())], "Bytes")
        assert "Cancels" not in document and "StaleWritesRefused" not in document
    assert token_a not in out and token_b not in out


def test_a_cancel_is_counted(store: StreamStore, capsys):
    async def endless() -> AsyncIterator[str]:
        while True:
            yield "tick "
            await asyncio.sleep(0.01)

    stream_id, _ = claimed(store)

    async def run() -> None:
        driver = StreamDriver(store, stream_id, endless(), max_delay=0.001)
        task = driver.start()
        await asyncio.sleep(0.1)
        driver.cancel()
        await task

    asyncio.run(run())
    (document,) = emf(capsys.readouterr().out)
    assert metric(document, "Cancels") == ([1], "Count")
    assert store.get_stream(stream_id).status is Status.CANCELLED


def test_the_driver_s_log_lines_name_the_stream(store: StreamStore, capsys):
    async def failing() -> AsyncIterator[str]:
        yield "Partial. "
        raise RuntimeError("model overloaded")

    stream_id, _ = claimed(store)
    asyncio.run(drain(StreamDriver(store, stream_id, failing(), max_delay=0.001)))
    (line,) = [line for line in logs(capsys.readouterr().out) if "failed" in line["message"]]
    assert (line["level"], line["streamId"]) == ("WARNING", stream_id)


def test_a_stale_driver_s_refused_write_is_counted(store: StreamStore, capsys):
    """The sweeper ended the stream while its driver was silent: the late batch is refused."""
    stream_id, _ = claimed(store)

    async def late() -> AsyncIterator[str]:
        stream = store.get_stream(stream_id)
        assert store.time_out(stream_id, Status.STREAMING, stream.updated_at, "gone")
        yield "too late"

    asyncio.run(drain(StreamDriver(store, stream_id, late(), max_delay=0.001)))
    out = capsys.readouterr().out
    (document,) = emf(out)
    assert metric(document, "StaleWritesRefused")[0][0] >= 1
    assert "BatchesWritten" not in document
    assert store.read(stream_id).text == ""
    (line,) = [line for line in logs(out) if "ended under its driver" in line["message"]]
    assert line["streamId"] == stream_id


# -- the fan-out: one EMF line per invocation --------------------------------------------


@pytest.fixture
def subscriptions(dynamodb: Any) -> SubscriptionStore:
    return SubscriptionStore("ConnectionsTable", client=dynamodb)


def test_the_fan_out_counts_messages_gone_connections_and_lag(
    dynamodb: Any, subscriptions: SubscriptionStore, capsys
):
    connections = FakeConnections()
    fanout = Fanout(subscriptions, connections)  # type: ignore[arg-type]
    for connection_id in ("c1", "c2", "gone", "sick"):
        subscriptions.subscribe(connection_id, "s1")
    connections.gone.add("gone")
    connections.failing.add("sick")
    written = int(time.time() * 1000) - 1500
    records = [batch_record("s1", 1, "Hello ", "100"), batch_record("s1", 2, "world.", "101")]
    for record in records:
        record["dynamodb"]["NewImage"]["writtenAt"] = {"N": str(written)}
    records.append(status_record("s1", "done", 2, "102"))

    @observability.metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> Any:
        return fanout.handle(event)

    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    (document,) = emf(out)
    assert metric(document, "MessagesFannedOut") == ([6], "Count")  # 3 messages, 2 viewers
    assert metric(document, "GoneConnections") == ([1], "Count")
    assert metric(document, "ConnectionsGivenUp") == ([1], "Count")
    lags, unit = metric(document, "DeliveryLag")
    assert unit == "Milliseconds" and len(lags) == 2  # one per batch; a status has none
    assert all(1500 <= lag < 1500 + 10_000 for lag in lags)
    (line,) = [line for line in logs(out) if line["message"] == "posting to sick"]
    assert line["streamId"] == "s1"


def test_a_fan_out_with_nobody_to_serve_still_reports(subscriptions: SubscriptionStore, capsys):
    fanout = Fanout(subscriptions, FakeConnections())  # type: ignore[arg-type]
    fanout.handle({"Records": [batch_record("nobody", 1, "x", "1")]})
    observability.metrics.flush_metrics()
    (document,) = emf(capsys.readouterr().out)
    assert metric(document, "MessagesFannedOut") == ([0], "Count")
    assert "DeliveryLag" not in document


# -- the sweeper ---------------------------------------------------------------------------


def test_the_sweeper_counts_timeouts_and_names_each_stream(store: StreamStore, capsys):
    store.clock = lambda: 1000
    stream_id, token = claimed(store)
    sweep(store, idle_timeout=120, pending_timeout=600, now=1500)
    observability.metrics.flush_metrics()
    out = capsys.readouterr().out
    (document,) = emf(out)
    assert metric(document, "Timeouts") == ([1], "Count")
    (line,) = [line for line in logs(out) if line["message"].startswith("timed out")]
    assert line["streamId"] == stream_id
    assert token not in out


def test_a_frame_s_stream_id_labels_the_websocket_function_s_lines():
    assert observability.stream_id_of('{"type": "subscribe", "streamId": "s1"}') == "s1"
    for bad in (None, "", "[", "[" * 60_000, '{"streamId": 5}', '"s1"', "1" * 5000):
        assert observability.stream_id_of(bad) is None
