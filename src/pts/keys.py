"""The DynamoDB keys and attribute codec, in one place.

Streams table: a chat is `pk = CHAT#{chatId}, sk = CHAT`; a stream's meta item
(`sk = META`) and its batches (`sk = BATCH#0000000001`, …) share the partition
`STREAM#{streamId}`, and `BATCH#…` sorts before `META`, so one consistent Query returns a body
(or the part after a sequence number) together with the stream's status. Chats also carry
`chatOwner` (the owner's `sub`), the partition of the `ChatsByOwner` index: one partition per
user, so listing a user's chats reads nobody else's and no partition is everybody's; and
`threadId`, the partition of the `ChatsByThread` index (a thread's chats by `createdAt`).
A user's count of live streams is `pk = USER#{sub}, sk = ACTIVE` (the abuse limit).

Connections table: one item per (stream, viewer), `pk = STREAM#{streamId}`,
`sk = CONN#{connectionId}`, so the fan-out reads a stream's viewers with one Query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

CHAT_PREFIX = "CHAT#"
STREAM_PREFIX = "STREAM#"
BATCH_PREFIX = "BATCH#"
CONN_PREFIX = "CONN#"
USER_PREFIX = "USER#"
CHAT_SK = "CHAT"
META_SK = "META"
ACTIVE_SK = "ACTIVE"
MAX_SEQ = 9_999_999_999
"""The largest sequence number a batch key can hold (ten digits, zero-padded)."""

Key = dict[str, str]


def chat_pk(chat_id: str) -> str:
    return f"{CHAT_PREFIX}{chat_id}"


def chat_key(chat_id: str) -> Key:
    return {"pk": chat_pk(chat_id), "sk": CHAT_SK}


def active_key(owner: str) -> Key:
    """The owner's counter of streams `pending` or `streaming` (`active`)."""
    return {"pk": f"{USER_PREFIX}{owner}", "sk": ACTIVE_SK}


def stream_pk(stream_id: str) -> str:
    return f"{STREAM_PREFIX}{stream_id}"


def stream_key(stream_id: str) -> Key:
    """The stream's meta item: status, seq, token hash, timestamps."""
    return {"pk": stream_pk(stream_id), "sk": META_SK}


def batch_sk(seq: int) -> str:
    """`BATCH#0000000042`: zero-padded, so the sort key orders batches by number."""
    return f"{BATCH_PREFIX}{seq:010d}"


def batch_key(stream_id: str, seq: int) -> Key:
    return {"pk": stream_pk(stream_id), "sk": batch_sk(seq)}


def seq_of(sk: str) -> int:
    """The batch number in a `BATCH#…` sort key."""
    return int(sk.removeprefix(BATCH_PREFIX))


def subscription_key(stream_id: str, connection_id: str) -> Key:
    return {"pk": stream_pk(stream_id), "sk": f"{CONN_PREFIX}{connection_id}"}


def stream_id_of(pk: str) -> str:
    """The stream id in a `STREAM#…` partition key."""
    return pk.removeprefix(STREAM_PREFIX)


def connection_id_of(sk: str) -> str:
    """The connection id in a `CONN#…` sort key."""
    return sk.removeprefix(CONN_PREFIX)


# -- codec -------------------------------------------------------------------------------

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def serialize(item: dict[str, Any]) -> dict[str, AttributeValueTypeDef]:
    """Python values → DynamoDB attribute values; None attributes are left out."""
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values → Python values (numbers come back as `Decimal`)."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}
