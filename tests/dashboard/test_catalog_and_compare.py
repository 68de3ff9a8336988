"""AppTest of the Catalog page and the Registry page's version comparison (real server, real DuckDB).

The catalog scores are planted (``sNNN`` scores ``100 - NNN``) so the order, the filters and
the CSV are known; the two versions' test predictions are planted too (m6: truth + small noise,
m1: truth + large noise), and every number the comparison shows is recomputed here from those
arrays with scipy and pandas.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from dashboard import catalog, compare
from hitsong.compare import compare as compare_versions
from hitsong.results import ResultsConfig
from hitsong.store import connect
from hitsong.store.read import split_frame
from tests.helpers.catalog import MODEL, log_compared_versions, seed_scores, write_song_audio
from tests.helpers.dashboard import seed_store
from tests.helpers.mlflow import mlflow_server

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "navigation.py")  # AppTest runs scripts, not an st.App


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("catalog-home")
    seed_store(home)
    write_song_audio(home, [f"s{i:03d}" for i in range(8)])
    test = split_frame(home / "hitsong.duckdb", "western", "test")
    with mlflow_server(home) as srv:
        versions = log_compared_versions(srv.uri, home, song_ids=test["song_id"].tolist(),
                                         truth=test["hit_score"].to_numpy())  # fmt: skip
        seed_scores(home, versions["champion"])
        yield {"uri": srv.uri, "home": home, "test": test, **versions}


@pytest.fixture
def app(server, monkeypatch):
    monkeypatch.setenv("HITSONG_HOME", str(server["home"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _quarters(home: Path) -> pd.Series:
    with connect(home / "hitsong.duckdb", read_only=True) as con:
        return (
            con.execute("SELECT song_id, release_quarter FROM song_stats").df().set_index("song_id")["release_quarter"]
        )


def test_catalog_page_lists_top_songs_with_players_and_a_csv(app, server) -> None:
    at = _page(app, "catalog")
    assert at.title[0].value == "Catalog"
    table = at.dataframe[0].value
    assert table["song_id"].tolist()[:5] == ["s000", "s001", "s002", "s003", "s004"]  # best first
    assert table["score"].is_monotonic_decreasing and len(table) == 50  # the default top 50 of 60
    quarters = _quarters(server["home"])
    assert (table.set_index("song_id")["release_quarter"] == quarters.loc[table["song_id"]]).all()
    assert set(table["title"]) <= {f"Song s{i:03d}" for i in range(60)}
    assert len(at.get("audio")) == catalog.PLAYERS  # the top five, from their real files
    assert any("not a probability" in c.value for c in at.caption)  # a score stated as a score
    download = at.get("download_button")[0]
    assert download.proto.label == "Download the table (CSV)"


def test_catalog_filters_by_genre_and_quarter(app, server) -> None:
    at = _page(app, "catalog")
    genre, quarter = at.multiselect[1], at.multiselect[2]
    picked_genre = genre.options[0]
    picked_quarter = "Q2"
    genre.set_value([picked_genre])
    quarter.set_value([picked_quarter]).run()
    table = at.dataframe[0].value
    quarters = _quarters(server["home"])
    expected = [
        f"s{i:03d}" for i in range(60) if catalog_genre(i) == picked_genre and quarters[f"s{i:03d}"] == picked_quarter
    ]
    assert table["song_id"].tolist() == expected and expected


def catalog_genre(i: int) -> str:
    from hitsong.tagger import GENRE_TAGS

    return list(GENRE_TAGS)[:3][i % 3]


def test_catalog_csv_is_the_filtered_table(server) -> None:
    frame = catalog.catalog_table(server["home"] / "hitsong.duckdb", MODEL, server["champion"])
    shown = catalog.filter_table(frame, quarters=["Q1", "-Q1"])
    back = pd.read_csv(io.BytesIO(catalog.csv_bytes(shown)))
    assert back.columns.tolist() == list(catalog.TABLE_COLUMNS)
    assert back["song_id"].tolist() == shown["song_id"].tolist()
    assert set(back["release_quarter"]) <= {"Q1", "-Q1"}


def test_catalog_page_without_scores_says_how_to_make_them(server, tmp_path, monkeypatch) -> None:
    seed_store(tmp_path)
    monkeypatch.setenv("HITSONG_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at = _page(at, "catalog")
    assert "hitsong score --catalog" in at.info[-1].value


def test_registry_compares_champion_and_challenger(app, server) -> None:
    at = _page(app, "registry")
    assert at.selectbox(key="compare_a").value == server["champion"]  # the champion and the challenger first
    assert at.selectbox(key="compare_b").value == server["challenger"]
    test, preds = server["test"], server["predictions"]
    truth = test["hit_score"].to_numpy()
    rho = stats.spearmanr(preds["m6"], preds["m1"]).statistic
    tau = stats.kendalltau(preds["m6"], preds["m1"]).statistic
    values = {m.label: m.value for m in at.metric}
    assert values["Rank agreement (Spearman ρ)"] == f"{rho:.3f}"
    assert values["Rank agreement (Kendall τ)"] == f"{tau:.3f}"
    metrics = at.dataframe[1].value  # after the versions table
    la, lb = f"v{server['champion']}", f"v{server['challenger']}"
    assert metrics.loc["Spearman ρ", la].startswith(f"{stats.spearmanr(truth, preds['m6']).statistic:.3f} [")
    assert metrics.loc["Spearman ρ", lb].startswith(f"{stats.spearmanr(truth, preds['m1']).statistic:.3f} [")
    worst = at.dataframe[2].value.iloc[0]
    rank_a = pd.Series(preds["m6"]).rank(ascending=False, method="first")
    rank_b = pd.Series(preds["m1"]).rank(ascending=False, method="first")
    gap = (rank_b - rank_a).abs()
    assert worst["song"] == test["song_id"].iloc[int(gap.idxmax())]
    assert len(at.expander) >= 2
    cards = " ".join(m.value for m in at.markdown)
    assert "Departures from the paper" in cards and "hitsong train --subset western --methods m6" in cards


def test_comparison_intervals_hold_the_point_values_and_the_difference_is_paired(server) -> None:
    preds, test = server["predictions"], server["test"]
    frames = {m: pd.DataFrame({"song_id": test["song_id"], "true": test["hit_score"], "predicted": p})
              for m, p in preds.items()}  # fmt: skip
    result = compare_versions(frames["m6"], frames["m1"], labels=("v1", "v2"), config=ResultsConfig(n_bootstrap=300))
    m = result.metrics
    assert ((m["ci_low"] <= m["mean"] + 1e-12) & (m["mean"] <= m["ci_high"] + 1e-12)).all()
    challenger = m[m["method"] == "v2"].set_index("metric")
    champion = m[m["method"] == "v1"].set_index("metric")
    np.testing.assert_allclose(challenger["diff_v1"], challenger["mean"] - champion["mean"])
    table = compare.metrics_frame(result)
    assert list(table.columns) == ["v1", "v2", "v2 − v1", "p"]
    fig = compare.scatter_figure(result)
    assert len(fig.data[0].x) == len(test)
