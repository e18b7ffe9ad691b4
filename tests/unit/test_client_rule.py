"""The client rule (docs/protocol.md): whatever order and repeats the messages come in,
the text is exact."""

from __future__ import annotations

from pts.client import StreamView


def delta(seq: int, text: str) -> dict:
    return {"type": "delta", "streamId": "s", "seq": seq, "text": text}


def snapshot(text: str, seq: int, status: str = "streaming") -> dict:
    return {"type": "snapshot", "streamId": "s", "text": text, "status": status, "seq": seq}


def subscribed(**kwargs) -> StreamView:
    view = StreamView("s", **kwargs)
    view.subscribe_message()
    return view


def test_in_order():
    view = subscribed()
    assert view.apply(snapshot("a", 1)) is None
    assert view.apply(delta(2, "b")) is None
    assert view.apply({"type": "status", "streamId": "s", "status": "done", "seq": 2}) is None
    assert (view.text, view.status, view.ended) == ("ab", "done", True)


def test_duplicates_are_ignored():
    view = subscribed()
    view.apply(snapshot("ab", 2))
    for message in (delta(1, "a"), delta(2, "b"), delta(3, "c"), delta(3, "c")):
        assert view.apply(message) is None
    assert view.text == "abc"


def test_a_gap_resubscribes_after_last_and_appends_the_snapshot():
    view = subscribed()
    view.apply(snapshot("a", 1))
    request = view.apply(delta(3, "c"))
    assert request == {"action": "subscribe", "streamId": "s", "after": 1}
    assert view.apply(delta(2, "b")) is None  # waits for the snapshot, which may hold it
    assert view.apply(delta(4, "d")) is None
    view.apply(snapshot("bc", 3))  # then 4 is applied from what waited
    view.apply(delta(5, "e"))
    assert view.text == "abcde"
    assert view.resubscribes == 1


def test_a_final_status_ahead_of_last_fetches_the_rest():
    view = subscribed()
    view.apply(snapshot("a", 1))
    request = view.apply({"type": "status", "streamId": "s", "status": "done", "seq": 3})
    assert request == {"action": "subscribe", "streamId": "s", "after": 1}
    assert not view.ended
    view.apply(snapshot("bc", 3, "done"))
    assert (view.text, view.status) == ("abc", "done")


def test_deltas_before_the_first_snapshot_are_left_to_it():
    view = subscribed()
    view.apply(delta(1, "a"))
    view.apply(snapshot("a", 1))
    assert view.text == "a"


def test_unknown_stream():
    view = subscribed()
    view.apply({"type": "error", "error": "unknown stream", "streamId": "s"})
    assert view.ended and view.status == "unknown"


def test_on_text_sees_every_piece_once():
    seen: list[str] = []
    view = subscribed(on_text=seen.append)
    view.apply(snapshot("a", 1))
    view.apply(delta(2, "b"))
    view.apply(delta(2, "b"))
    assert seen == ["a", "b"]
