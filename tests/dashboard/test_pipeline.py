"""The README's main command end to end.

``hitsong demo run --no-serve --tracking-uri URI`` on a small demo (2 x 32 songs of 25-40 s, 150
users per market, 2 repetitions) against a real ``mlflow server``: exit 0, m0..m6 trained under
the random and the artist-disjoint split (two experiments per market), a champion and a
challenger per subset from the random split, a second run that trains and registers nothing,
and ``hitsong predict`` scoring a demo song with the champion.

Whether the methods learn what the demo's listener model plants in the audio (and nothing from
shuffled labels) is checked apart from the pipeline, on short clips rendered in memory:
``tests/hitsong/demo/test_signals.py``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.cli import main
from tests.helpers.mlflow import TestServer, mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SUBSETS = ("mandarin", "western")
#: ``--splits random,artist``: each market trained under both (the default is the random one alone).
SPLITS = ("random", "artist")
#: ``hitsong demo run`` sized for a test: the pipeline and its defaults, on a small demo.
DEMO_ARGS = [
    "demo", "run", "--no-serve", "--songs-per-subset", "32", "--users", "150", "--seed", "5",
    "--song-seconds", "25,40", "--short-share", "0", "--repeats", "2", "--workers", "2",
    "--splits", ",".join(SPLITS),
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as srv:
        yield srv


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, server: TestServer) -> Iterator[Path]:
    """``HITSONG_HOME`` and ``MLFLOW_TRACKING_URI`` of the pipeline (both read by the settings)."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HITSONG_HOME", str(path))
        mp.setenv("MLFLOW_TRACKING_URI", server.uri)
        yield path


def _state(uri: str) -> dict[str, object]:
    """Every run id of the demo experiments and every registered version with its aliases."""
    from hitsong.training.runlayout import experiment_name
    from registry.models import list_versions, model_name
    from registry.tracking import client_for

    client = client_for(uri)
    runs: dict[str, list[tuple[str, str]]] = {}
    versions: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for subset in SUBSETS:
        for split_by in SPLITS:
            exp = client.get_experiment_by_name(experiment_name("demo", subset, split_by))
            found = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
            runs[f"{subset}/{split_by}"] = sorted((r.info.run_id, r.info.status) for r in found)
        found_versions = list_versions(model_name(subset), tracking_uri=uri)
        versions[subset] = sorted((str(v["version"]), tuple(sorted(v["aliases"]))) for v in found_versions)
    return {"runs": runs, "versions": versions}


@pytest.fixture(scope="module")
def pipeline(home: Path, server: TestServer) -> dict[str, object]:
    """Run the main command twice; return both runs' seconds and the tracking state after each."""
    started = time.monotonic()
    first = main([*DEMO_ARGS, "--tracking-uri", server.uri])
    first_seconds = time.monotonic() - started
    after_first = _state(server.uri)
    started = time.monotonic()
    second = main([*DEMO_ARGS, "--tracking-uri", server.uri])
    second_seconds = time.monotonic() - started
    return {
        "codes": (first, second),
        "seconds": (first_seconds, second_seconds),
        "states": (after_first, _state(server.uri)),
    }


def test_pipeline_trains_and_promotes_a_champion_per_subset(pipeline: dict[str, object]) -> None:
    assert pipeline["codes"][0] == 0
    state = pipeline["states"][0]
    for subset in SUBSETS:
        for split_by in SPLITS:
            # per split: a summary run, 7 method runs, 6 x 2 audio repetitions and m0's one, all finished
            key = f"{subset}/{split_by}"
            assert len(state["runs"][key]) == 1 + 7 + 6 * 2 + 1, key
            assert {status for _, status in state["runs"][key]} == {"FINISHED"}, key
        # the best audio method on validation is the champion, the runner-up the challenger
        assert state["versions"][subset] == [("1", ("champion",)), ("2", ("challenger",))], subset


def test_pipeline_trains_the_artist_split_apart_and_leaves_the_random_one(pipeline: dict[str, object]) -> None:
    """The artist experiment's test songs share no artist with its training songs; the store ends random."""
    from hitsong.settings import get_settings
    from hitsong.store.read import last_sample, split_frame
    from hitsong.store.sample import artist_key
    from hitsong.training import runlayout
    from hitsong.training.runlayout import experiment_name
    from registry import runs as registry_runs
    from registry.tracking import client_for

    settings = get_settings()
    assert last_sample(settings.db_path).by == "random"  # type: ignore[union-attr]
    artists = split_frame(settings.db_path).set_index("song_id")["artist"].map(artist_key)
    uri = client_for().tracking_uri
    exps = registry_runs.list_experiments(uri).set_index("name")
    for subset in SUBSETS:
        exp = exps.loc[experiment_name("demo", subset, "artist")]
        assert exp["split_by"] == "artist" and exp["dataset"] == "demo"
        runs = registry_runs.experiment_runs(uri, exp["experiment_id"])
        m0 = runs[(runs["method"] == "m0") & (runs["kind"] == "repetition")]
        assert m0["val_artists_seen"].tolist() == [0.0] and m0["test_artists_seen"].tolist() == [0.0]
        test_songs = registry_runs.predictions(uri, m0["run_id"].iloc[0])["song_id"]
        effects = registry_runs.run_table(uri, m0["run_id"].iloc[0], runlayout.BASELINE_EFFECTS)
        assert not set(artists[test_songs]) & set(effects["artist"]), subset


