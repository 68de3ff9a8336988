"""``hitsong train`` end to end on a real DuckDB and feature store (local tracking, tiny profile).

Also the checks ``train_from_store`` makes before any training: tag methods refuse to train on
missing tag vectors, songs without features are counted (too many is an error), and training
and scoring follow the audio config the store was built with (the tagger's window).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hitsong.audio import AudioConfig
from hitsong.cli import main
from hitsong.errors import ConfigError, InputError
from hitsong.features import build_features, tagger_audio_config
from hitsong.scoring import SongScorer
from hitsong.store import connect
from hitsong.tracking import LocalRunLogger
from hitsong.training.config import TrainConfig
from hitsong.training.from_store import train_from_store
from tests.helpers.audio import make_db, make_library

pytestmark = pytest.mark.timeout(300)

#: Eight short WAV songs; the store pads them to the paper's 60 s (128 x 646).
SPECS = [(f"t{i}", ".wav", 3.0, 22050, 1) for i in range(8)]
TINY = TrainConfig.for_profile("tiny", cpu_threads=1)


@pytest.fixture(scope="module")
def mel_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A sampled DuckDB and a feature store with mels only (``--tagger none``)."""
    root = tmp_path_factory.mktemp("mel-store")
    songs = make_library(root / "audio", SPECS)
    songs["audio_path"] = [str(root / "audio" / p) for p in songs["audio_path"]]
    db = make_db(root, songs)
    store = root / "features"
    build_features(db, store, workers=1, tagger="none")  # short songs are zero-padded (logged)
    return root, db, store


