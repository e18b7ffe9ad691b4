"""The DynamoDB data model: chats, streams and their batches (see docs/architecture.md).

A stream's meta item (`sk = META`) and its batches (`sk = BATCH#0000000001`, …) share one
partition, and `BATCH#…` sorts before `META`: one consistent Query returns a body (or the
part after a sequence number) together with the stream's status.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from pts import aws

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

MAX_SEQ = 9_999_999_999
CHAT_LIST = "chats"


class Status(StrEnum):
    PENDING = "pending"
    STREAMING = "streaming"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def terminal(self) -> bool:
        return self not in (Status.PENDING, Status.STREAMING)


TERMINAL_STATUSES = tuple(s for s in Status if s.terminal)


class StorageError(Exception):
    """A write that DynamoDB refused for a reason the caller can act on."""


class SequenceConflict(StorageError):
    """Another writer already stored a different batch under this sequence number."""


@dataclass(frozen=True, slots=True)
class Chat:
    chat_id: str
    prompt: str
    stream_id: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Stream:
    stream_id: str
    chat_id: str | None
    status: Status
    token_hash: str
    created_at: str
    updated_at: float
    seq: int
    error: str | None = None
    cancel_requested: bool = False

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_hash, hash_token(token))


@dataclass(frozen=True, slots=True)
class Body:
    """Batches after some sequence number, joined, with the stream's state."""

    stream_id: str
    text: str
    seq: int
    """The highest persisted sequence number (or the `after` asked for, if none is higher)."""
    status: Status
    error: str | None = None


