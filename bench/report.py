"""The report: headline numbers and goals, the table, results.json, the docs and charts.

`assemble` turns the raw measurements into `results.json`'s shape (the headline keys at the
top level, every detail below them); `table` renders the Markdown table printed by
`make bench` and placed in `docs/benchmarks.md` between its `results` markers (the cost
table goes into `docs/scaling.md` between its `cost` markers); `charts` draws the PNGs.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from bench.stats import median, ratio

TIMES = "\u00d7"  # the multiplication sign, spelled out for the linter

GOALS = {
    "messages_per_viewer": ("messages per viewer at 50 tokens/s", 50.0),
    "messages_per_viewer_200tps": ("messages per viewer at 200 tokens/s", 25.0),
    "bytes_per_viewer_vs_reply": ("bytes per viewer / reply bytes at 50 tokens/s", 1.4),
    "bytes_per_viewer_vs_reply_200tps": ("bytes per viewer / reply bytes at 200 tokens/s", 1.3),
    "writes_vs_per_token": ("DynamoDB write requests / per-token baseline", 0.05),
    "token_to_viewer_p50_ms": ("token → viewer p50 (ms), 50 tokens/s", 800.0),
    "token_to_viewer_p99_ms": ("token → viewer p99 (ms), 50 tokens/s", 1500.0),
    "token_to_viewer_p50_ms_200tps": ("token → viewer p50 (ms), 200 tokens/s", 800.0),
    "token_to_viewer_p99_ms_200tps": ("token → viewer p99 (ms), 200 tokens/s", 1500.0),
    "fanout_1000_viewers_ms_aws_latency": (
        "1,000 viewers, one batch, 20 ms per post injected (ms)",
        1000.0,
    ),
    "fanout_10000_viewers_ms_simulated": ("10,000 viewers, one batch, simulated (ms)", 1500.0),
    "driver_p99_vs_http_only": ("driver p99 per-chunk latency / HTTP-only", 1.05),
}
RATIO_GOALS = {"bytes_per_viewer_vs_reply", "bytes_per_viewer_vs_reply_200tps"}
RATIO_GOALS |= {"writes_vs_per_token", "driver_p99_vs_http_only"}


def assemble(raw: dict[str, Any], headline_viewers: int) -> dict[str, Any]:
    driver = raw["driver"]
    watched, fast = raw["paced"]["50"], raw["paced"]["200"]
    persisted = driver["persisted"]
    reply_bytes = raw["workload"]["reply_bytes"]
    writes = watched["dynamodb"]["write_requests"]
    simulated = {row["viewers"]: row for row in raw["simulated_fanout"]["rows"]}
    aws_like = raw["fanout"]["by_post_delay"]
    results: dict[str, Any] = {
        "reply_bytes": reply_bytes,
        "viewers": headline_viewers,
        "batch_min_interval_seconds": raw["batch_min_interval_seconds"],
        "batches": watched["batches"],
        "batches_200tps": fast["batches"],
        "messages_per_viewer": watched["messages_per_viewer"],
        "messages_per_viewer_200tps": fast["messages_per_viewer"],
        "bytes_per_viewer": watched["bytes_per_viewer"],
        "bytes_per_viewer_200tps": fast["bytes_per_viewer"],
        "token_to_viewer_p50_ms": watched["lag_ms"]["p50"],
        "token_to_viewer_p99_ms": watched["lag_ms"]["p99"],
        "token_to_viewer_p50_ms_200tps": fast["lag_ms"]["p50"],
        "token_to_viewer_p99_ms_200tps": fast["lag_ms"]["p99"],
        "ddb_write_requests": writes,
        "ddb_write_requests_200tps": median(
            r["write_requests"] for r in persisted["dynamodb_per_run"]
        ),
        "ddb_write_requests_per_token_baseline": raw["per_token"]["write_requests"],
        "ddb_write_units": watched["dynamodb"]["write_units"],
        "ddb_write_units_per_token_baseline": raw["per_token"]["write_units"],
        "ddb_read_requests_while_streaming": median(
            r["read_requests"] for r in persisted["dynamodb_per_run"]
        ),
        "bytes_per_viewer_fullbody_baseline": watched["bytes_per_viewer_fullbody_baseline"],
        "messages_per_viewer_fullbody_baseline": watched["messages_per_viewer_fullbody_baseline"],
        "driver_chunk_latency_p50_ms": persisted["latency_ms"]["p50"],
        "driver_chunk_latency_p50_ms_http_only": driver["http_only"]["latency_ms"]["p50"],
        "driver_chunk_latency_p99_ms": persisted["latency_ms"]["p99"],
        "driver_chunk_latency_p99_ms_http_only": driver["http_only"]["latency_ms"]["p99"],
        "driver_chunk_latency_p99_ms_slow_writes": driver["persisted_slow_writes"]["latency_ms"][
            "p99"
        ],
        "driver_chunk_latency_p99_ms_fanout_in_process": driver["persisted_fanout_in_process"][
            "latency_ms"
        ]["p99"],
        "viewer_lag_p50_ms": watched["lag_ms"]["p50"],
        "viewer_lag_p99_ms": watched["lag_ms"]["p99"],
        "fanout_1000_viewers_ms": raw["fanout"]["fanout_ms"],
        "fanout_1000_viewers_ms_aws_latency": _delay_row(aws_like, nonzero=True)["fanout_ms"],
        "fanout_10000_viewers_ms_simulated": simulated.get(10_000, {}).get(
            "two_level_ms", float("nan")
        ),
    }
    results["goals"] = {
        "messages_per_viewer": results["messages_per_viewer"],
        "messages_per_viewer_200tps": results["messages_per_viewer_200tps"],
        "bytes_per_viewer_vs_reply": ratio(results["bytes_per_viewer"], reply_bytes),
        "bytes_per_viewer_vs_reply_200tps": ratio(results["bytes_per_viewer_200tps"], reply_bytes),
        "writes_vs_per_token": ratio(writes, results["ddb_write_requests_per_token_baseline"]),
        "token_to_viewer_p50_ms": results["token_to_viewer_p50_ms"],
        "token_to_viewer_p99_ms": results["token_to_viewer_p99_ms"],
        "token_to_viewer_p50_ms_200tps": results["token_to_viewer_p50_ms_200tps"],
        "token_to_viewer_p99_ms_200tps": results["token_to_viewer_p99_ms_200tps"],
        "fanout_1000_viewers_ms_aws_latency": results["fanout_1000_viewers_ms_aws_latency"],
        "fanout_10000_viewers_ms_simulated": results["fanout_10000_viewers_ms_simulated"],
        "driver_p99_vs_http_only": persisted["p99_vs_http_only"],
    }
    results["goals_met"] = {
        name: bool(value <= GOALS[name][1]) for name, value in results["goals"].items()
    }
    results["details"] = {k: v for k, v in raw.items() if k not in ("driver", "paced")}
    results["details"]["driver"] = {k: v for k, v in driver.items() if k != "batch_texts"}
    results["details"]["paced"] = {
        rate: {k: v for k, v in entry.items() if k != "batch_texts"}
        for rate, entry in raw["paced"].items()
    }
    results["details"]["viewers"] = {
        count: {k: v for k, v in entry.items() if k != "batch_texts"}
        for count, entry in raw["viewers"].items()
    }
    return results


def _delay_row(by_delay: dict[str, Any], nonzero: bool) -> dict[str, Any]:
    """The fan-out trials with (or without) injected post latency."""
    for name, row in by_delay.items():
        if (name != "0ms") == nonzero:
            return dict(row)
    return {"fanout_ms": float("nan")}


# -- the table -------------------------------------------------------------------------


def _n(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}{TIMES}"


def _limit(name: str) -> str:
    limit = GOALS[name][1]
    return f"≤ {limit:g}{TIMES}" if name in RATIO_GOALS else f"≤ {limit:,.0f}"


def _goal(results: dict[str, Any], name: str) -> str:
    return f"{_limit(name)} {'✅' if results['goals_met'][name] else '❌'}"


def table(results: dict[str, Any]) -> str:
    """The headline table (Markdown), then the growth table."""
    d = results["details"]
    w = d["workload"]
    reply = results["reply_bytes"]
    drv = d["driver"]
    g = results["goals"]
    http_p50 = results["driver_chunk_latency_p50_ms_http_only"]
    http_p99 = results["driver_chunk_latency_p99_ms_http_only"]
    per_token = results["ddb_write_requests_per_token_baseline"]
    fan = d["fanout"]
    sim = {row["viewers"]: row for row in d["simulated_fanout"]["rows"]}
    interval = results["batch_min_interval_seconds"]
    rows = [
        "| measure | ours | baseline | ratio | goal |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| reply | {_n(reply)} B, {_n(w['tokens'])} tokens; minimum interval {interval:g} s | "
        "| | |",
        f"| batches at 50 / 200 tokens/s | {_n(results['batches'])} / "
        f"{_n(results['batches_200tps'])} | | | |",
        f"| messages per viewer, 50 tokens/s | {_n(results['messages_per_viewer'])} | "
        f"{_n(results['messages_per_viewer_fullbody_baseline'])} (full body), "
        f"{_n(per_token - 1)} (per token) | | {_goal(results, 'messages_per_viewer')} |",
        f"| messages per viewer, 200 tokens/s | {_n(results['messages_per_viewer_200tps'])} | | "
        f"| {_goal(results, 'messages_per_viewer_200tps')} |",
        f"| bytes per viewer, 50 tokens/s | {_n(results['bytes_per_viewer'])} | "
        f"{_n(results['bytes_per_viewer_fullbody_baseline'])} (full body) | "
        f"{_x(g['bytes_per_viewer_vs_reply'])} the reply | "
        f"{_goal(results, 'bytes_per_viewer_vs_reply')} |",
        f"| bytes per viewer, 200 tokens/s | {_n(results['bytes_per_viewer_200tps'])} | | "
        f"{_x(g['bytes_per_viewer_vs_reply_200tps'])} the reply | "
        f"{_goal(results, 'bytes_per_viewer_vs_reply_200tps')} |",
        f"| DynamoDB write requests per reply, 50 tokens/s | {_n(results['ddb_write_requests'])} "
        f"| {_n(per_token)} (per-token) | {g['writes_vs_per_token']:.3f}{TIMES} | "
        f"{_goal(results, 'writes_vs_per_token')} |",
        f"| DynamoDB write requests per reply, 200 tokens/s | "
        f"{_n(results['ddb_write_requests_200tps'])} | {_n(per_token)} (per-token) | "
        f"{ratio(results['ddb_write_requests_200tps'], per_token):.3f}{TIMES} | |",
        f"| DynamoDB write units per reply, 50 tokens/s | {_n(results['ddb_write_units'])} | "
        f"{_n(results['ddb_write_units_per_token_baseline'])} (per-token) | "
        f"{_x(ratio(results['ddb_write_units'], results['ddb_write_units_per_token_baseline']))}"
        " | |",
        f"| DynamoDB reads while driving, 200 tokens/s (requests) | "
        f"{_n(results['ddb_read_requests_while_streaming'])} | | | |",
        f"| token → viewer p50 / p99 (ms), 50 tokens/s | "
        f"{_n(results['token_to_viewer_p50_ms'])} / {_n(results['token_to_viewer_p99_ms'])} | | "
        f"| {_limit('token_to_viewer_p50_ms')} / {_limit('token_to_viewer_p99_ms')} "
        f"{_ok(results, 'token_to_viewer_p50_ms', 'token_to_viewer_p99_ms')} |",
        f"| token → viewer p50 / p99 (ms), 200 tokens/s | "
        f"{_n(results['token_to_viewer_p50_ms_200tps'])} / "
        f"{_n(results['token_to_viewer_p99_ms_200tps'])} | | | "
        f"{_limit('token_to_viewer_p50_ms_200tps')} / {_limit('token_to_viewer_p99_ms_200tps')} "
        f"{_ok(results, 'token_to_viewer_p50_ms_200tps', 'token_to_viewer_p99_ms_200tps')} |",
        f"| driver per-chunk latency p50 (ms), 200 tokens/s | "
        f"{_n(results['driver_chunk_latency_p50_ms'], 2)} | "
        f"{_n(http_p50, 2)} (HTTP-only) | "
        f"{_x(ratio(results['driver_chunk_latency_p50_ms'], http_p50))} | |",
        f"| driver per-chunk latency p99 (ms), 200 tokens/s | "
        f"{_n(results['driver_chunk_latency_p99_ms'], 2)} | "
        f"{_n(http_p99, 2)} (HTTP-only) | {_x(g['driver_p99_vs_http_only'])} "
        f"(95% CI {_ci(drv['persisted']['p99_vs_http_only_ci95'])}) | "
        f"{_goal(results, 'driver_p99_vs_http_only')} |",
        f"| driver p99 (ms), 50 ms added to every write | "
        f"{_n(results['driver_chunk_latency_p99_ms_slow_writes'], 2)} | {_n(http_p99, 2)} "
        f"(HTTP-only) | {_x(drv['persisted_slow_writes']['p99_vs_http_only'])} "
        f"(95% CI {_ci(drv['persisted_slow_writes']['p99_vs_http_only_ci95'])}) | |",
        f"| driver p99 (ms), fan-out running on the same cores (local only) | "
        f"{_n(results['driver_chunk_latency_p99_ms_fanout_in_process'], 2)} | {_n(http_p99, 2)} "
        f"(HTTP-only) | {_x(drv['persisted_fanout_in_process']['p99_vs_http_only'])} | |",
        f"| response end after the last piece (ms): final batch and status | "
        f"{_n(drv['persisted']['tail_ms'], 1)} | {_n(drv['http_only']['tail_ms'], 1)} "
        "(HTTP-only) | | |",
    ]
    for count, entry in sorted(d["viewers"].items(), key=lambda kv: int(kv[0])):
        lag = entry["lag_ms"]
        rows.append(
            f"| token → viewer p50 / p99 (ms), {int(count):,} viewer{'s' if count != '1' else ''}"
            f", {_n(w['tokens_per_second'])} tokens/s{_short(entry, w)} | "
            f"{_n(lag['p50'])} / {_n(lag['p99'])} | | | |"
        )
    rows += [
        f"| one batch to {fan['viewers']:,} viewers (ms), local, two levels | "
        f"{_n(results['fanout_1000_viewers_ms'])} | | | |",
        f"| one batch to {fan['viewers']:,} viewers (ms), 20 ms injected per post, two levels | "
        f"{_n(results['fanout_1000_viewers_ms_aws_latency'])} | | | "
        f"{_goal(results, 'fanout_1000_viewers_ms_aws_latency')} |",
        f"| one batch to 10,000 viewers (ms), simulated, two levels | "
        f"{_n(results['fanout_10000_viewers_ms_simulated'])} | "
        f"{_n(sim.get(10_000, {}).get('one_level_ms', float('nan')))} (one level) | | "
        f"{_goal(results, 'fanout_10000_viewers_ms_simulated')} |",
    ]
    c = d["concurrency"]
    rows.append(
        f"| {c['streams']} concurrent streams, {c['viewers_per_stream']} viewer each | "
        f"{'all texts exact' if c['all_texts_exact'] else 'TEXTS DIFFER'}, "
        f"{_n(c['tokens_per_second'])} tokens/s | | | |"
    )
    if d.get("coldstart"):
        cs = d["coldstart"]
        f = cs["functions"]["StreamFunction"]
        rows.append(
            f"| streaming function: layer zipped / import (no .pyc → with .pyc) | "
            f"{cs['layer_zipped_bytes'] / 1e6:.1f} MB / {_n(f['import_ms_no_bytecode'])} → "
            f"{_n(f['import_ms_with_bytecode'])} ms | | | |"
        )
    return "\n".join(rows) + "\n\n" + growth_table(results)


def _ok(results: dict[str, Any], *names: str) -> str:
    return "✅" if all(results["goals_met"][n] for n in names) else "❌"


def _ci(interval: list[float]) -> str:
    return f"{interval[0]:.2f}–{interval[1]:.2f}"


def _short(entry: dict[str, Any], workload: dict[str, Any]) -> str:
    return "" if entry["tokens"] == workload["tokens"] else f" (reply of {entry['tokens']} tokens)"


def growth_table(results: dict[str, Any]) -> str:
    rows = [
        "| reply | tokens | bytes | batches | writes | per-token writes | bytes per viewer "
        "| full-body re-send | Convex cut, full body |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for factor, g in results["details"]["growth"].items():
        reply = g["reply_bytes"]
        pushed = [
            g[k]
            for k in (
                "bytes_per_viewer",
                "bytes_per_viewer_fullbody_baseline",
                "bytes_per_viewer_convex_baseline",
            )
        ]
        rows.append(
            f"| {factor}{TIMES} | {_n(g['tokens'])} | {_n(reply)} | {_n(g['batches'])} | "
            f"{_n(g['write_requests'])} | {_n(g['write_requests_per_token_baseline'])} | "
            + " | ".join(f"{_n(b)} ({b / reply:.2f}{TIMES})" for b in pushed)
            + " |"
        )
    return "\n".join(rows) + "\n"


def goals_markdown(results: dict[str, Any]) -> str:
    """The issue's goals: this run's figure, the limit, met or not."""
    rows = ["| goal | this run | |", "| --- | --- | --- |"]
    for name, (label, _) in GOALS.items():
        value = results["goals"][name]
        shown = f"{value:.2f}{TIMES}" if name in RATIO_GOALS else _n(value)
        met = "met" if results["goals_met"][name] else "**missed**"
        rows.append(f"| {label} {_limit(name)} | {shown} | {met} |")
    return "\n".join(rows) + "\n"


def replay_markdown(results: dict[str, Any]) -> str:
    """The batching rule at each pace and minimum interval, replayed on the workload."""
    rows = [
        "| tokens/s | minimum interval (s) | batches | messages per viewer | bytes / reply "
        "| piece → batch cut p50 / p99 (ms) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rate, entries in results["details"]["replay"].items():
        for e in entries:
            rows.append(
                f"| {rate} | {e['min_interval']:g} | {e['batches']} | {e['messages_per_viewer']} "
                f"| {e['bytes_per_viewer_vs_reply']:.2f}{TIMES} | {_n(e['wait_p50_ms'])} / "
                f"{_n(e['wait_p99_ms'])} |"
            )
    return "\n".join(rows) + "\n"


def fanout_markdown(results: dict[str, Any]) -> str:
    """Fan-out time by audience, simulated, with and without the second level."""
    sim = results["details"]["simulated_fanout"]
    rows = [
        "| viewers | two levels (ms) | workers | fan-out invocation (ms) | slowest worker (ms) "
        "| one level (ms) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sim["rows"]:
        rows.append(
            f"| {r['viewers']:,} | {_n(r['two_level_ms'])} | {r['workers']} | "
            f"{_n(r['coordinator_ms'])} | {_n(r['slowest_worker_ms'])} | "
            f"{_n(r.get('one_level_ms', float('nan')))} |"
        )
    return "\n".join(rows) + "\n"


def cost_markdown(results: dict[str, Any]) -> str:
    model = results["details"]["cost_model"]
    prices = model["prices"]
    rows = [
        f"Dollars per 1,000 replies ({prices['region']}, prices of {prices['date']}, "
        "on-demand, no free tier):",
        "",
        "| viewers | design | Lambda | DynamoDB | API Gateway | data out | total "
        "| messages | WRU | RRU | GB out |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    interval = results["batch_min_interval_seconds"]
    names = {
        "ours": f"ours ({interval:g} s interval)",
        "ours_0.5s": "ours, 0.5 s (the default)",
        "ours_0s": "ours, 0 s (a batch per sentence)",
        "per_token": "per-token writes",
        "fullbody": "full-body re-send",
    }
    for row in model["rows"]:
        dollars = row["per_1000_replies"]
        rows.append(
            f"| {row['viewers']:,} | {names[row['design']]} | {dollars['lambda']:.2f} | "
            f"{dollars['dynamodb']:.2f} | {dollars['websocket']:.2f} | {dollars['transfer']:.2f} | "
            f"**{dollars['total']:.2f}** | {_n(row['ws_messages'])} | {_n(row['write_units'])} | "
            f"{_n(row['read_units'])} | {row['egress_bytes'] / 1e9 * 1000:,.2f} |"
        )
    return "\n".join(rows) + "\n"


# -- files -----------------------------------------------------------------------------


def replace_between(text: str, name: str, body: str) -> str:
    """`text` with the part between `<!-- name:start -->` and `<!-- name:end -->` replaced."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name}:start/end --> markers")
    return pattern.sub(lambda m: m[1] + body + m[2], text)


