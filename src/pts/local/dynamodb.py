"""DynamoDB (and DynamoDB Streams) on moto's server, with the template's own tables."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

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


class LocalDynamoDB:
    """moto's server on 127.0.0.1 (an ephemeral port unless given) with the template's tables."""

    def __init__(self, template: Template, *, port: int = 0, prefix: str = "pts-local") -> None:
        self.template = template
        self.prefix = prefix
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.table_names: dict[str, str] = {}
        """Logical id in the template → local table name."""
        self.stream_arns: dict[str, str] = {}
        self.endpoint = ""

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        client = boto3.client("dynamodb", endpoint_url=self.endpoint)
        for logical_id, properties in self.template.tables().items():
            name = f"{self.prefix}-{logical_id}"
            description = client.create_table(**create_table_request(name, properties))
            self.table_names[logical_id] = name
            if arn := description["TableDescription"].get("LatestStreamArn"):
                self.stream_arns[logical_id] = arn
            ttl = properties.get("TimeToLiveSpecification")
            if ttl:
                client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        logger.info("DynamoDB (moto) on %s with tables %s", self.endpoint, self.table_names)

    def stop(self) -> None:
        self._server.stop()