def test_train_command_writes_table_and_runs(mel_store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, db, store = mel_store
    out = tmp_path / "results"
    code = main(
        [
            "train",
            "--db",
            str(db),
            "--store",
            str(store),
            "--subset",
            "western",
            "--methods",
            "m1,m2",
            "--profile",
            "tiny",
            "--threads",
            "1",
            "--tagger",
            "none",
            "--tracker",
            "local",
            "--bootstrap",
            "20",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "Table 1 - subset western" in capsys.readouterr().out
    table = pd.read_csv(out / "table1.csv")
    assert sorted(set(table["method"])) == ["m1", "m2"]
    runs = [json.loads(p.read_text()) for p in (out / "runs").rglob("run.json")]
    assert len(runs) == 1 + 2 + 2 and {r["status"] for r in runs} == {"FINISHED"}
    bundle = json.loads(next((out / "runs").rglob("bundle.json")).read_text())
    assert bundle["audio_config"]["n_mels"] == 128 and bundle["subset"] == "western"
    assert bundle["audio_config"]["tagger_seconds"] == 60.0  # the paper's window, recorded
    reps = pd.read_csv(out / "repetitions.csv")
    assert {"val_spearman_rho", "spearman_rho"} <= set(reps.columns)  # validation beside test


def test_train_command_unknown_method_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--db", str(tmp_path / "none.duckdb"), "--subset", "x", "--methods", "m1,m9"]) == 1
    assert "unknown method 'm9'; valid methods: m0, m1, m2, m3, m4, m5, m6" in capsys.readouterr().err


def test_metadata_baseline_and_split_method_come_from_the_store(mel_store, tmp_path: Path) -> None:
    """MelDataset items carry artist and release days; m0 trains on them; the split method is recorded."""
    from hitsong.features import MelDataset
    from hitsong.store.read import split_frame, window
    from hitsong.store.sample import sample

    _, db, store = mel_store
    item = MelDataset(db, store, "western", "train", tagger="none")[0]
    row = split_frame(db, subset="western").set_index("song_id").loc[item["song_id"]]
    assert item["artist"] == row["artist"]
    assert item["release_days"] == (pd.Timestamp(row["release_date"]) - pd.Timestamp(window(db)[0])).days
    db_copy = tmp_path / "artist.duckdb"
    shutil.copy(db, db_copy)
    with connect(db_copy) as con:  # eight artists of one song each, so that an artist split can hit 4/2/2
        con.execute("UPDATE songs SET artist = 'Artist ' || song_id")
    sample(db_copy, per_subset=8, seed=7, split=(0.5, 0.25, 0.25), by="artist")
    versions = {}
    for name, path in (("random", db), ("artist", db_copy)):
        logger = LocalRunLogger(tmp_path / name, experiment="western")
        result = train_from_store(path, store, subset="western", logger=logger, methods=["m0"], tagger="none",
                                  train_config=TINY)  # fmt: skip
        versions[name] = result.data_version
        runs = [json.loads(p.read_text()) for p in (tmp_path / name).rglob("run.json")]
        assert {r["tags"]["split_by"] for r in runs} == {name}
        params = json.loads(next((tmp_path / name).rglob("params.json")).read_text())
        assert params["data.split_by"] == name
        assert result.predictions("m0").shape[0] == 1
    assert versions["random"] != versions["artist"]


@pytest.mark.parametrize("method", ["m4", "m5", "m6"])
def test_tag_methods_refuse_a_store_without_tags(mel_store, tmp_path: Path, method: str) -> None:
    _, db, store = mel_store
    logger = LocalRunLogger(tmp_path)
    with pytest.raises(
        ConfigError,
        match=rf"{method} use tag vectors but the tagger is 'none'.*hitsong features "
        r"--subset western --tagger MTT_musicnn",
    ):
        train_from_store(db, store, subset="western", logger=logger, methods=[method], tagger="none")
    with pytest.raises(
        ConfigError,
        match=r"subset 'western', train split: 4 of 4 songs have no MTT_musicnn tag "
        r"vector.*hitsong features --subset western --tagger MTT_musicnn",
    ):
        train_from_store(db, store, subset="western", logger=logger, methods=["m1", method])
    assert not list(tmp_path.rglob("run.json"))  # refused before any run starts


def test_songs_without_features_are_counted_and_too_many_refused(mel_store, tmp_path: Path) -> None:
    _, db, store = mel_store
    db_copy = tmp_path / "copy.duckdb"
    shutil.copy(db, db_copy)
    with connect(db_copy) as con:
        dropped = con.execute(
            "SELECT f.song_id FROM feature_index f JOIN splits s USING (song_id) WHERE s.split = 'train' "
            "ORDER BY f.song_id LIMIT 1"
        ).fetchall()[0][0]
        con.execute("DELETE FROM feature_index WHERE song_id = ?", [dropped])
    logger = LocalRunLogger(tmp_path / "runs", experiment="western")
    with pytest.raises(InputError, match=rf"train split: 1 of 4 songs \(25.0 %.*\(e.g. {dropped}\).*--allow-missing"):
        train_from_store(db_copy, store, subset="western", logger=logger, methods=["m1"], tagger="none")
    train_from_store(
        db_copy,
        store,
        subset="western",
        logger=logger,
        methods=["m1"],
        tagger="none",
        train_config=TINY,
        allow_missing=True,
    )
    params = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("params.json")]
    assert params and all(p["data.missing_train"] == "1" and p["data.n_train"] == "3" for p in params)


def test_training_and_scoring_follow_the_stores_tagger_window(tmp_path: Path) -> None:
    """Two stores of the same 20-s songs, the tagger hearing 6 s (2 patches) or all 20 s (6 patches)."""
    specs = [(f"w{i}", ".wav", 20.0, 16000, 1) for i in range(8)]
    songs = make_library(tmp_path / "audio", specs)
    songs["audio_path"] = [str(tmp_path / "audio" / p) for p in songs["audio_path"]]
    scored = str(songs["audio_path"].iloc[0])
    for window, patches in ((6.0, 2), (20.0, 6)):
        home = tmp_path / f"window-{window:g}"
        home.mkdir()
        db = make_db(home, songs)
        # "auto" precision is resolved to what runs here before it is recorded
        config = tagger_audio_config(AudioConfig(seconds=20.0, tagger_seconds=window), "MTT_musicnn")
        build_features(db, home / "features", workers=1, config=config)
        logger = LocalRunLogger(home / "runs", experiment="western")
        train_from_store(db, home / "features", subset="western", logger=logger, methods=["m4"], train_config=TINY)
        params = json.loads(next((home / "runs").rglob("params.json")).read_text())
        assert params["audio.tagger_seconds"] == str(window)
        bundle = next((home / "runs").rglob("bundle.json")).parent
        assert json.loads((bundle / "bundle.json").read_text())["audio_config"] == config.to_dict()
        scorer = SongScorer.from_bundle(bundle, device="cpu", warm_up=False)
        assert scorer.audio_config == config
        result = scorer.score([scored])[0]
        assert result["error"] is None and len(result["taggram"]) == patches
