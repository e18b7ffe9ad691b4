"""DynamoDB (and DynamoDB Streams) on moto's server, with the template's own tables."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import boto3
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import dynamo_json_dump
from moto.dynamodbstreams.models import dynamodbstreams_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from pts.local import moto_queries, moto_streams, moto_transactions
from pts.local.template import Template

logger = logging.getLogger(__name__)
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

# The CloudFormation properties that `CreateTable` takes under the same name.
_CREATE_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
)


def create_table_request(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The `CreateTable` call for a table's CloudFormation properties."""
    request = {k: properties[k] for k in _CREATE_TABLE_KEYS if k in properties}
    if "StreamSpecification" in request:
        request["StreamSpecification"] = {"StreamEnabled": True, **request["StreamSpecification"]}
    return {"TableName": name, **request}


def create_tables(
    client: Any, template: Template, prefix: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Create the template's tables as `{prefix}-{logical id}`, with their TTL settings.

    Returns the table names and stream ARNs, by logical id."""
    names: dict[str, str] = {}
    stream_arns: dict[str, str] = {}
    for logical_id, properties in template.tables().items():
        name = f"{prefix}-{logical_id}"
        description = client.create_table(**create_table_request(name, properties))
        names[logical_id] = name
        if arn := description["TableDescription"].get("LatestStreamArn"):
            stream_arns[logical_id] = arn
        if ttl := properties.get("TimeToLiveSpecification"):
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return names, stream_arns


Observer = Callable[[str, dict[str, Any], dict[str, Any]], None]
"""Called with each DynamoDB request served: operation, request and response (parsed JSON)."""


DATA_FILE = "dynamodb.json"
"""The file in a stack's data dir that holds the tables' items."""
TRIM_INTERVAL = 1.0
"""Seconds between trims of the stream records every reader has read (`moto_streams`)."""


WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
"""The operations that change items: after one, the data dir is saved again."""


def one_request_at_a_time(
    app: Any,
    observers: Sequence[Observer] = (),
    lock: threading.Lock | None = None,
    written: Callable[[], None] | None = None,
) -> Any:
    """moto's backends are not thread-safe: two conditional writes racing in its threaded
    server could both succeed, and index queries can fail mid-write. DynamoDB applies each
    request atomically; serializing requests (with `lock`) gives the local stack the same
    guarantee.

    With `observers` (a list that may fill later), each DynamoDB (not Streams) request is
    shown to them once answered; `written` is called after each of the `WRITES`. After a
    Streams `GetRecords`, at most once a second, the records every reader has passed are
    dropped."""
    lock = lock or threading.Lock()
    last_trim = 0.0

    def serialized(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        nonlocal last_trim
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if written is not None and target.rpartition(".")[2] in WRITES:
            written()
        if not observers or not target.startswith("DynamoDB_"):
            with lock:
                answer = list(app(environ, start_response))
                if target.endswith(".GetRecords") and time.monotonic() - last_trim > TRIM_INTERVAL:
                    last_trim = time.monotonic()
                    moto_streams.trim_streams(dynamodbstreams_backends)
                return answer
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        with lock:
            answer = list(app(environ, start_response))
        operation = target.rpartition(".")[2]
        request, response = json.loads(body or b"{}"), json.loads(b"".join(answer) or b"{}")
        for observer in list(observers):
            observer(operation, request, response)
        return answer

    return serialized


def reset_data(data_dir: Path) -> None:
    """Forget what a stack kept in `data_dir`: its next start is empty."""
    (data_dir / DATA_FILE).unlink(missing_ok=True)


class LocalDynamoDB:
    """moto's server on 127.0.0.1 (an ephemeral port unless given) with the template's tables.

    With a `data_dir`, the tables' items are kept in `data_dir/dynamodb.json`: loaded at start
    (without stream records: what was stored before is not news), saved at stop and every
    `save_interval` seconds while anything was written (so a crash loses that much at most).
    Without one, everything lives and dies in memory."""

    def __init__(
        self,
        template: Template,
        *,
        port: int = 0,
        prefix: str = "pts-local",
        data_dir: Path | None = None,
        save_interval: float = 30.0,
    ) -> None:
        self.template = template
        self.prefix = prefix
        self.port = port
        self.data_dir = data_dir
        self.save_interval = save_interval
        self.table_names: dict[str, str] = {}
        """Logical id in the template → local table name."""
        self.stream_arns: dict[str, str] = {}
        self.endpoint = ""
        self._observers: list[Observer] = []
        self._lock = threading.Lock()
        self._unsaved = False
        self._stopping = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._saver: threading.Thread | None = None
        self._moto_tables: dict[str, Table] = {}

    @property
    def data_file(self) -> Path | None:
        return self.data_dir / DATA_FILE if self.data_dir is not None else None

    def observe(self, observer: Observer) -> None:
        """Show every DynamoDB request to `observer` (in the serving thread, after the
        answer): how the benchmark counts what every function asks of DynamoDB."""
        self._observers.append(observer)

    def start(self) -> None:
        moto_transactions.install()  # a transaction's cost must not grow with the table
        moto_streams.install()  # nor the stream's history with everything ever written
        moto_queries.install()  # nor an index query's (the sweeper's) beyond the scan itself
        app = one_request_at_a_time(
            DomainDispatcherApplication(create_backend_app),
            self._observers,
            self._lock,
            self._written,
        )
        self._server = make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dynamodb", daemon=True
        )
        self._thread.start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        client = boto3.client("dynamodb", endpoint_url=self.endpoint)
        self.table_names, self.stream_arns = create_tables(client, self.template, self.prefix)
        logger.info("DynamoDB (moto) on %s with tables %s", self.endpoint, self.table_names)
        if self.data_file is not None:
            self._tables()
            self._load(self.data_file)
            self._saver = threading.Thread(target=self._save_often, name="dynamodb-saver")
            self._saver.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._saver is not None:
            self._saver.join()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self.save()

    # -- the data dir ------------------------------------------------------------------

    def _written(self) -> None:
        self._unsaved = True

    def _tables(self) -> dict[str, Table]:
        """The local tables in moto's backend (in this process), by logical id."""
        if not self._moto_tables:
            client = boto3.client("dynamodb", endpoint_url=self.endpoint)
            for logical, name in self.table_names.items():
                arn = client.describe_table(TableName=name)["Table"]["TableArn"]
                region, account = arn.split(":")[3:5]
                self._moto_tables[logical] = dynamodb_backends[account][region].tables[name]
        return self._moto_tables

    def save(self) -> None:
        """Write every table's items to the data file, if anything was written since."""
        if self.data_file is None or not self._unsaved:
            return
        with self._lock:
            self._unsaved = False
            tables = {
                logical: [item.to_json()["Attributes"] for item in table.all_items()]
                for logical, table in self._tables().items()
            }
            text = dynamo_json_dump({"format": 1, "tables": tables})
        self.data_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.data_file.with_suffix(".partial")
        partial.write_text(text, "utf-8")
        partial.replace(self.data_file)  # never a half-written file, even on a crash
        logger.debug("saved %s", self.data_file)

    def _load(self, path: Path) -> None:
        if not path.exists():
            logger.info("local data: %s (new)", path)
            return
        saved = json.loads(path.read_text("utf-8"))
        counts = {}
        with self._lock:
            for logical, table in self._tables().items():
                items = saved["tables"].get(logical, [])
                shard, table.stream_shard = table.stream_shard, None
                try:
                    for item in items:
                        table.put_item(item)
                finally:
                    table.stream_shard = shard
                counts[logical] = len(items)
        logger.info("local data: %s (%s)", path, ", ".join(f"{n} {t}" for t, n in counts.items()))

    def _save_often(self) -> None:
        while not self._stopping.wait(self.save_interval):
            try:
                self.save()
            except Exception:
                logger.exception("saving %s failed", self.data_file)
