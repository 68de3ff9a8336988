"""Catalog scoring on a real catalog: real audio, DuckDB, feature store and a trained m6.

The module trains a tiny m6 on generated songs (10-s segments, the tagger hearing 6 s; local
tracking) and then scores the catalog with its bundle. The scores of the test songs must equal
training's own test predictions (the same feature path: one decode, the log-mel rounded to the
store's float16, the tag vector, the network): a second implementation of scoring, so a change
in either path fails here. Also: a broken file gets a row with its error and the others go on;
a second run scores nothing (resume); ``retry_failed``; folders and list files get their catalog
song ids; exports; a real dask cluster (scheduler and two worker processes) gives the same scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.audio import AudioConfig
from hitsong.catalog.items import Item, gather
from hitsong.catalog.run import score_items
from hitsong.catalog.stored import FeatureStore
from hitsong.errors import ConfigError, InputError
from hitsong.features import build_features
from hitsong.models.config import ModelConfig
from hitsong.results import ResultsConfig
from hitsong.scoring import SongScorer
from hitsong.store import connect
from hitsong.tracking import LocalRunLogger
from hitsong.training.config import TrainConfig
from hitsong.training.from_store import train_from_store
from tests.helpers.audio import make_db, make_library
from tests.helpers.dask_cluster import dask_cluster

pytestmark = pytest.mark.timeout(600)

AUDIO = AudioConfig(seconds=10.0, tagger_seconds=6.0)
#: song_id, suffix, seconds, sample rate, channels: four formats, short and long, and one broken file.
SPECS = [
    *[(f"w{i:02d}", ".wav", 12.0, 22050, 1) for i in range(6)],
    *[(f"f{i:02d}", ".flac", 8.0, 44100, 2) for i in range(4)],
    *[(f"m{i:02d}", ".mp3", 14.0, 44100, 2) for i in range(4)],
    ("o00", ".ogg", 11.0, 32000, 1),
    ("bad", "broken.mp3", 0.0, 0, 0),
]
MODEL, VERSION = "hitsong-western", "7"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("catalog")
    songs = make_library(root / "audio", SPECS)
    songs["audio_path"] = [str(root / "audio" / p) for p in songs["audio_path"]]
    db = make_db(root, songs)
    store = root / "features"
    build_features(db, store, workers=2, config=AUDIO)
    train_from_store(
        db, store, subset="western", logger=LocalRunLogger(root / "runs", experiment="western"), methods=["m6"],
        train_config=TrainConfig.for_profile("tiny", cpu_threads=1),
        model_config=ModelConfig.tiny(n_mels=128, n_tags=50),
        results_config=ResultsConfig(n_bootstrap=0), allow_missing=True,
    )  # fmt: skip
    bundle = next((root / "runs").rglob("bundle.json")).parent
    predictions = pd.read_csv(bundle.parent / "predictions.csv")
    scorer = SongScorer.from_bundle(bundle, device="cpu", warm_up=False)
    return {"root": root, "db": db, "songs": songs, "scorer": scorer, "predictions": predictions}


def _rows(db: Path, version: str = VERSION) -> pd.DataFrame:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT * FROM predictions WHERE version = ? ORDER BY song_id", [version]).df()


@pytest.fixture(scope="module")
def catalog_run(trained) -> dict:
    items = gather(catalog=True, db_path=trained["db"])
    report = score_items(items, scorer=trained["scorer"], model=MODEL, version=VERSION, db_path=trained["db"],
                         workers=2, batch_size=3, bar=False)  # fmt: skip
    return {"items": items, "report": report, "rows": _rows(trained["db"])}


def test_catalog_scores_equal_trainings_own_test_predictions(trained, catalog_run) -> None:
    rows = catalog_run["rows"].set_index("song_id")
    expected = trained["predictions"].set_index("song_id")["predicted"]
    assert len(expected) >= 3
    got = rows.loc[expected.index, "score"]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-4)
    # the percentile is the share of the training catalog's hit scores at or below the score
    catalog = np.sort(np.asarray(trained["scorer"].catalog))
    for song, score in got.items():
        assert rows.at[song, "percentile"] == pytest.approx(100 * np.mean(catalog <= score))


def test_every_catalog_song_has_one_row_and_the_broken_one_its_error(trained, catalog_run) -> None:
    rows, report = catalog_run["rows"], catalog_run["report"]
    assert sorted(rows["song_id"]) == sorted(trained["songs"]["song_id"])
    assert report.scored == len(SPECS) - 1 and report.failed == 1 and report.skipped == 0
    bad = rows.set_index("song_id").loc["bad"]
    assert np.isnan(bad["score"]) and "bad.mp3" in bad["error"]
    good = rows[rows["song_id"] != "bad"]
    assert good["error"].isna().all() and np.isfinite(good["score"]).all()
    assert set(good["method"]) == {"m6"}
    for tags, genre in zip(good["top_tags"], good["genre"], strict=True):
        top = json.loads(tags)
        assert len(top) == 5 and all(a[1] >= b[1] for a, b in zip(top, top[1:]))
        assert isinstance(genre, str) and genre


def test_a_second_run_scores_nothing_and_retry_failed_retries_only_the_failed(trained, catalog_run) -> None:
    items, before = catalog_run["items"], catalog_run["rows"]
    again = score_items(items, scorer=trained["scorer"], model=MODEL, version=VERSION, db_path=trained["db"],
                        workers=1, bar=False)  # fmt: skip
    assert (again.scored, again.failed, again.skipped) == (0, 0, len(items))
    retry = score_items(items, scorer=trained["scorer"], model=MODEL, version=VERSION, db_path=trained["db"],
                        workers=1, retry_failed=True, bar=False)  # fmt: skip
    assert (retry.scored, retry.failed, retry.skipped) == (0, 1, len(items) - 1)
    after = _rows(trained["db"])
    assert len(after) == len(before)
    pd.testing.assert_series_equal(after["score"], before["score"])


def test_folders_and_list_files_get_catalog_song_ids_and_missing_files_their_error(
    trained, catalog_run, tmp_path
) -> None:
    root = trained["root"]
    listing = tmp_path / "week.txt"
    listing.write_text(f"# this week's releases\n{root / 'audio' / 'w01.wav'}\nnot-there.mp3\n\n")
    items = gather(paths=[root / "audio"], list_file=listing, db_path=trained["db"])
    ids = {i.song_id for i in items}
    assert set(trained["songs"]["song_id"]) <= ids  # every file of the folder is a catalog song
    missing = str(tmp_path / "not-there.mp3")
    assert missing in ids and len(items) == len(SPECS) + 1  # w01 once, the missing file by its path
    report = score_items([i for i in items if i.song_id in (missing, "w01")], scorer=trained["scorer"],
                         model=MODEL, version="8", db_path=trained["db"], workers=1, bar=False)  # fmt: skip
    rows = _rows(trained["db"], "8").set_index("song_id")
    assert report.scored == 1 and report.failed == 1
    assert "not-there.mp3" in rows.at[missing, "error"] and rows.at[missing, "path"] == missing
    assert rows.at["w01", "score"] == pytest.approx(catalog_run["rows"].set_index("song_id").at["w01", "score"])


def test_catalog_filters_by_subset_and_release_date(trained) -> None:
    import datetime as dt

    items = gather(catalog=True, db_path=trained["db"], released_after=dt.date(2016, 6, 1))
    dates = pd.to_datetime(trained["songs"].set_index("song_id")["release_date"])
    assert {i.song_id for i in items} == set(dates[dates >= "2016-06-01"].index)
    with pytest.raises(InputError, match="nothing to score"):
        gather(catalog=True, db_path=trained["db"], subset="mandarin")
    with pytest.raises(InputError, match="needs the DuckDB catalog"):
        gather(catalog=True, db_path=trained["root"] / "nope.duckdb")


def test_songs_in_the_feature_store_are_scored_from_it_like_from_their_audio(trained, catalog_run) -> None:
    store = trained["root"] / "features"
    report = score_items(catalog_run["items"], scorer=trained["scorer"], model=MODEL, version="stored",
                         db_path=trained["db"], workers=1, store_dir=store, bar=False)  # fmt: skip
    assert report.from_store == len(SPECS) - 1  # every song but the broken one, which is decoded (and fails)
    assert report.scored == len(SPECS) - 1 and report.failed == 1
    stored = _rows(trained["db"], "stored").set_index("song_id")
    decoded = catalog_run["rows"].set_index("song_id")
    np.testing.assert_allclose(stored["score"], decoded.loc[stored.index, "score"], rtol=0, atol=1e-5)
    assert (stored["genre"].fillna("") == decoded.loc[stored.index, "genre"].fillna("")).all()
    # another audio config finds nothing stored: its features would differ
    other = FeatureStore(trained["db"], store, config=AudioConfig(), tagger=trained["scorer"].tagger.name)
    assert other.find(list(stored.index)) == {}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_writes_the_rows_of_the_run(trained, catalog_run, tmp_path, suffix: str) -> None:
    out = tmp_path / f"scores{suffix}"
    report = score_items(catalog_run["items"], scorer=trained["scorer"], model=MODEL, version=VERSION,
                         db_path=trained["db"], out=out, bar=False)  # fmt: skip
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert report.exported == len(frame) == len(SPECS)
    assert frame["score"].dropna().is_monotonic_decreasing


def test_bad_options_are_refused(trained) -> None:
    args = {"scorer": trained["scorer"], "model": MODEL, "version": VERSION, "db_path": trained["db"]}
    with pytest.raises(ConfigError, match="unknown executor"):
        score_items([Item("x", "x.wav")], executor="spark", **args)
    with pytest.raises(ConfigError, match="positive integer"):
        score_items([Item("x", "x.wav")], workers=0, **args)
    with pytest.raises(ConfigError, match=r"\.csv or a \.parquet"):
        score_items([Item("x", "x.wav")], out=Path("x.json"), **args)


@pytest.mark.slow
def test_a_two_worker_dask_cluster_scores_like_the_process_pool(trained, catalog_run, tmp_path) -> None:
    """``dask scheduler`` and two ``dask worker`` processes on loopback: the same scores, the broken file its error."""
    pytest.importorskip("dask.distributed")
    items = [i for i in catalog_run["items"] if i.song_id != "bad"][:5] + [
        i for i in catalog_run["items"] if i.song_id == "bad"
    ]
    with dask_cluster(tmp_path, workers=2) as cluster:
        report = score_items(items, scorer=trained["scorer"], model=MODEL, version="dask", db_path=trained["db"],
                             executor="dask", scheduler=cluster.address, bar=False)  # fmt: skip
    assert (report.scored, report.failed) == (5, 1)
    dask_rows = _rows(trained["db"], "dask").set_index("song_id")
    assert "bad.mp3" in dask_rows.at["bad", "error"]
    scores = dask_rows["score"].drop("bad")
    pool_rows = catalog_run["rows"].set_index("song_id")["score"]
    np.testing.assert_allclose(scores.to_numpy(), pool_rows.loc[scores.index].to_numpy(), atol=1e-6)
