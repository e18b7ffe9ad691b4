"""Lambda's DynamoDB Streams event source mapping, on moto's `dynamodbstreams`.

For each `DynamoDB` event of a function in `template.yaml`, a poller reads the table's stream
through boto3, shapes the records as Lambda does (`events/dynamodb-stream-batch.json`), drops
those the `FilterCriteria` reject, and invokes the function with batches of `BatchSize`, honouring
`StartingPosition`, `MaximumBatchingWindowInSeconds`, `ReportBatchItemFailures`,
`BisectBatchOnFunctionError`, `MaximumRetryAttempts` and `MaximumRecordAgeInSeconds`.
Records that exhaust their retries, or grow too old, go to the on-failure "destination": a
warning in the log with their sequence numbers and Lambda's on-failure record in
`StreamPoller.failures`.

Deviations from Lambda, kept on purpose:
- one thread per mapping serves its shards one batch at a time (ParallelizationFactor 1,
  shards in turn rather than concurrently); closed parents are drained before children;
- a retry re-sends the failed records only, not the failed records plus newer ones;
- splitting a batch (bisect) does not count as a retry; retries wait 0.1 s, 0.2 s, … ≤ 1 s;
- polling every 20 ms while records flow, 50 ms when idle (Lambda: 4 times a second);
- `TumblingWindowInSeconds` and `ParallelizationFactor` > 1 are ignored (with a warning).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pts import aws
from pts.local.filtering import FilterPattern, passes
from pts.local.intrinsics import attribute_of
from pts.local.template import Template

logger = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]
_MAX_READ = 1000  # GetRecords' own limit; batches are cut from what was read
_REREAD = ("ExpiredIteratorException", "TrimmedDataAccessException")


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventSourceMapping:
    """One function's subscription to one stream, with Lambda's defaults."""

    function_id: str
    name: str
    stream_arn: str
    starting_position: str = "LATEST"
    batch_size: int = 100
    batching_window: float = 0.0
    filters: tuple[FilterPattern, ...] = ()
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    maximum_retry_attempts: int = -1
    """-1: retry until the record expires (here: forever)."""
    maximum_record_age: int = -1
    on_failure: str | None = None
    enabled: bool = True

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    @property
    def function_arn(self) -> str:
        account = self.stream_arn.split(":")[4]
        return f"arn:aws:lambda:{self.region}:{account}:function:{self.function_id}"

    @classmethod
    def all_from(
        cls, template: Template, stream_arns: Mapping[str, str]
    ) -> list[EventSourceMapping]:
        """The template's DynamoDB event sources; `stream_arns`: table logical id → stream ARN."""
        mappings = []
        for function_id, function in template.functions().items():
            for event_id, event in function.events.items():
                if event.get("Type") == "DynamoDB":
                    props = event.get("Properties", {})
                    name = f"{function_id}.{event_id}"
                    arn = _stream_arn(props.get("Stream"), stream_arns)
                    if arn:
                        mappings.append(cls.from_properties(function_id, name, arn, props))
                    else:
                        logger.warning("%s: no local stream for %s", name, props.get("Stream"))
        return mappings

    @classmethod
    def from_properties(
        cls, function_id: str, name: str, stream_arn: str, props: Mapping[str, Any]
    ) -> EventSourceMapping:
        if props.get("TumblingWindowInSeconds") or int(props.get("ParallelizationFactor", 1)) > 1:
            logger.warning("%s: tumbling windows and parallelization are not emulated", name)
        patterns = props.get("FilterCriteria", {}).get("Filters", [])
        on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        target = attribute_of(on_failure)
        return cls(
            function_id=function_id,
            name=name,
            stream_arn=stream_arn,
            starting_position=props.get("StartingPosition", "LATEST"),
            batch_size=int(props.get("BatchSize", 100)),
            batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            filters=tuple(FilterPattern(f["Pattern"]) for f in patterns),
            report_batch_item_failures="ReportBatchItemFailures"
            in props.get("FunctionResponseTypes", []),
            bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
            maximum_record_age=int(props.get("MaximumRecordAgeInSeconds", -1)),
            on_failure=target[0] if target else on_failure,
            enabled=props.get("Enabled", True) not in (False, "false", "False"),
        )


