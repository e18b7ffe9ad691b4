"""`pts dev` (what `make dev` runs) runs each function in processes of its own, with its own
environment, and stops cleanly on SIGINT and SIGTERM: viewers are told 1001 (going away),
the process exits on its own, no thread left to hold it up and no function's process left."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dev_stops_cleanly(sig: signal.Signals):
    env = {**os.environ, "PTS_HTTP_PORT": "0", "PTS_WS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pts.cli", "dev", "--in-memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        output = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "".join(output)
            output.append(line)
            if line.startswith("ready"):
                break
        ws_url = re.search(r"WebSocket\s+(ws://\S+)", "".join(output)).group(1)
        children = descendants(process.pid)
        names = sorted(environ(pid).get("AWS_LAMBDA_FUNCTION_NAME", "") for pid in children)
        # One warm sandbox per function, run.sh's uvicorn for the streaming one.
        assert names == sorted(
            [
                "FanoutFunction",
                "FanoutWorkerFunction",
                "StreamFunction",
                "SweeperFunction",
                "WebSocketFunction",
            ]
        )
        (stream,) = [pid for pid in children if "PORT" in environ(pid)]
        assert environ(stream)["AWS_LAMBDA_FUNCTION_NAME"] == "StreamFunction"
        assert all("AWS_LAMBDA_EXEC_WRAPPER" not in environ(p) for p in children if p != stream)

        async def viewer() -> int | None:
            async with connect(ws_url) as ws:
                process.send_signal(sig)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 20)
                return ws.close_code

        assert asyncio.run(viewer()) == 1001
        assert process.wait(30) == 0
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_a_killed_dev_takes_its_functions_with_it():
    """SIGKILL gives `pts dev` no chance to stop anything: its sandboxes (frozen ones too)
    and the streaming function's uvicorn end with it all the same."""
    env = {**os.environ, "PTS_HTTP_PORT": "0", "PTS_WS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pts.cli", "dev", "--in-memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        while not (line := process.stdout.readline()).startswith("ready"):
            assert line
        children = descendants(process.pid)
        assert len(children) == 5  # a warm sandbox per function, run.sh's for the streaming one
        process.kill()
        process.wait()
        for _ in range(100):
            if not any(alive(pid) for pid in children):
                break
            time.sleep(0.05)
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().partition("=")[::2] for e in entries if e)


def alive(pid: int) -> bool:
    """Running, or stopped: a zombie or no process at all is not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
