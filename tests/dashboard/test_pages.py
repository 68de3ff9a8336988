"""AppTest of every dashboard page against a real MLflow server and a seeded DuckDB file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import data, figures
from hitsong.errors import StoreError
from hitsong.store.read import split_frame
from hitsong.training import runlayout
from registry.models import list_versions, register
from tests.helpers.dashboard import log_champion, mp3_bytes, seed_runs, seed_store
from tests.helpers.mlflow import mlflow_server

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "navigation.py")
N_TEST = 10  # 40 sampled songs split 50/25/25


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A seeded DuckDB home and a real ``mlflow server`` on a free loopback port with two
    methods x two repetitions whose predictions are of the test songs, and the same songs under
    an artist-disjoint split with the metadata baseline m0 beside m1 and m2."""
    home = tmp_path_factory.mktemp("home")
    seed_store(home)
    test = split_frame(home / "hitsong.duckdb", "western", "test")
    with mlflow_server(home) as srv:
        song_ids, truth = test["song_id"].tolist(), test["hit_score"].to_numpy()
        finals = seed_runs(srv.uri, song_ids=song_ids, truth=truth)
        seed_runs(srv.uri, song_ids=song_ids, truth=truth, methods=("m0", "m1", "m2"), split_by="artist", seed=1)
        champion = log_champion(srv.uri, tmp_path_factory.mktemp("bundles"))
        yield {
            "uri": srv.uri,
            "home": home,
            "finals": finals,
            "song_ids": song_ids,
            "truth": truth,
            "champion": champion,
        }


