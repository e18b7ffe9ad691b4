"""The fan-out's second level: big audiences are posted to by parallel worker invocations.

One invocation posts to its viewers `POOL_SIZE` at a time, and on AWS every post waits on
the network (about 20 ms) and costs the function CPU; past a few hundred viewers one
invocation cannot deliver a batch before the next one is due. So when a stream has more
viewers than `per_invocation`, the fan-out cuts them into slices of that size (`plan`),
hands every slice but the first to an asynchronous invocation of the worker function
(`InvocationType=Event`, `SliceDispatcher`) carrying the stream's messages, and posts the
first slice itself. A worker posts its slice under the fan-out's own rules (`Fanout.post`:
each viewer's messages in order, viewers isolated from each other, a gone connection loses
its subscriptions, a sick one is given up on alone). Small audiences stay on one level.

Failures:

- an `Invoke` that fails (after boto3's retries), or a slice whose event would pass Lambda's
  256 KB limit for asynchronous payloads, is posted by the fan-out itself: slower, never lost;
- a worker whose posts all fail (the endpoint is down, not a viewer) raises, so Lambda
  retries the event (twice, then its on-failure destination); a viewer missing a delta
  recovers by the client rule (a gap makes it re-subscribe with `after`).

Ordering: a slice's messages arrive in order; two batches handed to workers in consecutive
fan-out invocations may race, which a viewer sees as a gap, and repairs, like any other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pts import aws

if TYPE_CHECKING:
    from pts.fanout import Delivery, Fanout, Outgoing

logger = logging.getLogger(__name__)

EVENT_TYPE = "pts.fanout.slice"
MAX_EVENT_BYTES = 256 * 1024
"""Lambda's payload limit for an asynchronous invocation."""
DISPATCH_POOL_SIZE = 16


def plan(connection_ids: Sequence[str], per_invocation: int) -> list[list[str]]:
    """The viewers cut into slices of at most `per_invocation`: one if they fit one
    invocation. The first slice is the fan-out's own."""
    if per_invocation < 1:
        raise ValueError(f"per_invocation must be >= 1, got {per_invocation!r}")
    ids = list(connection_ids)
    if len(ids) <= per_invocation:
        return [ids]
    return [ids[i : i + per_invocation] for i in range(0, len(ids), per_invocation)]


def slice_event(
    stream_id: str, messages: Sequence[Outgoing], connection_ids: Sequence[str]
) -> dict[str, Any]:
    """The worker's event: a stream's messages (in order) and the viewers to post them to."""
    return {
        "type": EVENT_TYPE,
        "streamId": stream_id,
        "messages": [{"recordId": m.record_id, "message": m.message.decode()} for m in messages],
        "connectionIds": list(connection_ids),
    }


@dataclass(frozen=True, slots=True)
class Slice:
    stream_id: str
    messages: list[Outgoing]
    connection_ids: list[str]


def slice_of(event: Mapping[str, Any]) -> Slice:
    """Read a worker's event; `ValueError` if it is not one."""
    from pts.fanout import Outgoing

    if event.get("type") != EVENT_TYPE:
        raise ValueError(f"not a fan-out slice event (type {event.get('type')!r})")
    try:
        stream_id = str(event["streamId"])
        messages = [
            Outgoing(str(m["recordId"]), stream_id, str(m["message"]).encode())
            for m in event["messages"]
        ]
        connection_ids = [str(c) for c in event["connectionIds"]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed fan-out slice event: {error!r}") from None
    return Slice(stream_id, messages, connection_ids)


Invoke = Callable[[dict[str, Any]], None]
"""Start one worker invocation with this event, asynchronously; raise if it cannot."""


def lambda_invoker(function_name: str) -> Invoke:
    """`lambda:Invoke` with `InvocationType=Event`: Lambda queues the event and answers 202."""

    def invoke(event: dict[str, Any]) -> None:
        aws.client("lambda").invoke(
            FunctionName=function_name,
            InvocationType="Event",
            Payload=json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode(),
        )

    return invoke


class SliceDispatcher:
    """Hands the slices of a big audience to workers; what it returns, the caller posts."""

    def __init__(
        self, invoke: Invoke, per_invocation: int, pool: ThreadPoolExecutor | None = None
    ) -> None:
        if per_invocation < 1:
            raise ValueError(f"per_invocation must be >= 1, got {per_invocation!r}")
        self.invoke = invoke
        self.per_invocation = per_invocation
        self.pool = pool or ThreadPoolExecutor(DISPATCH_POOL_SIZE, thread_name_prefix="dispatch")
        self.dispatched = 0
        """Worker invocations started so far (for the logs and the bench)."""

    def hand_off(
        self, stream_id: str, messages: Sequence[Outgoing], connection_ids: Sequence[str]
    ) -> list[str]:
        """Start a worker for every slice but the first; the connections left to the caller:
        the first slice, and any slice that could not be handed off."""
        slices = plan(connection_ids, self.per_invocation)
        if len(slices) == 1:
            return slices[0]
        events = [slice_event(stream_id, messages, ids) for ids in slices[1:]]
        results = list(self.pool.map(self._start, events))
        mine = list(slices[0])
        for ids, started in zip(slices[1:], results, strict=True):
            if not started:
                mine += ids
        self.dispatched += sum(results)
        return mine

    def _start(self, event: dict[str, Any]) -> bool:
        size = len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_EVENT_BYTES:
            logger.warning("slice event of %d bytes is too large: posting it here", size)
            return False
        try:
            self.invoke(event)
        except Exception:
            logger.exception("starting a fan-out worker: posting its slice here")
            return False
        return True


class SliceFailed(Exception):
    """Not one post of a slice reached anyone: Lambda should retry the event."""


def post_slice(fanout: Fanout, event: Mapping[str, Any]) -> Delivery:
    """The worker: post a slice's messages to its viewers under the fan-out's rules."""
    work = slice_of(event)
    delivery = fanout.post({work.stream_id: work.messages}, {work.stream_id: work.connection_ids})
    if delivery.failed:
        raise SliceFailed(
            f"{len(delivery.given_up)} connection(s) of stream {work.stream_id} unreachable"
        )
    return delivery
