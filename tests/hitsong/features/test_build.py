"""The feature store end to end on a real DuckDB: resume, failures, kills, config change, dask."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.audio import AudioConfig, log_mel
from hitsong.errors import HitsongWarning, StoreError
from hitsong.features import MelDataset, build_features, failures, read_shard
from hitsong.store import connect
from hitsong.store.read import split_frame
from tests.helpers.audio import make_db, make_library, song, write_audio

pytestmark = pytest.mark.timeout(180)

CFG5 = AudioConfig(seconds=5.0)
#: Six short songs in four formats and rates; s5 is shorter than 5 s; s6 is a text file.
SPECS = [
    ("s1", ".wav", 8.0, 22050, 1),
    ("s2", ".flac", 7.0, 44100, 2),
    ("s3", ".ogg", 9.0, 32000, 2),
    ("s4", ".mp3", 8.0, 44100, 2),
    ("s5", ".mp3", 2.0, 44100, 1),
    ("s6", "broken.mp3", 0.0, 0, 0),
]
GOOD = ["s1", "s2", "s3", "s4", "s5"]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("library")
    songs = make_library(folder / "audio", SPECS)
    songs["audio_path"] = [str(folder / "audio" / p) for p in songs["audio_path"]]
    return songs


def stored(db: Path, store: Path, cfg: AudioConfig, subset: str = "western") -> dict[str, np.ndarray]:
    """song_id -> stored mel (float16) read through the index; no two songs share a shard."""
    with connect(db, read_only=True) as con:
        index = con.execute("SELECT song_id, shard FROM feature_index WHERE subset = ?", [subset]).fetchall()
    assert len({shard for _, shard in index}) == len(index)
    return {song_id: read_shard(store, shard, n_mels=cfg.n_mels, n_frames=cfg.n_frames) for song_id, shard in index}


def shard_files(store: Path) -> list[Path]:
    """Every complete shard file under the store (temporary files start with a dot)."""
    return sorted(p for p in store.rglob("*.npy") if not p.name.startswith("."))


def expected(library: pd.DataFrame, cfg: AudioConfig) -> dict[str, np.ndarray]:
    paths = dict(zip(library["song_id"], library["audio_path"], strict=True))
    with pytest.warns(HitsongWarning, match=r"s5\.\w+: .* shorter than the .* segment; zero-padded"):
        return {s: log_mel(paths[s], config=cfg).astype(np.float16) for s in GOOD}


def test_store_resume_failures_and_loader(tmp_path, library, caplog) -> None:
    caplog.set_level(logging.INFO)
    db, store = make_db(tmp_path, library), tmp_path / "store"

    first = build_features(db, store, workers=2, tagger="none", config=CFG5)
    assert (first.computed, first.failed, first.skipped) == (5, 1, 0)
    (failure,) = first.subsets[0].failures
    assert failure.song_id == "s6" and "s6.mp3: not a readable audio file" in failure.error
    table = failures(db)
    assert table["song_id"].tolist() == ["s6"] and "not a readable audio file" in table["error"][0]

    mels = stored(db, store, CFG5)
    want = expected(library, CFG5)
    assert sorted(mels) == GOOD
    for s in GOOD:
        np.testing.assert_array_equal(mels[s], want[s])
    with connect(db, read_only=True) as con:
        padded = dict(con.execute("SELECT song_id, padded FROM feature_index").fetchall())
    assert padded == {s: s == "s5" for s in GOOD}
    assert len(shard_files(store)) == 5

    # second run: the five done songs are skipped, the broken one is tried again and still fails
    second = build_features(db, store, workers=1, tagger="none", config=CFG5)
    assert (second.computed, second.failed, second.skipped) == (0, 1, 5)

    # the loader: every split, lazily, with targets from song_stats and zero tags
    frame = split_frame(db, subset="western")
    targets = dict(zip(frame["song_id"], frame["hit_score"], strict=True))
    seen = []
    for split in ("train", "val", "test"):
        ds = MelDataset(db, store, "western", split, tagger="none")
        for i in range(len(ds)):
            item = ds[i]
            seen.append(item["song_id"])
            assert item["mel"].shape == (128, CFG5.n_frames) and item["mel"].dtype == np.float32
            assert item["target"] == pytest.approx(targets[item["song_id"]], rel=1e-6)
            assert not item["has_tags"] and not item["tags"].any() and item["tags"].shape == (50,)
            if item["song_id"] in want:
                np.testing.assert_array_equal(item["mel"], want[item["song_id"]].astype(np.float32))
    assert sorted(seen) == GOOD  # s6 failed: left out

    # shards are read when an item is asked for: a lost shard fails that item with a clear error
    ds = MelDataset(db, store, "western", tagger="none")
    lost = ds.song_ids.index("s2")
    (store / ds.shards[lost]).unlink()
    with pytest.raises(StoreError, match="cannot read the stored mel"):
        ds[lost]
    assert ds[(lost + 1) % len(ds)]["mel"].shape == (128, CFG5.n_frames)

    # the broken file is repaired and the audio config changes: the next run recomputes every
    # song (and says why), computes the repaired one, and forgets its failure
    caplog.clear()
    cfg4 = AudioConfig(seconds=4.0)
    write_audio(Path(library.loc[5, "audio_path"]), song(seconds=6.0, sr=22050, seed=11), 22050)
    try:
        third = build_features(db, store, workers=1, tagger="none", config=cfg4)
    finally:
        Path(library.loc[5, "audio_path"]).write_text("not audio at all\n" * 50)
    assert third.subsets[0].recomputed_for_config
    assert (third.computed, third.failed, third.skipped) == (6, 0, 0)
    assert "the audio config changed" in caplog.text
    assert failures(db).empty
    mels4 = stored(db, store, cfg4)
    assert sorted(mels4) == GOOD + ["s6"]
    assert mels4["s1"].shape == (128, cfg4.n_frames)
    assert len(shard_files(store)) == 6  # the shards of the old config are gone


def _cli(db: Path, store: Path, log_file: Path) -> subprocess.Popen:
    """``hitsong features`` in a subprocess, logging to a file (a pipe could be held open by orphans)."""
    cmd = [
        sys.executable,
        "-m",
        "hitsong",
        "features",
        "--db",
        str(db),
        "--store",
        str(store),
        "--workers",
        "1",
        "--tagger",
        "none",
    ]
    with log_file.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def _is_pool_worker(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return False
    return "spawn_main" in cmd and "resource_tracker" not in cmd


def _wait_for(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def _gone(pids: list[int], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "zombie"


def test_killed_worker_and_killed_parent(tmp_path, library) -> None:
    """kill -9 of a worker: its songs are retried; kill -9 of the parent: a rerun completes.

    Both end with the same rows as computing each song directly (the CLI uses the 60-s config:
    the full-length case of the store).
    """
    cfg = AudioConfig()
    want = expected(library, cfg)

    # a worker dies mid-run: the run carries on and every good song is stored
    (tmp_path / "a").mkdir()
    db_a, store_a = make_db(tmp_path / "a", library), tmp_path / "a" / "store"
    proc = _cli(db_a, store_a, tmp_path / "a.log")
    try:
        _wait_for(lambda: any(_is_pool_worker(c) for c in _children(proc.pid)))
        worker = next(c for c in _children(proc.pid) if _is_pool_worker(c))
        os.kill(worker, signal.SIGKILL)
        proc.wait(timeout=150)
    finally:
        proc.kill()
    err = (tmp_path / "a.log").read_text()
    assert proc.returncode == 0, err
    assert "a worker process died" in err
    mels = stored(db_a, store_a, cfg)
    assert sorted(mels) == GOOD
    for s in GOOD:
        np.testing.assert_array_equal(mels[s], want[s])
    assert failures(db_a)["song_id"].tolist() == ["s6"]

    # the parent dies right after its first row is written: nothing corrupt, a rerun completes
    (tmp_path / "b").mkdir()
    db_b, store_b = make_db(tmp_path / "b", library), tmp_path / "b" / "store"
    proc = _cli(db_b, store_b, tmp_path / "b.log")
    workers: list[int] = []
    try:
        _wait_for(lambda: store_b.exists() and bool(shard_files(store_b)))
        workers = [c for c in _children(proc.pid) if _is_pool_worker(c)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL  # killed mid-run, not after it finished
        assert workers and _gone(workers), "pool workers outlived their killed parent"
    finally:
        proc.kill()
        _kill_leftovers(workers)
    rerun = build_features(db_b, store_b, workers=1, tagger="none", config=cfg)
    assert rerun.computed + rerun.skipped == 5 and rerun.failed == 1
    mels = stored(db_b, store_b, cfg)
    assert sorted(mels) == GOOD
    for s in GOOD:
        np.testing.assert_array_equal(mels[s], want[s])


def test_dask_executor_local_mode(tmp_path, library) -> None:
    pytest.importorskip("dask.distributed")
    db, store = make_db(tmp_path, library), tmp_path / "store"
    report = build_features(db, store, workers=1, executor="dask", tagger="none", config=CFG5)
    assert (report.computed, report.failed) == (5, 1)
    assert "not a readable audio file" in report.subsets[0].failures[0].error
    mels = stored(db, store, CFG5)
    want = expected(library, CFG5)
    for s in GOOD:
        np.testing.assert_array_equal(mels[s], want[s])


def test_bad_options(tmp_path, library) -> None:
    from hitsong.errors import ConfigError

    db = make_db(tmp_path, library)
    with pytest.raises(ConfigError, match="unknown executor 'ray'"):
        build_features(db, tmp_path / "s", executor="ray", tagger="none")
    with pytest.raises(ConfigError, match="--workers must be a positive integer"):
        build_features(db, tmp_path / "s", workers=0, tagger="none")
