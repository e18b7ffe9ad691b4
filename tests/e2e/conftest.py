"""The chat page in Debian's headless Chromium, driven by Playwright, against the local stack.

Only the system browser is used (`/usr/bin/chromium`, installed by `.ci/run`), never one that
Playwright downloads: without it these tests fail, they do not skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.support import RunningStack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope: while Playwright's sync API is active it keeps an event loop running in this
# thread, and tests elsewhere that call `asyncio.run` would fail.


@pytest.fixture(scope="module")
def local_stack() -> Iterator[RunningStack]:
    with running_stack() as stack:
        yield stack


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests use Debian's Chromium "
            "(`apt-get install chromium`; .ci/run installs it)",
            pytrace=False,
        )
    # Playwright gives each launch a fresh temporary profile (user-data-dir) and removes it
    # after; each context made from it is isolated, like a window of another person.
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def new_page(
    browser: Browser,
    local_stack: RunningStack,
) -> Iterator[Callable[..., Page]]:
    """Opens the chat page in a fresh context ("another window") each time it is called."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        print(f"console {message.type}: {message.text}")  # shown when a test fails
        if message.type in ("warning", "error") and message.text.startswith("pts:"):
            errors.append(message.text)  # the page's own complaints

    def open_page(setup: Callable[[Page], None] | None = None) -> Page:
        context = browser.new_context(viewport={"width": 1000, "height": 760})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", on_console)
        if setup is not None:
            setup(page)  # before the page loads: routes, listeners
        page.goto(f"{local_stack.http_url}/")
        expect(page.locator("#conversation")).to_have_attribute("aria-busy", "false")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def http(local_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.http_url, timeout=30) as client:
        yield client
