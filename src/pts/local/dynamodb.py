"""DynamoDB (and DynamoDB Streams) on moto's server, with the template's own tables."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from pts.local import moto_transactions
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


def one_request_at_a_time(app: Any, observers: Sequence[Observer] = ()) -> Any:
    """moto's backends are not thread-safe: two conditional writes racing in its threaded
    server could both succeed, and index queries can fail mid-write. DynamoDB applies each
    request atomically; serializing requests gives the local stack the same guarantee.

    With `observers` (a list that may fill later), each DynamoDB (not Streams) request is
    shown to them once answered."""
    lock = threading.Lock()

    def serialized(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not observers or not target.startswith("DynamoDB_"):
            with lock:
                return list(app(environ, start_response))
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


class LocalDynamoDB:
    """moto's server on 127.0.0.1 (an ephemeral port unless given) with the template's tables."""

    def __init__(self, template: Template, *, port: int = 0, prefix: str = "pts-local") -> None:
        self.template = template
        self.prefix = prefix
        self.port = port
        self.table_names: dict[str, str] = {}
        """Logical id in the template → local table name."""
        self.stream_arns: dict[str, str] = {}
        self.endpoint = ""
        self._observers: list[Observer] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe(self, observer: Observer) -> None:
        """Show every DynamoDB request to `observer` (in the serving thread, after the
        answer): how the benchmark counts what every function asks of DynamoDB."""
        self._observers.append(observer)

    def start(self) -> None:
        moto_transactions.install()  # a transaction's cost must not grow with the table
        app = one_request_at_a_time(
            DomainDispatcherApplication(create_backend_app), self._observers
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

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
