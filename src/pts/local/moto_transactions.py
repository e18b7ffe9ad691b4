"""moto's `TransactWriteItems`, without a deep copy of every table it touches.

moto makes a transaction undoable by deep-copying each of its tables first, every item and
the table's whole DynamoDB Streams history with it: the cost of one transaction grows with
everything ever written. Once each batch is a transaction (`StreamStore.append`), a local
stack slowed down with use (an append took about 10 ms on a fresh table and 400 ms after a
few hundred batches, holding moto's one-request-at-a-time lock all along), where
DynamoDB's cost is the same whatever the table holds.

`install()` keeps moto's own implementation (conditions, errors, all or nothing) and only
changes how a cancelled transaction is undone: from a log of the items it names and the
stream records it added, instead of from a copy of the tables.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from moto.dynamodb import models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

_installed = False


class _TablesByReference:
    """Stands in for the `copy` module inside `moto.dynamodb.models`: a table is "copied" as
    itself (the undo log restores it), anything else as before."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def install() -> None:
    """Patch moto (once per process): transactions undone from a log, not a table copy."""
    global _installed
    if _installed:
        return
    original = DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        undo = _undo_log(self, transact_items)
        try:
            original(self, transact_items)
        except BaseException:
            undo()
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    models.copy = _TablesByReference  # type: ignore[attr-defined,assignment]  # moto reads `copy` here
    _installed = True


def _undo_log(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Callable[[], None]:
    """What undoes `transact_items`: each named item as it is now, and each table's number
    of stream records."""
    saved: list[tuple[Table, DynamoType, DynamoType | None, Item | None]] = []
    records: dict[int, tuple[Table, int]] = {}
    for entry in transact_items:
        for op in entry.values():
            table = backend.tables.get(op.get("TableName", ""))
            key = op.get("Item") if "Item" in op else op.get("Key")
            if table is None or not isinstance(key, dict):
                continue  # moto refuses it before writing anything
            try:
                hash_value = DynamoType(key[table.hash_key_attr])
                range_value = (
                    DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                )
            except (KeyError, IndexError, TypeError):
                continue  # likewise
            old = _current(table, hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(old)))
            if table.stream_shard is not None:
                records.setdefault(id(table), (table, len(table.stream_shard.items)))

    def undo() -> None:
        for table, hash_value, range_value, old in reversed(saved):
            if range_value is None:
                if old is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = old  # type: ignore[assignment]
            elif old is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = old
        for table, count in records.values():
            assert table.stream_shard is not None
            del table.stream_shard.items[count:]

    return undo


def _current(table: Table, hash_value: DynamoType, range_value: DynamoType | None) -> Item | None:
    if range_value is None:
        item = table.items.get(hash_value)
        return item if isinstance(item, Item) else None
    return table.items.get(hash_value, {}).get(range_value)
