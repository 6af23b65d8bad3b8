"""Headless Debian chromium for the browser tests (Playwright driving the system browser; no download)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import pytest

CHROMIUM = "/usr/bin/chromium"
HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run")
"""Headless on a closed network: without the background-networking flags chromium keeps dialling Google."""
WEBGL = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")
"""WebGL without a GPU: chromium's software rasteriser (SwiftShader) must be allowed explicitly."""
AUTOPLAY = ("--autoplay-policy=no-user-gesture-required",)
FAKE_MEDIA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
"""Camera and microphone without a prompt; add ``--use-file-for-fake-*-capture=PATH`` for real media."""


@contextmanager
def chromium(args: Sequence[str]) -> Iterator:
    """A launched headless chromium; skipped on a developer machine without it, a failure in CI
    (where setup installs it, so a missing browser means a broken setup, not a test to skip)."""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is not installed (setup installs it: apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(args))
        try:
            yield instance
        finally:
            instance.close()


def sign_in(page, base_url: str, key: str, path: str) -> None:
    """Sign in on the terminal's start page with an API key, then open ``path`` (a page of the terminal) and
    wait until it says it is ready (``body[data-ready='true']``)."""
    page.goto(base_url + "/")
    page.fill("#api-key", key)
    page.click("#sign-in-form button")
    page.wait_for_selector("#terminal", state="visible")
    page.goto(base_url + path)
    page.wait_for_selector("body[data-ready='true']")
