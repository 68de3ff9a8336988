"""The Catalog page and the version comparison in a real browser (headless Chromium).

Pages are reached as a visitor does: the app's address, then the sidebar link.

A real MLflow server with a champion and a challenger (planted test predictions), a DuckDB
catalog with planted scores and real audio files, ``hitsong dashboard`` as a subprocess.
Screenshots: ``test-artifacts/dashboard-6-catalog.png`` and ``dashboard-7-compare.png``.
"""

from __future__ import annotations

import pytest

from hitsong.store.read import split_frame
from tests.helpers.browser import CHART, CHROMIUM, TIMEOUT_MS, chromium, dashboard, no_traceback, open_page, shot
from tests.helpers.catalog import log_compared_versions, seed_scores, write_song_audio
from tests.helpers.dashboard import seed_store
from tests.helpers.mlflow import mlflow_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (`make deps-browser`)"
    ),
]


#: Drawn by the app's own sidebar (``dashboard.ui.sidebar``): the navigation is the app's, not
#: a listing Streamlit would make by itself of a ``pages/`` folder.
APP_READY = "Tracking server:"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-catalog")
    seed_store(home)
    write_song_audio(home, [f"s{i:03d}" for i in range(8)])
    test = split_frame(home / "hitsong.duckdb", "western", "test")
    with mlflow_server(home) as srv:
        versions = log_compared_versions(srv.uri, home, song_ids=test["song_id"].tolist(),
                                         truth=test["hit_score"].to_numpy())  # fmt: skip
        seed_scores(home, versions["champion"])
        with dashboard(home, srv.uri) as url:
            yield {"url": url, **versions}


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_catalog_page_plays_the_top_songs_and_filters(stack, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    open_page(page, stack["url"], APP_READY)
    open_page(page, "Catalog", "Top 50 of 60 songs")
    no_traceback(page)
    assert page.get_by_test_id("stSidebarNav").get_by_text("Catalog", exact=True).count() == 1  # the app's titles
    page.locator("audio").nth(4).wait_for(timeout=TIMEOUT_MS)
    assert page.locator("audio").count() == 5
    assert page.get_by_text("Download the table (CSV)").count() == 1
    shot(page, "6-catalog")
    page.get_by_test_id("stMultiSelect").nth(2).click()
    page.get_by_role("option", name="Q2", exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_text("songs by predicted hit score").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSpinner\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    assert page.get_by_text("of 60 songs").count() == 0  # the filter left fewer songs
    no_traceback(page)


def test_registry_page_compares_champion_and_challenger(stack, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 3600})
    open_page(page, stack["url"], APP_READY)
    open_page(page, "Registry", "Songs they disagree on most", charts=2)
    no_traceback(page)
    assert page.get_by_text("Rank agreement (Spearman ρ)").count() == 1
    page.get_by_text(f"Model card of v{stack['champion']}").first.click()
    page.get_by_text("Departures from the paper").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function(f"document.querySelectorAll({CHART!r}).length >= 2", timeout=TIMEOUT_MS)
    shot(page, "7-compare")