def _stream_arn(value: Any, stream_arns: Mapping[str, str]) -> str | None:
    if isinstance(value, str) and value in stream_arns.values():
        return value
    target = attribute_of(value)
    if target and target[1] in ("StreamArn", "LatestStreamArn"):
        return stream_arns.get(target[0])
    return None


# -- records as Lambda shapes them -----------------------------------------------------


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A `GetRecords` record (as boto3 parses it) in the shape Lambda invokes with.

    boto3 turns timestamps into datetimes and binary attributes into bytes; Lambda's JSON has
    epoch seconds (rounded down) and base64. moto also writes `eventVersion` 1.0 and a fixed
    region, where Lambda says 1.1 and the stream's region.
    """
    stream = raw["dynamodb"]
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        created = created.timestamp()
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": float(int(created if created is not None else time.time())),
        "Keys": _json_attributes(stream["Keys"]),
    }
    for image in ("NewImage", "OldImage"):
        if image in stream:
            dynamodb[image] = _json_attributes(stream[image])
    dynamodb["SequenceNumber"] = stream["SequenceNumber"]
    dynamodb["SizeBytes"] = int(stream["SizeBytes"])
    dynamodb["StreamViewType"] = stream["StreamViewType"]
    record = {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": stream_arn.split(":")[3],
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if identity := raw.get("userIdentity"):  # TTL deletions
        record["userIdentity"] = {"type": identity["Type"], "principalId": identity["PrincipalId"]}
    return record


def _json_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _json_value(value) for name, value in attributes.items()}


def _json_value(value: Mapping[str, Any]) -> dict[str, Any]:
    (kind, inner), *_ = value.items()
    if kind == "B":
        inner = _b64(inner)
    elif kind == "BS":
        inner = [_b64(item) for item in inner]
    elif kind == "M":
        inner = _json_attributes(inner)
    elif kind == "L":
        inner = [_json_value(item) for item in inner]
    return {kind: inner}


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data).decode() if isinstance(data, bytes) else data


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- polling ---------------------------------------------------------------------------


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    position: str
    """Where reading starts if no record was read yet: LATEST or TRIM_HORIZON."""
    iterator: str | None = None
    last_sequence: str | None = None
    closed: bool = False
    buffer: list[dict[str, Any]] = field(default_factory=list)
    """Records that passed the filters, read but not yet handed to the function."""
    buffered_since: float = 0.0

    @property
    def ended(self) -> bool:
        return self.closed and not self.buffer


def retry_delay(retries: int) -> float:
    """Seconds before retry number `retries + 1`: 0.1, 0.2, 0.4, 0.8, then 1."""
    return min(1.0, 0.1 * 2.0**retries)


class StreamPoller:
    """Runs one `EventSourceMapping` in a thread: `start()` (returns once positioned), `stop()`."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        invoke: Invoke,
        *,
        client: Any = None,
        poll_interval: float = 0.05,
        active_poll_interval: float = 0.02,
        delay: Callable[[int], float] = retry_delay,
        release_iterator: Callable[[str], None] | None = None,
        discover_interval: float = 10.0,
    ) -> None:
        self.mapping = mapping
        self.invoke = invoke
        self.client = client or aws.client("dynamodbstreams")
        self.poll_interval = poll_interval
        self.active_poll_interval = active_poll_interval
        self.delay = delay
        self.release_iterator = release_iterator
        self.discover_interval = discover_interval
        self.failures: list[dict[str, Any]] = []
        """Lambda's on-failure destination records, for whoever inspects them (tests)."""
        self.invocations = 0
        self._shards: dict[str, _Shard] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._discovered_at = 0.0
        self._active_until = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Position on the stream now (so a LATEST start misses nothing written after this
        returns), then poll in the background."""
        self._discover(initial=True)
        for shard in self._shards.values():
            if not shard.closed:
                self._acquire(shard)
        self._thread = threading.Thread(
            target=self._run, name=f"stream-{self.mapping.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; a running invocation finishes first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("%s still busy after %.0f s", self.mapping.name, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._cycle()
            except Exception:
                logger.exception("%s: polling failed", self.mapping.name)
                self._stop.wait(1.0)
            active = time.monotonic() < self._active_until
            self._stop.wait(self.active_poll_interval if active else self.poll_interval)

    def _cycle(self) -> None:
        if time.monotonic() - self._discovered_at > self.discover_interval:
            self._discover(initial=False)
        for shard in list(self._shards.values()):
            if self._stop.is_set():
                return
            if shard.ended or not self._parent_done(shard):
                continue
            if not shard.closed:
                self._read(shard)
            self._flush(shard)

    # -- reading -----------------------------------------------------------------------

    def _discover(self, *, initial: bool) -> None:
        """Learn the stream's shards: open ones from `StartingPosition` at first, any that
        appear later (splits) from their beginning."""
        self._discovered_at = time.monotonic()
        request: dict[str, Any] = {"StreamArn": self.mapping.stream_arn}
        while True:
            description = self.client.describe_stream(**request)["StreamDescription"]
            for shard in description["Shards"]:
                if shard["ShardId"] in self._shards:
                    continue
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                position = self.mapping.starting_position if initial else "TRIM_HORIZON"
                state = _Shard(shard["ShardId"], shard.get("ParentShardId"), position)
                # Starting at LATEST, a shard closed before we came has nothing for us.
                state.closed = initial and closed and position == "LATEST"
                self._shards[state.shard_id] = state
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            request["ExclusiveStartShardId"] = last

    def _parent_done(self, shard: _Shard) -> bool:
        parent = self._shards.get(shard.parent_id or "")
        return parent is None or parent.ended

    def _acquire(self, shard: _Shard) -> None:
        request = {"StreamArn": self.mapping.stream_arn, "ShardId": shard.shard_id}
        if shard.last_sequence:
            request |= {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": shard.last_sequence,
            }
        else:
            request["ShardIteratorType"] = shard.position
        shard.iterator = self.client.get_shard_iterator(**request)["ShardIterator"]

    def _read(self, shard: _Shard) -> None:
        if shard.iterator is None:
            self._acquire(shard)
        used = shard.iterator
        try:
            response = self.client.get_records(ShardIterator=used, Limit=_MAX_READ)
        except ClientError as error:
            if error.response["Error"]["Code"] in _REREAD:
                shard.iterator = None  # get a fresh one after the last record read
                return
            raise
        shard.iterator = response.get("NextShardIterator")
        if self.release_iterator and used and used != shard.iterator:
            self.release_iterator(used)
        shard.closed = shard.iterator is None
        records = response.get("Records", [])
        if not records:
            return
        self._active_until = time.monotonic() + 2.0
        shard.last_sequence = records[-1]["dynamodb"]["SequenceNumber"]
        if not shard.buffer:
            shard.buffered_since = time.monotonic()
        for raw in records:
            record = lambda_record(raw, self.mapping.stream_arn)
            if passes(record, self.mapping.filters):
                shard.buffer.append(record)

    # -- invoking ----------------------------------------------------------------------

    def _flush(self, shard: _Shard) -> None:
        """Hand the buffer to the function in batches, when full or its window has passed."""
        size = self.mapping.batch_size
        while shard.buffer and not self._stop.is_set():
            waiting = time.monotonic() - shard.buffered_since < self.mapping.batching_window
            if len(shard.buffer) < size and waiting and not shard.closed:
                return
            batch, shard.buffer[:size] = shard.buffer[:size], []
            self._deliver(shard, batch)

    def _deliver(self, shard: _Shard, records: list[dict[str, Any]]) -> None:
        """Invoke until every record succeeded or was given up on, keeping shard order."""
        pending = deque([(records, 0)])  # (batch, retries so far)
        while pending and not self._stop.is_set():
            batch, retries = pending.popleft()
            batch = self._drop_expired(shard, batch, retries)
            if not batch:
                continue
            failed_from, function_error = self._invoke(batch)
            if failed_from is None:
                continue
            if function_error and self.mapping.bisect_on_error and len(batch) > 1:
                half = len(batch) // 2
                pending.extendleft([(batch[half:], retries), (batch[:half], retries)])
                continue
            failed = batch[failed_from:]  # checkpoint before the first failed record
            limit = self.mapping.maximum_retry_attempts
            if 0 <= limit <= retries:
                self._give_up(shard, failed, "RetryAttemptsExhausted", retries + 1)
                continue
            self._stop.wait(self.delay(retries))
            pending.appendleft((failed, retries + 1))

    def _invoke(self, batch: list[dict[str, Any]]) -> tuple[int | None, bool]:
        """(index of the first failed record or None, whether the function failed as a whole)."""
        self.invocations += 1
        event = json.loads(json.dumps({"Records": batch}))  # a fresh copy, as off the wire
        try:
            result = self.invoke(event)
        except Exception:
            logger.exception("%s: invocation failed", self.mapping.name)
            return 0, True
        if not self.mapping.report_batch_item_failures or not isinstance(result, dict):
            return None, False
        failures = result.get("batchItemFailures") or []
        if not failures:
            return None, False
        positions = {record["dynamodb"]["SequenceNumber"]: i for i, record in enumerate(batch)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in positions:
                # Lambda treats an empty or unknown identifier as a failure of the whole batch.
                logger.warning("%s: bad itemIdentifier %r", self.mapping.name, identifier)
                return 0, True
            indexes.append(positions[identifier])
        return min(indexes), False

    def _drop_expired(
        self, shard: _Shard, batch: list[dict[str, Any]], retries: int
    ) -> list[dict[str, Any]]:
        limit = self.mapping.maximum_record_age
        if limit < 0:
            return batch
        oldest_allowed = time.time() - limit
        fresh: list[dict[str, Any]] = []
        expired: list[dict[str, Any]] = []
        for record in batch:
            too_old = record["dynamodb"]["ApproximateCreationDateTime"] < oldest_allowed
            (expired if too_old else fresh).append(record)
        if expired:
            self._give_up(shard, expired, "RecordAgeExceeded", retries)
        return fresh

    def _give_up(
        self, shard: _Shard, records: list[dict[str, Any]], condition: str, invokes: int
    ) -> None:
        """Lambda's on-failure destination record (`DDBStreamBatchInfo`), logged and kept."""
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        failure = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.mapping.function_arn,
                "condition": condition,
                "approximateInvokeCount": invokes,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first["ApproximateCreationDateTime"]),
                "approximateArrivalOfLastRecord": _iso(last["ApproximateCreationDateTime"]),
                "batchSize": len(records),
                "streamArn": self.mapping.stream_arn,
            },
        }
        self.failures.append(failure)
        logger.warning(
            "%s: %s, %d record(s) of %s, sequence numbers %s: to the on-failure destination %s",
            self.mapping.name,
            condition,
            len(records),
            shard.shard_id,
            ", ".join(r["dynamodb"]["SequenceNumber"] for r in records),
            self.mapping.on_failure or "(none)",
        )


def release_moto_iterator(iterator: str) -> None:
    """Forget a used shard iterator in the in-process moto server.

    moto keeps every iterator it ever issued (each GetRecords issues one): polling 20 times a
    second would otherwise grow the local stack by a few hundred MB an hour.
    """
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    for regions in list(dynamodbstreams_backends.values()):
        for backend in list(regions.values()):
            backend.shard_iterators.pop(iterator, None)
