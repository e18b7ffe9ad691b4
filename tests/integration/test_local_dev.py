"""`pts dev` (what `make dev` runs) stops cleanly on SIGINT and SIGTERM: viewers are told
1001 (going away) and the process exits on its own, no thread left to hold it up."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dev_stops_cleanly(sig: signal.Signals):
    env = {**os.environ, "PTS_HTTP_PORT": "0", "PTS_WS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pts.cli", "dev"],
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

        async def viewer() -> int | None:
            async with connect(ws_url) as ws:
                process.send_signal(sig)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 20)
                return ws.close_code

        assert asyncio.run(viewer()) == 1001
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
