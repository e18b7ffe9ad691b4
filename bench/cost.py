"""AWS cost per 1,000 replies, from the measured counts and `docs/pricing.toml`.

A reply is priced as the sum of what it makes each service do (`ReplyUsage`): the streaming
function runs for as long as the model streams; the fan-out runs once per poll of the
stream's shard that finds records, and spends a fixed time per invocation plus a time per
post to a viewer, and above `viewers_per_invocation` viewers it hands the other slices to
worker invocations (the second level), which cost a request and the same time per post
plus their own fixed time; each viewer connects, subscribes and disconnects (three WebSocket
function invocations); DynamoDB and API Gateway bill units and messages. `design_usage`
builds the usage of one design (ours, per-token persistence, full-body re-send) for V
viewers from measured inputs (`Measured`); everything not measured is an argument with a
stated default.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

PRICES = Path(__file__).resolve().parents[1] / "docs" / "pricing.toml"

LAMBDA_POLLS_PER_SECOND = 4
"""How often Lambda polls a DynamoDB stream shard (Lambda's documentation: 4 times a second)."""


@dataclass(frozen=True, slots=True)
class Prices:
    region: str
    date: str
    lambda_gb_second: float
    lambda_request: float
    ddb_write_unit: float
    ddb_read_unit: float
    ws_message: float
    ws_connection_minute: float
    ws_metering_bytes: int
    transfer_out_gb: float

    @classmethod
    def load(cls, path: Path = PRICES) -> Prices:
        data = tomllib.loads(path.read_text())
        lam, ddb, ws = data["lambda"], data["dynamodb"], data["apigateway_websocket"]
        transfer = data["data_transfer"]
        million = 1_000_000
        return cls(
            region=data["region"],
            date=data["date"],
            lambda_gb_second=lam["gb_second"],
            lambda_request=lam["requests_per_million"] / million,
            ddb_write_unit=ddb["write_request_units_per_million"] / million,
            ddb_read_unit=ddb["read_request_units_per_million"] / million,
            ws_message=ws["messages_per_million"] / million,
            ws_connection_minute=ws["connection_minutes_per_million"] / million,
            ws_metering_bytes=ws["message_metering_bytes"],
            transfer_out_gb=transfer["out_gb"],
        )


@dataclass(frozen=True, slots=True)
class ReplyUsage:
    """What one reply watched by `viewers` viewers makes AWS do."""

    design: str
    viewers: int
    stream_requests: float
    stream_gb_seconds: float
    fanout_requests: float
    fanout_gb_seconds: float
    websocket_requests: float
    websocket_gb_seconds: float
    write_units: float
    read_units: float
    ws_messages: float
    """Billed (32 KB increments), both directions, all viewers."""
    connection_minutes: float
    egress_bytes: float
    """Bytes sent out of AWS: the HTTP reply and everything pushed to viewers."""

    def cost(self, prices: Prices) -> dict[str, float]:
        """Dollars per reply by service, and the total."""
        lam = (
            self.stream_requests + self.fanout_requests + self.websocket_requests
        ) * prices.lambda_request + (
            self.stream_gb_seconds + self.fanout_gb_seconds + self.websocket_gb_seconds
        ) * prices.lambda_gb_second
        ddb = self.write_units * prices.ddb_write_unit + self.read_units * prices.ddb_read_unit
        ws = (
            self.ws_messages * prices.ws_message
            + self.connection_minutes * prices.ws_connection_minute
        )
        egress = self.egress_bytes / 1e9 * prices.transfer_out_gb
        return {
            "lambda": lam,
            "dynamodb": ddb,
            "websocket": ws,
            "transfer": egress,
            "total": lam + ddb + ws + egress,
        }


@dataclass(frozen=True, slots=True)
class Measured:
    """The measured inputs of the model (one reply unless said otherwise)."""

    pieces: int
    batches: int
    reply_bytes: int
    write_units: float
    """StreamsTable WRU of one reply (create, claim, batches, finish), ours."""
    write_units_per_token: float
    """The same for the per-token baseline."""
    read_units: float
    """StreamsTable RRU while driving (reading the stream, cancel polls)."""
    fanout_base_ms: float
    """Fan-out handler time per invocation besides posting (finding the viewers)."""
    fanout_post_ms: float
    """Fan-out handler time per post to one viewer."""
    websocket_ms: float
    """WebSocket function time per invocation."""
    subscription_write_units: float
    """ConnectionsTable WRU per viewer (subscribe and disconnect)."""
    subscription_read_units: float
    """RRU per viewer outside the fan-out (the subscribe snapshot, the disconnect lookup)."""
    subscription_item_bytes: int
    messages_per_viewer: float
    """Billed messages sent to a viewer (snapshot, deltas, status), ours."""
    bytes_per_viewer: float
    per_token_bytes_per_viewer: float
    """A delta per piece (what per-token persistence fans out)."""
    fullbody_messages_per_viewer: float
    fullbody_bytes_per_viewer: float
    fullbody_read_units: float
    """RRU a full-body fan-out spends re-reading the body, one reply."""
    viewers_per_invocation: int | None = None
    """The second level's slice (None: one level for every audience)."""


def design_usage(
    design: str,
    m: Measured,
    viewers: int,
    *,
    tokens_per_second: float = 50.0,
    memory_gb: float = 0.5,
    fanout_memory_gb: float = 1.769,
    gsi_write_units: float = 5.0,
) -> ReplyUsage:
    """The usage of `design` ("ours", "per_token", "fullbody") for one reply.

    `tokens_per_second`: how fast the model streams (the streaming function lives that long).
    `fanout_memory_gb`: the fan-out's and its workers' memory (template.yaml: a whole vCPU).
    `gsi_write_units`: the index writes of a reply's lifecycle, the same in every design
    (the chat into ChatsByOwner; the stream into, across and out of ActiveStreams).
    """
    seconds = m.pieces / tokens_per_second
    records = m.pieces if design == "per_token" else m.batches
    invocations = min(records, math.ceil(seconds * LAMBDA_POLLS_PER_SECOND)) + 1  # + status
    posts = (records + 1) * viewers
    slices = math.ceil(viewers / m.viewers_per_invocation) if m.viewers_per_invocation else 1
    workers = invocations * (slices - 1)  # each fan-out invocation keeps the first slice
    fanout_ms = (invocations + workers) * m.fanout_base_ms + posts * m.fanout_post_ms
    per_viewer = {
        "ours": m.messages_per_viewer,
        "per_token": m.messages_per_viewer - m.batches + m.pieces,
        "fullbody": m.fullbody_messages_per_viewer,
    }[design]
    pushed_bytes = {
        "ours": m.bytes_per_viewer,
        "per_token": m.per_token_bytes_per_viewer,
        "fullbody": m.fullbody_bytes_per_viewer,
    }[design]
    writes = m.write_units_per_token if design == "per_token" else m.write_units
    subscribers_read = max(1, math.ceil(viewers * m.subscription_item_bytes / 4096)) / 2
    reads = m.read_units + invocations * subscribers_read + viewers * m.subscription_read_units
    if design == "fullbody":
        reads += m.fullbody_read_units
    return ReplyUsage(
        design=design,
        viewers=viewers,
        stream_requests=2,  # POST /chats, POST /chat-stream
        stream_gb_seconds=memory_gb * seconds,
        fanout_requests=invocations + workers,
        fanout_gb_seconds=fanout_memory_gb * fanout_ms / 1000,
        websocket_requests=3 * viewers,  # $connect, subscribe, $disconnect
        websocket_gb_seconds=memory_gb * 3 * viewers * m.websocket_ms / 1000,
        write_units=writes + gsi_write_units + viewers * m.subscription_write_units,
        read_units=reads,
        ws_messages=viewers * (1 + per_viewer),  # the subscribe frame, then what is pushed
        connection_minutes=viewers * math.ceil(seconds / 60),
        egress_bytes=m.reply_bytes + viewers * pushed_bytes,
    )


def cost_table(
    m: Measured,
    prices: Prices,
    viewer_counts: tuple[int, ...] = (1, 10, 100, 1000, 10_000),
    variants: dict[str, Measured] | None = None,
) -> list[dict[str, Any]]:
    """Dollars per 1,000 replies, by design and viewer count, with the usage behind them.

    `variants`: other inputs priced as "ours" (another batching interval), by name."""
    rows = []
    for viewers in viewer_counts:
        designs = [("ours", "ours", m)]
        designs += [(name, "ours", other) for name, other in (variants or {}).items()]
        designs += [("per_token", "per_token", m), ("fullbody", "fullbody", m)]
        for name, design, inputs in designs:
            usage = replace(design_usage(design, inputs, viewers), design=name)
            dollars = {k: v * 1000 for k, v in usage.cost(prices).items()}
            rows.append({**asdict(usage), "per_1000_replies": dollars})
    return rows
