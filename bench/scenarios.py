"""The measurements, each with its baseline, on one running stack.

Each function takes a `Bench` (the stack, the load process, the meter, the workload) and
returns plain numbers for `docs/bench/results.json`. Runs of a measurement are interleaved
with their baseline's runs, and repeated; figures are medians over runs (counts) or pooled
percentiles over every piece of every run (latencies).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import baselines
from bench.clients import Drive, LoadProcess, LoadResult, ViewerResult, Watch
from bench.harness import BenchStack, FanoutProbe
from bench.metering import DynamoMeter, Usage, item_size
from bench.stats import delivery_lags, median, percentile, ratio
from bench.workload import TIMELINE, Workload
from pts.config import Settings
from pts.connections import Connections
from pts.model import new_id
from pts.storage import deserialize, serialize
from pts.subscriptions import SubscriptionStore

logger = logging.getLogger("bench")


@dataclass
class Bench:
    stack: BenchStack
    load: LoadProcess
    meter: DynamoMeter
    probe: FanoutProbe
    workload: Workload
    runs: int = 3
    apps: dict[str, str] = field(default_factory=dict)
    """Driver variant → base URL of the app serving it."""


# -- helpers ---------------------------------------------------------------------------


def new_chat(url: str, workload: Workload) -> tuple[str, str]:
    """POST /chats for `workload`: (streamId, driveToken)."""
    response = httpx.post(f"{url}/chats", json={"prompt": workload.prompt}, timeout=30)
    response.raise_for_status()
    body = response.json()
    return body["streamId"], body["driveToken"]


def stored_batches(bench: Bench, stream_id: str) -> list[dict[str, Any]]:
    """The stream's batch items, in order (read outside any metered window)."""
    store = bench.stack.store()
    pages = store.client.get_paginator("query").paginate(
        TableName=store.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
        ExpressionAttributeValues=serialize({":pk": f"STREAM#{stream_id}", ":b": "BATCH#"}),
        ConsistentRead=True,
    )
    return [deserialize(i) for page in pages for i in page["Items"]]


def forget(bench: Bench, stream_id: str) -> None:
    """Delete a measured stream's chat, stream and batches (outside any metered window).

    moto answers every Query by scanning the whole table, and serves one request at a time:
    a table that kept every reply of the run would slow each later measurement down.
    """
    store = bench.stack.store()
    stream = store.get_stream(stream_id)
    chat = store.get_chat(stream.chat_id) if stream and stream.chat_id else None
    if chat is not None:
        store.delete_chat(chat)


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def lag_summary(lags_ms: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(lags_ms, 50),
        "p90": percentile(lags_ms, 90),
        "p99": percentile(lags_ms, 99),
        "max": max(lags_ms) if lags_ms else float("nan"),
        "samples": len(lags_ms),
    }


def writes_of(usage: Usage) -> dict[str, float]:
    return {
        "write_requests": usage.write_requests("StreamsTable"),
        "write_units": usage.write_units("StreamsTable"),
        "read_requests": usage.read_requests("StreamsTable"),
        "read_units": usage.read_units("StreamsTable"),
        "connections_write_requests": usage.write_requests("ConnectionsTable"),
        "connections_read_requests": usage.read_requests("ConnectionsTable"),
        "connections_read_units": usage.read_units("ConnectionsTable"),
        "connections_index_read_units": usage.read_units("ConnectionsTable/ByConnection"),
    }


def check_texts(workload: Workload, load: LoadResult) -> list[str]:
    """Every text that differs from the workload's (HTTP bodies and viewers); [] if none."""
    wrong = [f"HTTP {d.stream_id}" for d in load.drives if d.text != workload.text]
    wrong += [f"viewer of {v.stream_id}" for v in load.viewers if v.text != workload.text]
    return wrong


# -- warm-up ---------------------------------------------------------------------------


