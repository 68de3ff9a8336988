"""End to end in a real browser: MLflow server + ``hitsong dashboard`` + headless Chromium.

Starts a real ``mlflow server`` and the Streamlit server (``hitsong dashboard``) on free loopback
ports, opens every page in Debian's Chromium driven by Playwright, uploads generated 4-minute
MP3s on Predict and waits for their scores, and saves a screenshot of every page into
``test-artifacts/``. The time from choosing a file to its score on screen (by the browser's clock,
and as the test process sees it) is written to ``test-artifacts/predict_timing.json`` and shown
at the end of the pytest run (``conftest.py``): the dashboard's start (process to first HTTP
answer), the Predict page's first opening (the champion loaded from the registry and summarised,
before any upload), the cold first score (the session's first upload), a warm one (the next
upload, on the page that shows the first card) and a warm one in a new session (a second
visitor: the champion loaded, no cards yet), each with the scorer's stage timings from its card.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dashboard.commands import wait_until_ready
from hitsong.store.read import split_frame
from registry.server import free_port
from tests.helpers.dashboard import log_champion, mp3_bytes, seed_runs, seed_store
from tests.helpers.mlflow import mlflow_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 120_000
CHART = "[data-testid='stPlotlyChart']"
SCORE_LABEL = "Hit score (training-catalogue scale)"
#: The browser's own clock for "from choosing the file to the score on screen": the file input's
#: change event, and the first frame painted after the n-th card's score label entered the page
#: (a timeout queued from the animation frame that precedes that paint runs after it). Playwright's
#: locator polling, seen from the test process, adds ~0.1-0.4 s of its own on this machine.
PAINT_CLOCK = f"""
window.__hitsong = {{chosen: null, shown: []}};
document.addEventListener('change', (e) => {{
  if (e.target instanceof HTMLInputElement && e.target.type === 'file') window.__hitsong.chosen = performance.now();
}}, true);
new MutationObserver(() => {{
  const labels = document.querySelectorAll("[data-testid='stMetricLabel']");
  const n = [...labels].filter((el) => el.textContent.includes({SCORE_LABEL!r})).length;
  const shown = window.__hitsong.shown;
  while (shown.length < n) {{
    const i = shown.length;
    shown.push(null);
    requestAnimationFrame(() => setTimeout(() => {{ shown[i] = performance.now(); }}));
  }}
}}).observe(document, {{subtree: true, childList: true}});
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (`make deps-browser`)"
    ),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Seeded home, MLflow server with runs and a champion, and the dashboard as a subprocess."""
    home = tmp_path_factory.mktemp("e2e-home")
    seed_store(home)
    (home / "demo").mkdir()  # the home holds the synthetic demo label: pages must say so
    test = split_frame(home / "hitsong.duckdb", "western", "test")
    with mlflow_server(home) as srv:
        seed_runs(srv.uri, song_ids=test["song_id"].tolist(), truth=test["hit_score"].to_numpy())
        log_champion(srv.uri, home)
        port = free_port()
        env = {**os.environ, "HITSONG_HOME": str(home), "MLFLOW_TRACKING_URI": srv.uri}
        log_path = home / "dashboard.log"
        started = time.perf_counter()
        with log_path.open("wb") as log_fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hitsong", "dashboard", "--port", str(port), "--max-upload-mb", "50"],
                env=env,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, timeout=120, process=proc)
            ready = time.perf_counter() - started
            yield {"url": url, "home": home, "log": log_path, "start_seconds": ready}
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(page, where: str, text: str, *, charts: int = 0) -> float:
    """Go to ``where`` (a URL, or a sidebar link's name: same session) and wait until ``text``
    and ``charts`` plotly charts are drawn and no spinner is left; the seconds that took."""
    start = time.perf_counter()
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
        _shot(page, "failed-" + where.rsplit("/", 1)[-1].replace(":", "-"))
        raise
    seconds = time.perf_counter() - start
    page.wait_for_timeout(1000)  # let plotly finish drawing
    return seconds


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)  # Streamlit scrolls inside: the viewport is tall
    return path


def _card(page, name: str):
    """The Predict page's result card of the uploaded file ``name``: the block around its heading."""
    heading = page.get_by_role("heading", name=name, exact=True)
    return heading.locator("xpath=ancestor::div[@data-testid='stVerticalBlock'][1]")


@dataclass(frozen=True)
class UploadTiming:
    """One upload on the Predict page (see :func:`_score_upload`)."""

    on_screen: float
    seen_by_driver: float
    in_scorer: float
    stages: str


def _score_upload(page, song: Path, *, seed: int, cards: int) -> UploadTiming:
    """Choose a generated 4-minute MP3 on the Predict page; it becomes the ``cards``-th card.

    Times the choice to its score on screen by the browser's clock (:data:`PAINT_CLOCK`, which the
    page must have been opened with) and as the test process sees it, and reads the seconds the
    card says the scorer took and its stage timings; once plotly has drawn the card (as a person
    would wait before choosing the next file).
    """
    mp3_bytes(song, seconds=240.0, seed=seed)
    start = time.perf_counter()
    page.locator("input[type=file]").set_input_files(str(song))
    card = _card(page, song.name)
    card.get_by_text(SCORE_LABEL, exact=True).wait_for(timeout=TIMEOUT_MS)
    seen = time.perf_counter() - start
    page.wait_for_function(f"document.querySelectorAll({CHART!r}).length >= {1 + 3 * cards}", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    chosen, shown = page.evaluate(f"[window.__hitsong.chosen, window.__hitsong.shown[{cards - 1}]]")
    assert chosen is not None and shown is not None and shown > chosen, (chosen, shown)
    values = card.get_by_test_id("stMetricValue").all_inner_texts()  # score, percentile, scored in
    stages = card.get_by_text("Stage timings (s):").inner_text().removeprefix("Stage timings (s): ")
    return UploadTiming((shown - chosen) / 1000.0, seen, float(values[2].removesuffix(" s")), stages)


def _no_traceback(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']"
    ).first.inner_text()


def test_every_page_in_chromium_and_scoring_an_uploaded_mp3(stack, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    page.add_init_script(PAINT_CLOCK)
    url = stack["url"]

    _open(page, url, "Table 1", charts=2)  # the champion's experiment: one run, nothing to compare
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="hitsong/test/western").click()
    page.get_by_text("Metrics of the selected runs").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function(f"document.querySelectorAll({CHART!r}).length >= 3", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    _no_traceback(page)
    assert page.get_by_text("Synthetic demo data").count() >= 1
    assert page.get_by_text("★").count() >= 4
    _shot(page, "1-experiments")

    _open(page, "Data", "Mean playcount by release quarter", charts=2)
    _no_traceback(page)
    _shot(page, "2-data")

    _open(page, "Genres", "Predominant genre of the top songs", charts=1)  # the experiment chosen above
    _no_traceback(page)
    _shot(page, "3-genres")

    _open(page, "Registry", "Versions")
    _no_traceback(page)
    assert page.get_by_text("champion").count() >= 1
    _shot(page, "5-registry")

    # the champion is loaded and its catalogue drawn before any upload (the first visit loads it)
    predict_ready = _open(page, "Predict", "Training catalogue", charts=1)
    _no_traceback(page)
    assert page.get_by_text("Scoring on CPU").count() == 1
    timings = {}
    for i, label in enumerate(("cold", "warm")):
        timings[label] = _score_upload(page, tmp_path / f"track-{label}.mp3", seed=i, cards=i + 1)
    page.wait_for_timeout(500)
    _no_traceback(page)
    _shot(page, "4-predict")
    # a second visitor: a new session on the same server, the champion already loaded, no cards yet
    other = browser.new_page(viewport={"width": 1400, "height": 3000})
    other.add_init_script(PAINT_CLOCK)
    _open(other, url, "Table 1", charts=2)
    _open(other, "Predict", "Training catalogue", charts=1)
    timings["warm, new session"] = _score_upload(other, tmp_path / "track-new-session.mp3", seed=2, cards=1)
    _no_traceback(other)
    record = {
        "seconds_to_score_on_screen": {k: t.on_screen for k, t in timings.items()},
        "seconds_seen_by_test_driver": {k: t.seen_by_driver for k, t in timings.items()},
        "seconds_in_scorer": {k: t.in_scorer for k, t in timings.items()},
        "scorer_stages": {k: t.stages for k, t in timings.items()},
        "dashboard_start_seconds": stack["start_seconds"],
        "predict_page_ready_seconds": predict_ready,
        "file": "4-minute 44.1 kHz stereo MP3",
        "device": "cpu",
        "method": "m6 (tiny config)",
        "load_average": os.getloadavg(),
    }
    (ARTIFACTS / "predict_timing.json").write_text(json.dumps(record, indent=1))
    assert set(timings) == {"cold", "warm", "warm, new session"}
