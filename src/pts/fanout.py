"""Fan-out: DynamoDB stream records → `delta` and `status` messages → every subscriber.

Each new batch item becomes one `delta` built from the record's `NewImage` (no read of the
text); a stream's move to a final status becomes one `status` (with the error message, for
an `error` stream). Records are grouped by
stream, so one Query finds a stream's viewers; each viewer gets its messages in order while
viewers are served concurrently from a bounded thread pool (boto3 clients are thread-safe).

Viewers are isolated from each other. A gone connection (410) loses its subscriptions. A
connection whose posts still fail after `Connections.send`'s brief retries is given up on
for this invocation, alone: it keeps its subscriptions, and its client recovers through the
gap rule or a reconnect. A record fails (and Lambda retries it, `ReportBatchItemFailures`)
only for what hits everyone: its stream's viewers cannot be read, or not one post reached
any of two or more connections (the endpoint is down). Retrying a record for one bad
viewer would repeat it to every other viewer and hold up the whole shard.

A stream with more viewers than one invocation should serve is handed, in slices, to
parallel worker invocations (`pts.fanout_workers`), which post under these same rules.

The handler answers Lambda's partial-batch response itself, straight from what happened:
every failed record is listed, even when that is all of them (Powertools'
`process_partial_response` would raise then, and Lambda would start bisecting the batch).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
    DynamoDBStreamEvent,
)

from pts import observability, protocol
from pts.config import Settings
from pts.connections import Connections, PostFailed
from pts.fanout_workers import SliceDispatcher, lambda_invoker
from pts.subscriptions import SubscriptionStore

logger = logging.getLogger(__name__)

POOL_SIZE = 32


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for a stream's viewers, and the stream record it came from."""

    record_id: str
    stream_id: str
    message: bytes
    written_at: int | None = None
    """When the batch was stored (epoch ms), for the delivery lag; None for a status."""


def message_of(record: DynamoDBRecord) -> Outgoing | None:
    """The message a stream record stands for; None if viewers need not hear of it."""
    stream = record.dynamodb
    if stream is None or record.event_name is DynamoDBRecordEventName.REMOVE:
        return None
    image = stream.new_image
    kind = image.get("kind")
    message: protocol.ServerMessage
    if kind == "batch" and record.event_name is DynamoDBRecordEventName.INSERT:
        message = protocol.delta_message(image["streamId"], int(image["seq"]), image["text"])
    elif kind == "stream" and protocol.is_terminal(image.get("status")):
        message = protocol.status_message(
            image["streamId"], image["status"], int(image.get("seq", 0)), image.get("error")
        )
    else:
        return None
    written_at = int(image["writtenAt"]) if kind == "batch" and "writtenAt" in image else None
    return Outgoing(
        stream.sequence_number or "", image["streamId"], protocol.encode(message), written_at
    )


@dataclass
class Delivery:
    """What happened to one invocation's records."""

    failed: set[str] = field(default_factory=set)
    """Records to retry (their DynamoDB stream sequence numbers)."""
    gone: set[str] = field(default_factory=set)
    given_up: set[str] = field(default_factory=set)
    """Connections whose posts failed (not gone): they missed some messages."""
    sent: int = 0
    lags_ms: list[float] = field(default_factory=list)
    """Per batch posted: from its write to its post (to the last of its viewers)."""


