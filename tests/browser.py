"""Headless Debian chromium for the browser tests (Playwright driving the system browser; no download)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import pytest

CHROMIUM = "/usr/bin/chromium"


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
