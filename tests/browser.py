"""Headless Chromium for tests: open a page, collect console errors (playwright, system chromium).

Skips when playwright or /usr/bin/chromium is missing, unless EXTRACTGUARD_REQUIRE_BROWSER=1
(CI), which turns the skip into a failure.  Never downloads a browser (no `playwright install`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    return os.environ.get("EXTRACTGUARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser() -> str:
    """The Chromium executable, or skip (fail in CI) with the reason."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install playwright; no browser download needed)"
    path = chromium_path()
    if reason is None and path is None:
        reason = "no Chromium found (apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("EXTRACTGUARD_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return str(path)


@contextmanager
def open_page(url: str, timeout_ms: int = 30_000, requests: list[str] | None = None) -> Iterator[tuple[Any, list[str]]]:
    """Yield ``(page, console_errors)`` for ``url``; errors include uncaught exceptions and failed loads.

    ``requests``, if given, collects the URL of every request the page makes (from the first).
    """
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_ms)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
            if requests is not None:
                page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            yield page, errors
        finally:
            browser.close()
