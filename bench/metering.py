"""DynamoDB requests and request units, counted where they are served, or on a boto3 client.

`DynamoMeter.record` tallies one request with its response: the local DynamoDB shows it every
request of every function (`LocalDynamoDB.observe(meter.record)`). `attach()` instead hooks
botocore's events on one client (`before-parameter-build` keeps each call's parameters,
`after-call` tallies the call with the response).

moto reports no real consumed capacity, so units follow DynamoDB's on-demand rules from the
item sizes (`item_size`): a write costs one WRU per KB of the item (two in a transaction), a
read one RRU per 4 KB returned by a strongly consistent read and half that otherwise. Two
estimates: an `UpdateItem` is sized by its key and new values (the items updated here are
under 1 KB, so 1 WRU), and a projected read is sized from `full_item_bytes` when given
(DynamoDB charges for whole items, not the projected attributes).
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
READ_OPERATIONS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
WRITE_UNIT = 1024
READ_UNIT = 4096


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB JSON (`{"S": "…"}`), by DynamoDB's rules."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode("utf-8", "surrogatepass"))
    if kind == "N":
        digits = len(str(data).lstrip("-").replace(".", "").strip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        inner = {"SS": "S", "NS": "N", "BS": "B"}[kind]
        return sum(value_size({inner: v}) for v in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item in DynamoDB JSON: attribute names plus values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    return max(1, math.ceil(size / WRITE_UNIT)) * (2 if transactional else 1)


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT))
    return float(units) if consistent else units / 2


@dataclass
class Tally:
    requests: int = 0
    items: int = 0
    units: float = 0.0

    def add(self, items: int, units: float) -> None:
        self.requests += 1
        self.items += items
        self.units += units


@dataclass
class Usage:
    """Tallies by (logical table, operation); reads of an index under `Table/Index`."""

    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)

    def _sum(self, operations: frozenset[str], table: str | None, attr: str) -> float:
        return sum(
            getattr(t, attr)
            for (tbl, op), t in self.tallies.items()
            if op in operations and (table is None or tbl == table)
        )

    def write_requests(self, table: str | None = None) -> int:
        return int(self._sum(WRITE_OPERATIONS, table, "requests"))

    def write_units(self, table: str | None = None) -> float:
        return self._sum(WRITE_OPERATIONS, table, "units")

    def read_requests(self, table: str | None = None) -> int:
        return int(self._sum(READ_OPERATIONS, table, "requests"))

    def read_units(self, table: str | None = None) -> float:
        return self._sum(READ_OPERATIONS, table, "units")

    def by_operation(self) -> dict[str, dict[str, float]]:
        """`{"StreamsTable.PutItem": {"requests", "items", "units"}, …}` for the JSON."""
        return {
            f"{table}.{op}": {"requests": t.requests, "items": t.items, "units": t.units}
            for (table, op), t in sorted(self.tallies.items())
        }


class DynamoMeter:
    """Counts DynamoDB requests (`record`, or a boto3 client's calls once `attach`ed);
    `reset()` between measurements."""

    def __init__(
        self,
        client: Any = None,
        tables: Mapping[str, str] | None = None,
        full_item_bytes: Mapping[str, int] | None = None,
    ) -> None:
        self.client = client
        self.tables = dict(tables or {})
        """Physical table name → the name to report (the template's logical id)."""
        self.full_item_bytes = dict(full_item_bytes or {})
        """Logical table → typical whole-item size, to price projected reads."""
        self._lock = threading.Lock()
        self._usage: dict[tuple[str, str], Tally] = defaultdict(Tally)
        self._attached = False

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self) -> DynamoMeter:
        events = self.client.meta.events
        events.register("before-parameter-build.dynamodb", self._keep_params)
        events.register("after-call.dynamodb", self._tally)
        self._attached = True
        return self

    def detach(self) -> None:
        if self._attached:
            events = self.client.meta.events
            events.unregister("before-parameter-build.dynamodb", self._keep_params)
            events.unregister("after-call.dynamodb", self._tally)
            self._attached = False

    def reset(self) -> None:
        with self._lock:
            self._usage.clear()

    def usage(self) -> Usage:
        with self._lock:
            return Usage({k: Tally(v.requests, v.items, v.units) for k, v in self._usage.items()})

    # -- hooks -------------------------------------------------------------------------

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = dict(params)

    def _tally(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.record(model.name, context.get("bench_params", {}), parsed)

    def record(
        self, operation: str, params: Mapping[str, Any], response: Mapping[str, Any]
    ) -> None:
        """Tally one request (`operation` as `PutItem`; wire-format params and response)."""
        index = params.get("IndexName")
        for table, items, units in self.charges(operation, params, response):
            name = self.tables.get(table, table) + (f"/{index}" if index else "")
            with self._lock:
                self._usage[(name, operation)].add(items, units)

    # -- pricing one call --------------------------------------------------------------

    def charges(
        self, operation: str, params: Mapping[str, Any], response: Mapping[str, Any]
    ) -> list[tuple[str, int, float]]:
        """(table, items, units) of one call; batch and transaction calls may span tables."""
        table = params.get("TableName", "")
        if operation == "PutItem":
            return [(table, 1, write_units(item_size(params["Item"])))]
        if operation == "UpdateItem":
            size = item_size(params["Key"]) + item_size(params.get("ExpressionAttributeValues", {}))
            return [(table, 1, write_units(size))]
        if operation == "DeleteItem":
            return [(table, 1, 1.0)]
        if operation == "TransactWriteItems":
            per_table: dict[str, list[float]] = defaultdict(list)
            for entry in params["TransactItems"]:
                body = next(iter(entry.values()))  # {"Put": {…}} and the like
                size = item_size(body.get("Item") or body.get("Key", {}))
                per_table[body["TableName"]].append(write_units(size, transactional=True))
            return [(t, len(u), float(sum(u))) for t, u in per_table.items()]
        if operation == "BatchWriteItem":
            out = []
            for name, requests in params["RequestItems"].items():
                sizes = [
                    item_size(r["PutRequest"]["Item"]) if "PutRequest" in r else 0 for r in requests
                ]
                out.append((name, len(sizes), float(sum(write_units(s) for s in sizes))))
            return out
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            item = response.get("Item")
            size = self._read_size(table, [item] if item else [], params)
            return [(table, 1 if item else 0, read_units(size, consistent=consistent))]
        if operation in ("Query", "Scan"):
            items = response.get("Items", [])
            size = self._read_size(table, items, params)
            return [(table, len(items), read_units(size, consistent=consistent))]
        return [(table, 0, 0.0)]

    def _read_size(self, table: str, items: list[Any], params: Mapping[str, Any]) -> int:
        full = self.full_item_bytes.get(self.tables.get(table, table))
        if full and "ProjectionExpression" in params:
            return full * len(items)
        return sum(item_size(i) for i in items)
