"""One local stack for the whole integration package."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import RunningStack, running_stack


@pytest.fixture(scope="package")
def local_stack() -> Iterator[RunningStack]:
    with running_stack() as stack:
        assert httpx.get(f"{stack.http_url}/healthz").status_code == 200
        yield stack


@pytest.fixture
def http(local_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.http_url, timeout=30) as client:
        yield client