@pytest.fixture
def app(server, monkeypatch):
    """The app pointed at the test server and home; caches cleared between tests."""
    monkeypatch.setenv("HITSONG_HOME", str(server["home"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _markdown(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in [*at.markdown, *at.caption, *at.info, *at.error, *at.warning])


def test_experiments_page_table1_spread_curves_comparison(app, server):
    at = app  # the default page
    assert at.title[0].value == "Experiments"
    at.selectbox[0].set_value("hitsong/test/western").run()
    table = at.dataframe[0].value  # Table 1 (Styler -> frame)
    assert list(table.index) == ["m1", "m2"]
    # m2 predicts the truth: best in every column; m1 is marked only where it ties at 1.
    assert all(str(v).endswith(figures.BEST_MARK) for v in table.loc["m2"])
    finals = server["finals"]
    for label, metric in (("Kendall τ", "kendall_tau"), ("Spearman ρ", "spearman_rho")):
        m1_best = all(finals[f"m1 rep {r}"][metric] == 1.0 for r in (0, 1))
        assert table.at["m1", label].endswith(figures.BEST_MARK) == m1_best
    m1_rho = np.mean([finals["m1 rep 0"]["spearman_rho"], finals["m1 rep 1"]["spearman_rho"]])
    assert table.at["m1", "Spearman ρ"].startswith(f"{m1_rho:.3f} ± ")
    assert "summary run “western summary”" in _markdown(at)  # training's own Table 1 is used
    gaps = at.dataframe[1].value  # m2 - m1 with paired bootstrap intervals (no m0 in this experiment)
    assert list(gaps.index) == ["m2"]
    assert "random split" in _markdown(at)
    share = at.dataframe[2].value  # the audio's share: this random split beside the artist-disjoint one
    assert {c[0] for c in share.columns} == {"random split", "artist-disjoint split"}
    assert ("artist-disjoint split", "Spearman ρ", "vs m0") in share.columns
    assert "release-date split" in _markdown(at)  # no such experiment yet: the page says how to make one
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # spread, the audio's share, learning curves, comparison
    comparison = at.dataframe[3].value
    assert list(comparison.columns)[:2] == ["m1 rep 0", "m1 rep 1"]
    assert bool(comparison.at["params.seed", "differs"])
    runs = at.dataframe[4].value
    assert runs["link"].str.startswith(f"{server['uri']}/#/experiments/").all()
    assert len(runs) == 2 + 4 + 1  # two methods x (parent + 2 repetitions), the summary run


def test_experiments_page_shows_gaps_to_m0_under_the_artist_split(app):
    at = app
    at.selectbox[0].set_value("hitsong/test/western/artist").run()
    assert not at.exception
    assert "artist-disjoint split" in _markdown(at)
    assert list(at.dataframe[0].value.index) == ["m0", "m1", "m2"]
    against_m0, against_m1 = at.dataframe[1].value, at.dataframe[2].value
    assert list(against_m0.index) == ["m1", "m2"] and list(against_m1.index) == ["m0", "m2"]
    assert "vs m0" in _markdown(at) and "metadata (artist+recency)" in _markdown(at)


def test_experiments_learning_curve_follows_the_chosen_run(app):
    at = app
    at.selectbox[0].set_value("hitsong/test/western").run()
    at.selectbox[2].select_index(3)  # the last repetition run
    at.run()
    assert not at.exception
    assert at.selectbox[2].value == "m2 rep 1"
    curves = at.get("plotly_chart")[2].proto.spec
    assert "Learning curves of m2 rep 1" in curves and "val_loss" in curves


def test_plain_loaders_against_the_server(server):
    uri = server["uri"]
    exps = data.list_experiments(uri).set_index("name")
    assert exps["subset"].to_dict() == {
        "hitsong/champion/western": "western",
        "hitsong/test/western": "western",
        "hitsong/test/western/artist": "western",
    }
    assert exps.at["hitsong/test/western/artist", "split_by"] == "artist"
    tables = data.split_tables(uri, exps.loc["hitsong/test/western"], exps.reset_index())
    assert set(tables) == {"random", "artist"} and "diff_m0" in tables["artist"]
    runs = data.experiment_runs(uri, exps.at["hitsong/test/western", "experiment_id"])
    assert sorted(runs[runs["kind"] == runlayout.METHOD]["method"]) == ["m1", "m2"]
    reps = data.repetitions(runs)
    assert sorted(reps["run_name"]) == ["m1 rep 0", "m1 rep 1", "m2 rep 0", "m2 rep 1"]
    history = data.metric_history(uri, reps.at[0, "run_id"])
    assert sorted(history.groupby("key").size().tolist()) == [3, 3]
    preds = data.test_predictions(uri, runs)
    assert sorted(preds["method"].unique()) == ["m1", "m2"]
    assert preds.groupby("method").size().tolist() == [N_TEST, N_TEST]
    before = data.runs_version(uri)
    seed_runs(uri, methods=("m1",), repeats=1, song_ids=server["song_ids"], truth=server["truth"], subset="mandarin")
    assert data.runs_version(uri) != before  # the cache key moves when runs arrive
    with pytest.raises(StoreError, match="hitsong features --subset mandarin"):
        data.song_genres(server["home"] / "hitsong.duckdb", "mandarin")


def test_pages_say_how_to_start_a_missing_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HITSONG_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on port 9
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    assert "hitsong server" in at.error[0].value
    for page in ("genres", "predict", "registry"):
        _page(at, page)
        assert "hitsong server" in at.error[0].value
    _page(at, "data")
    assert "hitsong demo run" in at.error[0].value and "hitsong ingest" in at.error[0].value


def test_data_page_figures_and_counts(app, server):
    at = _page(app, "data")
    counts = at.dataframe[0].value
    assert counts["subset"].tolist() == ["western"]
    assert counts.loc[0, ["songs", "train", "val", "test"]].tolist() == [60, 20, 10, 10]
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(charts) == 2
    assert '"type":"log"' in charts[0].replace(" ", "")  # Fig. 1 on a log axis
    assert "sampled" in charts[0] and "whole" in charts[0]
    assert "test" in charts[1] and "probability density" in charts[1]


def test_data_loaders_match_the_store(server):
    db = server["home"] / "hitsong.duckdb"
    quarters = data.quarter_frame(db)
    assert set(quarters["scope"]) == {"whole", "sampled"}
    whole = quarters[quarters["scope"] == "whole"]
    assert whole["songs"].sum() == 60
    scores = data.hit_scores(db)
    assert (scores["scope"] == "whole").sum() == 60 and (scores["scope"] == "test").sum() == N_TEST


def test_genres_page_counts_the_true_top_songs(app, server):
    at = _page(app, "genres")
    at.selectbox[0].set_value("hitsong/test/western").run()
    assert len(at.get("plotly_chart")) == 1
    assert at.slider[0].value == 5  # a third of the 10 test songs, in steps of 5: not a top 50 holding them all
    at.slider[0].set_value(50).run()
    table = at.dataframe[0].value  # genre x source
    assert set(table.columns) == {"m1", "m2", figures.TRUTH}
    # All N_TEST test songs are in every top list (top 50 > 10 songs); song sNNN's genre is
    # GENRE_TAGS[NNN % 3] (helpers.dashboard.seed_store): count them by hand.
    from hitsong.tagger import GENRE_TAGS

    expected = {}
    for song in server["song_ids"]:
        genre = GENRE_TAGS[int(song[1:]) % 3]
        expected[genre] = expected.get(genre, 0) + 1
    assert table[figures.TRUTH][table[figures.TRUTH] > 0].to_dict() == expected
    assert (table.sum() == N_TEST).all()
    at.slider[0].set_value(5).run()
    assert not at.exception
    assert (at.dataframe[0].value.sum() == N_TEST // 2).all()


@pytest.fixture
def upload_limit_7mb():
    """``server.maxUploadSize`` = 7, what `hitsong dashboard --max-upload-mb 7` passes to Streamlit."""
    from streamlit import config

    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 7)
    yield
    config.set_option("server.maxUploadSize", before)


def test_predict_page_scores_uploads_and_reports_a_bad_file(app, server, tmp_path, upload_limit_7mb):
    at = _page(app, "predict")
    assert "CPU" in _markdown(at)
    assert at.toggle[0].proto.disabled  # no CUDA on this machine: the GPU option is off, with a note
    assert "at most 7 MB each" in at.file_uploader[0].label
    assert at.file_uploader[0].proto.max_upload_size_mb == 7
    # before any upload: the champion is loaded and summarised, its catalogue drawn
    assert "hitsong-western v1 (m6) on CPU" in at.header[0].value
    summary = {m.label: m.value for m in at.metric}
    scorer = data.cached_scorer(server["uri"], "hitsong-western", "1", "cpu")  # the page's warm model
    assert summary["Training catalogue"] == f"{scorer.catalog.size} songs" and scorer.catalog.size > 0
    (catalogue,) = [c.proto.spec for c in at.get("plotly_chart")]
    assert "western training catalogue" in catalogue
    good = mp3_bytes(tmp_path / "song.mp3", seconds=20.0)
    at.file_uploader[0].set_value(
        [("song.mp3", good, "audio/mpeg"), ("broken.mp3", b"not audio at all" * 100, "audio/mpeg")]
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "hitsong-western v1 (m6) on CPU" in at.header[0].value
    metrics = {m.label: m.value for m in at.metric}
    score = float(metrics["Hit score (training-catalogue scale)"])
    assert 0.0 < float(metrics["Percentile in the western training catalogue"]) <= 100.0
    # stated as a score on the catalogue's scale, never as a probability
    assert "not a probability or a chance of becoming a hit" in _markdown(at)
    # The same bytes scored in process by the registered bundle give the same score.
    assert scorer.score([good], names=["song.mp3"])[0]["score"] == pytest.approx(score, abs=0.005)
    assert len(at.error) == 1 and "broken.mp3 could not be scored" in at.error[0].value
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(specs) == 4 and "training catalogue" in specs[0]  # the catalogue, then the card's three
    assert "Taggram" in specs[2] and "Score over time" in specs[3]


def _promote_in_page(at: AppTest, *, version: str, reason: str) -> AppTest:
    by_label = {box.label: box for box in at.selectbox}  # the comparison's select boxes come first
    by_label["Model"].set_value("hitsong-western").run()
    {box.label: box for box in at.selectbox}["Version"].set_value(version).run()
    assert at.button[0].proto.disabled  # no reason, no confirmation: no promotion
    at.text_area[0].input(reason).run()
    assert at.button[0].proto.disabled
    at.checkbox[0].check().run()
    assert not at.button[0].proto.disabled
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_registry_page_lists_versions_and_promotes_with_a_reason(app, server):
    uri = server["uri"]
    register("western", experiment="hitsong/champion/western", tracking_uri=uri)  # version 2
    at = _page(app, "registry")
    assert "no authentication" in _markdown(at)
    table = at.dataframe[0].value
    assert table["version"].tolist() == ["2", "1"] and table["aliases"].tolist() == ["", "champion"]
    assert table.at[1, "promotion_reason"] == "first champion" and table.at[1, "test_ndcg_at_k"] == 0.5
    _promote_in_page(at, version="2", reason="better on the new data")
    assert "version 2 is now champion" in at.success[0].value
    after = {v["version"]: v for v in list_versions("hitsong-western", tracking_uri=uri)}
    assert after["2"]["aliases"] == ["champion"] and after["1"]["aliases"] == ["challenger"]
    assert after["2"]["tags"]["hitsong.promotion_reason"] == "better on the new data"
    assert at.dataframe[0].value["aliases"].tolist() == ["champion", "challenger"]  # redrawn after promoting


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A basic-auth server: admin registers a champion; alice may edit it, bob may only read."""
    home = tmp_path_factory.mktemp("auth-home")
    with mlflow_server(home, auth=True) as srv:
        with srv.as_user(*srv.admin):
            log_champion(srv.uri, home, username=srv.admin[0], password=srv.admin[1])
        for user in ("alice", "bob"):
            srv.create_user(user, f"{user}-password-123")
        srv.grant("alice", "hitsong-western", "EDIT")
        yield srv


def _registry_as(auth_server, monkeypatch, home: Path, user: str) -> AppTest:
    """The Registry page with ``user`` signed in through the sidebar (the server reads as admin)."""
    monkeypatch.setenv("HITSONG_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", auth_server.admin[0])  # service reads, never promotions
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth_server.admin[1])
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at = _page(at, "registry")
    assert at.text_input(key="registry_username").value == ""  # nothing of the server's is pre-filled
    assert at.text_input(key="registry_password").value == ""
    at.text_input(key="registry_username").input(user)
    at.text_input(key="registry_password").input(f"{user}-password-123").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_registry_in_auth_mode_names_the_user_and_refuses_without_permission(auth_server, monkeypatch, tmp_path):
    at = _registry_as(auth_server, monkeypatch, tmp_path, "bob")
    assert "Signed in as **bob**" in _markdown(at)
    _promote_in_page(at, version="1", reason="bob tries")
    assert "refused the promotion" in at.error[0].value and "bob lacks permission" in at.error[0].value
    at = _registry_as(auth_server, monkeypatch, tmp_path, "alice")
    _promote_in_page(at, version="1", reason="alice re-confirms the champion")
    assert "promoted by alice" in at.success[0].value
    with auth_server.as_user(*auth_server.admin):
        tags = list_versions("hitsong-western", tracking_uri=auth_server.uri)[0]["tags"]
    assert tags["hitsong.promoted_by"] == "alice"


def test_registry_in_auth_mode_without_credentials_says_so(auth_server, monkeypatch, tmp_path):
    monkeypatch.setenv("HITSONG_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.uri)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    import streamlit as st

    st.cache_data.clear()  # an earlier test read this server with service credentials (cached per user)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at = _page(at, "registry")
    assert "refused the credentials" in at.error[0].value