def write(results: dict[str, Any], out: Path, docs: Path | None) -> None:
    """results.json and the charts into `out`; the tables into the docs under `docs`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_clean(results), indent=2) + "\n")
    charts(results, out)
    if docs is not None:
        for name, marker, body in (
            ("benchmarks.md", "results", table(results)),
            ("benchmarks.md", "goals", goals_markdown(results)),
            ("benchmarks.md", "replay", replay_markdown(results)),
            ("benchmarks.md", "fanout", fanout_markdown(results)),
            ("scaling.md", "cost", cost_markdown(results)),
        ):
            path = docs / name
            if path.exists() and f"<!-- {marker}:start -->" in path.read_text():
                path.write_text(replace_between(path.read_text(), marker, body))


def _clean(value: Any) -> Any:
    """JSON without NaN (null instead) and with tuples as lists."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# -- charts ----------------------------------------------------------------------------


def charts(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    growth = results["details"]["growth"]
    factors = [f"{f}{TIMES}" for f in growth]
    kb = [g["reply_bytes"] / 1000 for g in growth.values()]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(kb, [g["bytes_per_viewer"] / 1000 for g in growth.values()], "o-", label="ours")
    left.plot(
        kb,
        [g["bytes_per_viewer_fullbody_baseline"] / 1000 for g in growth.values()],
        "s--",
        label="full-body re-send (same batches)",
    )
    left.plot(
        kb,
        [g["bytes_per_viewer_convex_baseline"] / 1000 for g in growth.values()],
        "^:",
        label="full-body re-send (Convex's cut)",
    )
    left.plot(kb, kb, color="grey", linewidth=0.8, label="the reply itself")
    left.set(
        xlabel="reply (KB)",
        ylabel="KB pushed to each viewer",
        xscale="log",
        yscale="log",
        title="Bandwidth (log-log: slope 1 is linear, 2 quadratic)",
    )
    right.plot(kb, [g["write_requests"] for g in growth.values()], "o-", label="ours")
    right.plot(
        kb,
        [g["write_requests_per_token_baseline"] for g in growth.values()],
        "s--",
        label="per-token writes",
    )
    right.set(
        xlabel="reply (KB)",
        ylabel="DynamoDB write requests per reply",
        xscale="log",
        yscale="log",
        title="Writes",
    )
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
        axis.set_xticks(kb, [f"{x:.0f} KB\n{f}" for x, f in zip(kb, factors, strict=True)])
        axis.minorticks_off()
    fig.suptitle(f"The reply at 1{TIMES}, 4{TIMES} and 10{TIMES} its length, against the baselines")
    fig.tight_layout()
    fig.savefig(out / "growth.png", dpi=120)
    plt.close(fig)

    drv = results["details"]["driver"]
    viewers = results["details"]["viewers"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = {
        "http_only": "HTTP-only",
        "persisted": "persisted",
        "persisted_slow_writes": "persisted,\n+50 ms per write",
    }
    for offset, pct in ((-0.2, "p50"), (0.2, "p99")):
        left.bar(
            [i + offset for i in range(len(names))],
            [drv[k]["latency_ms"][pct] for k in names],
            width=0.4,
            label=pct,
        )
    left.set_xticks(range(len(names)), list(names.values()))
    left.set(ylabel="ms, piece generated → HTTP client", title="Driver per-chunk latency")
    counts = sorted(viewers, key=int)
    for offset, pct in ((-0.2, "p50"), (0.2, "p99")):
        right.bar(
            [i + offset for i in range(len(counts))],
            [viewers[c]["lag_ms"][pct] for c in counts],
            width=0.4,
            label=pct,
        )
    right.set_xticks(
        range(len(counts)), [f"{int(c):,} viewer{'s' if c != '1' else ''}" for c in counts]
    )
    right.set(ylabel="ms, piece generated → viewer", yscale="log", title="Viewer lag (local stack)")
    for axis in (left, right):
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)
    plt.close(fig)

    details = results["details"]
    interval = results["batch_min_interval_seconds"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    for rate, entries in details["replay"].items():
        xs = [e["min_interval"] for e in entries]
        left.plot(xs, [e["messages_per_viewer"] for e in entries], "o-", label=f"{rate} tokens/s")
        middle.plot(
            xs, [e["bytes_per_viewer_vs_reply"] for e in entries], "o-", label=f"{rate} tokens/s"
        )
        right.plot(xs, [e["wait_p99_ms"] for e in entries], "o-", label=f"{rate} tokens/s, p99")
    for entry in details["paced"].values():
        left.plot([interval], [entry["messages_per_viewer"]], "k*", markersize=10)
        middle.plot([interval], [entry["bytes_per_viewer"] / results["reply_bytes"]], "k*")
        right.plot([interval], [entry["lag_ms"]["p99"]], "k*", markersize=10)
    left.plot([], [], "k*", label="measured (this run)")
    right.plot([], [], "k*", label="measured token → viewer p99")
    left.axhline(50, color="C0", linestyle=":", linewidth=0.8)
    left.axhline(25, color="C1", linestyle=":", linewidth=0.8)
    middle.axhline(1.4, color="C0", linestyle=":", linewidth=0.8)
    middle.axhline(1.3, color="C1", linestyle=":", linewidth=0.8)
    right.axhline(1500, color="grey", linestyle=":", linewidth=0.8)
    left.set(xlabel="minimum interval (s)", ylabel="messages per viewer", yscale="log")
    left.set_title("Messages per viewer (dotted: the goals)")
    middle.set(xlabel="minimum interval (s)", ylabel="bytes per viewer / reply bytes")
    middle.set_title("Bytes per viewer")
    right.set(xlabel="minimum interval (s)", ylabel="ms", title="Piece → batch cut (replayed)")
    for axis in (left, middle, right):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle("The batching rule on reply-2000, by pace and minimum interval (lines: replay)")
    fig.tight_layout()
    fig.savefig(out / "batching.png", dpi=120)
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(7, 4.2))
    for rate, entry in details["paced"].items():
        values = entry.get("lag_ms_percentiles")
        if values:
            axis.plot(values, range(len(values)), label=f"{rate} tokens/s, 1 viewer")
    axis.axvline(800, color="grey", linestyle=":", linewidth=0.8)
    axis.axvline(1500, color="grey", linestyle="--", linewidth=0.8)
    axis.set(
        xlabel="ms from the generator yielding a token to the viewer having it",
        ylabel="percent of tokens (cumulative)",
        title=f"Token → viewer latency, minimum interval {interval:g} s (local stack)",
    )
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "token_latency.png", dpi=120)
    plt.close(fig)

    sim = details["simulated_fanout"]["rows"]
    fig, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(
        [r["viewers"] for r in sim], [r["two_level_ms"] for r in sim], "o-", label="two levels"
    )
    one = [r for r in sim if r.get("one_level_ms") is not None]
    axis.plot(
        [r["viewers"] for r in one], [r["one_level_ms"] for r in one], "s--", label="one level"
    )
    fan = details["fanout"]
    for name, row in fan["by_post_delay"].items():
        axis.plot(
            [fan["viewers"]],
            [row["fanout_ms"]],
            "k*" if name != "0ms" else "kx",
            markersize=9,
            label=f"measured locally, {name} per post",
        )
    axis.axhline(1000, color="grey", linestyle=":", linewidth=0.8)
    axis.axhline(1500, color="grey", linestyle="--", linewidth=0.8)
    axis.set(
        xlabel="viewers of one stream",
        ylabel="ms, fan-out start → last viewer posted",
        xscale="log",
        yscale="log",
        title="One batch to every viewer (simulated AWS: 20 ms per post)",
    )
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fanout.png", dpi=120)
    plt.close(fig)
