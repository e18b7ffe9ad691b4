"""`python -m bench.longevity`: does the local stack last a working day?

Starts the local stack (as `make dev` does, on ephemeral ports, no data dir), then creates
and drives `--chats` chats of a tiny `echo:` prompt one after another, and prints RSS of the
stack's process (moto's DynamoDB lives in it) and the time of each create and drive, the
first hundred against the last: both should be flat. `--without-fixes` runs moto as it
comes, for the figures before `pts.local.moto_transactions` and `pts.local.moto_streams`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import uuid

os.environ.setdefault("BOTO_DISABLE_CRT", "true")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _held() -> dict[str, float]:
    """What moto holds at the end: the items (the data) and the stream records (history)."""
    from moto.dynamodb.models import dynamodb_backends

    tables = [
        table
        for regions in dynamodb_backends.values()
        for backend in regions.values()
        for table in backend.tables.values()
    ]
    return {
        "items": sum(len(table.all_items()) for table in tables),
        "stream_records": sum(len(t.stream_shard.items) for t in tables if t.stream_shard),
    }


def run(chats: int, *, without_fixes: bool = False) -> dict[str, float]:
    import httpx

    sys.path.insert(0, os.getcwd())
    from tests.support import running_stack

    if without_fixes:  # moto as it comes: the figures before our patches
        from pts.local import moto_queries, moto_streams, moto_transactions

        moto_transactions.install = lambda: None
        moto_queries.install = lambda: None
        moto_streams.install = lambda: None
        moto_streams.trim_streams = lambda *args, **kwargs: 0

    creates: list[float] = []
    drives: list[float] = []
    rss: list[float] = []
    with running_stack() as running, httpx.Client(base_url=running.http_url, timeout=30) as http:
        for i in range(chats):
            started = time.perf_counter()
            chat = http.post("/chats", json={"prompt": f"echo:hi {i} {uuid.uuid4().hex[:6]}"})
            chat.raise_for_status()
            created = time.perf_counter()
            body = chat.json()
            auth = {"Authorization": f"Bearer {body['driveToken']}"}
            drive = http.post("/chat-stream", json={"streamId": body["streamId"]}, headers=auth)
            drive.raise_for_status()
            creates.append(created - started)
            drives.append(time.perf_counter() - created)
            if (i + 1) % 100 == 0:
                rss.append(_rss_mb())
                print(
                    f"{i + 1:5d} chats  rss {rss[-1]:7.1f} MB  median of the last hundred:"
                    f" create {statistics.median(creates[-100:]) * 1e3:6.1f} ms"
                    f"  drive {statistics.median(drives[-100:]) * 1e3:6.1f} ms",
                    flush=True,
                )
        held = _held()
    first, last = slice(0, 100), slice(-100, None)
    figures = {
        "chats": chats,
        "rss_first_mb": rss[0],
        "rss_last_mb": rss[-1],
        "create_first_ms": statistics.median(creates[first]) * 1e3,
        "create_last_ms": statistics.median(creates[last]) * 1e3,
        "drive_first_ms": statistics.median(drives[first]) * 1e3,
        "drive_last_ms": statistics.median(drives[last]) * 1e3,
        **held,
    }
    for name, value in figures.items():
        print(f"{name:16s} {value:10.1f}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--without-fixes", action="store_true", help="moto as it comes")
    args = parser.parse_args()
    run(args.chats, without_fixes=args.without_fixes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
