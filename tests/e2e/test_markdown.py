"""Replies render as Markdown while they stream, and nothing in a reply can run script."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_page import chat_item, reply_text, send, unique

pytestmark = pytest.mark.slow

OpenPage = Callable[..., Page]

# For each change of each reply: its status and which Markdown elements it holds.
RECORD_ELEMENTS = """() => {
  window.shapes = [];
  const selectors = {li: "li", strong: "strong", code: "pre code", table: "table td"};
  new MutationObserver(() => {
    for (const li of document.querySelectorAll("li.chat")) {
      const text = li.querySelector(".text");
      const found = Object.keys(selectors).filter((k) => text.querySelector(selectors[k]));
      window.shapes.push({status: li.dataset.status, found});
    }
  }).observe(document.getElementById("conversation"),
             {subtree: true, childList: true, characterData: true, attributes: true});
}"""

MARKDOWN = """Here is **the plan**:

- read the *river*
- follow the silt

```python
def depth(river):
    return river.mean_depth  # <b>not bold</b>
```

| river | length |
|-------|-------:|
| Nile  | 6650 |
| Rhine | 1233 |
"""


def test_a_streamed_reply_renders_as_markdown_while_it_streams(new_page: OpenPage):
    page = new_page()
    page.evaluate(RECORD_ELEMENTS)
    tail = " ".join(f"Then sentence {i} flows on toward the sea." for i in range(120))
    prompt = unique(f"echo:{MARKDOWN}\n{tail}")
    item = send(page, prompt)
    expect(item).to_have_attribute("data-status", "done", timeout=20_000)

    text = item.locator(".text")
    expect(text.locator("strong").first).to_have_text("the plan")
    expect(text.locator("ul > li")).to_have_text(["read the river", "follow the silt"])
    expect(text.locator("ul em")).to_have_text("river")
    code = text.locator("pre > code.language-python")
    expect(code).to_contain_text("return river.mean_depth  # <b>not bold</b>")
    expect(text.locator("table th")).to_have_text(["river", "length"])
    expect(text.locator("table tbody tr")).to_have_count(2)
    expect(text.locator("table td").nth(3)).to_have_text("1233")
    assert reply_text(item) == prompt.removeprefix("echo:")
    # Rendered while streaming, not only at the end.
    shapes = page.evaluate("() => window.shapes")
    live = [set(s["found"]) for s in shapes if s["status"] == "streaming"]
    assert {"li", "strong", "code", "table"} in live, shapes[-5:]
    # The list and the open code block showed before the table had arrived.
    assert any(found >= {"li", "strong", "code"} and "table" not in found for found in live)


HOSTILE = """Try these:

<img src=x onerror="window.pwned = 'img'">

<script>window.pwned = 'script'</script>

Inline <img src=y onerror="window.pwned = 'inline'"> and <svg onload="window.pwned = 'svg'"></svg>
and <a href="javascript:window.pwned = 'html-link'">an HTML link</a>,
a [Markdown link](javascript:window.pwned='md-link') and ![an image](x onerror=alert(1)).
"""


def test_a_reply_can_never_run_script(new_page: OpenPage):
    driver = new_page()
    viewer = new_page()  # follows over the WebSocket: the same rendering, another path
    prompt = unique(f"echo:{HOSTILE}")
    for page in (driver, viewer):
        page.on("dialog", lambda dialog: pytest.fail(f"a reply opened a dialog: {dialog.message}"))
    mine = send(driver, prompt)
    theirs = chat_item(viewer, prompt)
    for page, item in ((driver, mine), (viewer, theirs)):
        expect(item).to_have_attribute("data-status", "done", timeout=20_000)
        text = item.locator(".text")
        # The HTML is shown as text; none of it became an element.
        expect(text).to_contain_text("<img src=x onerror=\"window.pwned = 'img'\">")
        expect(text).to_contain_text("<script>window.pwned = 'script'</script>")
        assert text.locator("img, script, svg, iframe, [onerror], [onload]").count() == 0
        for link in text.locator("a").all():
            href = link.get_attribute("href") or ""
            assert not href.lower().startswith("javascript:"), href
            link.click(modifiers=["ControlOrMeta"])  # a new tab at most, never script here
        assert page.evaluate("() => window.pwned") is None


def test_the_page_policy_stops_script_that_got_past_the_sanitizer(
    new_page: OpenPage, http: httpx.Client
):
    policy = http.get("/").headers["content-security-policy"]
    assert "script-src 'nonce-" in policy and "unsafe-inline" not in policy
    page = new_page()
    page.evaluate(
        """() => {
        const reply = document.createElement("div");
        reply.innerHTML = '<img src="data:," onerror="window.pwned = 1">'
          + '<a id="js" href="javascript:window.pwned = 2">x</a>';
        document.body.append(reply);
        const script = document.createElement("script");
        script.textContent = "window.pwned = 3";
        document.body.append(script);
        document.getElementById("js").click();
    }"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.pwned") is None
