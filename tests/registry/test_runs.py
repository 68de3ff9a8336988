"""``registry.runs`` against a real ``mlflow server`` seeded the way training logs runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hitsong.errors import RegistryError
from hitsong.training import runlayout
from registry import runs
from registry.server import free_port
from registry.tracking import MlflowRunLogger
from tests.helpers.dashboard import seed_runs
from tests.helpers.mlflow import mlflow_server

N_SONGS = 12
METRICS = ("recall_at_k", "ndcg_at_k", "kendall_tau", "spearman_rho")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server: experiment ``hitsong/test/western`` with m1, m2 x two repetitions and a summary
    run (``tests.helpers.dashboard.seed_runs``), plus ``hitsong/test/extra`` holding one run that is not
    training's (no kind tag) with a ``table1`` artifact of another name and format."""
    rng = np.random.default_rng(7)
    song_ids = [f"s{i:02d}" for i in range(N_SONGS)]
    truth = rng.gamma(2.0, 5.0, size=N_SONGS)
    with mlflow_server(tmp_path_factory.mktemp("runs")) as srv:
        finals = seed_runs(srv.uri, song_ids=song_ids, truth=truth)
        logger = MlflowRunLogger.for_subset("test", "extra", tracking_uri=srv.uri)
        run = logger.start_run("extra summary")
        tmp = tmp_path_factory.mktemp("artifacts")
        pd.DataFrame({"method": ["m8"], "score": [0.5]}).to_parquet(tmp / "table1.parquet")
        logger.client.log_artifact(run.run_id, str(tmp / "table1.parquet"))
        logger.end_run(run)
        yield {"uri": srv.uri, "finals": finals, "song_ids": song_ids, "truth": truth}


@pytest.fixture(scope="module")
def western(server):
    exps = runs.list_experiments(server["uri"]).set_index("name")
    return runs.experiment_runs(server["uri"], exps.at["hitsong/test/western", "experiment_id"])


def test_list_experiments_names_and_subsets(server):
    exps = runs.list_experiments(server["uri"])
    assert exps["name"].tolist() == ["hitsong/test/extra", "hitsong/test/western"]  # sorted, no Default
    assert exps["subset"].tolist() == ["extra", "western"]
    assert exps["experiment_id"].is_unique


def test_experiment_runs_follow_the_run_layout(server, western):
    assert list(western.columns[:9]) == list(runs.RUN_COLUMNS)
    assert sorted(western["kind"]) == [runlayout.METHOD] * 2 + [runlayout.REPETITION] * 4 + [runlayout.SUMMARY]
    parents = western[western["kind"] == runlayout.METHOD].set_index("method")
    children = western[western["kind"] == runlayout.REPETITION].set_index("run_name")
    for name, child in children.iterrows():
        method, _, rep = name.split()
        assert child["method"] == method
        assert child["parent_id"] == parents.at[method, "run_id"]
        assert child["repetition"] == int(rep)
        for metric in METRICS:  # the logged names, no renaming
            assert child[runlayout.split_metric(runlayout.TEST, metric)] == pytest.approx(
                server["finals"][name][metric], abs=1e-12
            )
    assert (western["status"] == "FINISHED").all()
    assert (western["end_time"] >= western["start_time"]).all()
    summary = western[western["kind"] == runlayout.SUMMARY].iloc[0]
    assert summary["run_name"] == runlayout.summary_run_name("western") and pd.isna(summary["method"])
    assert pd.isna(summary["parent_id"])


def test_metric_history_is_the_logged_curve(server, western):
    rep1 = western.set_index("run_name").at["m1 rep 1", "run_id"]
    history = runs.metric_history(server["uri"], rep1).sort_values(["key", "step"], ignore_index=True)
    expected = [1.0 / (e + 1) for e in range(3)] + [1.2 / (e + 1) + 0.1 for e in range(3)]
    assert history["key"].tolist() == ["train_loss"] * 3 + ["val_loss"] * 3
    assert history["step"].tolist() == [0, 1, 2, 0, 1, 2]
    assert history["value"].to_numpy() == pytest.approx(expected)
    assert runs.metric_history(server["uri"], rep1, keys=("nothing",)).empty


