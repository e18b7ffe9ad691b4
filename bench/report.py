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
    "bytes_per_viewer_vs_reply": ("bytes per viewer / reply bytes", 2.0),
    "writes_vs_per_token": ("DynamoDB write requests / per-token baseline", 0.25),
    "driver_p99_vs_http_only": ("driver p99 per-chunk latency / HTTP-only", 1.05),
    "fanout_1000_viewers_ms": ("1,000-viewer fan-out (ms)", 2000.0),
}


def assemble(raw: dict[str, Any], headline_viewers: int) -> dict[str, Any]:
    driver, watched = raw["driver"], raw["viewers"][str(headline_viewers)]
    persisted = driver["persisted"]
    reply_bytes = raw["workload"]["reply_bytes"]
    writes = median(r["write_requests"] for r in persisted["dynamodb_per_run"])
    results: dict[str, Any] = {
        "reply_bytes": reply_bytes,
        "viewers": headline_viewers,
        "batches": median(persisted["batches_per_run"]),
        "ddb_write_requests": writes,
        "ddb_write_requests_per_token_baseline": raw["per_token"]["write_requests"],
        "ddb_write_units": median(r["write_units"] for r in persisted["dynamodb_per_run"]),
        "ddb_write_units_per_token_baseline": raw["per_token"]["write_units"],
        "ddb_read_requests_while_streaming": median(
            r["read_requests"] for r in persisted["dynamodb_per_run"]
        ),
        "bytes_per_viewer": watched["bytes_per_viewer"],
        "bytes_per_viewer_fullbody_baseline": watched["bytes_per_viewer_fullbody_baseline"],
        "messages_per_viewer": watched["messages_per_viewer"],
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
    }
    results["goals"] = {
        "bytes_per_viewer_vs_reply": ratio(results["bytes_per_viewer"], reply_bytes),
        "writes_vs_per_token": ratio(writes, results["ddb_write_requests_per_token_baseline"]),
        "driver_p99_vs_http_only": persisted["p99_vs_http_only"],
        "fanout_1000_viewers_ms": results["fanout_1000_viewers_ms"],
    }
    results["goals_met"] = {
        name: bool(value <= GOALS[name][1]) for name, value in results["goals"].items()
    }
    results["details"] = {k: v for k, v in raw.items() if k != "driver"}
    results["details"]["driver"] = {k: v for k, v in driver.items() if k != "batch_texts"}
    return results


# -- the table -------------------------------------------------------------------------


def _n(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}{TIMES}"


def _goal(results: dict[str, Any], name: str) -> str:
    limit = GOALS[name][1]
    shown = f"≤ {limit:,.0f} ms" if name.endswith("_ms") else f"≤ {limit:g}{TIMES}"
    return f"{shown} {'✅' if results['goals_met'][name] else '❌'}"


