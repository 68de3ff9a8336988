"""The store under concurrent and hostile use: real processes, a real DuckDB file.

- two ``hitsong features`` runs on one store: the second stops with an error naming the first's
  pid, and the first's store is intact (every index row points at its own song's mel);
- a long ``hitsong ingest`` never locks the Data page's readers out for more than a few seconds;
- a play count beyond int64 is a clear error naming file, column and row, the database unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.audio import AudioConfig, log_mel
from hitsong.features import read_shard
from hitsong.store import connect
from hitsong.store.lock import lock_path
from tests.helpers.audio import make_db, make_library

pytestmark = pytest.mark.timeout(300)


def _hitsong(args: list[str], log_file: Path) -> subprocess.Popen:
    with log_file.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "hitsong", *args], stdout=out, stderr=subprocess.STDOUT)


def _primed(args: list[str], go: Path, log_file: Path) -> subprocess.Popen:
    """``hitsong ARGS`` in a process that imports everything first and starts when ``go`` exists."""
    code = (
        "import sys, time, pathlib\n"
        "from hitsong.cli import main\n"
        "import hitsong.features.build, hitsong.store.ingest\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "while not go.exists():\n"
        "    time.sleep(0.01)\n"
        f"sys.exit(main({args!r}))\n"
    )
    with log_file.open("w") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)


def _lock_holder(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def test_a_second_features_run_on_one_store_stops_and_names_the_first(tmp_path) -> None:
    specs = [(f"s{i:02d}", ".wav", 6.0 + i % 4, 22050, 1) for i in range(12)]
    songs = make_library(tmp_path / "audio", specs)
    songs["audio_path"] = [str(tmp_path / "audio" / p) for p in songs["audio_path"]]
    db, store = make_db(tmp_path, songs), tmp_path / "store"
    args = ["features", "--db", str(db), "--store", str(store), "--workers", "1", "--tagger", "none"]

    go = tmp_path / "go"
    second = _primed(args, go, tmp_path / "second.log")  # imports done before the race starts
    first = _hitsong(args, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 60
        while _lock_holder(lock_path(db, "features")) != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.02)
        go.touch()
        assert second.wait(timeout=60) == 1
        assert first.poll() is None, "the first run should still be working when the second gives up"
        assert first.wait(timeout=240) == 0, (tmp_path / "first.log").read_text()
    finally:
        first.kill()
        second.kill()
    message = (tmp_path / "second.log").read_text()
    assert f"pid {first.pid}" in message and "hitsong features" in message and "wait for that run" in message

    # the store is whole: one index row per song, each pointing at that song's own mel
    cfg = AudioConfig()
    with connect(db, read_only=True) as con:
        index = con.execute("SELECT song_id, shard FROM feature_index ORDER BY song_id").fetchall()
    assert [s for s, _ in index] == sorted(songs["song_id"])
    assert len({shard for _, shard in index}) == len(index)
    paths = dict(zip(songs["song_id"], songs["audio_path"], strict=True))
    for song_id, shard in index:
        with pytest.warns(Warning):  # every song is shorter than 60 s: padded
            want = log_mel(paths[song_id], config=cfg).astype(np.float16)
        np.testing.assert_array_equal(read_shard(store, shard, n_mels=cfg.n_mels, n_frames=cfg.n_frames), want)
    assert pd.Series([s for s, _ in index]).is_unique
