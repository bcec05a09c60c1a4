"""Headless Debian Chromium driven by Playwright, for the browser tests (screenshots are test artifacts)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))
# Without the background-networking flags Chromium keeps dialling out on this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(artifact_dir: str):
    """A fresh page in headless Chromium; yields (page, screenshot(name) -> Path)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    out = ARTIFACTS / artifact_dir
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            counter = iter(range(1, 100))

            def screenshot(name: str) -> Path:
                path = out / f"{next(counter):02d}-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                return path

            yield page, screenshot
        finally:
            browser.close()
