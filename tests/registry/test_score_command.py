"""``hitsong score`` as a user runs it: a real MLflow server, a real DuckDB catalog, real processes.

The version is a tiny m6 champion (10-s segments, the tagger hearing 6 s) logged as training
logs models. ``hitsong score --catalog`` runs as a subprocess and is killed with SIGKILL once
some rows are committed; its worker processes must go with it, the committed rows must be whole,
and a second run must score exactly the songs left: every song once, none twice, none missing.
Also: files and folders with a broken file and ``--out``, rate/ETA log lines when the output is
not a terminal, and a down server named before any work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hitsong.audio import AudioConfig
from hitsong.cli import main
from hitsong.errors import StoreError
from hitsong.store import connect
from registry.server import free_port
from tests.helpers.audio import make_db, make_library
from tests.helpers.dashboard import log_champion
from tests.helpers.mlflow import mlflow_server

pytestmark = [pytest.mark.timeout(900)]

N_SONGS = 20
SPECS = [(f"s{i:02d}", ".wav", 4.0, 22050, 1) for i in range(N_SONGS)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("score-cli")
    songs = make_library(root / "audio", SPECS)
    songs["audio_path"] = [str(root / "audio" / p) for p in songs["audio_path"]]
    db = make_db(root, songs)
    with mlflow_server(root) as srv:
        done = log_champion(srv.uri, root, audio_config=AudioConfig(seconds=10.0, tagger_seconds=6.0))
        yield {"root": root, "db": db, "uri": srv.uri, "version": done["version"]}


def _rows(db: Path) -> pd.DataFrame:
    deadline = time.monotonic() + 30
    while True:  # the scorer holds the file for a moment while it commits
        try:
            with connect(db, read_only=True, retry_seconds=5) as con:
                if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'predictions'"
                                   ).fetchone()[0]:  # fmt: skip
                    return pd.DataFrame(columns=["song_id", "score", "error"])
                return con.execute("SELECT * FROM predictions ORDER BY song_id").df()
        except StoreError:
            if time.monotonic() > deadline:
                raise


def _score_cmd(setup: dict, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hitsong", "score", "--catalog", "--db", str(setup["db"]), "--subset", "western",
            "--tracking-uri", setup["uri"], *extra]  # fmt: skip


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def test_kill_9_then_resume_scores_every_song_exactly_once(setup, tmp_path: Path) -> None:
    env = {**os.environ, "HITSONG_HOME": str(tmp_path / "home")}
    with (tmp_path / "first.log").open("wb") as log:
        proc = subprocess.Popen(_score_cmd(setup, "--workers", "2", "--batch-size", "2"), env=env,
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while len(_rows(setup["db"])) < 4:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no rows committed in time"
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)  # the scorer only: its workers must notice and exit
        proc.wait(timeout=30)
        assert _group_gone(proc.pid, timeout=30), "worker processes outlived the killed scorer"
    finally:
        if not _group_gone(proc.pid, 0):
            os.killpg(proc.pid, signal.SIGKILL)
    first = _rows(setup["db"])
    assert 4 <= len(first) < N_SONGS, "kill the run before it ends: make the catalog larger"
    assert first["song_id"].is_unique and first["error"].isna().all() and first["score"].notna().all()

    second = subprocess.run(_score_cmd(setup, "--workers", "2"), env=env, capture_output=True, text=True,
                            timeout=600, check=False)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(second.stdout.strip().splitlines()[-1])
    assert report["skipped"] == len(first) and report["scored"] == N_SONGS - len(first) and report["failed"] == 0
    final = _rows(setup["db"])
    assert sorted(final["song_id"]) == [s for s, *_ in SPECS]  # no gaps, no duplicates
    kept = final.set_index("song_id").loc[first["song_id"], "scored_at"]
    assert (kept.to_numpy() == first["scored_at"].to_numpy()).all(), "rows of the first run were scored again"
    # not a terminal: rate and ETA as log lines
    assert "songs/s" in second.stderr and "ETA" in second.stderr


def test_files_folders_broken_file_and_export(setup, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "new-releases"
    make_library(folder, [("n0", ".flac", 5.0, 44100, 2), ("n1", ".mp3", 6.0, 44100, 2), ("n2", "broken.mp3", 0, 0, 0)])
    db = tmp_path / "scores.duckdb"
    out = tmp_path / "scores.parquet"
    code = main(["score", str(folder), str(setup["root"] / "audio" / "s03.wav"), "--db", str(db), "--workers", "1",
                 "--model", f"models:/hitsong-western/{setup['version']}", "--tracking-uri", setup["uri"],
                 "--out", str(out)])  # fmt: skip
    assert code == 1  # one file could not be read
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["scored"], report["failed"], report["exported"]) == (3, 1, 4)
    frame = pd.read_parquet(out).set_index("path")
    broken = str((folder / "n2.mp3").resolve())
    assert "n2.mp3" in frame.at[broken, "error"] and pd.isna(frame.at[broken, "score"])
    assert frame["version"].eq(setup["version"]).all() and frame["model"].eq("hitsong-western").all()


def test_a_down_server_is_named(setup, tmp_path: Path, capsys) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    code = main(["score", str(setup["root"] / "audio"), "--db", str(tmp_path / "x.duckdb"), "--subset", "western",
                 "--tracking-uri", uri])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert uri in err and "hitsong server" in err
    assert not (tmp_path / "x.duckdb").exists()
