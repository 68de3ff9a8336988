"""Headless Chromium (Debian's, driven by Playwright) against a ``hitsong dashboard`` subprocess.

``dashboard(home, uri)`` starts the dashboard on a free loopback port and stops it; ``chromium()``
launches the browser; ``open_page`` waits for a text, charts and no spinner; ``shot`` saves a
full-page screenshot to ``test-artifacts/dashboard-<name>.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dashboard.commands import wait_until_ready
from registry.server import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 120_000
CHART = "[data-testid='stPlotlyChart']"


@contextmanager
def dashboard(home: Path, uri: str) -> Iterator[str]:
    """``hitsong dashboard`` for ``home`` and the server at ``uri``; yields its URL."""
    port = free_port()
    env = {**os.environ, "HITSONG_HOME": str(home), "MLFLOW_TRACKING_URI": uri}
    with (home / "dashboard.log").open("wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hitsong", "dashboard", "--port", str(port)],
            env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=120, process=proc)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium browser (Playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page, name: str) -> Path:
    """A full-page screenshot in ``test-artifacts/dashboard-<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(page, where: str, text: str, *, charts: int = 0) -> None:
    """Go to ``where`` (a URL, or a sidebar link's name) and wait for ``text``, ``charts`` plotly
    charts and no spinner; a failure leaves a ``failed-`` screenshot."""
    if where.startswith("http"):
        page.goto(where)
    else:
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=where).click()
    try:
        page.get_by_text(text, exact=False).first.wait_for(timeout=TIMEOUT_MS)
        if charts:
            page.wait_for_function(f"document.querySelectorAll({CHART!r}).length >= {charts}", timeout=TIMEOUT_MS)
        page.wait_for_function("!document.querySelector('[data-testid=\"stSpinner\"]')", timeout=TIMEOUT_MS)
    except Exception:
        shot(page, "failed-" + where.rsplit("/", 1)[-1].replace(":", "-"))
        raise
    page.wait_for_timeout(1000)  # let plotly finish drawing


def no_traceback(page) -> None:
    """Fail when the page shows a Python exception."""
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()
