"""What the chat page loads, all from the app: the JavaScript client and the vendored libraries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.slow

OpenPage = Callable[..., Page]
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"


def test_the_page_loads_the_js_client_module_served_by_the_app(
    new_page: OpenPage, http: httpx.Client
):
    loaded: list[str] = []

    def record(page: Page) -> None:
        page.on("requestfinished", lambda request: loaded.append(request.url))

    new_page(setup=record)
    paths = {url.split("/", 3)[3] for url in loaded}
    assert {
        "static/client/index.js",
        "static/client/view.js",
        "static/vendor/marked/marked.esm.js",
        "static/vendor/dompurify/purify.es.js",
    } <= paths, paths
    # The very module of clients/js, not a copy.
    for name in ("index.js", "view.js"):
        response = http.get(f"/static/client/{name}")
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.content == (CLIENT / name).read_bytes()


def test_the_libraries_are_served_by_the_app_with_their_licenses(http: httpx.Client):
    versions = http.get("/static/vendor/VERSIONS")
    assert versions.status_code == 200
    for path, name in [
        ("marked/marked.esm.js", "marked"),
        ("dompurify/purify.es.js", "dompurify"),
    ]:
        response = http.get(f"/static/vendor/{path}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert f"{name} " in versions.text
        assert http.get(f"/static/vendor/{name}/LICENSE").status_code == 200
    missing = http.get("/static/vendor/nothing.js")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