def warm_up(bench: Bench) -> None:
    """One short stream through every app: first-call costs (botocore models, imports)."""
    short = Workload(200, bench.workload.rate, bench.workload.seed)
    for variant, url in bench.apps.items():
        stream_id, token = new_chat(url, short)
        # Only a persisted stream ever ends for its viewers (HTTP-only stores no status).
        watches = [Watch(bench.stack.ws_url, (stream_id,), 2)] if variant == "persisted" else []
        bench.load.run([Drive(url, stream_id, token)], watches)
        forget(bench, stream_id)


# -- writes and driver overhead --------------------------------------------------------


DRIVER_VARIANTS = {
    # variant: (app, fan-out running meanwhile: its own processes, the same cores)
    "http_only": ("http_only", False),
    "persisted": ("persisted", False),
    "persisted_slow_writes": ("persisted_slow_writes", False),
    "persisted_fanout_in_process": ("persisted", True),
}


def drive_once(bench: Bench, variant: str) -> dict[str, Any]:
    """One reply through `variant`, no viewers: per-piece latency and DynamoDB usage."""
    app, fanout = DRIVER_VARIANTS[variant]
    url = bench.apps[app]
    if fanout:
        bench.stack.resume_fanout()
    bench.meter.reset()
    stream_id, token = new_chat(url, bench.workload)
    try:
        load = bench.load.run([Drive(url, stream_id, token)], [])
    finally:
        usage = bench.meter.usage()
        if fanout:
            bench.stack.pause_fanout()
    drive = load.drives[0]
    if drive.status != 200 or drive.text != bench.workload.text:
        raise AssertionError(f"{variant}: HTTP {drive.status}, text differs from the workload")
    emitted = TIMELINE.of(stream_id)
    lags = ms(delivery_lags(emitted, drive.arrivals))
    persisted = app != "http_only"
    batches = stored_batches(bench, stream_id) if persisted else []
    if persisted and "".join(b["text"] for b in batches) != bench.workload.text:
        raise AssertionError(f"{variant}: the persisted text differs from the workload")
    forget(bench, stream_id)
    return {
        "lags": lags,
        "usage": usage,
        "batches": [b["text"] for b in batches],
        # How long the response outlives the last piece: the final writes.
        "tail_ms": (drive.ended - emitted[-1][1]) * 1000,
    }


