"""Fixes to moto 5's DynamoDB that a long-running local stack needs, applied by `install()`.

`TransactWriteItems`: moto deep-copies every table a transaction names (its items *and* its
stream history) so it can roll back, then on failure swaps the copies in. Each transaction so
costs time and memory in proportion to everything ever written (500 chats: RSS from 123 MB to
3 GB, a create from 10 ms to 0.45 s), and a rollback orphans the live table: stream readers
keep the old shard object, where the rolled-back writes were recorded. Here the transaction
instead saves only the items it touches and the length of each stream, and a failure puts
exactly those back: DynamoDB's all-or-nothing, at the cost of the transaction's own size.

Stream history: moto keeps every stream record for ever (DynamoDB: 24 hours). `trim_streams`
drops the records that every reader has passed, so a day of use holds only unread records.
"""

from __future__ import annotations

import copy
import functools
import time
import types
from collections.abc import Callable
from typing import Any

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import StreamShard, Table

_original_transact: Callable[..., None] = DynamoDBBackend.transact_write_items


def _copy_all_but_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """`copy.deepcopy`, except that a `Table` is its own copy: the one deep copy of a table
    moto's models make is the transaction's backup, which `_Undo` replaces."""
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


class _Undo:
    """What a transaction may change: the items it names (as they were) and its streams'
    lengths."""

    def __init__(self, backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        self.items: list[tuple[Table, DynamoType, DynamoType | None, Item | None]] = []
        self.streams: dict[int, tuple[StreamShard, int]] = {}
        for entry in transact_items:
            try:
                ((_, op),) = entry.items()
                table = backend.tables[op["TableName"]]
                key = op["Key"] if "Key" in op else op["Item"]
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = None
                if table.range_key_attr is not None:
                    range_key = DynamoType(key[table.range_key_attr])
                current = table.get_item(hash_key, range_key)
            except Exception:  # moto reports a malformed operation itself, unapplied
                continue
            self.items.append((table, hash_key, range_key, copy.deepcopy(current)))
            if (shard := table.stream_shard) is not None:
                self.streams.setdefault(id(shard), (shard, len(shard.items)))

    def rollback(self) -> None:
        for table, hash_key, range_key, item in reversed(self.items):
            if range_key is None:
                if item is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = item  # type: ignore[assignment]
                continue
            by_range = table.items[hash_key]
            if item is None:
                by_range.pop(range_key, None)
            else:
                by_range[range_key] = item
            if not by_range:
                del table.items[hash_key]
        for shard, length in self.streams.values():
            del shard.items[length:]


@functools.wraps(_original_transact)
def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    undo = _Undo(self, transact_items)
    try:
        _original_transact(self, transact_items)
    except Exception:
        undo.rollback()
        raise


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
            shard.starting_sequence_number += count
            dropped += count
    return dropped


def _get_records(self: StreamShard, start: int, quantity: int) -> list[dict[str, Any]]:
    """moto's `StreamShard.get`, with DynamoDB's answer for records trimmed away."""
    from moto.core.exceptions import JsonRESTError

    offset = start - self.starting_sequence_number
    if offset < 0:
        raise JsonRESTError(
            "TrimmedDataAccessException", "the requested records were trimmed from the stream"
        )
    return [record.to_json() for record in self.items[offset : offset + quantity]]


def install() -> None:
    """Apply the fixes (idempotent); the local DynamoDB server's process calls it."""
    from moto.dynamodbstreams.models import ShardIterator

    if DynamoDBBackend.transact_write_items is _transact_write_items:
        return
    dynamodb_models.copy = types.SimpleNamespace(  # type: ignore[assignment,attr-defined]
        copy=copy.copy, deepcopy=_copy_all_but_tables
    )
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    StreamShard.get = _get_records  # type: ignore[method-assign]
    original_init = ShardIterator.__init__

    def stamped(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._pts_issued = time.monotonic()

    ShardIterator.__init__ = stamped  # type: ignore[method-assign]
