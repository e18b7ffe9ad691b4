"""`pts.protocol`: the one definition of statuses, ids and message shapes."""

from __future__ import annotations

import json

from pts import protocol
from pts.protocol import Status


def test_terminal_statuses() -> None:
    assert {s.value for s in Status if s.terminal} == {"done", "error", "cancelled", "timeout"}
    assert protocol.is_terminal("done") and protocol.is_terminal(Status.TIMEOUT)
    assert not protocol.is_terminal("streaming")
    assert not protocol.is_terminal(None) and not protocol.is_terminal(["done"])


def test_ids() -> None:
    assert protocol.is_valid_id("0123abcdef_-XYZ")
    assert not protocol.is_valid_id("")
    assert not protocol.is_valid_id("a/b")
    assert not protocol.is_valid_id("a" * (protocol.MAX_ID_LENGTH + 1))


def test_messages_encode_compactly_as_utf8() -> None:
    message = protocol.delta_message("s1", 3, "héllo")
    assert (
        protocol.encode(message)
        == '{"type":"delta","streamId":"s1","seq":3,"text":"héllo"}'.encode()
    )
    assert json.loads(protocol.encode(protocol.error_message("bad"))) == {
        "type": "error",
        "error": "bad",
    }
    assert protocol.subscribe_request("s1") == {"action": "subscribe", "streamId": "s1", "after": 0}
