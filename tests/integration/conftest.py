"""The whole local stack, started in-process on ephemeral ports, shared by these tests."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from pts.local.stack import LocalStack, StackOptions


@dataclass(frozen=True)
class RunningStack:
    stack: LocalStack
    http_url: str
    ws_url: str
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="package")
def local_stack() -> Iterator[RunningStack]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "PTS_DEMO_TOKENS_PER_SECOND": "400",
            "PTS_DEMO_REPLY_TOKENS": "120",
            "PTS_BATCH_MAX_DELAY_SECONDS": "0.2",
        }
    )
    options = StackOptions(
        http_port=0, ws_port=0, sweep_interval=0.5, table_prefix=f"t{uuid.uuid4().hex[:8]}"
    )
    stack = LocalStack(options)
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    started = threading.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            await stack.start()
        except BaseException as error:
            errors.append(error)
            raise
        finally:
            started.set()
        await stopped.wait()
        await stack.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(60)
    if errors:
        raise errors[0]
    assert httpx.get(f"{stack.http_url}/healthz").status_code == 200
    yield RunningStack(stack, stack.http_url, stack.ws_url, loop)
    loop.call_soon_threadsafe(stopped.set)
    thread.join(30)
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def http(local_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.http_url, timeout=30) as client:
        yield client
