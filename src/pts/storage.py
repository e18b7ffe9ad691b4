"""The repository: chats, streams and batches in one DynamoDB table (see docs/architecture.md).

Each state change of a stream is one named transition (`claim`, `append`, `heartbeat`,
`finish`, `time_out`, `cancel_pending`, `request_cancel`), each one conditional write; a
failed condition is a domain answer (False, None, `SequenceConflict` or `StreamEnded`),
never a `ClientError`. Only a `streaming` stream takes a batch, and only its next one: the
terminal status is the authority, so once a stream has ended with `seq = n` its body is
batches 1..n, whatever a stale driver tries to write later.
Keys and the attribute codec live in `pts.keys`, the domain types in `pts.model`.
`AsyncStreamStore` is the same store for coroutines: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pts import aws
from pts.keys import (
    CHAT_PREFIX,
    MAX_SEQ,
    META_SK,
    active_key,
    batch_key,
    batch_sk,
    chat_key,
    deserialize,
    serialize,
    stream_id_of,
    stream_key,
    stream_pk,
)
from pts.model import (
    ANONYMOUS,
    Body,
    Chat,
    Stream,
    hash_token,
    iso_time,
    new_id,
    new_token,
)
from pts.protocol import TERMINAL_STATUSES, Status, is_valid_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Re-exported: callers (and the benchmark) import these from here as they always did.
__all__ = [
    "ANONYMOUS",
    "MAX_SEQ",
    "TERMINAL_STATUSES",
    "AsyncStreamStore",
    "BadCursor",
    "Body",
    "Chat",
    "ChatPage",
    "SequenceConflict",
    "Status",
    "StorageError",
    "Stream",
    "StreamEnded",
    "StreamStore",
    "TooManyActiveStreams",
    "WriteContention",
    "batch_sk",
    "deserialize",
    "serialize",
    "stream_key",
]

MAX_ERROR_CHARS = 4000
MAX_PAGE = 100
"""The most chats one `GET /chats` page holds (and its default size)."""
TRANSACTION_ATTEMPTS = 6
_CONDITION_FAILED = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})


class StorageError(Exception):
    """A write that DynamoDB refused for a reason the caller can act on."""


class SequenceConflict(StorageError):
    """Another writer already stored a different batch under this sequence number (or the
    batch is not the stream's next one)."""


class StreamEnded(StorageError):
    """The stream has ended (or was deleted): its driver must stop and write nothing more."""


class WriteContention(Exception):
    """A write lost a race with another write to the same item; trying again is safe."""


class TooManyActiveStreams(StorageError):
    """The owner already has as many `pending` or `streaming` streams as allowed."""


class BadCursor(ValueError):
    """A `GET /chats` cursor this store did not hand out."""


def applied(write: Callable[[], object]) -> bool:
    """Run one conditional write: True if it applied, False if its condition failed.

    The one place a failed condition (`ConditionalCheckFailedException`, or a transaction
    cancelled by one) becomes a domain answer; any other error propagates.
    """
    try:
        write()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _CONDITION_FAILED:
            return False
        raise
    return True


def _cancellation_reasons(error: ClientError) -> list[str]:
    reasons = error.response.get("CancellationReasons") or []
    return [str(reason.get("Code")) for reason in reasons]


def _chat_from_item(item: dict[str, Any]) -> Chat:
    return Chat(
        item["chatId"],
        item["prompt"],
        item["streamId"],
        item["createdAt"],
        item.get("threadId") or item["chatId"],
        owner=item.get("chatOwner", ANONYMOUS),
        shared=bool(item.get("shared", False)),
    )


@dataclass(frozen=True, slots=True)
class ChatPage:
    """One page of an owner's chats, oldest first; `cursor` fetches the older ones before."""

    chats: list[Chat]
    cursor: str | None


def _encode_cursor(key: dict[str, Any]) -> str:
    """Opaque to clients: where the next (older) page starts, without the owner — the owner
    always comes from the caller, so no cursor can reach into somebody else's chats."""
    position = {"t": key["createdAt"], "c": key["pk"].removeprefix(CHAT_PREFIX)}
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(cursor: str, owner: str) -> dict[str, Any]:
    """The `ExclusiveStartKey` of a cursor, in `owner`'s partition; `BadCursor` otherwise."""
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        created_at, chat_id = position["t"], position["c"]
        if not (isinstance(created_at, str) and len(created_at) <= 40 and is_valid_id(chat_id)):
            raise ValueError("not a position")
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor is not one this API returned") from None
    return {**chat_key(chat_id), "chatOwner": owner, "createdAt": created_at}


def stream_from_item(item: dict[str, Any]) -> Stream:
    """A `Stream` from a deserialized meta item (also usable on DynamoDB Streams images)."""
    return Stream(
        stream_id=item["streamId"],
        chat_id=item.get("chatId"),
        status=Status(item["status"]),
        token_hash=item.get("tokenHash", ""),
        created_at=item.get("createdAt", ""),
        updated_at=float(item.get("updatedAt", 0)),
        seq=int(item.get("seq", 0)),
        error=item.get("error"),
        owner=item.get("owner", ANONYMOUS),
        shared=bool(item.get("shared", False)),
    )


class StreamStore:
    """Chats, streams and batches in one DynamoDB table (blocking; see `AsyncStreamStore`)."""

    def __init__(
        self,
        table: str,
        *,
        retention_days: int = 30,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
        active_limit: int | None = None,
    ) -> None:
        self.table = table
        self.retention = retention_days * 86_400
        self.active_limit = active_limit
        """Streams `pending` or `streaming` an owner may have at once (None: no limit)."""
        self.clock = clock
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        return self._client or aws.dynamodb()  # shared, created on first use

    def _ttl(self, now: float) -> int:
        return int(now + self.retention)

    # -- chats and streams -------------------------------------------------------------

    def create_chat(
        self,
        prompt: str,
        *,
        thread_id: str | None = None,
        owner: str = ANONYMOUS,
        shared: bool = False,
    ) -> tuple[Chat, str]:
        """Store a chat and its `pending` stream; return the chat and the drive token.

        The chat continues `thread_id` (checked by the caller, see `thread_exists` and
        `thread_owner`), or starts a thread of its own, whose id is the chat's.

        With an `active_limit`, the owner's count of live streams goes up in the same
        transaction, on condition that it is below the limit — so concurrent creates can
        never get past it — and `TooManyActiveStreams` says it was reached. The stream is
        marked `counted`, and the write that ends it counts it down (see `_end`).
        """
        now = self.clock()
        chat_id = new_id()
        chat = Chat(
            chat_id,
            prompt,
            new_id(),
            iso_time(now),
            thread_id or chat_id,
            owner=owner,
            shared=shared,
        )
        token = new_token()
        counted = self.active_limit is not None
        chat_item = {
            **chat_key(chat.chat_id),
            "kind": "chat",
            "chatId": chat.chat_id,
            "prompt": prompt,
            "streamId": chat.stream_id,
            "createdAt": chat.created_at,
            "chatOwner": owner,
            "shared": shared or None,
            "threadId": chat.thread_id,
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
            "owner": owner,
            "shared": shared or None,
            "counted": counted or None,
            "ttl": self._ttl(now),
        }
        items: list[Any] = [
            {"Put": {"TableName": self.table, "Item": serialize(item)}}
            for item in (chat_item, stream_item)
        ]
        if counted:
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": serialize(active_key(owner)),
                        "UpdateExpression": "SET active = if_not_exists(active, :zero) + :one, "
                        "kind = :kind",
                        "ConditionExpression": "attribute_not_exists(active) OR active < :limit",
                        "ExpressionAttributeValues": serialize(
                            {":zero": 0, ":one": 1, ":limit": self.active_limit, ":kind": "user"}
                        ),
                    }
                }
            )
        if not self._transact(items):
            raise TooManyActiveStreams(
                f"at most {self.active_limit} streams may be pending or streaming at once"
            )
        return chat, token

    def active_count(self, owner: str) -> int:
        """How many of `owner`'s streams count as live (0 without a limit)."""
        item = self.client.get_item(
            TableName=self.table, Key=serialize(active_key(owner)), ConsistentRead=True
        ).get("Item")
        return int(deserialize(item).get("active", 0)) if item else 0

    def list_chats(self, owner: str = ANONYMOUS) -> list[Chat]:
        """Every chat of `owner`, oldest first."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName="ChatsByOwner",
            KeyConditionExpression="chatOwner = :owner",
            ExpressionAttributeValues=serialize({":owner": owner}),
        )
        return [_chat_from_item(deserialize(i)) for page in pages for i in page["Items"]]

    def chat_page(
        self, owner: str = ANONYMOUS, *, limit: int = MAX_PAGE, cursor: str | None = None
    ) -> ChatPage:
        """`owner`'s newest `limit` chats (before `cursor`), listed oldest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}")
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "ChatsByOwner",
            "KeyConditionExpression": "chatOwner = :owner",
            "ExpressionAttributeValues": serialize({":owner": owner}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            request["ExclusiveStartKey"] = serialize(_decode_cursor(cursor, owner))
        response = self.client.query(**request)
        chats = [_chat_from_item(deserialize(i)) for i in response["Items"]]
        last = response.get("LastEvaluatedKey")
        next_cursor = _encode_cursor(deserialize(dict(last))) if last else None
        return ChatPage(chats[::-1], next_cursor)

    def list_thread(self, thread_id: str) -> list[Chat]:
        """One thread's chats, oldest first (the `ChatsByThread` index: eventually consistent,
        so a chat created a moment ago may be missing yet; see `thread_exists`). Chats made in
        the same millisecond are ordered by id, the same order every time."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName="ChatsByThread",
            KeyConditionExpression="threadId = :thread",
            ExpressionAttributeValues={":thread": {"S": thread_id}},
        )
        chats = [_chat_from_item(deserialize(i)) for page in pages for i in page["Items"]]
        return sorted(chats, key=lambda c: (c.created_at, c.chat_id))

    def thread_exists(self, thread_id: str) -> bool:
        """Whether a thread has this id: its first chat, read consistently (a thread's id is
        its first chat's, so a reply can be continued the moment it was created), or, when
        that chat was deleted, any chat left in it."""
        first = self.get_chat(thread_id)
        if first is not None:
            return first.thread_id == thread_id
        response = self.client.query(
            TableName=self.table,
            IndexName="ChatsByThread",
            KeyConditionExpression="threadId = :thread",
            ExpressionAttributeValues={":thread": {"S": thread_id}},
            Limit=1,
        )
        return bool(response["Items"])

    def thread_owner(self, thread_id: str) -> str | None:
        """Who a thread belongs to (its first chat's owner, or, when that chat was deleted,
        any chat's left in it); None if there is no such thread."""
        first = self.get_chat(thread_id)
        if first is not None:
            return first.owner if first.thread_id == thread_id else None
        response = self.client.query(
            TableName=self.table,
            IndexName="ChatsByThread",
            KeyConditionExpression="threadId = :thread",
            ExpressionAttributeValues={":thread": {"S": thread_id}},
            Limit=1,
        )
        items = response["Items"]
        return str(deserialize(dict(items[0])).get("chatOwner", ANONYMOUS)) if items else None

    def get_chat(self, chat_id: str) -> Chat | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize(chat_key(chat_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return _chat_from_item(deserialize(item)) if item else None

    def get_stream(self, stream_id: str) -> Stream | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize(stream_key(stream_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return stream_from_item(deserialize(item)) if item else None

    # -- transitions -------------------------------------------------------------------

    def claim(self, stream_id: str) -> bool:
        """`pending` → `streaming`, atomically: exactly one caller gets True."""
        return self._update_if(
            stream_id,
            "SET #s = :streaming, activeStatus = :streaming, updatedAt = :now",
            "#s = :pending",
            {":streaming": Status.STREAMING.value, ":pending": Status.PENDING.value},
        )

    def append(self, stream_id: str, seq: int, text: str) -> None:
        """Store batch `seq`, the stream's next, and make it the stream's `seq`: one
        transaction, applied only while the stream is `streaming` and at batch `seq - 1`.

        So no batch is ever stored past the end (a stale driver's write is refused), and the
        stream item's `seq` is always its last stored batch. Retrying the same batch is
        harmless (boto3's own retries carry the transaction's idempotency token; the
        driver's are recognised by re-reading); a different batch under the same number
        raises `SequenceConflict`, an ended or deleted stream `StreamEnded`.
        """
        now = self.clock()
        item = {
            **batch_key(stream_id, seq),
            "kind": "batch",
            "streamId": stream_id,
            "seq": seq,
            "text": text,
            "writtenAt": int(now * 1000),
            "ttl": self._ttl(now),
        }
        values = {":streaming": Status.STREAMING.value, ":prev": seq - 1, ":seq": seq}
        transaction: list[Any] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize(stream_key(stream_id)),
                    "UpdateExpression": "SET seq = :seq, updatedAt = :now",
                    "ConditionExpression": "#s = :streaming AND seq = :prev",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": serialize({**values, ":now": int(now)}),
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": serialize(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        if not applied(lambda: self.client.transact_write_items(TransactItems=transaction)):
            self._refused_append(stream_id, seq, text)

    def _refused_append(self, stream_id: str, seq: int, text: str) -> None:
        """Why `append` was refused: return if batch `seq` is stored with this very text (an
        earlier try that applied), else raise what the caller must know."""
        existing = self.client.get_item(
            TableName=self.table, Key=serialize(batch_key(stream_id, seq)), ConsistentRead=True
        ).get("Item")
        if existing is not None:
            if deserialize(existing).get("text") == text:
                return
            raise SequenceConflict(f"batch {seq} of stream {stream_id} exists")
        stream = self.get_stream(stream_id)
        if stream is None or stream.status is not Status.STREAMING:
            state = "deleted" if stream is None else stream.status.value
            raise StreamEnded(f"stream {stream_id} is {state}: batch {seq} refused")
        if stream.seq != seq - 1:
            raise SequenceConflict(
                f"batch {seq} of stream {stream_id} is not its next (it is at {stream.seq})"
            )
        # Every condition holds now: the transaction lost a race (a concurrent update).
        raise WriteContention(f"batch {seq} of stream {stream_id} raced another write")

    def heartbeat(self, stream_id: str) -> bool:
        """Keep a `streaming` stream alive while its source is silent (the sweeper times out
        only streams whose `updatedAt` is old). False if it is no longer streaming (ended or
        deleted): its driver must stop."""
        return self._update_if(
            stream_id,
            "SET updatedAt = :now",
            "#s = :streaming",
            {":streaming": Status.STREAMING.value},
        )

    def finish(self, stream_id: str, status: Status, error: str | None = None) -> bool:
        """The driver's end: `streaming` → `status` (done, error or cancelled); its `seq`
        stays the last stored batch.

        False if the stream was no longer streaming (cancelled while pending, timed out).
        """
        return self._end(stream_id, status, error, "#s = :from", {":from": "streaming"})

    def time_out(
        self, stream_id: str, seen: Status, updated_at: float, error: str | None = None
    ) -> bool:
        """The sweeper's end: `seen` → `timeout`, only if the stream has not moved since it
        was read (same status, same `updatedAt`: no batch and no heartbeat since), so a
        stream that just started, wrote or showed a sign of life is spared."""
        return self._end(
            stream_id,
            Status.TIMEOUT,
            error,
            "#s = :from AND updatedAt = :seen",
            {":from": seen.value, ":seen": int(updated_at)},
        )

    def cancel_pending(self, stream_id: str) -> bool:
        """`pending` → `cancelled`: nobody drives it yet, so it ends at once, with no text."""
        return self._end(stream_id, Status.CANCELLED, None, "#s = :from", {":from": "pending"})

    def request_cancel(self, stream_id: str) -> Status | None:
        """Ask the stream to stop: a `pending` one is cancelled at once (`cancel_pending`), a
        `streaming` one is flagged for its driver, which polls `watch`.

        Returns the status the stream now has, or None if it had already ended.
        """
        if self.cancel_pending(stream_id):
            return Status.CANCELLED
        flagged = self._update_if(
            stream_id,
            "SET cancelRequested = :yes",
            "#s = :streaming",
            {":yes": True, ":streaming": Status.STREAMING.value},
            touch=False,
        )
        return Status.STREAMING if flagged else None

    def watch(self, stream_id: str) -> tuple[Status | None, bool]:
        """What a driver polls for: the stream's status (None once deleted) and whether a
        cancel was requested. One eventually consistent read of two attributes."""
        response = self.client.get_item(
            TableName=self.table,
            Key=serialize(stream_key(stream_id)),
            ProjectionExpression="#s, cancelRequested",
            ExpressionAttributeNames={"#s": "status"},
        )
        item = deserialize(dict(response.get("Item", {})))
        status = item.get("status")
        return (None if status is None else Status(status)), bool(item.get("cancelRequested"))

    def _end(
        self,
        stream_id: str,
        status: Status,
        error: str | None,
        condition: str,
        condition_values: dict[str, Any],
    ) -> bool:
        """Move a stream to a terminal `status` (leaving the `ActiveStreams` index). Its
        `seq` is left alone: `append` keeps it at the last stored batch."""
        update = "SET #s = :status, updatedAt = :now"
        values: dict[str, Any] = {":status": status.value, **condition_values}
        names = {}
        if error is not None:
            update += ", #e = :error"
            names["#e"] = "error"
            values[":error"] = error[:MAX_ERROR_CHARS]
        update += " REMOVE activeStatus"
        return self._end_write(stream_id, update, condition, values, names)

    def _end_write(
        self,
        stream_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str],
    ) -> bool:
        """The ending update; for a stream `counted` against its owner's limit, in one
        transaction with the count going down, so the count is exact whoever ends it (the
        driver, the API, the sweeper). A terminal status never changes again, so that
        happens once. Uncounted streams (no limit) cost the single write they always did."""
        uncounted = f"({condition}) AND attribute_not_exists(counted)"
        params = self._meta_update(stream_id, update, uncounted, values, names)
        try:
            # On a failed condition the item as it was comes back with the error: no read.
            self.client.update_item(**params, ReturnValuesOnConditionCheckFailure="ALL_OLD")
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            item: Any = error.response.get("Item") or {}
            meta = deserialize(dict(item))
        if not meta.get("counted"):
            return False  # the condition failed: not a counted stream in that state
        owner = str(meta.get("owner", ANONYMOUS))
        return self._transact(
            [
                {"Update": self._meta_update(stream_id, update, condition, values, names)},
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": serialize(active_key(owner)),
                        "UpdateExpression": "ADD active :down",
                        "ExpressionAttributeValues": serialize({":down": -1}),
                    }
                },
            ]
        )

    def _meta_update(
        self,
        stream_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        *,
        touch: bool = True,
    ) -> dict[str, Any]:
        """The parameters of one conditional update of a stream's meta item (`#s` is
        `status`; `:now` the clock, when `touch`)."""
        if touch:
            values = {**values, ":now": int(self.clock())}
        return {
            "TableName": self.table,
            "Key": serialize(stream_key(stream_id)),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "status", **(names or {})},
            "ExpressionAttributeValues": serialize(values),
        }

    def _update_if(
        self,
        stream_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        *,
        names: dict[str, str] | None = None,
        touch: bool = True,
    ) -> bool:
        """One conditional update of a stream's meta item; False if the condition failed."""
        params = self._meta_update(stream_id, update, condition, values, names, touch=touch)
        return applied(lambda: self.client.update_item(**params))

    def _transact(self, items: list[Any]) -> bool:
        """One transaction: True if it applied, False if a condition failed. A transaction
        that collided with another on the same item (`TransactionConflict`: two creates of
        one user hitting their counter) applied nothing and is tried again, with jitter."""
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=items)
                return True
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = _cancellation_reasons(error)
                if "ConditionalCheckFailed" in reasons or not reasons:
                    return False
                if "TransactionConflict" not in reasons:
                    raise
            time.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise StorageError("a transaction kept colliding with concurrent ones")

    # -- reading -----------------------------------------------------------------------

    def read(self, stream_id: str, after: int = 0) -> Body | None:
        """Batches with seq > `after`, joined, plus status: one consistent, paginated Query.

        Never a batch past the stream item's `seq` (`append` stores none, and the Query is
        not isolated from an `append` in flight: it may see the batch before its `seq`)."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :meta",
            ExpressionAttributeValues=serialize(
                {":pk": stream_pk(stream_id), ":first": batch_sk(after + 1), ":meta": META_SK}
            ),
            ConsistentRead=True,
        )
        batches: list[tuple[int, str]] = []
        meta: dict[str, Any] | None = None
        for page in pages:
            for raw in page["Items"]:
                item = deserialize(raw)
                if item["sk"] == META_SK:
                    meta = item
                else:
                    batches.append((int(item["seq"]), item["text"]))
        if meta is None:
            return None
        last = int(meta.get("seq", 0))
        shown = [(seq, text) for seq, text in batches if seq <= last]
        seq = shown[-1][0] if shown else after
        text = "".join(text for _, text in shown)
        return Body(
            stream_id,
            text,
            seq,
            Status(meta["status"]),
            meta.get("error"),
            owner=meta.get("owner", ANONYMOUS),
            shared=bool(meta.get("shared", False)),
        )

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
                yield stream_id_of(item["pk"]), float(item["updatedAt"])

    # -- deleting ----------------------------------------------------------------------

    def delete_chat(self, chat: Chat) -> None:
        """Delete the chat, its stream and every batch, in pages of 25."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": stream_pk(chat.stream_id)}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        # Batches first, the chat item last: an interrupted delete can be retried.
        stream_keys = [deserialize(i) for page in pages for i in page["Items"]]
        self._delete_keys([*stream_keys, chat_key(chat.chat_id)])

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": serialize(k)}} for k in keys[start : start + 25]]
            pending: dict[str, Any] = {self.table: requests}
            for attempt in range(8):
                response = self.client.batch_write_item(RequestItems=pending)
                pending = dict(response.get("UnprocessedItems") or {})
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise StorageError(f"could not delete {len(pending[self.table])} items")

    # -- reading batch by batch --------------------------------------------------------

    def read_batches(self, stream_id: str, after: int = 0) -> Tail | None:
        """The stream's state and its batches numbered above `after`, one by one (a snapshot
        may have to be cut between them), up to its end: an ended stream's final `seq`, so
        nothing a stale writer stored later. One consistent, paginated Query, which starts at
        batch `after` itself to tell whether `after` is within the stream; None if unknown."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :meta",
            ExpressionAttributeValues=serialize(
                {":pk": stream_pk(stream_id), ":first": batch_sk(after), ":meta": META_SK}
            ),
            ConsistentRead=True,
        )
        batches: list[tuple[int, str]] = []
        last = 0
        meta: dict[str, Any] | None = None
        for page in pages:
            for raw in page["Items"]:
                item = deserialize(raw)
                if item["sk"] == META_SK:
                    meta = item
                    continue
                last = int(item["seq"])
                if last > after:
                    batches.append((last, item["text"]))
        if meta is None:
            return None
        stream = stream_from_item(meta)
        if stream.status.terminal:
            # The terminal status is the authority: its `seq` is the end.
            batches = [(seq, text) for seq, text in batches if seq <= stream.seq]
            last = stream.seq
        return Tail(stream, batches, last)


class AsyncStreamStore:
    """The store for coroutines: each call runs the blocking one in a worker thread.

    The API and the driver both reach DynamoDB through this, so neither blocks the event
    loop and both share the default executor. `sync` is the blocking store underneath.
    """

    def __init__(self, store: StreamStore) -> None:
        self.sync = store

    async def create_chat(
        self,
        prompt: str,
        *,
        thread_id: str | None = None,
        owner: str = ANONYMOUS,
        shared: bool = False,
    ) -> tuple[Chat, str]:
        return await asyncio.to_thread(
            functools.partial(
                self.sync.create_chat, prompt, thread_id=thread_id, owner=owner, shared=shared
            )
        )

    async def list_thread(self, thread_id: str) -> list[Chat]:
        return await asyncio.to_thread(self.sync.list_thread, thread_id)

    async def thread_exists(self, thread_id: str) -> bool:
        return await asyncio.to_thread(self.sync.thread_exists, thread_id)

    async def thread_owner(self, thread_id: str) -> str | None:
        return await asyncio.to_thread(self.sync.thread_owner, thread_id)

    async def chat_page(
        self, owner: str = ANONYMOUS, *, limit: int = MAX_PAGE, cursor: str | None = None
    ) -> ChatPage:
        return await asyncio.to_thread(self.sync.chat_page, owner, limit=limit, cursor=cursor)

    async def get_chat(self, chat_id: str) -> Chat | None:
        return await asyncio.to_thread(self.sync.get_chat, chat_id)

    async def get_stream(self, stream_id: str) -> Stream | None:
        return await asyncio.to_thread(self.sync.get_stream, stream_id)

    async def read(self, stream_id: str, after: int = 0) -> Body | None:
        return await asyncio.to_thread(self.sync.read, stream_id, after)

    async def claim(self, stream_id: str) -> bool:
        return await asyncio.to_thread(self.sync.claim, stream_id)

    async def append(self, stream_id: str, seq: int, text: str) -> None:
        await asyncio.to_thread(self.sync.append, stream_id, seq, text)

    async def heartbeat(self, stream_id: str) -> bool:
        return await asyncio.to_thread(self.sync.heartbeat, stream_id)

    async def finish(self, stream_id: str, status: Status, error: str | None = None) -> bool:
        return await asyncio.to_thread(self.sync.finish, stream_id, status, error)

    async def request_cancel(self, stream_id: str) -> Status | None:
        return await asyncio.to_thread(self.sync.request_cancel, stream_id)

    async def watch(self, stream_id: str) -> tuple[Status | None, bool]:
        return await asyncio.to_thread(self.sync.watch, stream_id)

    async def delete_chat(self, chat: Chat) -> None:
        await asyncio.to_thread(self.sync.delete_chat, chat)

    async def read_batches(self, stream_id: str, after: int = 0) -> Tail | None:
        return await asyncio.to_thread(self.sync.read_batches, stream_id, after)


@dataclass(frozen=True, slots=True)
class Tail:
    """What `read_batches` found: a stream and its batches after some sequence number."""

    stream: Stream
    batches: list[tuple[int, str]]
    """(seq, text) in order, numbered `after + 1` up to `last`."""
    last: int
    """The stream's last batch number; below the `after` asked for if that is past the end."""
