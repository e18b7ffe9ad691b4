"""The whole local stack on ephemeral ports (its services in a thread here, each function in
processes of its own), for tests that need it running."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pts import aws
from pts.local.stack import LocalStack, StackOptions

# Short, fast demo replies and batches.
TEST_ENVIRONMENT = {
    "PTS_DEMO_TOKENS_PER_SECOND": "400",
    "PTS_DEMO_REPLY_TOKENS": "120",
    "PTS_BATCH_MAX_DELAY_SECONDS": "0.2",
}


@dataclass(frozen=True)
class RunningStack:
    stack: LocalStack
    http_url: str
    ws_url: str
    loop: asyncio.AbstractEventLoop


@contextmanager
def running_stack(
    environment: dict[str, str] | None = None, *, data_dir: Path | None = None
) -> Iterator[RunningStack]:
    """Start the stack in a thread of its own, point this process's clients at it (its
    `client_environment()`); stop it and restore the environment after. `environment`
    adds knobs (`PTS_*`) on top of `TEST_ENVIRONMENT`. In memory only, unless given a
    `data_dir` to keep the tables in."""
    saved = dict(os.environ)
    os.environ.update({**TEST_ENVIRONMENT, **(environment or {})})
    options = StackOptions(
        http_port=0,
        ws_port=0,
        sweep_interval=0.5,
        table_prefix=f"t{uuid.uuid4().hex[:8]}",
        auth=os.environ.get("PTS_AUTH", "none"),  # jwt: the local issuer on a free port too
        issuer_port=0,
        data_dir=data_dir,
    )
    stack = LocalStack(options)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stopped = asyncio.Event()
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
    try:
        if errors:
            raise errors[0]
        os.environ.update(stack.client_environment())
        aws.client.cache_clear()
        aws.session.cache_clear()
        yield RunningStack(stack, stack.http_url, stack.ws_url, loop)
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(30)
        os.environ.clear()
        os.environ.update(saved)
        aws.client.cache_clear()
        aws.session.cache_clear()