def test_predictions_and_summary_artifacts(server, western):
    by_name = western.set_index("run_name")["run_id"]
    preds = runs.predictions(server["uri"], by_name["m2 rep 0"])
    assert preds["song_id"].tolist() == server["song_ids"]
    assert preds["true"].to_numpy() == pytest.approx(server["truth"])
    assert preds["predicted"].to_numpy() == pytest.approx(server["truth"])  # m2 predicts the truth
    assert runs.predictions(server["uri"], by_name["m1 rep 0"])["predicted"].to_numpy() != pytest.approx(
        server["truth"]
    )
    assert runs.predictions(server["uri"], by_name["western summary"]) is None
    table = runs.summary_table(server["uri"], by_name["western summary"]).set_index(["method", "metric"])
    finals = server["finals"]
    for method in ("m1", "m2"):
        for metric in METRICS:  # the artifact's means against the children's own metrics
            mean = np.mean([finals[f"{method} rep {r}"][metric] for r in (0, 1)])
            assert table.at[(method, metric), "mean"] == pytest.approx(mean, abs=1e-9)
    assert runs.summary_table(server["uri"], by_name["m1 rep 0"]) is None


def test_runs_outside_the_layout_are_not_guessed(server):
    uri = server["uri"]
    exps = runs.list_experiments(uri).set_index("name")
    extra = runs.experiment_runs(uri, exps.at["hitsong/test/extra", "experiment_id"])
    assert extra.at[0, "kind"] is None or pd.isna(extra.at[0, "kind"])
    assert runs.summary_table(uri, extra.at[0, "run_id"]) is None  # a parquet table1 is not training's table1.csv


def test_run_details_and_url(server, western):
    by_name = western.set_index("run_name")["run_id"]
    details = runs.run_details(server["uri"], [by_name["m1 rep 0"], by_name["m2 rep 1"]])
    assert [d["name"] for d in details] == ["m1 rep 0", "m2 rep 1"]
    assert [d["params"]["seed"] for d in details] == ["0", "1"]
    for d in details:
        assert d["metrics"]["test_spearman_rho"] == pytest.approx(server["finals"][d["name"]]["spearman_rho"])
    assert runs.run_url(server["uri"] + "/", "7", "abc") == f"{server['uri']}/#/experiments/7/runs/abc"


def test_runs_version_moves_with_a_new_run(server):
    uri = server["uri"]
    before = runs.runs_version(uri)
    assert before[0] == len(runs.list_experiments(uri)) + 1  # MLflow's Default counts
    logger = MlflowRunLogger.for_subset("test", "version", tracking_uri=uri)
    run = logger.start_run("open run")
    started = runs.runs_version(uri)
    frame = runs.experiment_runs(uri, logger.experiment_id)
    assert started[0] == before[0] + 1
    assert started[1] == frame.at[0, "start_time"].value // 1_000_000 >= before[1]
    assert started[2] == before[2]  # nothing ended yet
    logger.end_run(run)
    ended = runs.runs_version(uri)
    frame = runs.experiment_runs(uri, logger.experiment_id)
    assert ended[:2] == started[:2]
    assert ended[2] == frame.at[0, "end_time"].value // 1_000_000 >= started[1]


def test_requires_auth_is_false_on_an_open_server(server):
    assert runs.requires_auth(server["uri"]) is False


def test_refusals_name_the_server_and_the_request(server):
    bogus = "0" * 32
    with pytest.raises(RegistryError, match=rf"{server['uri']} refused to read run {bogus}"):
        runs.run_details(server["uri"], [bogus])


@pytest.mark.parametrize(
    "call",
    [
        runs.runs_version,
        runs.list_experiments,
        runs.requires_auth,
        lambda uri: runs.experiment_runs(uri, "1"),
        lambda uri: runs.metric_history(uri, "r"),
        lambda uri: runs.run_details(uri, ["r"]),
        lambda uri: runs.predictions(uri, "r"),
        lambda uri: runs.summary_table(uri, "r"),
    ],
)
def test_a_down_server_names_the_uri_and_hitsong_server(call):
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match=rf"{uri}.*`hitsong server`"):
        call(uri)
