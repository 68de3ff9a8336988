"""``hitsong features`` on a real dask.distributed cluster: a scheduler and two workers as separate processes.

The cluster talks TCP on loopback (``tests.helpers.dask_cluster``); the audio and the store are
folders every worker reads. The stored mels must equal a local process-pool run byte for byte;
the workers write the shards themselves (only small results return); and a worker killed
mid-run costs nothing but time.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.audio import AudioConfig
from hitsong.features import build_features, failures, read_shard
from hitsong.features.compute import StoredFeatures, compute_to_shard
from hitsong.features.executors import Task
from hitsong.store import connect
from tests.helpers.audio import make_db, make_library
from tests.helpers.dask_cluster import dask_cluster

pytest.importorskip("dask.distributed")
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

CFG = AudioConfig()  # what the CLI computes
#: 14 short songs (WAV/FLAC) and one text file named .mp3.
SPECS = [(f"s{i:02d}", ".wav" if i % 2 else ".flac", 6.0 + i % 3, 22050, 1 + i % 2) for i in range(14)]
SPECS.append(("bad", "broken.mp3", 0.0, 0, 0))
GOOD = [s[0] for s in SPECS[:-1]]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("library")
    songs = make_library(folder / "audio", SPECS)
    songs["audio_path"] = [str(folder / "audio" / p) for p in songs["audio_path"]]
    return songs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as c:
        yield c


def stored(db: Path, store: Path, cfg: AudioConfig = CFG) -> dict[str, np.ndarray]:
    with connect(db, read_only=True) as con:
        index = con.execute("SELECT song_id, shard FROM feature_index").fetchall()
    assert len({shard for _, shard in index}) == len(index)
    return {song: read_shard(store, shard, n_mels=cfg.n_mels, n_frames=cfg.n_frames) for song, shard in index}


@pytest.fixture(scope="module")
def local_run(library, tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("local")
    db, store = make_db(folder, library), folder / "store"
    report = build_features(db, store, workers=2, executor="process", tagger="none", config=CFG)
    assert (report.computed, report.failed) == (len(GOOD), 1)
    return stored(db, store)


def _cli(db: Path, store: Path, scheduler: str, log_file: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hitsong", "features", "--db", str(db), "--store", str(store)]
    cmd += ["--executor", "dask", "--scheduler", scheduler, "--tagger", "none"]
    with log_file.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def test_the_task_function_returns_no_mel(library, tmp_path) -> None:
    task = Task("s01", "western", library.loc[1, "audio_path"])
    result = compute_to_shard(task, store_dir=str(tmp_path), audio_config=CFG, tagger_name="none")
    assert isinstance(result, StoredFeatures) and not hasattr(result, "mel")
    mel = read_shard(tmp_path, result.shard, n_mels=CFG.n_mels, n_frames=CFG.n_frames)
    assert len(pickle.dumps(result)) < mel.nbytes / 20  # what travels back is a path and flags


def test_cluster_run_equals_the_local_run_and_both_workers_write(library, tmp_path, cluster, local_run) -> None:
    from dask.distributed import Client, get_task_stream

    db, store = make_db(tmp_path, library), tmp_path / "store"
    with Client(cluster.address, timeout=30) as client, get_task_stream(client=client) as stream:
        proc = _cli(db, store, cluster.address, tmp_path / "cli.log")
        assert proc.wait(timeout=240) == 0, (tmp_path / "cli.log").read_text() + cluster.logs()
    workers = {rec["worker"] for rec in stream.data}
    assert len(workers) == 2, workers  # the work was shared
    mels = stored(db, store)
    assert sorted(mels) == GOOD
    for song in GOOD:
        np.testing.assert_array_equal(mels[song], local_run[song])
    assert failures(db)["song_id"].tolist() == ["bad"]


def test_a_worker_killed_mid_run_is_survived(library, tmp_path, cluster, local_run) -> None:
    db, store = make_db(tmp_path, library), tmp_path / "store"
    proc = _cli(db, store, cluster.address, tmp_path / "cli.log")
    try:
        deadline = time.monotonic() + 120
        while not list(store.rglob("*.npy")):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "cli.log").read_text()
            time.sleep(0.05)
        cluster.kill_worker("w1")
        assert proc.wait(timeout=240) == 0, (tmp_path / "cli.log").read_text() + cluster.logs()
    finally:
        proc.kill()
    assert cluster.worker_count() == 1
    with connect(db, read_only=True) as con:
        done = con.execute("SELECT count(*) FROM feature_index").fetchall()[0][0]
    assert done == len(GOOD)  # nothing lost: the scheduler moved the dead worker's songs
    mels = stored(db, store)
    for song in GOOD:
        np.testing.assert_array_equal(mels[song], local_run[song])
    assert failures(db)["song_id"].tolist() == ["bad"]
