"""The benchmark's own pure logic: percentiles, lags, DynamoDB units, baselines, cost model.

No timing is asserted here: `make bench` measures, these check the arithmetic it relies on.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bench import baselines, report
from bench.cost import Measured, Prices, ReplyUsage, cost_table, design_usage
from bench.metering import DynamoMeter, item_size, read_units, value_size, write_units
from bench.stats import delivery_lags, median, percentile, ratio
from bench.workload import Workload
from pts.connections import Connections
from pts.storage import StreamStore, serialize

# -- stats -----------------------------------------------------------------------------


def test_percentile_interpolates_like_numpy_linear():
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert median([3, 1, 2, 4]) == 2.5


def test_percentile_edge_cases():
    assert math.isnan(percentile([], 50))
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError):
        percentile([1], 101)
    assert math.isnan(ratio(1, 0))


def test_delivery_lags_maps_each_piece_to_the_first_receipt_holding_its_last_byte():
    emitted = [(3, 0.0), (6, 1.0), (10, 2.0), (12, 3.0)]
    received = [(6, 1.5), (12, 3.25)]  # pieces 1-2 arrive together, 3-4 together
    assert delivery_lags(emitted, received) == [1.5, 0.5, 1.25, 0.25]
    assert delivery_lags(emitted, [(6, 1.5)]) == [1.5, 0.5]  # the rest never arrived


# -- DynamoDB units --------------------------------------------------------------------


def test_item_size_follows_dynamodb_rules():
    assert value_size({"S": "héllo"}) == 6
    assert value_size({"N": "12345"}) == 4  # 5 digits: ceil(5/2) + 1
    assert value_size({"BOOL": True}) == 1
    assert value_size({"L": [{"S": "ab"}]}) == 3 + 1 + 2
    assert item_size({"pk": {"S": "abc"}, "n": {"N": "7"}}) == 2 + 3 + 1 + 2


def test_units_round_up_per_kb_and_per_4kb():
    assert write_units(1) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(100, transactional=True) == 2
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2
    assert read_units(4097, consistent=False) == 1


class _Model:
    def __init__(self, name: str) -> None:
        self.name = name


class _Events:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def register(self, name: str, handler: Any) -> None:
        self.handlers[name] = handler

    def unregister(self, name: str, handler: Any) -> None:
        self.handlers.pop(name, None)


class _Client:
    def __init__(self) -> None:
        self.meta = type("Meta", (), {"events": _Events()})()


def test_meter_tallies_calls_through_the_botocore_events():
    client = _Client()
    meter = DynamoMeter(client, {"phys-Streams": "StreamsTable"}).attach()
    keep = client.meta.events.handlers["before-parameter-build.dynamodb"]
    tally = client.meta.events.handlers["after-call.dynamodb"]
    item = serialize({"pk": "STREAM#x", "sk": "BATCH#1", "text": "x" * 2000})
    context: dict[str, Any] = {}
    keep(params={"TableName": "phys-Streams", "Item": item}, context=context)
    tally(model=_Model("PutItem"), parsed={}, context=context)
    context = {}
    keep(params={"TableName": "phys-Streams", "ConsistentRead": True}, context=context)
    tally(model=_Model("Query"), parsed={"Items": [item, item, item]}, context=context)
    usage = meter.usage()
    assert usage.write_requests("StreamsTable") == 1
    assert usage.write_units("StreamsTable") == 2  # ~2 KB item
    assert usage.read_requests() == 1
    assert usage.read_units() == 2  # ~6 KB returned, consistent
    meter.reset()
    assert meter.usage().write_requests() == 0
    meter.detach()
    assert not client.meta.events.handlers


def test_meter_prices_projected_reads_as_whole_items():
    meter = DynamoMeter(_Client(), {"c": "ConnectionsTable"}, {"ConnectionsTable": 100})
    items = [{"connectionId": {"S": "x"}}] * 82
    params = {"TableName": "c", "ProjectionExpression": "connectionId"}
    [(_, count, units)] = meter.charges("Query", params, {"Items": items})
    assert count == 82
    assert units == 1.5  # 8,200 bytes: 3 units of 4 KB, eventually consistent


def test_transactions_cost_twice():
    meter = DynamoMeter(_Client())
    params = {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": serialize({"pk": "a"})}},
            {"Put": {"TableName": "t", "Item": serialize({"pk": "b"})}},
        ]
    }
    assert meter.charges("TransactWriteItems", params, {}) == [("t", 2, 4.0)]


# -- baselines -------------------------------------------------------------------------


def test_per_token_replay_writes_each_piece_once_plus_the_lifecycle():
    meter = DynamoMeter(_Client(), {"T": "StreamsTable"})
    usage = baselines.dry_per_token(meter, "T", ["a ", "b. ", "c"])
    # create (one transaction of two items), claim, three appends (each one transaction: the
    # batch and the stream's seq), finish
    assert usage.write_requests() == 1 + 1 + 3 + 1
    assert usage.write_units() == 4 + 1 + 3 * 4 + 1


def test_convex_cut_writes_whenever_a_piece_has_sentence_punctuation():
    pieces = ["Hi", " there.", " How", " are", " you?", " Fine"]
    assert baselines.convex_batches(pieces) == ["Hi there.", " How are you?", " Fine"]
    assert "".join(baselines.convex_batches(pieces)) == "".join(pieces)


def test_fullbody_resends_the_body_so_far():
    batches = ["a" * 100] * 10
    ours = baselines.delta_messages("s", batches)
    full = baselines.fullbody_messages("s", batches)
    assert ours.messages == full.messages == 10
    # The same envelopes; the k-th message carries 100·k bytes of text instead of 100.
    assert full.bytes - ours.bytes == sum(100 * k for k in range(1, 11)) - 1000


def test_min_interval_projection_joins_batches_written_too_soon():
    batches = ["a. ", "b. ", "c. ", "d. "]
    at = [0.0, 0.1, 0.3, 0.35]
    assert baselines.merge_min_interval(batches, at, 0.25) == ["a. ", "b. c. ", "d. "]
    assert baselines.merge_min_interval(batches, at, 0.0) == batches
    assert "".join(baselines.merge_min_interval(batches, at, 10)) == "".join(batches)


def test_messages_are_billed_in_32_kb_increments():
    assert baselines.billed(1) == 1
    assert baselines.billed(32 * 1024) == 1
    assert baselines.billed(32 * 1024 + 1) == 2
    big = baselines.pushed([{"text": "x" * 40_000}])
    assert (big.messages, big.billed_messages) == (1, 2)
    assert big.bytes == len(Connections.encode({"text": "x" * 40_000}))


def test_fullbody_read_units_re_read_the_whole_body_each_time():
    assert baselines.fullbody_read_units(["x" * 100] * 3, 50) == 3.0
    assert baselines.fullbody_read_units(["x" * 3000] * 3, 0) == 1 + 2 + 3


def test_null_and_slow_writes_wrap_a_store(store: StreamStore):
    chat, _ = store.create_chat("p")
    null = baselines.NullWrites(store)
    assert null.claim(chat.stream_id)  # the rest is real
    null.append(chat.stream_id, 1, "lost")
    assert null.finish(chat.stream_id, None, 1)
    assert store.read(chat.stream_id).text == ""
    slow = baselines.SlowWrites(store, 0.0)
    slow.append(chat.stream_id, 1, "kept")
    assert store.read(chat.stream_id).text == "kept"


# -- workload --------------------------------------------------------------------------


def test_workload_prompt_round_trips_and_is_reply_2000():
    workload = Workload(2000, 200)
    assert Workload.from_prompt(workload.prompt) == workload
    assert len(workload.pieces) == 2000
    assert 7000 < workload.reply_bytes < 9000  # reply-2000: ~8 KB
    assert workload.text.startswith(Workload(200, 200).text[:400])
    with pytest.raises(ValueError):
        Workload.from_prompt("tell me a story")


# -- cost model ------------------------------------------------------------------------


def measured(**changes: Any) -> Measured:
    values = {
        "pieces": 2000,
        "batches": 100,
        "reply_bytes": 8000,
        "write_units": 110.0,
        "write_units_per_token": 2010.0,
        "read_units": 10.0,
        "fanout_base_ms": 4.0,
        "fanout_post_ms": 2.0,
        "websocket_ms": 10.0,
        "subscription_write_units": 4.0,
        "subscription_read_units": 1.0,
        "subscription_item_bytes": 100,
        "messages_per_viewer": 102.0,
        "bytes_per_viewer": 16_000.0,
        "per_token_bytes_per_viewer": 150_000.0,
        "fullbody_messages_per_viewer": 102.0,
        "fullbody_bytes_per_viewer": 500_000.0,
        "fullbody_read_units": 300.0,
    }
    return Measured(**{**values, **changes})


PRICES = Prices("us-east-1", "2026-01-01", 1e-5, 2e-7, 1e-6, 2e-7, 1e-6, 2.5e-7, 32768, 0.09)


def test_usage_counts_writes_messages_and_fanout_work():
    ours = design_usage("ours", measured(), viewers=10, tokens_per_second=50)
    assert ours.stream_requests == 2
    assert ours.stream_gb_seconds == pytest.approx(0.5 * 40)
    assert ours.fanout_requests == 100 + 1  # a poll per batch (fewer than 4/s for 40 s), + status
    assert ours.fanout_gb_seconds == pytest.approx(1.769 * (101 * 4 + 101 * 10 * 2) / 1000)
    assert ours.write_units == 110 + 5 + 10 * 4
    assert ours.ws_messages == 10 * (1 + 102)
    assert ours.connection_minutes == 10
    per_token = design_usage("per_token", measured(), viewers=10, tokens_per_second=50)
    assert per_token.fanout_requests == 160 + 1  # bounded by Lambda's 4 polls a second
    assert per_token.ws_messages == 10 * (1 + 102 - 100 + 2000)
    assert per_token.write_units == 2010 + 5 + 40
    assert ours.egress_bytes == 8000 + 10 * 16_000
    full = design_usage("fullbody", measured(), viewers=10, tokens_per_second=50)
    assert full.read_units == ours.read_units + 300
    assert full.egress_bytes == 8000 + 10 * 500_000


def test_cost_adds_up_the_services():
    usage = ReplyUsage("ours", 1, 2, 10, 1, 1, 3, 0, 100, 50, 1_000_000, 4_000_000, 2e9)
    dollars = usage.cost(PRICES)
    assert dollars["transfer"] == pytest.approx(0.18)
    assert dollars["lambda"] == pytest.approx(6 * 2e-7 + 11 * 1e-5)
    assert dollars["dynamodb"] == pytest.approx(100 * 1e-6 + 50 * 2e-7)
    assert dollars["websocket"] == pytest.approx(1.0 + 1.0)
    assert dollars["total"] == pytest.approx(sum(v for k, v in dollars.items() if k != "total"))


def test_prices_file_loads_and_per_token_costs_more():
    prices = Prices.load()
    assert prices.region == "us-east-1" and prices.date
    rows = {(r["design"], r["viewers"]): r for r in cost_table(measured(), prices, (1, 100))}
    for viewers in (1, 100):
        ours = rows[("ours", viewers)]["per_1000_replies"]["total"]
        assert rows[("per_token", viewers)]["per_1000_replies"]["total"] > 3 * ours


# -- report ----------------------------------------------------------------------------


def test_report_replaces_only_between_its_markers():
    text = "intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n"
    new = report.replace_between(text, "results", "new table\n")
    assert new == "intro\n<!-- results:start -->\nnew table\n<!-- results:end -->\noutro\n"
    with pytest.raises(ValueError):
        report.replace_between("no markers", "results", "x")


def test_results_json_has_no_nan():
    cleaned = report._clean({"a": float("nan"), "b": (1.23456, 2)})
    assert json.dumps(cleaned) == '{"a": null, "b": [1.2346, 2]}'


# -- batching replay, fan-out simulation, two-level cost -------------------------------


def test_replay_cuts_the_paced_reply_as_the_batcher_does():
    pieces = Workload(400, 50).pieces
    every = baselines.replay_batcher(pieces, 50, 0.0)
    spaced = baselines.replay_batcher(pieces, 50, 1.0)
    assert "".join(every.batches) == "".join(spaced.batches) == "".join(pieces)
    assert len(spaced.batches) < len(every.batches)
    gaps = [b - a for a, b in zip(spaced.cut_at, spaced.cut_at[1:], strict=False)]
    assert min(gaps[:-1]) >= 1.0 - 1e-9  # the last cut is the end-of-stream flush
    assert len(spaced.waits) == len(pieces) and min(spaced.waits) >= 0


def test_fanout_simulation_runs_the_real_planning_and_posts_everyone():
    from bench.fanout_sim import Aws, lambda_aws, simulate

    fast = Aws(post_latency=0.001, post_cpu=0.0, query_latency=0.0, invoke_latency=0.0)
    two = simulate(45, 10, fast)
    assert (two.workers, two.posts) == (4, 45)
    one = simulate(45, None, fast)
    assert one.workers == 0 and one.ms > 0
    scaled = lambda_aws({"post_cpu_ms": 1.0, "invoke_cpu_ms": 2.0}, memory_mb=1769)
    assert (scaled.post_cpu, scaled.invoke_cpu) == (0.001, 0.002)


def test_two_level_fanout_costs_worker_requests():
    one = design_usage("ours", measured(), viewers=1000, tokens_per_second=50)
    two = design_usage(
        "ours", measured(viewers_per_invocation=250), viewers=1000, tokens_per_second=50
    )
    assert two.fanout_requests == one.fanout_requests * 4  # the fan-out's own slice + 3
    assert two.ws_messages == one.ws_messages
    assert two.read_units == one.read_units  # workers read nothing: the slice is in the event
    small = design_usage("ours", measured(viewers_per_invocation=250), viewers=10)
    assert small.fanout_requests == design_usage("ours", measured(), viewers=10).fanout_requests


def test_cost_table_prices_interval_variants_as_ours():
    rows = cost_table(
        measured(), Prices.load(), (10,), variants={"ours_0.5s": measured(messages_per_viewer=200)}
    )
    by_design = {r["design"]: r for r in rows}
    assert set(by_design) == {"ours", "ours_0.5s", "per_token", "fullbody"}
    assert by_design["ours_0.5s"]["ws_messages"] > by_design["ours"]["ws_messages"]