def new_id() -> str:
    """128 random bits, URL-safe; hex, so an id never starts with `-` (a command-line flag)."""
    return secrets.token_hex(16)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def iso_now(now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def stream_key(stream_id: str) -> dict[str, str]:
    return {"pk": f"STREAM#{stream_id}", "sk": "META"}


def batch_sk(seq: int) -> str:
    return f"BATCH#{seq:010d}"


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def stream_from_item(item: dict[str, Any]) -> Stream:
    """A `Stream` from a deserialized meta item (also used on DynamoDB stream images)."""
    return Stream(
        stream_id=item["streamId"],
        chat_id=item.get("chatId"),
        status=Status(item["status"]),
        token_hash=item.get("tokenHash", ""),
        created_at=item.get("createdAt", ""),
        updated_at=float(item.get("updatedAt", 0)),
        seq=int(item.get("seq", 0)),
        error=item.get("error"),
        cancel_requested=bool(item.get("cancelRequested", False)),
    )


def _chat_from_item(item: dict[str, Any]) -> Chat:
    return Chat(item["chatId"], item["prompt"], item["streamId"], item["createdAt"])


def _condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


class StreamStore:
    """Chats, streams and batches in one DynamoDB table."""

    def __init__(
        self,
        table: str,
        *,
        retention_days: int = 30,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.retention = retention_days * 86_400
        self.clock = clock
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")  # shared, created on first use

    def _ttl(self, now: float) -> int:
        return int(now + self.retention)

    # -- chats and streams -------------------------------------------------------------

    def create_chat(self, prompt: str) -> tuple[Chat, str]:
        """Store a chat and its `pending` stream; return the chat and the drive token."""
        now = self.clock()
        chat = Chat(new_id(), prompt, new_id(), iso_now(now))
        token = secrets.token_urlsafe(32)
        chat_item = {
            "pk": f"CHAT#{chat.chat_id}",
            "sk": "CHAT",
            "kind": "chat",
            "chatId": chat.chat_id,
            "prompt": prompt,
            "streamId": chat.stream_id,
            "createdAt": chat.created_at,
            "chatList": CHAT_LIST,
            "ttl": self._ttl(now),
        }
        stream_item = {
            **stream_key(chat.stream_id),
            "kind": "stream",
            "streamId": chat.stream_id,
            "chatId": chat.chat_id,
            "status": Status.PENDING.value,
            "activeStatus": Status.PENDING.value,
            "tokenHash": hash_token(token),
            "createdAt": chat.created_at,
            "updatedAt": int(now),
            "seq": 0,
            "ttl": self._ttl(now),
        }
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.table, "Item": serialize(item)}}
                for item in (chat_item, stream_item)
            ]
        )
        return chat, token

    def list_chats(self) -> list[Chat]:
        """Every chat, oldest first."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName="ChatsByCreatedAt",
            KeyConditionExpression="chatList = :list",
            ExpressionAttributeValues={":list": {"S": CHAT_LIST}},
        )
        return [_chat_from_item(deserialize(i)) for page in pages for i in page["Items"]]

    def get_chat(self, chat_id: str) -> Chat | None:
        response = self.client.get_item(
            TableName=self.table,
            Key=serialize({"pk": f"CHAT#{chat_id}", "sk": "CHAT"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _chat_from_item(deserialize(item)) if item else None

    def get_stream(self, stream_id: str) -> Stream | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize(stream_key(stream_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return stream_from_item(deserialize(item)) if item else None

    def claim(self, stream_id: str) -> bool:
        """`pending` → `streaming`, atomically: exactly one caller gets True."""
        now = self.clock()
        try:
            self.client.update_item(
                TableName=self.table,
                Key=serialize(stream_key(stream_id)),
                UpdateExpression="SET #s = :streaming, activeStatus = :streaming, updatedAt = :now",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=serialize(
                    {":streaming": "streaming", ":pending": "pending", ":now": int(now)}
                ),
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def append(self, stream_id: str, seq: int, text: str) -> None:
        """Store batch `seq`. Retrying the same batch is harmless; a different one conflicts."""
        now = self.clock()
        item = {
            "pk": f"STREAM#{stream_id}",
            "sk": batch_sk(seq),
            "kind": "batch",
            "streamId": stream_id,
            "seq": seq,
            "text": text,
            "writtenAt": int(now * 1000),
            "ttl": self._ttl(now),
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            existing = self.client.get_item(
                TableName=self.table,
                Key=serialize({"pk": item["pk"], "sk": item["sk"]}),
                ConsistentRead=True,
            ).get("Item")
            if existing is None or deserialize(existing).get("text") != text:
                raise SequenceConflict(f"batch {seq} of stream {stream_id} exists") from error

    def finish(
        self,
        stream_id: str,
        status: Status,
        seq: int,
        error: str | None = None,
        *,
        from_statuses: tuple[Status, ...] = (Status.STREAMING,),
        updated_at: float | None = None,
    ) -> bool:
        """Move a live stream to a terminal `status`; False if it was not in `from_statuses`.

        `updated_at` makes the change conditional on the stream not having moved since it
        was read (the sweeper uses it not to time out a stream that just started).
        """
        names = {"#s": "status"}
        values: dict[str, Any] = {":status": status.value, ":seq": seq, ":now": int(self.clock())}
        expression = "SET #s = :status, seq = :seq, updatedAt = :now"
        if error is not None:
            expression += ", #e = :error"
            names["#e"] = "error"
            values[":error"] = error[:4000]
        expression += " REMOVE activeStatus"
        allowed = []
        for i, allowed_status in enumerate(from_statuses):
            values[f":from{i}"] = allowed_status.value
            allowed.append(f":from{i}")
        condition = f"#s IN ({', '.join(allowed)})"
        if updated_at is not None:
            values[":seen"] = int(updated_at)
            condition += " AND updatedAt = :seen"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=serialize(stream_key(stream_id)),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as err:
            if _condition_failed(err):
                return False
            raise
        return True

    def request_cancel(self, stream_id: str) -> Status | None:
        """Ask the stream's driver to stop; a `pending` stream is cancelled at once.

        Returns the status the stream now has, or None if it had already ended.
        """
        if self.finish(stream_id, Status.CANCELLED, 0, from_statuses=(Status.PENDING,)):
            return Status.CANCELLED
        try:
            self.client.update_item(
                TableName=self.table,
                Key=serialize(stream_key(stream_id)),
                UpdateExpression="SET cancelRequested = :yes",
                ConditionExpression="#s = :streaming",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=serialize({":yes": True, ":streaming": "streaming"}),
            )
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        return Status.STREAMING

    def cancel_requested(self, stream_id: str) -> bool:
        """Whether someone asked this stream to stop (or it ended under the driver's feet)."""
        response = self.client.get_item(
            TableName=self.table,
            Key=serialize(stream_key(stream_id)),
            ProjectionExpression="#s, cancelRequested",
            ExpressionAttributeNames={"#s": "status"},
        )
        item = deserialize(response.get("Item", {}))
        status = item.get("status")
        return bool(item.get("cancelRequested")) or status is None or Status(status).terminal

    # -- reading -----------------------------------------------------------------------

    def read(self, stream_id: str, after: int = 0) -> Body | None:
        """Batches with seq > `after`, joined, plus status: one consistent, paginated Query."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :meta",
            ExpressionAttributeValues=serialize(
                {":pk": f"STREAM#{stream_id}", ":first": batch_sk(after + 1), ":meta": "META"}
            ),
            ConsistentRead=True,
        )
        texts: list[str] = []
        seq = after
        meta: dict[str, Any] | None = None
        for page in pages:
            for raw in page["Items"]:
                item = deserialize(raw)
                if item["sk"] == "META":
                    meta = item
                else:
                    texts.append(item["text"])
                    seq = int(item["seq"])
        if meta is None:
            return None
        return Body(stream_id, "".join(texts), seq, Status(meta["status"]), meta.get("error"))

    def last_batch(self, stream_id: str) -> tuple[int, float] | None:
        """(seq, written at in epoch seconds) of the newest batch, None if there is none."""
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :batch)",
            ExpressionAttributeValues=serialize({":pk": f"STREAM#{stream_id}", ":batch": "BATCH#"}),
            ScanIndexForward=False,
            Limit=1,
            ProjectionExpression="seq, writtenAt",
            ConsistentRead=True,
        )
        if not response["Items"]:
            return None
        item = deserialize(response["Items"][0])
        return int(item["seq"]), int(item["writtenAt"]) / 1000

    def active_streams(self, status: Status, updated_before: float) -> Iterator[tuple[str, float]]:
        """(streamId, updatedAt) of `status` streams not updated since `updated_before`."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName="ActiveStreams",
            KeyConditionExpression="activeStatus = :status AND updatedAt < :before",
            ExpressionAttributeValues=serialize(
                {":status": status.value, ":before": int(updated_before)}
            ),
        )
        for page in pages:
            for raw in page["Items"]:
                item = deserialize(raw)
                yield item["pk"].removeprefix("STREAM#"), float(item["updatedAt"])

    # -- deleting ----------------------------------------------------------------------

    def delete_chat(self, chat: Chat) -> None:
        """Delete the chat, its stream and every batch, in pages of 25."""
        keys = [{"pk": f"CHAT#{chat.chat_id}", "sk": "CHAT"}]
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"STREAM#{chat.stream_id}"}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        # Batches first, the chat item last: an interrupted delete can be retried.
        stream_keys = [deserialize(i) for page in pages for i in page["Items"]]
        self._delete_keys([*stream_keys, *keys])

    def _delete_keys(self, keys: list[dict[str, str]]) -> None:
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": serialize(k)}} for k in keys[start : start + 25]]
            pending: dict[str, Any] = {self.table: requests}
            for attempt in range(8):
                response = self.client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise StorageError(f"could not delete {len(pending[self.table])} items")
