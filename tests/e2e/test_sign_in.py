"""The chat page with `PTS_AUTH=jwt`: "Sign in" runs the authorization code + PKCE flow against
the local issuer (its one-field login), and then the page works as ever for that user."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import RunningStack, running_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_stack() -> Iterator[RunningStack]:
    """The conftest's stack, signed in: the local issuer runs beside it."""
    with running_stack({"PTS_AUTH": "jwt"}) as stack:
        yield stack


def signed_in(browser: Browser, stack: RunningStack, user: str) -> Page:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("console", lambda message: print(f"console {message.type}: {message.text}"))
    seen_urls: list[str] = []
    page.on("framenavigated", lambda frame: seen_urls.append(frame.url))
    page.goto(f"{stack.http_url}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "signed-out")
    expect(page.locator("#prompt")).to_be_disabled()
    page.locator("#sign-in").click()
    # The issuer's dev login (another origin), then back with a code.
    assert stack.stack.issuer is not None
    page.wait_for_url(f"{stack.stack.issuer.url}/authorize?**")
    page.locator('input[name="username"]').fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.http_url}/")
    expect(page.locator("#user")).to_have_text(f"Signed in as {user}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    token = page.evaluate("sessionStorage.getItem('pts.signIn.token')")
    assert token and token.count(".") == 2
    # Never in a URL the browser went to (the code was, once, and left the bar at once).
    assert not any(token in url for url in seen_urls)
    assert "code=" not in page.url
    return page


def test_sign_in_and_stream_a_reply(browser: Browser, local_stack: RunningStack):
    alice = signed_in(browser, local_stack, "alice")
    prompt = f"echo:Hello from Alice, signed in. [{uuid.uuid4().hex[:8]}]"
    alice.locator("#prompt").fill(prompt)
    alice.locator("#prompt").press("Enter")
    item = alice.locator("li.chat").filter(has=alice.locator(".prompt", has_text=prompt[5:]))
    expect(item).to_have_attribute("data-status", "done")
    expect(item.locator(".text")).to_have_text(prompt.removeprefix("echo:"))

    # Bob signs in elsewhere: Alice's private chat is not his to see.
    bob = signed_in(browser, local_stack, "bob")
    expect(bob.locator("#conversation")).to_have_attribute("aria-busy", "false")
    expect(bob.locator("li.chat")).to_have_count(0)

    # Alice signs out: nothing is readable without signing in again.
    alice.locator("#sign-out").click()
    expect(alice.locator("#sign-in")).to_be_visible()
    expect(alice.locator("li.chat")).to_have_count(0)
    alice.context.close()
    bob.context.close()