def measure_driver(bench: Bench) -> dict[str, Any]:
    """Per-chunk latency with persistence, HTTP-only, with 50 ms per write, and with the
    fan-out sharing the process (a local-only handicap); DynamoDB use per reply."""
    variants = tuple(DRIVER_VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    bench.stack.pause_fanout()
    try:
        for i in range(bench.runs):
            order = variants if i % 2 == 0 else tuple(reversed(variants))
            for variant in order:
                runs[variant].append(drive_once(bench, variant))
                logger.info("driver %s run %d done", variant, i + 1)
    finally:
        bench.stack.resume_fanout()
    out: dict[str, Any] = {}
    for variant, results in runs.items():
        pooled = [lag for r in results for lag in r["lags"]]
        out[variant] = {
            "latency_ms": lag_summary(pooled),
            "p99_ms_per_run": [percentile(r["lags"], 99) for r in results],
            "p50_ms_per_run": [percentile(r["lags"], 50) for r in results],
            "tail_ms": median(r["tail_ms"] for r in results),
            "batches_per_run": [len(r["batches"]) for r in results],
            "dynamodb_per_run": [writes_of(r["usage"]) for r in results],
        }
    persisted = runs["persisted"]
    out["batch_texts"] = persisted[len(persisted) // 2]["batches"]  # for the baselines
    http_only = [lag for r in runs["http_only"] for lag in r["lags"]]
    for variant in variants[1:]:
        pooled = [lag for r in runs[variant] for lag in r["lags"]]
        out[variant]["p99_vs_http_only"] = ratio(
            out[variant]["latency_ms"]["p99"], out["http_only"]["latency_ms"]["p99"]
        )
        out[variant]["p99_vs_http_only_ci95"] = bootstrap_ratio_ci(pooled, http_only)
    return out


def bootstrap_ratio_ci(
    values: list[float], baseline: list[float], resamples: int = 400, seed: int = 7
) -> list[float]:
    """95% bootstrap interval of p99(values) / p99(baseline)."""
    import random

    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        a = rng.choices(values, k=len(values))
        b = rng.choices(baseline, k=len(baseline))
        ratios.append(ratio(percentile(a, 99), percentile(b, 99)))
    return [percentile(ratios, 2.5), percentile(ratios, 97.5)]


def measure_per_token(bench: Bench, check_pieces: int = 200) -> dict[str, Any]:
    """The per-token baseline's writes for the workload: the `StreamStore` calls a per-token
    persister makes, counted by the meter's own arithmetic without a server. The first
    `check_pieces` are also issued against moto through the metered client, and must count
    the same (moto would add only time: about 10 ms a write here)."""
    table = bench.stack.store().table
    pieces = bench.workload.pieces
    dry = baselines.dry_per_token(bench.meter, table, pieces)
    bench.meter.reset()
    stream_id = baselines.replay_per_token(bench.stack.store(), pieces[:check_pieces])
    measured = bench.meter.usage()
    forget(bench, stream_id)
    check = baselines.dry_per_token(bench.meter, table, pieces[:check_pieces])
    if (check.write_requests(), check.write_units()) != (
        measured.write_requests("StreamsTable"),
        measured.write_units("StreamsTable"),
    ):
        raise AssertionError("the per-token count differs from what moto was sent")
    return {
        "write_requests": dry.write_requests(),
        "write_units": dry.write_units(),
        "checked_against_moto_pieces": check_pieces,
    }


# -- viewers ---------------------------------------------------------------------------


def watch_once(bench: Bench, viewers: int, workload: Workload) -> dict[str, Any]:
    """One reply with `viewers` viewers: lag, bytes and messages per viewer, exact texts."""
    bench.meter.reset()
    stream_id, token = new_chat(bench.stack.http_url, workload)
    load = bench.load.run(
        [Drive(bench.stack.http_url, stream_id, token)],
        [Watch(bench.stack.ws_url, (stream_id,), viewers)],
        timeout=900,
    )
    usage = bench.meter.usage()
    wait_for(lambda: not subscribers(stream_id), 300, every=0.5)  # disconnects done
    wrong = check_texts(workload, load)
    emitted = TIMELINE.of(stream_id)
    lags = [lag for v in load.viewers for lag in ms(delivery_lags(emitted, v.received))]
    batches = stored_batches(bench, stream_id)
    texts = [b["text"] for b in batches]
    forget(bench, stream_id)
    return {
        "stream_id": stream_id,
        "lags": lags,
        "wrong_texts": len(wrong),
        "viewers": load.viewers,
        "batches": texts,
        "written_at": [float(b["writtenAt"]) / 1000 for b in batches],
        "usage": usage,
        "seconds": load.finished - load.drive_started,
        "emitted": emitted,
    }


def per_viewer(viewers: list[ViewerResult]) -> dict[str, float]:
    return {
        "bytes": statistics.median(v.wire_bytes for v in viewers),
        "messages": statistics.median(v.messages for v in viewers),
        "resubscribes": sum(v.resubscribes for v in viewers),
    }


def measure_viewers(bench: Bench, counts: dict[int, tuple[int, Workload]]) -> dict[str, Any]:
    """For each viewer count: lag p50/p99 (pooled over runs), bytes and messages per viewer,
    against the full-body re-send of the very batches each run wrote."""
    out: dict[str, Any] = {}
    for viewers, (runs, workload) in counts.items():
        results = []
        for i in range(runs):
            results.append(watch_once(bench, viewers, workload))
            logger.info("%d viewers run %d done", viewers, i + 1)
        pooled = [lag for r in results for lag in r["lags"]]
        stages = [lag_stages(r) for r in results]
        fullbody = [
            baselines.fullbody_messages(r["stream_id"], r["batches"])
            + baselines.envelope(r["stream_id"], len(r["batches"]))
            for r in results
        ]
        ours = [per_viewer(r["viewers"]) for r in results]
        # The same messages counted from the batches written: a check on the measurement.
        computed = [
            baselines.delta_messages(r["stream_id"], r["batches"])
            + baselines.envelope(r["stream_id"], len(r["batches"]))
            for r in results
        ]
        out[str(viewers)] = {
            "tokens": workload.tokens,
            "reply_bytes": workload.reply_bytes,
            "runs": runs,
            "lag_ms": lag_summary(pooled),
            "lag_ms_percentiles": [percentile(pooled, p) for p in range(101)],
            "emit_to_write_ms": lag_summary([x for s in stages for x in s[0]]),
            "write_to_viewer_ms": lag_summary([x for s in stages for x in s[1]]),
            "bytes_per_viewer": median(o["bytes"] for o in ours),
            "bytes_per_viewer_counted_from_batches": median(c.bytes for c in computed),
            "messages_per_viewer": median(o["messages"] for o in ours),
            "bytes_per_viewer_fullbody_baseline": median(f.bytes for f in fullbody),
            "messages_per_viewer_fullbody_baseline": median(f.messages for f in fullbody),
            "billed_messages_per_viewer_fullbody_baseline": median(
                f.billed_messages for f in fullbody
            ),
            "batches": median(len(r["batches"]) for r in results),
            "batch_texts": results[len(results) // 2]["batches"],  # for the cost model
            "wrong_texts": sum(r["wrong_texts"] for r in results),
            "resubscribes": sum(o["resubscribes"] for o in ours),
            "delivery_seconds": median(r["seconds"] for r in results),
            "dynamodb": writes_of(results[len(results) // 2]["usage"]),
            "projection_min_interval": projection(results[len(results) // 2]),
        }
    return out


def projection(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """What batches at least 0.25/0.5/1 s apart would have made of this run (not measured)."""
    out = {}
    reply = sum(len(t.encode()) for t in run["batches"])
    for interval in (0.25, 0.5, 1.0):
        merged = baselines.merge_min_interval(run["batches"], run["written_at"], interval)
        pushed = baselines.delta_messages(run["stream_id"], merged) + baselines.envelope(
            run["stream_id"], len(merged)
        )
        out[f"{interval:g}s"] = {
            "batches": len(merged),
            "bytes_per_viewer": pushed.bytes,
            "bytes_per_viewer_vs_reply": pushed.bytes / reply,
            "messages_per_viewer": pushed.messages,
        }
    return out


def lag_stages(run: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Split the lag: piece → its batch written (writtenAt), batch written → each viewer."""
    offset = time.time() - time.monotonic()
    ends, end = [], 0
    for text, written in zip(run["batches"], run["written_at"], strict=True):
        end += len(text.encode())
        ends.append((end, written - offset))
    to_write = ms(delivery_lags(run["emitted"], ends))
    to_viewer = []
    for viewer in run["viewers"]:
        arrivals = dict(viewer.received)
        to_viewer += [(arrivals[e] - w) * 1000 for e, w in ends if e in arrivals]
    return to_write, to_viewer


# -- a thousand viewers ---------------------------------------------------------------


def measure_many_viewers(
    bench: Bench,
    viewers: int,
    trials: int,
    workload: Workload,
    post_delays: tuple[float, ...] = (0.0,),
) -> dict[str, Any]:
    """`viewers` viewers on one stream: the viewer lag while it is driven, then the fan-out
    time of `trials` single batches written past its end, one at a time (from the fan-out
    invocation's start to the last viewer having the batch), for each of `post_delays`
    injected into every `@connections` post (the first is the headline)."""
    stream_id, token = new_chat(bench.stack.http_url, workload)
    # One untimed batch first: it starts the workers' execution environments (cold starts
    # are no part of a batch's fan-out once a stream is under way).
    rounds = 1 + trials * len(post_delays)
    watch = Watch(bench.stack.ws_url, (stream_id,), viewers, extra=rounds)
    connect_started = time.monotonic()
    future = bench.load.submit([], [watch], timeout=900)
    wait_for(lambda: subscribers(stream_id) >= viewers, 600, future, every=0.5)
    connect_seconds = time.monotonic() - connect_started
    bench.meter.reset()
    body = drive_here(bench.stack.http_url, stream_id, token)
    usage = bench.meter.usage()
    batches = [b["text"] for b in stored_batches(bench, stream_id)]
    # Let the reply's own fan-out finish, so each trial has the fan-out to itself.
    wait_for(lambda: bench.probe.started(stream_id, len(batches)) is not None, 600, future)
    time.sleep(1.0)
    store = bench.stack.store()
    text = "The quick brown fox jumps over the lazy dog. "
    written: list[float] = []
    management = bench.stack.management()
    workers_before = len(bench.probe.worker_invocations)
    try:
        for delay in (0.0, *post_delays):
            management.post_delay = delay
            for _ in range(trials if written else 1):
                seq = len(batches) + len(written) + 1
                store.append(stream_id, seq, text)
                written.append(time.monotonic())
                # The probe records an invocation once it has returned.
                wait_for(
                    lambda seq=seq: bench.probe.started(stream_id, seq) is not None, 120, future
                )
                time.sleep(0.5 + 2 * delay * viewers / 32)  # the workers' posts, too
    finally:
        management.post_delay = 0.0
    load = future.result(960)
    times, handler, end_to_end = [], [], []
    for k in range(2, rounds + 1):
        seq = len(batches) + k
        invocation = next(i for i in bench.probe.invocations if (stream_id, seq) in i.batches)
        held = workload.reply_bytes + len(text.encode()) * k
        last = max(next(t for b, t in v.received if b >= held) for v in load.viewers)
        times.append((last - invocation.started) * 1000)
        handler.append((invocation.ended - invocation.started) * 1000)
        end_to_end.append((last - written[k - 1]) * 1000)
    by_delay = {
        f"{delay * 1000:g}ms": {
            "fanout_ms": median(times[i * trials : (i + 1) * trials]),
            "fanout_ms_per_trial": times[i * trials : (i + 1) * trials],
            "handler_ms": median(handler[i * trials : (i + 1) * trials]),
            "write_to_last_viewer_ms": median(end_to_end[i * trials : (i + 1) * trials]),
        }
        for i, delay in enumerate(post_delays)
    }
    times, handler, end_to_end = times[:trials], handler[:trials], end_to_end[:trials]
    emitted = TIMELINE.of(stream_id)
    lags = [lag for v in load.viewers for lag in ms(delivery_lags(emitted, v.received))]
    fullbody = baselines.fullbody_messages(stream_id, batches) + baselines.envelope(
        stream_id, len(batches)
    )
    # What a viewer got for the reply alone: everything but the trial deltas.
    trial_bytes = len(
        Connections.encode({"type": "delta", "streamId": stream_id, "seq": 100, "text": text})
    )
    expected = workload.text + text * rounds
    wrong = sum(v.text != expected for v in load.viewers) + (body != workload.text)
    forget(bench, stream_id)
    return {
        "fanout": {
            "viewers": viewers,
            "trials": trials,
            "fanout_ms": median(times),
            "fanout_ms_per_trial": times,
            "handler_ms": median(handler),
            "write_to_last_viewer_ms": median(end_to_end),
            "posts_per_second": viewers / (median(times) / 1000),
            "connect_seconds": connect_seconds,
            "by_post_delay": by_delay,
            "worker_invocations": len(bench.probe.worker_invocations) - workers_before,
        },
        "lag": {
            "tokens": workload.tokens,
            "reply_bytes": workload.reply_bytes,
            "runs": 1,
            "lag_ms": lag_summary(lags),
            "bytes_per_viewer": median(v.wire_bytes for v in load.viewers) - rounds * trial_bytes,
            "messages_per_viewer": median(v.messages for v in load.viewers) - rounds,
            "bytes_per_viewer_fullbody_baseline": fullbody.bytes,
            "messages_per_viewer_fullbody_baseline": fullbody.messages,
            "billed_messages_per_viewer_fullbody_baseline": fullbody.billed_messages,
            "batches": len(batches),
            "wrong_texts": wrong,
            "resubscribes": sum(v.resubscribes for v in load.viewers),
            "delivery_seconds": max(v.received[-1 - rounds][1] for v in load.viewers)
            - min(t for _, t in emitted),
            "dynamodb": writes_of(usage),
        },
    }


def drive_here(url: str, stream_id: str, token: str) -> str:
    """Drive a stream from this process (when the load process only watches); the body."""
    with httpx.stream(
        "POST",
        f"{url}/chat-stream",
        json={"streamId": stream_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    ) as response:
        return "".join(response.iter_text())


def subscribers(stream_id: str) -> int:
    """How many connections subscribe to `stream_id` (a COUNT query: cheap to poll)."""
    store = SubscriptionStore(Settings.from_env().connections_table)
    pages = store.client.get_paginator("query").paginate(
        TableName=store.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"STREAM#{stream_id}"}},
        Select="COUNT",
    )
    return sum(page["Count"] for page in pages)


def _invocation_done(bench: Bench, stream_id: str, seq: int) -> bool:
    return any((stream_id, seq) in i.batches for i in bench.probe.invocations)


def wait_for(
    condition: Callable[[], bool], seconds: float, future: Any = None, every: float = 0.05
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if future is not None and future.done():
            future.result()  # the load failed: raise why
            raise RuntimeError("the load ended early")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {seconds} s")
        time.sleep(every)


# -- concurrency -----------------------------------------------------------------------


def measure_concurrency(bench: Bench, streams: int, viewers_each: int) -> dict[str, Any]:
    """`streams` replies at once, each with viewers: every text exact? tokens per second."""
    workload = bench.workload
    bench.meter.reset()
    chats = [new_chat(bench.stack.http_url, workload) for _ in range(streams)]
    drives = [Drive(bench.stack.http_url, s, t) for s, t in chats]
    watches = [Watch(bench.stack.ws_url, (s,), viewers_each) for s, _ in chats]
    load = bench.load.run(drives, watches, timeout=900)
    usage = bench.meter.usage()
    for stream_id, _ in chats:
        wait_for(lambda s=stream_id: not subscribers(s), 300, every=0.5)
    wrong = check_texts(workload, load)
    persisted_wrong = sum(
        "".join(b["text"] for b in stored_batches(bench, s)) != workload.text for s, _ in chats
    )
    http_seconds = max(d.arrivals[-1][1] for d in load.drives) - load.drive_started
    lags = []
    for viewer in load.viewers:
        lags += ms(delivery_lags(TIMELINE.of(viewer.stream_id), viewer.received))
    return {
        "streams": streams,
        "viewers_per_stream": viewers_each,
        "wrong_http_texts": sum(d.text != workload.text for d in load.drives),
        "wrong_viewer_texts": len(wrong) - sum(d.text != workload.text for d in load.drives),
        "wrong_persisted_texts": persisted_wrong,
        "all_texts_exact": not wrong and not persisted_wrong,
        "http_seconds": http_seconds,
        "tokens_per_second": streams * workload.tokens / http_seconds,
        "bytes_per_second": streams * workload.reply_bytes / http_seconds,
        "until_last_viewer_seconds": load.finished - load.drive_started,
        "viewer_lag_ms": lag_summary(lags),
        "write_requests": usage.write_requests("StreamsTable"),
    }


# -- growth ----------------------------------------------------------------------------


def measure_growth(bench: Bench, factors: tuple[int, ...], rate: float) -> dict[str, Any]:
    """Writes and bytes per viewer at 1x, 4x, 10x the reply, against both baselines."""
    out = {}
    for factor in factors:
        workload = Workload(bench.workload.tokens * factor, rate, bench.workload.seed)
        run = watch_once(bench, 1, workload)
        if run["wrong_texts"]:
            raise AssertionError(f"growth {factor}x: a text differs from the workload")
        stream_id, batches = run["stream_id"], run["batches"]
        per_token = baselines.dry_per_token(bench.meter, bench.stack.store().table, workload.pieces)
        convex = baselines.convex_batches(workload.pieces)
        out[str(factor)] = {
            "tokens": workload.tokens,
            "reply_bytes": workload.reply_bytes,
            "batches": len(batches),
            "write_requests": run["usage"].write_requests("StreamsTable"),
            "write_requests_per_token_baseline": per_token.write_requests(),
            "bytes_per_viewer": run["viewers"][0].wire_bytes,
            "bytes_per_viewer_fullbody_baseline": (
                baselines.fullbody_messages(stream_id, batches)
                + baselines.envelope(stream_id, len(batches))
            ).bytes,
            "bytes_per_viewer_convex_baseline": (
                baselines.fullbody_messages(stream_id, convex)
                + baselines.envelope(stream_id, len(convex))
            ).bytes,
            "convex_batches": len(convex),
        }
        logger.info("growth %dx done", factor)
    return out


def batch_item_overhead(bench: Bench) -> int:
    """Bytes of a batch item besides its text (what a body re-read pays per batch)."""
    item = serialize(
        {
            "pk": "STREAM#" + "x" * len(new_id()),
            "sk": "BATCH#0000000001",
            "kind": "batch",
            "streamId": "x" * len(new_id()),
            "seq": 1,
            "text": "",
            "writtenAt": int(time.time() * 1000),
            "ttl": int(time.time()) + 30 * 86400,
        }
    )
    return item_size(item)


# -- what one call costs the caller -----------------------------------------------------


def call_costs(bench: Bench, calls: int = 300) -> dict[str, float]:
    """CPU (this thread's) per `@connections` post and per asynchronous `lambda:Invoke`, on
    this machine, against the local endpoints: the simulation's costs of a post and of
    starting a worker. Posts go to a connection that does not exist (410, the endpoint's
    cheapest answer); invocations are `DryRun`s of the worker (no function runs)."""
    import boto3

    assert bench.stack.stack is not None and bench.stack.stack.lambda_endpoint is not None
    connections = Connections(bench.stack.stack.ws_management_url)
    for _ in range(20):
        connections.send("no-such-connection", b"{}")
    message = (
        b'{"type":"delta","streamId":"' + b"s" * len(new_id()) + b'","seq":7,"text":"' + b"x" * 150
    )
    message += b'"}'
    started = time.thread_time()
    for _ in range(calls):
        connections.send("no-such-connection", message)
    post_cpu = (time.thread_time() - started) / calls
    client = boto3.client("lambda", endpoint_url=bench.stack.stack.lambda_endpoint.url)
    payload = b'{"type":"pts.fanout.slice"' + b" " * 6000 + b"}"
    for _ in range(5):
        client.invoke(FunctionName="FanoutWorkerFunction", InvocationType="DryRun")
    started = time.thread_time()
    for _ in range(calls // 3):
        client.invoke(FunctionName="FanoutWorkerFunction", InvocationType="DryRun", Payload=payload)
    invoke_cpu = (time.thread_time() - started) / (calls // 3)
    return {"post_cpu_ms": post_cpu * 1000, "invoke_cpu_ms": invoke_cpu * 1000}