class Fanout:
    def __init__(
        self,
        subscriptions: SubscriptionStore,
        connections: Connections,
        pool: ThreadPoolExecutor | None = None,
        workers: SliceDispatcher | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.connections = connections
        self.pool = pool or ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="fanout")
        self.workers = workers
        """The second level, if any: who posts to the viewers past the first slice."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Fanout:
        workers = None
        if settings.fanout_worker_function:
            workers = SliceDispatcher(
                lambda_invoker(settings.fanout_worker_function),
                settings.fanout_viewers_per_invocation,
            )
        return cls(
            SubscriptionStore(settings.connections_table),
            Connections(settings.ws_management_url),
            workers=workers,
        )

    def handle(self, event: dict[str, Any]) -> PartialItemFailureResponse:
        """The Lambda response: `batchItemFailures` lists the records to retry, in order."""
        records = DynamoDBStreamEvent(event)
        delivery = self.deliver(records)
        _measure(delivery)
        return {
            "batchItemFailures": [
                {"itemIdentifier": sequence_number}
                for record in records.records
                if record.dynamodb is not None
                and (sequence_number := record.dynamodb.sequence_number) is not None
                and sequence_number in delivery.failed
            ]
        }

    def deliver(self, event: DynamoDBStreamEvent) -> Delivery:
        by_stream: dict[str, list[Outgoing]] = defaultdict(list)
        for record in event.records:
            if outgoing := message_of(record):
                by_stream[outgoing.stream_id].append(outgoing)
        delivery = Delivery()
        if not by_stream:
            return delivery
        viewers = dict(zip(by_stream, self.pool.map(self._viewers, by_stream), strict=True))
        for stream_id, connection_ids in viewers.items():
            if connection_ids is None:  # nobody of this stream can be served: retry it
                delivery.failed.update(o.record_id for o in by_stream[stream_id])
            elif self.workers is not None:
                viewers[stream_id] = self.workers.hand_off(
                    stream_id, by_stream[stream_id], connection_ids
                )
        return self.post(by_stream, viewers, delivery)

    def post(
        self,
        by_stream: dict[str, list[Outgoing]],
        viewers: dict[str, list[str] | None],
        delivery: Delivery | None = None,
    ) -> Delivery:
        """Post each stream's messages to its viewers (the rules in the module docstring)."""
        delivery = Delivery() if delivery is None else delivery
        jobs = [
            (stream_id, connection_id)
            for stream_id, connection_ids in viewers.items()
            for connection_id in connection_ids or ()
        ]
        results = self.pool.map(lambda job: self._send_to(job[1], by_stream[job[0]]), jobs)
        answered: set[str] = set()
        undelivered: set[str] = set()
        reached: dict[str, int] = {}  # per stream: how many of its messages someone got
        for (stream_id, connection_id), (sent, failed_at, gone) in zip(jobs, results, strict=True):
            delivery.sent += sent
            reached[stream_id] = max(reached.get(stream_id, 0), sent)
            if gone:
                delivery.gone.add(connection_id)
            if failed_at is None or sent:
                answered.add(connection_id)
            if failed_at is not None:
                delivery.given_up.add(connection_id)
                undelivered.add(failed_at)
        posted_ms = time.time() * 1000
        for stream_id, count in reached.items():
            delivery.lags_ms += [
                posted_ms - o.written_at for o in by_stream[stream_id][:count] if o.written_at
            ]
        for connection_id in delivery.gone:
            try:
                self.subscriptions.remove_connection(connection_id)
            except Exception:
                logger.exception("removing gone connection %s", connection_id)
        if len(delivery.given_up) > 1 and not answered:
            # Every post to every connection failed: the endpoint, not a viewer.
            delivery.failed |= undelivered
        elif delivery.given_up:
            logger.warning(
                "gave up on %d connection(s) for this batch: %s",
                len(delivery.given_up),
                sorted(delivery.given_up)[:10],
            )
        if delivery.failed:
            logger.warning("retrying %d record(s)", len(delivery.failed))
        return delivery

    def _viewers(self, stream_id: str) -> list[str] | None:
        """The stream's subscribers; None (logged) if they cannot be read."""
        with observability.stream_context(stream_id):
            try:
                return self.subscriptions.subscribers(stream_id)
            except Exception:
                logger.exception("reading the subscribers of %s", stream_id)
                return None

    def _send_to(
        self, connection_id: str, messages: list[Outgoing]
    ) -> tuple[int, str | None, bool]:
        with observability.stream_context(messages[0].stream_id):
            return self._send_all(connection_id, messages)

    def _send_all(
        self, connection_id: str, messages: list[Outgoing]
    ) -> tuple[int, str | None, bool]:
        """Send a stream's messages to one viewer, in order: (sent, first failed, gone).

        A post that fails (after `Connections.send`'s own retries) ends this viewer's turn:
        sending it later messages would only widen the gap its client has to close anyway.
        """
        for sent, outgoing in enumerate(messages):
            try:
                if not self.connections.send(connection_id, outgoing.message):
                    return sent, None, True
            except PostFailed as error:  # expected of a sick connection: no traceback
                logger.warning("giving up on %s for now: %s", connection_id, error)
                return sent, outgoing.record_id, False
            except Exception:
                logger.exception("posting to %s", connection_id)
                return sent, outgoing.record_id, False
        return len(messages), None, False


def _measure(delivery: Delivery) -> None:
    """The invocation's metrics (flushed by the handler's `@metrics.log_metrics`)."""
    metrics, unit = observability.metrics, observability.MetricUnit
    metrics.add_metric(name=observability.MESSAGES_FANNED_OUT, unit=unit.Count, value=delivery.sent)
    metrics.add_metric(
        name=observability.GONE_CONNECTIONS, unit=unit.Count, value=len(delivery.gone)
    )
    if delivery.given_up:
        metrics.add_metric(
            name=observability.CONNECTIONS_GIVEN_UP, unit=unit.Count, value=len(delivery.given_up)
        )
    for lag in delivery.lags_ms:
        metrics.add_metric(name=observability.DELIVERY_LAG, unit=unit.Milliseconds, value=lag)