def table(results: dict[str, Any]) -> str:
    """The headline table (Markdown), then the growth and concurrency tables."""
    d = results["details"]
    w = d["workload"]
    reply = results["reply_bytes"]
    drv = d["driver"]
    v = results["viewers"]
    http_p50 = results["driver_chunk_latency_p50_ms_http_only"]
    http_p99 = results["driver_chunk_latency_p99_ms_http_only"]
    rows = [
        "| measure | ours | baseline | ratio | goal |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| reply | {_n(reply)} B, {_n(w['tokens'])} tokens at {_n(w['tokens_per_second'])}/s, "
        f"{_n(results['batches'])} batches | | | |",
        f"| DynamoDB write requests per reply | {_n(results['ddb_write_requests'])} | "
        f"{_n(results['ddb_write_requests_per_token_baseline'])} (per-token) | "
        f"{_x(results['goals']['writes_vs_per_token'])} | "
        f"{_goal(results, 'writes_vs_per_token')} |",
        f"| DynamoDB write units per reply | {_n(results['ddb_write_units'])} | "
        f"{_n(results['ddb_write_units_per_token_baseline'])} (per-token) | "
        f"{_x(ratio(results['ddb_write_units'], results['ddb_write_units_per_token_baseline']))}"
        " | |",
        f"| DynamoDB reads while streaming (requests) | "
        f"{_n(results['ddb_read_requests_while_streaming'])} | | | |",
        f"| bytes pushed per viewer ({v} viewer{'s' if v != 1 else ''}) | "
        f"{_n(results['bytes_per_viewer'])} | "
        f"{_n(results['bytes_per_viewer_fullbody_baseline'])} (full body) | "
        f"{_x(ratio(results['bytes_per_viewer'], results['bytes_per_viewer_fullbody_baseline']))}"
        f" | |",
        f"| bytes pushed per viewer / reply bytes | "
        f"{_x(results['goals']['bytes_per_viewer_vs_reply'])} | "
        f"{_x(ratio(results['bytes_per_viewer_fullbody_baseline'], reply))} (full body) | | "
        f"{_goal(results, 'bytes_per_viewer_vs_reply')} |",
        f"| messages per viewer | {_n(results['messages_per_viewer'])} | "
        f"{_n(results['messages_per_viewer_fullbody_baseline'])} (full body) | | |",
        f"| driver per-chunk latency p50 (ms) | {_n(results['driver_chunk_latency_p50_ms'], 2)} | "
        f"{_n(results['driver_chunk_latency_p50_ms_http_only'], 2)} (HTTP-only) | "
        f"{_x(ratio(results['driver_chunk_latency_p50_ms'], http_p50))} | |",
        f"| driver per-chunk latency p99 (ms) | {_n(results['driver_chunk_latency_p99_ms'], 2)} | "
        f"{_n(http_p99, 2)} (HTTP-only) | {_x(results['goals']['driver_p99_vs_http_only'])} "
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
            f"| viewer lag p50 / p99 (ms), {int(count):,} viewer{'s' if count != '1' else ''}"
            f"{_short(entry, w)} | {_n(lag['p50'])} / {_n(lag['p99'])} | | | |"
        )
    fan = d["fanout"]
    rows.append(
        f"| fan-out of one batch to {fan['viewers']:,} viewers (ms) | "
        f"{_n(results['fanout_1000_viewers_ms'])} | | | "
        f"{_goal(results, 'fanout_1000_viewers_ms')} |"
    )
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
    """The four goals of the issue: this run's figure, the limit, met or not."""
    d = results["details"]
    drv = d["driver"]["persisted"]
    lines = {
        "writes_vs_per_token": (
            f"{_x(results['goals']['writes_vs_per_token'])} "
            f"({_n(results['ddb_write_requests'])} against "
            f"{_n(results['ddb_write_requests_per_token_baseline'])} requests)"
        ),
        "bytes_per_viewer_vs_reply": (
            f"{_x(results['goals']['bytes_per_viewer_vs_reply'])} "
            f"({_n(results['bytes_per_viewer'])} B for {_n(results['reply_bytes'])} B)"
        ),
        "driver_p99_vs_http_only": (
            f"{_x(results['goals']['driver_p99_vs_http_only'])} "
            f"({_n(results['driver_chunk_latency_p99_ms'], 2)} against "
            f"{_n(results['driver_chunk_latency_p99_ms_http_only'], 2)} ms; 95% CI "
            f"{_ci(drv['p99_vs_http_only_ci95'])})"
        ),
        "fanout_1000_viewers_ms": (
            f"{_n(results['fanout_1000_viewers_ms'])} ms "
            f"({_n(d['fanout']['posts_per_second'])} posts/s)"
        ),
    }
    rows = ["| goal | this run | |", "| --- | --- | --- |"]
    for name, (label, limit) in GOALS.items():
        shown = f"≤ {limit:,.0f}" if name.endswith("_ms") else f"≤ {limit:g}{TIMES}"
        met = "met" if results["goals_met"][name] else "**missed**"
        rows.append(f"| {label} {shown} | {lines[name]} | {met} |")
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
    names = {"ours": "ours", "per_token": "per-token writes", "fullbody": "full-body re-send"}
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
            ("scaling.md", "cost", cost_markdown(results)),
        ):
            path = docs / name
            if path.exists():
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