def test_second_run_reuses_everything(pipeline: dict[str, object]) -> None:
    assert pipeline["codes"][1] == 0
    first, second = pipeline["states"]
    assert second == first  # no new runs, no new versions, aliases unchanged
    first_s, second_s = pipeline["seconds"]
    # nothing is synthesised, computed or trained again: a small fraction of the first run
    assert second_s < 0.25 * first_s, pipeline["seconds"]


def test_dead_tracking_server_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from registry.server import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HITSONG_HOME", str(tmp_path / "home"))
        assert main([*DEMO_ARGS, "--tracking-uri", uri]) == 1
    assert f"no MLflow server answers at {uri}/health" in capsys.readouterr().err
    assert not (tmp_path / "home" / "demo").exists(), "the demo was synthesised before the check"


@pytest.mark.parametrize("bad", ["70,40", "40", "a,b", "0,10"])
def test_song_seconds_option_refuses_bad_ranges(bad: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "run", "--song-seconds", bad])
    assert exc.value.code == 2


@pytest.mark.parametrize("bad", ["", "random,alphabet", ",,"])
def test_splits_option_refuses_unknown_split_methods(bad: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "run", "--splits", bad])
    assert exc.value.code == 2


def test_the_default_demo_trains_the_random_split_only() -> None:
    """The artist-disjoint split doubles the training step: it is asked for, not the default."""
    import argparse

    from dashboard.pipeline import add_run_parser

    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers())
    assert parser.parse_args(["run"]).splits == ("random",)
    assert parser.parse_args(["run", "--splits", "random,artist"]).splits == ("random", "artist")


def test_demo_data_is_marked_synthetic(home: Path, pipeline: dict[str, object]) -> None:
    readme = (home / "demo" / "README.md").read_text(encoding="utf-8")
    assert "synthetic" in readme.lower()


def test_each_champion_scored_its_markets_catalog(home: Path, server: TestServer, pipeline: dict[str, object]) -> None:
    """Step 8: every catalog song of each market has one row of its champion in ``predictions``,
    the sampled ones scored from the feature store."""
    from hitsong.settings import get_settings
    from hitsong.store import connect
    from registry.models import list_versions, model_name

    with connect(get_settings().db_path, read_only=True) as con:
        songs = con.execute("SELECT subset, count(*) FROM songs GROUP BY subset").fetchall()
        rows = con.execute(
            "SELECT model, version, count(*), count(DISTINCT song_id), count(score) FROM predictions GROUP BY ALL"
        ).fetchall()
    champions = {
        model_name(s): v["version"]
        for s in SUBSETS
        for v in list_versions(model_name(s), tracking_uri=server.uri)
        if "champion" in v["aliases"]
    }
    expected = {(model_name(s), champions[model_name(s)], n, n, n) for s, n in songs}
    assert set(rows) == expected


def test_predict_with_the_champion(home: Path, server: TestServer, pipeline: dict[str, object]) -> None:
    """``hitsong predict`` on a demo song: a finite score and its percentile in the training catalog.

    The percentile is recomputed by hand: the share of the subset's training hit scores (the
    champion's catalog, from the DuckDB file) at or below the printed score.
    """
    from hitsong.settings import get_settings
    from hitsong.store.read import split_frame

    settings = get_settings()
    test_songs = split_frame(settings.db_path, subset="western", split="test")
    songs = pd.read_csv(home / "demo" / "songs.csv").set_index("song_id")
    audio = home / "demo" / songs.loc[test_songs["song_id"].iloc[0], "audio_path"]
    proc = subprocess.run(
        [sys.executable, "-m", "hitsong", "predict", str(audio), "--subset", "western",
         "--tracking-uri", server.uri, "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    row = lines[0]
    assert row["file"] == str(audio) and row["model"] == "hitsong-western" and str(row["version"]) == "1"
    assert row["method"] in {"m1", "m2", "m3", "m4", "m5", "m6"}
    assert math.isfinite(row["hit_score"]) and row["catalogue"] == "western"
    assert 0.0 <= row["catalogue_percentile"] <= 100.0
    catalog = split_frame(settings.db_path, subset="western", split="train")["hit_score"].to_numpy()
    assert row["catalogue_percentile"] == pytest.approx(100.0 * np.mean(catalog <= row["hit_score"]))
