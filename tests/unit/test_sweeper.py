from __future__ import annotations

import pytest

from pts.storage import Status, StreamEnded, StreamStore
from pts.sweeper import sweep


def at(store: StreamStore, now: float) -> None:
    store.clock = lambda: now


def test_never_driven_streams_time_out_after_pending_timeout(store: StreamStore):
    at(store, 1000)
    chat, _ = store.create_chat("x")
    assert sweep(store, idle_timeout=120, pending_timeout=600, now=1500).timed_out == []
    result = sweep(store, idle_timeout=120, pending_timeout=600, now=1601)
    assert result.timed_out == [chat.stream_id]
    assert store.get_stream(chat.stream_id).status is Status.TIMEOUT


def test_streams_without_writes_time_out_after_idle_timeout(store: StreamStore):
    at(store, 1000)
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    at(store, 1100)
    store.append(chat.stream_id, 1, "Still here. ")
    # Claimed 200 s ago, but written 100 s ago: alive.
    assert sweep(store, idle_timeout=120, pending_timeout=600, now=1200).timed_out == []
    result = sweep(store, idle_timeout=120, pending_timeout=600, now=1221)
    assert result.timed_out == [chat.stream_id]
    body = store.read(chat.stream_id)
    assert (body.status, body.seq, body.text) == (Status.TIMEOUT, 1, "Still here. ")
    assert store.get_stream(chat.stream_id).seq == 1  # the status message's seq


def test_finished_streams_are_never_touched(store: StreamStore):
    at(store, 1000)
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    store.finish(chat.stream_id, Status.DONE)
    assert sweep(store, idle_timeout=1, pending_timeout=1, now=99999).checked == 0
    assert store.get_stream(chat.stream_id).status is Status.DONE


def test_a_stream_claimed_meanwhile_is_not_timed_out(store: StreamStore):
    at(store, 1000)
    chat, _ = store.create_chat("x")
    stale = list(store.active_streams(Status.PENDING, 2000))
    at(store, 1700)
    store.claim(chat.stream_id)  # the driver wins the race
    (stream_id, seen) = stale[0]
    assert not store.time_out(stream_id, Status.PENDING, updated_at=seen)
    assert store.get_stream(chat.stream_id).status is Status.STREAMING


def test_a_heartbeat_keeps_a_silent_stream_alive(store: StreamStore):
    """Alive is not idle: a driver whose source is thinking sends heartbeats, no text."""
    at(store, 1000)
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    store.append(chat.stream_id, 1, "Let me think. ")
    for now in (1030, 1060, 1090, 1120, 1150, 1180):
        at(store, now)
        assert store.heartbeat(chat.stream_id)
        assert sweep(store, idle_timeout=120, pending_timeout=600, now=now + 60).timed_out == []
    assert store.get_stream(chat.stream_id).status is Status.STREAMING
    # The heartbeats stop (the driver is gone): timed out one idle timeout later.
    result = sweep(store, idle_timeout=120, pending_timeout=600, now=1301)
    assert result.timed_out == [chat.stream_id]
    body = store.read(chat.stream_id)
    assert (body.status, body.seq, body.text) == (Status.TIMEOUT, 1, "Let me think. ")


def test_a_sign_of_life_after_the_read_spares_the_stream(store: StreamStore):
    """The sweeper's end is conditional on `updatedAt` as read: a heartbeat (or a batch)
    landing between its read and its write wins the race."""
    at(store, 1000)
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    [(stream_id, seen)] = store.active_streams(Status.STREAMING, 1200)
    at(store, 1199)
    assert store.heartbeat(chat.stream_id)
    assert not store.time_out(stream_id, Status.STREAMING, seen)
    at(store, 1250)
    store.append(chat.stream_id, 1, "Back. ")
    assert not store.time_out(stream_id, Status.STREAMING, 1199)
    assert store.get_stream(chat.stream_id).status is Status.STREAMING


def test_a_frozen_driver_thawing_after_its_timeout_stores_nothing(store: StreamStore):
    at(store, 1000)
    chat, _ = store.create_chat("x")
    store.claim(chat.stream_id)
    store.append(chat.stream_id, 1, "Before the freeze. ")
    assert sweep(store, idle_timeout=120, pending_timeout=600, now=1121).timed_out == [
        chat.stream_id
    ]
    at(store, 1500)  # the sandbox thaws
    with pytest.raises(StreamEnded):
        store.append(chat.stream_id, 2, "After the thaw. ")
    assert not store.heartbeat(chat.stream_id)
    assert not store.finish(chat.stream_id, Status.DONE)
    body = store.read(chat.stream_id)
    assert (body.status, body.seq, body.text) == (Status.TIMEOUT, 1, "Before the freeze. ")
    assert body.error == "no sign of its driver for 120 s"
