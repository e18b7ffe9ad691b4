"""Run every measurement once, in one stack, and write the report (`python -m bench`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import baselines, coldstart, fanout_sim, report, scenarios
from bench.clients import LoadProcess
from bench.cost import Measured, Prices, cost_table
from bench.harness import BenchStack, FanoutProbe, time_websocket_function
from bench.metering import DynamoMeter, item_size
from bench.stats import median, percentile
from bench.workload import Workload
from pts.model import new_id
from pts.storage import serialize

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
STREAM_ID = "s" * len(new_id())
"""A stream id of the real length: the envelope of every message carries one."""


@dataclass(frozen=True)
class Plan:
    """How much to measure. The default fits well within 15 minutes on two cores."""

    runs: int = 3
    tokens: int = 2000
    rate: float = 200.0
    """The driver's pace (its latency against HTTP-only), and that of the viewer runs."""
    batch_min_interval: float = 1.25
    """`PTS_BATCH_MIN_INTERVAL_SECONDS` of the measured stack: the interval that meets the
    goals (docs/benchmarks.md says why; the replay covers the others, 0.5 s included)."""
    paced: dict[float, int] = field(default_factory=lambda: {50.0: 2, 200.0: 3})
    """Tokens per second → runs with one viewer: the headline figures at each pace."""
    viewer_runs: dict[int, int] = field(default_factory=lambda: {100: 1})
    headline_viewers: int = 1
    """Whose bytes and lag are the headline: one viewer, so that the local fan-out (which
    shares the driver's two cores) does not slow the writes and so merge batches."""
    headline_rate: float = 50.0
    many_viewers: int = 1000
    many_viewers_tokens: int = 300
    fanout_trials: int = 3
    fanout_post_delay: float = 0.020
    """Injected into every local `@connections` post for the AWS-like fan-out figure."""
    viewers_per_invocation: int = 250
    streams: int = 50
    viewers_per_stream: int = 1
    growth: tuple[int, ...] = (1, 4, 10)
    growth_rate: float = 1000.0
    simulated: tuple[int, ...] = (1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
    simulated_one_level_up_to: int = 10_000
    replay_intervals: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    coldstart: bool = True

    @classmethod
    def quick(cls) -> Plan:
        """A smoke run (about two minutes): every measurement, small."""
        return cls(
            runs=1,
            tokens=400,
            paced={50.0: 1, 200.0: 1},
            viewer_runs={10: 1},
            many_viewers=50,
            many_viewers_tokens=100,
            fanout_trials=2,
            viewers_per_invocation=20,
            streams=5,
            growth=(1, 2),
            simulated=(1000, 10_000),
            simulated_one_level_up_to=1000,
            replay_intervals=(0.0, 0.5, 1.25),
            coldstart=False,
        )


def subscription_item_bytes() -> int:
    """Size of one subscription item (a 16-character API Gateway connection id)."""
    stream_id, connection_id = STREAM_ID, "LZ1xLcjYoAMCJjQ="
    item = {
        "pk": f"STREAM#{stream_id}",
        "sk": f"CONN#{connection_id}",
        "connectionId": connection_id,
        "streamId": stream_id,
        "ttl": int(time.time()),
    }
    return item_size(serialize(item))


def measure(plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    workload = Workload(plan.tokens, plan.rate)
    stack = BenchStack(
        {
            "PTS_BATCH_MIN_INTERVAL_SECONDS": f"{plan.batch_min_interval:g}",
            "PTS_FANOUT_VIEWERS_PER_INVOCATION": str(plan.viewers_per_invocation),
        }
    ).start()
    load = LoadProcess()
    sub_bytes = subscription_item_bytes()
    try:
        assert stack.stack is not None
        meter = DynamoMeter(tables=stack.tables, full_item_bytes={"ConnectionsTable": sub_bytes})
        stack.stack.dynamodb.observe(meter.record)
        probe = FanoutProbe().attach(stack.stack)
        websocket_durations = time_websocket_function(stack.stack)
        bench = scenarios.Bench(stack, load, meter, probe, workload, plan.runs)
        bench.apps = {
            "persisted": stack.http_url,
            "http_only": stack.serve_app(baselines.NullWrites(stack.store())),
            "persisted_slow_writes": stack.serve_app(baselines.SlowWrites(stack.store(), 0.05)),
        }
        logger.info("stack up in %.1f s; warming up", time.monotonic() - started)
        scenarios.warm_up(bench)
        probe.invocations.clear()
        driver = scenarios.measure_driver(bench)
        fanout_base_ms = median(
            (i.ended - i.started) * 1000 for i in probe.invocations if i.batches
        )
        per_token = scenarios.measure_per_token(bench)
        logger.info("driver and writes done at %.0f s", time.monotonic() - started)
        paced: dict[str, Any] = {}
        for rate, runs in plan.paced.items():
            websocket_durations.clear()
            one = Workload(plan.tokens, rate)
            paced[f"{rate:g}"] = scenarios.measure_viewers(bench, {1: (runs, one)})["1"]
            paced[f"{rate:g}"]["websocket_function_ms"] = median(websocket_durations) * 1000
            logger.info("%g tokens/s done at %.0f s", rate, time.monotonic() - started)
        viewers = {"1": paced[f"{plan.rate:g}"]} if f"{plan.rate:g}" in paced else {}
        for count, runs in plan.viewer_runs.items():
            websocket_durations.clear()
            viewers.update(scenarios.measure_viewers(bench, {count: (runs, workload)}))
            viewers[str(count)]["websocket_function_ms"] = median(websocket_durations) * 1000
        # The WebSocket function's time with one viewer: with a hundred subscribing at once,
        # local sandboxes (at most `StackOptions.max_sandboxes`) share two cores, which
        # Lambda's instances do not.
        websocket_ms = paced[f"{plan.headline_rate:g}"]["websocket_function_ms"]
        logger.info("viewers done at %.0f s", time.monotonic() - started)
        concurrency = scenarios.measure_concurrency(bench, plan.streams, plan.viewers_per_stream)
        logger.info("concurrency done at %.0f s", time.monotonic() - started)
        growth = scenarios.measure_growth(bench, plan.growth, plan.growth_rate)
        logger.info("growth done at %.0f s", time.monotonic() - started)
        # Last: a thousand viewers take a while to disconnect, and nothing else follows.
        many = scenarios.measure_many_viewers(
            bench,
            plan.many_viewers,
            plan.fanout_trials,
            Workload(plan.many_viewers_tokens, plan.rate),
            post_delays=(0.0, plan.fanout_post_delay),
        )
        viewers[str(plan.many_viewers)] = many["lag"]
        logger.info("%d viewers done at %.0f s", plan.many_viewers, time.monotonic() - started)
        overhead = scenarios.batch_item_overhead(bench)
        costs = scenarios.call_costs(bench)
    finally:
        load.close()
        stack.stop()
    # With the stack down: the simulation has the machine to itself.
    aws = fanout_sim.lambda_aws(
        costs, post_latency=plan.fanout_post_delay, memory_mb=fanout_sim.template_memory_mb()
    )
    simulated = fanout_sim.sweep(
        plan.simulated, plan.viewers_per_invocation, aws, plan.simulated_one_level_up_to
    )
    logger.info("fan-out simulation done at %.0f s", time.monotonic() - started)
    replay = replay_sweep(plan)
    cold = coldstart.measure(3) if plan.coldstart else {}
    return {
        "plan": asdict(plan),
        "workload": {
            "tokens": workload.tokens,
            "tokens_per_second": workload.rate,
            "reply_bytes": workload.reply_bytes,
            "seed": workload.seed,
        },
        "batch_min_interval_seconds": plan.batch_min_interval,
        "driver": driver,
        "per_token": per_token,
        "paced": paced,
        "viewers": viewers,
        "fanout": many["fanout"],
        "fanout_base_ms": fanout_base_ms,
        "websocket_ms": websocket_ms,
        "subscription_item_bytes": sub_bytes,
        "batch_item_overhead_bytes": overhead,
        "concurrency": concurrency,
        "growth": growth,
        "call_costs": costs,
        "simulated_fanout": simulated,
        "replay": replay,
        "coldstart": cold,
        "seconds": time.monotonic() - started,
    }


def replay_sweep(plan: Plan) -> dict[str, Any]:
    """The batching rule replayed on the workload at each pace and interval (no stack):
    batches, messages and bytes per viewer, and how long a piece waits for its batch."""
    pieces = Workload(plan.tokens, plan.rate).pieces
    reply = len("".join(pieces).encode())
    out: dict[str, Any] = {}
    for rate in plan.paced:
        rows = []
        for interval in plan.replay_intervals:
            cut = baselines.replay_batcher(pieces, rate, interval)
            sent = baselines.delta_messages(STREAM_ID, cut.batches) + baselines.envelope(
                STREAM_ID, len(cut.batches)
            )
            waits = [w * 1000 for w in cut.waits]
            rows.append(
                {
                    "min_interval": interval,
                    "batches": len(cut.batches),
                    "messages_per_viewer": sent.messages,
                    "bytes_per_viewer": sent.bytes,
                    "bytes_per_viewer_vs_reply": sent.bytes / reply,
                    "wait_p50_ms": percentile(waits, 50),
                    "wait_p99_ms": percentile(waits, 99),
                    "wait_max_ms": max(waits),
                }
            )
        out[f"{rate:g}"] = rows
    return out


def model_inputs(raw: dict[str, Any], headline_viewers: int) -> Measured:
    """The cost model's inputs, all from this run: the reply at 50 tokens/s (a typical
    hosted model) with one viewer, and the fan-out's cost per post from the simulation."""
    watched = raw["paced"]["50"]
    ddb = watched["dynamodb"]
    pieces = Workload(raw["workload"]["tokens"], 50).pieces
    per_token = baselines.delta_messages(STREAM_ID, pieces) + baselines.envelope(
        STREAM_ID, len(pieces)
    )
    simulated = raw["simulated_fanout"]
    # A worker's time per post, AWS-like latency and Lambda's CPU share included: the median
    # over the simulated audiences (a full slice each).
    post_ms = median(
        row["slowest_worker_ms"] / simulated["per_invocation"]
        for row in simulated["rows"]
        if row["workers"]
    )
    if "batch_texts" in watched:
        batches = watched["batch_texts"]
        fullbody_read_units = baselines.fullbody_read_units(
            batches, raw["batch_item_overhead_bytes"]
        )
    else:  # --recost: results.json keeps the figure, not the texts
        fullbody_read_units = raw["cost_model"]["inputs"]["fullbody_read_units"]
    snapshot_read_units = 1.0  # a pending stream's snapshot: one consistent read < 4 KB
    return Measured(
        pieces=raw["workload"]["tokens"],
        batches=int(watched["batches"]),
        reply_bytes=raw["workload"]["reply_bytes"],
        write_units=ddb["write_units"],
        write_units_per_token=raw["per_token"]["write_units"],
        read_units=ddb["read_units"] - snapshot_read_units,
        fanout_base_ms=raw["fanout_base_ms"],
        fanout_post_ms=post_ms,
        websocket_ms=raw["websocket_ms"],
        # Subscribe (a put) and disconnect (a delete), each also in the ByConnection index.
        subscription_write_units=2 * ddb["connections_write_requests"] / headline_viewers,
        subscription_read_units=snapshot_read_units
        + ddb["connections_index_read_units"] / headline_viewers,
        subscription_item_bytes=raw["subscription_item_bytes"],
        messages_per_viewer=watched["messages_per_viewer"],
        bytes_per_viewer=watched["bytes_per_viewer"],
        per_token_bytes_per_viewer=per_token.bytes,
        fullbody_messages_per_viewer=watched["billed_messages_per_viewer_fullbody_baseline"],
        fullbody_bytes_per_viewer=watched["bytes_per_viewer_fullbody_baseline"],
        fullbody_read_units=fullbody_read_units,
        viewers_per_invocation=simulated["per_invocation"],
    )


def cost_model(raw: dict[str, Any], headline_viewers: int) -> dict[str, Any]:
    prices = Prices.load()
    inputs = model_inputs(raw, headline_viewers)
    variants = interval_variants(raw, inputs)
    return {
        "inputs": asdict(inputs),
        "variants": {name: asdict(v) for name, v in variants.items()},
        "prices": asdict(prices),
        "rows": cost_table(inputs, prices, variants=variants),
    }


def interval_variants(raw: dict[str, Any], m: Measured) -> dict[str, Measured]:
    """ "Ours" at the other replayed intervals that matter (the default, 0.5 s; and 0, a
    batch per sentence), from the replay at 50 tokens/s: fewer or more batches, each one
    write unit (their items are well under 1 KB) and one message per viewer."""
    out = {}
    rows = {row["min_interval"]: row for row in raw["replay"].get("50", [])}
    for interval in (0.5, 0.0):
        row = rows.get(interval)
        if row is None or interval == raw["batch_min_interval_seconds"]:
            continue
        more = row["batches"] - m.batches
        out[f"ours_{interval:g}s"] = replace(
            m,
            batches=row["batches"],
            write_units=m.write_units + more,
            messages_per_viewer=row["messages_per_viewer"],
            bytes_per_viewer=row["bytes_per_viewer"],
        )
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run, not a report")
    parser.add_argument("--runs", type=int, help="runs per driver variant (default 3)")
    parser.add_argument("--no-coldstart", action="store_true", help="skip sam build")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results.json and the charts go; the docs' tables are rewritten only "
        "for the default, docs/bench",
    )
    parser.add_argument(
        "--recost",
        action="store_true",
        help="measure nothing: recompute the cost model from docs/bench/results.json, then render",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: redraw the charts and the docs' tables from docs/bench",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    docs_out = ROOT / "docs" / "bench"
    if args.recost:
        results = json.loads((docs_out / "results.json").read_text())
        results["details"]["cost_model"] = cost_model(results["details"], results["viewers"])
        report.write(results, docs_out, docs=ROOT / "docs")
        print(report.cost_markdown(results))
        return 0
    if args.render:
        results = json.loads((docs_out / "results.json").read_text())
        report.write(results, docs_out, docs=ROOT / "docs")
        print(report.table(results))
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s bench: %(message)s", stream=sys.stderr
    )
    for noisy in ("pts", "botocore", "urllib3", "uvicorn", "websockets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = Plan.quick() if args.quick else Plan()
    overrides: dict[str, Any] = {}
    if args.runs:
        overrides["runs"] = args.runs
    if args.no_coldstart:
        overrides["coldstart"] = False
    if overrides:
        plan = Plan(**{**asdict(plan), **overrides})
    raw = measure(plan)
    headline = plan.headline_viewers
    raw["cost_model"] = cost_model(raw, headline)
    results = report.assemble(raw, headline)
    out = args.out or (ROOT / "build" / "bench" if args.quick else docs_out)
    report.write(results, out, docs=ROOT / "docs" if out.resolve() == docs_out else None)
    print(report.table(results))
    return 0
