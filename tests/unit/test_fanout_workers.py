"""The fan-out's second level (`pts.fanout_workers`): slices of a big audience, posted by
workers under the fan-out's own rules; on moto tables with a fake `@connections`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pts.fanout import Fanout
from pts.fanout_workers import (
    MAX_EVENT_BYTES,
    SliceDispatcher,
    SliceFailed,
    plan,
    post_slice,
    slice_event,
    slice_of,
)
from pts.subscriptions import SubscriptionStore
from tests.unit.test_ws_routes_and_fanout import FakeConnections, batch_record, status_record


@pytest.fixture
def subscriptions(dynamodb: Any) -> SubscriptionStore:
    return SubscriptionStore("ConnectionsTable", client=dynamodb)


class Workers:
    """Lambda, asynchronously: every invocation runs the worker on a thread of its own, with
    the event as it would travel (JSON)."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.pool = ThreadPoolExecutor(8)
        self.events: list[dict[str, Any]] = []
        self.results: list[Any] = []

    def invoke(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.results.append(
            self.pool.submit(post_slice, self.fanout, json.loads(json.dumps(event)))
        )

    def wait(self) -> None:
        for result in self.results:
            result.exception()


def two_level(
    subscriptions: SubscriptionStore, connections: FakeConnections, per_invocation: int
) -> tuple[Fanout, Workers]:
    worker = Fanout(subscriptions, connections)  # type: ignore[arg-type]
    workers = Workers(worker)
    dispatcher = SliceDispatcher(workers.invoke, per_invocation)
    return Fanout(subscriptions, connections, workers=dispatcher), workers  # type: ignore[arg-type]


def test_plan_keeps_small_audiences_on_one_level() -> None:
    assert plan(["a", "b"], 2) == [["a", "b"]]
    assert plan([], 5) == [[]]
    slices = plan([str(i) for i in range(1001)], 250)
    assert [len(s) for s in slices] == [250, 250, 250, 250, 1]
    assert [c for s in slices for c in s] == [str(i) for i in range(1001)]
    with pytest.raises(ValueError):
        plan(["a"], 0)


def test_slice_events_round_trip_through_json() -> None:
    from pts.fanout import Outgoing

    messages = [Outgoing("100", "s1", b'{"type":"delta","text":"h\xc3\xa9"}')]
    event = json.loads(json.dumps(slice_event("s1", messages, ["c1", "c2"])))
    work = slice_of(event)
    assert (work.stream_id, work.messages, work.connection_ids) == ("s1", messages, ["c1", "c2"])
    for bad in ({"type": "other"}, {"type": "pts.fanout.slice", "streamId": "s"}):
        with pytest.raises(ValueError):
            slice_of(bad)


def test_a_big_audience_is_posted_by_workers_every_viewer_in_order(subscriptions):
    connections = FakeConnections()
    viewers = [f"v{i:02d}" for i in range(23)]
    for viewer in viewers:
        subscriptions.subscribe(viewer, "s1")
    subscriptions.subscribe("other", "s2")
    fanout, workers = two_level(subscriptions, connections, per_invocation=5)
    event = {
        "Records": [
            batch_record("s1", 1, "One. ", "100"),
            batch_record("s2", 1, "Elsewhere. ", "101"),
            batch_record("s1", 2, "Two. ", "102"),
            status_record("s1", "done", 2, "103"),
        ]
    }
    assert fanout.handle(event) == {"batchItemFailures": []}
    workers.wait()
    assert len(workers.events) == 4  # 23 viewers: the fan-out's 5, then 5, 5, 5 and 3
    assert sorted(len(e["connectionIds"]) for e in workers.events) == [3, 5, 5, 5]
    for viewer in viewers:
        assert connections.received[viewer] == [
            {"type": "delta", "streamId": "s1", "seq": 1, "text": "One. "},
            {"type": "delta", "streamId": "s1", "seq": 2, "text": "Two. "},
            {"type": "status", "streamId": "s1", "status": "done", "seq": 2},
        ]
    assert [m["seq"] for m in connections.received["other"]] == [1]  # one level: no worker


def test_a_slice_that_cannot_be_handed_off_is_posted_by_the_fanout(subscriptions):
    connections = FakeConnections()
    for i in range(10):
        subscriptions.subscribe(f"v{i}", "s1")

    def refuse(event: dict[str, Any]) -> None:
        raise RuntimeError("TooManyRequestsException")

    fanout = Fanout(
        subscriptions,
        connections,  # type: ignore[arg-type]
        workers=SliceDispatcher(refuse, per_invocation=3),
    )
    assert fanout.handle({"Records": [batch_record("s1", 1, "x", "1")]}) == {
        "batchItemFailures": []
    }
    assert sorted(connections.received) == [f"v{i}" for i in range(10)]
    assert fanout.workers is not None and fanout.workers.dispatched == 0


def test_a_slice_too_large_for_an_async_event_is_posted_by_the_fanout(subscriptions):
    connections = FakeConnections()
    for i in range(4):
        subscriptions.subscribe(f"v{i}", "s1")
    fanout, workers = two_level(subscriptions, connections, per_invocation=2)
    records = [batch_record("s1", k, "x" * 4000, str(k)) for k in range(1, 80)]
    assert fanout.handle({"Records": records}) == {"batchItemFailures": []}
    assert MAX_EVENT_BYTES < 79 * 4000 and workers.events == []
    assert all(len(connections.received[f"v{i}"]) == 79 for i in range(4))


def test_workers_drop_gone_viewers_and_raise_only_when_nobody_is_reachable(subscriptions):
    connections = FakeConnections()
    for viewer in ("gone", "ok", "sick"):
        subscriptions.subscribe(viewer, "s1")
    connections.gone.add("gone")
    connections.failing.add("sick")
    worker = Fanout(subscriptions, connections)  # type: ignore[arg-type]
    from pts.fanout import Outgoing

    message = [Outgoing("1", "s1", b'{"type":"delta","streamId":"s1","seq":1,"text":"x"}')]
    delivery = post_slice(worker, slice_event("s1", message, ["gone", "ok", "sick"]))
    assert (delivery.gone, delivery.given_up, delivery.sent) == ({"gone"}, {"sick"}, 1)
    assert sorted(subscriptions.subscribers("s1")) == ["ok", "sick"]
    connections.failing.add("ok")
    with pytest.raises(SliceFailed):  # the endpoint, not a viewer: Lambda retries the event
        post_slice(worker, slice_event("s1", message, ["ok", "sick"]))
