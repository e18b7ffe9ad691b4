"""Run every measurement once, in one stack, and write the report (`python -m bench`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import baselines, coldstart, report, scenarios
from bench.clients import LoadProcess
from bench.cost import Measured, Prices, cost_table
from bench.harness import BenchStack, FanoutProbe, time_websocket_function
from bench.metering import DynamoMeter, item_size
from bench.stats import median
from bench.workload import Workload
from pts.storage import serialize

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plan:
    """How much to measure. The default fits well within 15 minutes on two cores."""

    runs: int = 3
    tokens: int = 2000
    rate: float = 200.0
    viewer_runs: dict[int, int] = field(default_factory=lambda: {1: 3, 100: 2})
    headline_viewers: int = 1
    """Whose bytes and lag are the headline: one viewer, so that the local fan-out (which
    shares the driver's two cores) does not slow the writes and so merge batches."""
    many_viewers: int = 1000
    many_viewers_tokens: int = 300
    fanout_trials: int = 3
    streams: int = 50
    viewers_per_stream: int = 1
    growth: tuple[int, ...] = (1, 4, 10)
    growth_rate: float = 1000.0
    coldstart: bool = True

    @classmethod
    def quick(cls) -> Plan:
        """A smoke run (about a minute): every measurement, small."""
        return cls(
            runs=1,
            tokens=400,
            viewer_runs={1: 1, 10: 1},
            many_viewers=50,
            many_viewers_tokens=100,
            fanout_trials=2,
            streams=5,
            growth=(1, 2),
            coldstart=False,
        )


def subscription_item_bytes() -> int:
    """Size of one subscription item (a 16-character API Gateway connection id)."""
    stream_id, connection_id = "s" * 22, "LZ1xLcjYoAMCJjQ="
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
    stack = BenchStack().start()
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
        viewers = {}
        for count, runs in plan.viewer_runs.items():
            websocket_durations.clear()
            viewers.update(scenarios.measure_viewers(bench, {count: (runs, workload)}))
            viewers[str(count)]["websocket_function_ms"] = median(websocket_durations) * 1000
        # The WebSocket function's time with one viewer: with a hundred subscribing at once,
        # local sandboxes (at most `StackOptions.max_sandboxes`) share two cores, which
        # Lambda's instances do not.
        websocket_ms = viewers[str(plan.headline_viewers)]["websocket_function_ms"]
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
        )
        viewers[str(plan.many_viewers)] = many["lag"]
        logger.info("%d viewers done at %.0f s", plan.many_viewers, time.monotonic() - started)
        overhead = scenarios.batch_item_overhead(bench)
    finally:
        load.close()
        stack.stop()
    cold = coldstart.measure(3) if plan.coldstart else {}
    return {
        "plan": asdict(plan),
        "workload": {
            "tokens": workload.tokens,
            "tokens_per_second": workload.rate,
            "reply_bytes": workload.reply_bytes,
            "seed": workload.seed,
        },
        "driver": driver,
        "per_token": per_token,
        "viewers": viewers,
        "fanout": many["fanout"],
        "fanout_base_ms": fanout_base_ms,
        "websocket_ms": websocket_ms,
        "subscription_item_bytes": sub_bytes,
        "batch_item_overhead_bytes": overhead,
        "concurrency": concurrency,
        "growth": growth,
        "coldstart": cold,
        "seconds": time.monotonic() - started,
    }


def model_inputs(raw: dict[str, Any], headline_viewers: int) -> Measured:
    """The cost model's inputs, all from this run."""
    driver = raw["driver"]
    persisted = driver["persisted"]["dynamodb_per_run"]
    watched = raw["viewers"][str(headline_viewers)]
    ddb = watched["dynamodb"]
    batches = driver["batch_texts"]
    fullbody = baselines.fullbody_messages("s" * 22, batches) + baselines.envelope(
        "s" * 22, len(batches)
    )
    extra_reads = ddb["read_units"] - median(r["read_units"] for r in persisted)
    pieces = Workload(raw["workload"]["tokens"], raw["workload"]["tokens_per_second"]).pieces
    per_token = baselines.delta_messages("s" * 22, pieces) + baselines.envelope(
        "s" * 22, len(pieces)
    )
    return Measured(
        pieces=raw["workload"]["tokens"],
        batches=len(batches),
        reply_bytes=raw["workload"]["reply_bytes"],
        write_units=median(r["write_units"] for r in persisted),
        write_units_per_token=raw["per_token"]["write_units"],
        read_units=median(r["read_units"] for r in persisted),
        fanout_base_ms=raw["fanout_base_ms"],
        fanout_post_ms=max(0.0, raw["fanout"]["handler_ms"] - raw["fanout_base_ms"])
        / raw["fanout"]["viewers"],
        websocket_ms=raw["websocket_ms"],
        # Subscribe (a put) and disconnect (a delete), each also in the ByConnection index.
        subscription_write_units=2 * ddb["connections_write_requests"] / headline_viewers,
        subscription_read_units=max(0.0, extra_reads) / headline_viewers
        + ddb["connections_index_read_units"] / headline_viewers,
        subscription_item_bytes=raw["subscription_item_bytes"],
        messages_per_viewer=watched["messages_per_viewer"],
        bytes_per_viewer=watched["bytes_per_viewer"],
        per_token_bytes_per_viewer=per_token.bytes,
        fullbody_messages_per_viewer=fullbody.billed_messages,
        fullbody_bytes_per_viewer=fullbody.bytes,
        fullbody_read_units=baselines.fullbody_read_units(
            batches, raw["batch_item_overhead_bytes"]
        ),
    )


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
        "--render",
        action="store_true",
        help="measure nothing: redraw the charts and the docs' tables from docs/bench",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    docs_out = ROOT / "docs" / "bench"
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
    prices = Prices.load()
    inputs = model_inputs(raw, headline)
    raw["cost_model"] = {
        "inputs": asdict(inputs),
        "prices": asdict(prices),
        "rows": cost_table(inputs, prices),
    }
    results = report.assemble(raw, headline)
    out = args.out or (ROOT / "build" / "bench" if args.quick else docs_out)
    report.write(results, out, docs=ROOT / "docs" if out.resolve() == docs_out else None)
    print(report.table(results))
    return 0
