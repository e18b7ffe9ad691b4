"""moto's DynamoDB Streams, with a history that does not grow for ever.

moto keeps every stream record a table ever produced (DynamoDB keeps them 24 hours), so a
local stack's memory grows with everything written. `trim_streams` drops the records every
reader has passed (the local stack calls it at most once a second), so a day of use holds
only unread records; a read of records trimmed away gets DynamoDB's
`TrimmedDataAccessException`, not a crash. `install()` applies both (moto's transactions are
`moto_transactions`).
"""

from __future__ import annotations

import time
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models.table import StreamShard

_installed = False


def trim_streams(backends: Any, *, retention: float = 24 * 3600) -> int:
    """Drop the stream records every shard iterator has read; how many were dropped.

    An iterator holds records for `retention` seconds at most (DynamoDB keeps them 24 hours),
    then is forgotten: a reader that stopped reading does not hold the history for ever. A
    shard no iterator reads keeps its records (a reader may still start at TRIM_HORIZON)."""
    now = time.monotonic()
    positions: dict[int, tuple[StreamShard, int]] = {}
    for regions in list(backends.values()):
        for backend in list(regions.values()):
            for arn, iterator in list(backend.shard_iterators.items()):
                issued = getattr(iterator, "_pts_issued", now)
                if now - issued > retention:
                    backend.shard_iterators.pop(arn, None)
                    continue
                shard = iterator.stream_shard
                _, lowest = positions.get(id(shard), (shard, iterator.sequence_number))
                positions[id(shard)] = (shard, min(lowest, iterator.sequence_number))
    dropped = 0
    for shard, position in positions.values():
        count = min(position - shard.starting_sequence_number, len(shard.items))
        if count > 0:
            del shard.items[:count]
            shard.starting_sequence_number += count  # sequence numbers go on unchanged
            dropped += count
    return dropped


def _get_records(self: StreamShard, start: int, quantity: int) -> list[dict[str, Any]]:
    """moto's `StreamShard.get`, with DynamoDB's answer for records trimmed away."""
    offset = start - self.starting_sequence_number
    if offset < 0:
        raise JsonRESTError(
            "TrimmedDataAccessException", "the requested records were trimmed from the stream"
        )
    return [record.to_json() for record in self.items[offset : offset + quantity]]


def install() -> None:
    """Patch moto (once per process): iterators stamped when issued, trimmed reads refused."""
    global _installed
    if _installed:
        return
    from moto.dynamodbstreams.models import ShardIterator

    original_init = ShardIterator.__init__

    def stamped(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._pts_issued = time.monotonic()

    ShardIterator.__init__ = stamped  # type: ignore[method-assign]
    StreamShard.get = _get_records  # type: ignore[method-assign]
    _installed = True
