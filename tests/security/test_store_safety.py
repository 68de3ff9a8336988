"""The store under concurrent and hostile use: real processes, a real DuckDB file.

- two ``hitsong features`` runs on one store: the second stops with an error naming the first's
  pid, and the first's store is intact (every index row points at its own song's mel);
- a long ``hitsong ingest`` never locks the Data page's readers out for more than a few seconds;
- a play count beyond int64 is a clear error naming file, column and row, the database unchanged;
- table files from elsewhere (a warehouse export, another team's folder) are parsed as data: values
  and file names that read like SQL are stored verbatim and never run, and a hostile line (megabytes
  long, terminal escapes) gives a short, printable error;
- the store's own binary files are read as data and bounded: a planted pickle or a header claiming
  a huge array, as a feature shard or a key set file, is a StoreError before anything is unpickled
  or allocated, and the database stays as it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.audio import AudioConfig, log_mel
from hitsong.errors import InputError, StoreError
from hitsong.features import read_shard
from hitsong.store import connect
from hitsong.store.ingest import ingest
from hitsong.store.keysets import keys_dir
from hitsong.store.lock import lock_path
from hitsong.store.read import hit_score_frame, quarter_playcounts, stats
from tests.helpers.audio import make_db, make_library
from tests.helpers.store import WINDOW_START, snapshot, write_songs

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


def _held(path: Path) -> bool:
    """Whether some process holds the lock file ``path`` (a shared lock cannot be had)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_data_page_readers_answer_while_a_large_ingest_runs(tmp_path) -> None:
    import duckdb

    songs = write_songs(tmp_path, [(f"s{i}", "t", "a", "mw"[i % 2], "2012-11-01", "x.mp3") for i in range(2000)])
    (first := tmp_path / "first.csv").write_text("user_id,song_id,play_count\nuser-1,s1,2\n")
    db = tmp_path / "db.duckdb"
    ingest(db, first, songs, window_start=WINDOW_START)
    big = tmp_path / "big.parquet"  # 8M rows with text user ids: 6-7 s of work on a quiet 2-core machine
    duckdb.execute(
        f"""COPY (SELECT 'user-' || (hash(i) % 200000) AS user_id, 's' || (hash(i + 7) % 2000) AS song_id,
                         1 + hash(i + 3) % 4 AS play_count FROM range(8000000) t(i)) TO '{big}' (FORMAT parquet)"""
    )
    ingest_lock = lock_path(db, "ingest")
    proc = _hitsong(["ingest", "--db", str(db), "--events", str(big), "--songs", str(songs)], tmp_path / "ingest.log")
    latencies: list[float] = []
    held_reads = 0
    held_since = held_until = None
    try:
        while proc.poll() is None:
            held = ingest_lock.exists() and _held(ingest_lock)
            t0 = time.monotonic()
            plays = quarter_playcounts(db)  # what the Data page draws (Fig. 1, Fig. 2, the summary)
            hit_score_frame(db)
            summary = stats(db)
            latencies.append(time.monotonic() - t0)
            if held and proc.poll() is None:
                held_reads += 1
                held_since = held_since or t0
                held_until = time.monotonic()
            assert not plays.empty and summary.plays.sum() in (2, 2 + _total_plays(big))
            time.sleep(0.05)
    finally:
        proc.kill()
    assert proc.returncode == 0, (tmp_path / "ingest.log").read_text()
    assert held_since is not None and held_until - held_since > 3.0, "the ingest was too quick to test anything"
    assert held_reads >= 5
    assert max(latencies) < 5.0, f"a reader waited {max(latencies):.1f} s (all: {sorted(latencies)[-5:]})"
    assert stats(db).plays.sum() == 2 + _total_plays(big)


def _total_plays(path: Path) -> int:
    import duckdb

    return int(duckdb.execute("SELECT sum(play_count) FROM read_parquet(?)", [str(path)]).fetchall()[0][0])


def test_a_play_count_beyond_int64_is_a_clear_error_and_changes_nothing(tmp_path) -> None:
    songs = write_songs(tmp_path, [(f"s{i}", "t", "a", "m", "2012-11-01", "x.mp3") for i in range(1, 4)])
    (good := tmp_path / "good.csv").write_text("user_id,song_id,play_count\nu1,s1,2\nu2,s2,9000000000000000000\n")
    db = tmp_path / "db.duckdb"
    ingest(db, good, songs, window_start=WINDOW_START)
    cases = {
        "huge.csv": ("u9,s1,99999999999999999999999\n", ["'play_count'", "larger than 9223372036854775807", "row 1"]),
        "sum.csv": ("u8,s3,5000000000000000000\nu9,s3,5000000000000000000\n", ["'play_count'", "'s3'", "add up"]),
        "total.csv": ("u7,s2,900000000000000000\n", ["'s2'", "already counted", "exceed"]),
    }
    for name, (rows, fragments) in cases.items():
        (bad := tmp_path / name).write_text("user_id,song_id,play_count\n" + rows)
        before = snapshot(db)
        proc = subprocess.run(
            [sys.executable, "-m", "hitsong", "ingest", "--db", str(db), "--events", str(bad), "--songs", str(songs)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "Traceback" not in out and "database was not changed" in out, out
        for fragment in fragments:
            assert fragment in out, (name, fragment, out)
        if name != "total.csv":
            assert str(bad) in out
        assert snapshot(db) == before


SQL_VALUE = "x'); DROP TABLE songs; --"
SQL_NAME = "ev'\"); COPY songs TO 'pwned.csv'; --.csv"


def test_table_files_are_parsed_as_data_never_as_sql(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the file name's COPY would write
    rows = [
        ("a", "A", "X", "m", "2012-10-01", "a.mp3"),
        (SQL_VALUE, "=cmd|' /C calc'!A0", "R'); --", "m", "2012-10-01", "q.mp3"),
    ]
    songs = write_songs(tmp_path, rows, name='it\'s "songs".csv')
    events = tmp_path / SQL_NAME
    pd.DataFrame({"user_id": ["u1", "u'2"], "song_id": ["a", SQL_VALUE], "play_count": [3, 4]}).to_csv(
        events, index=False
    )
    db = tmp_path / "db.duckdb"
    report = ingest(db, events, songs, window_start=WINDOW_START)
    assert (report.songs, report.plays, report.listeners) == (2, 7, 2)
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT artist FROM songs WHERE song_id = ?", [SQL_VALUE]).fetchall() == [("R'); --",)]
        assert con.execute("SELECT playcount FROM song_stats WHERE song_id = ?", [SQL_VALUE]).fetchall() == [(4,)]
        assert con.execute("SELECT path FROM event_files").fetchall() == [(str(events),)]
    assert not (tmp_path / "pwned.csv").exists()


def test_a_hostile_line_gives_a_short_printable_error_and_changes_nothing(tmp_path) -> None:
    songs = write_songs(tmp_path, [("a", "A", "X", "m", "2012-10-01", "a.mp3")])
    db = tmp_path / "db.duckdb"
    (good := tmp_path / "good.csv").write_text("user_id,song_id,play_count\nu1,a,3\n")
    ingest(db, good, songs, window_start=WINDOW_START)
    before = snapshot(db)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,song_id,play_count\nu1,a,3\nu\x1b[2J\x1b]0;owned\x07" + "x" * 3_000_000 + ",a,1\n")
    with pytest.raises(InputError) as info:
        ingest(db, bad, songs)
    message = str(info.value)
    assert str(bad) in message and "Maximum line size" in message and "database was not changed" in message
    assert len(message) < 1_000 and "\x1b" not in message and "\x07" not in message
    assert "\\x1b[2J" in message  # shown escaped, not sent to the terminal
    assert snapshot(db) == before


class _Payload:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _planted_pickle(path: Path, marker: Path) -> None:
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    with path.open("wb") as fh:
        np.save(fh, payload, allow_pickle=True)


def _planted_header(path: Path, shape: tuple[int, ...], dtype: str) -> None:
    """An ``.npy`` header claiming ``shape`` (terabytes) over a few bytes of data."""
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
        fh.write(b"\0" * 64)


def test_planted_store_files_are_read_as_data_and_bounded(tmp_path) -> None:
    marker = tmp_path / "UNPICKLED"
    cfg = AudioConfig()
    _planted_pickle(tmp_path / "pickle.npy", marker)
    _planted_header(tmp_path / "huge.npy", (cfg.n_mels, 10**12), "<f2")
    for shard in ("pickle.npy", "huge.npy"):
        with pytest.raises(StoreError, match=r"expected float16 \(128, 646\)"):
            read_shard(tmp_path, shard, n_mels=cfg.n_mels, n_frames=cfg.n_frames)

    songs = write_songs(tmp_path, [(s, "t", "a", "m", "2012-11-01", "x.mp3") for s in "abc"])
    db = tmp_path / "db.duckdb"
    (first := tmp_path / "first.csv").write_text("user_id,song_id,play_count\nu1,a,2\nu2,b,1\n")
    (second := tmp_path / "second.csv").write_text("user_id,song_id,play_count\nu1,a,1\nu3,c,4\n")
    ingest(db, first, songs, window_start=WINDOW_START)
    with connect(db, read_only=True) as con:
        runs = con.execute("SELECT keyset, file FROM key_runs ORDER BY keyset").fetchall()
    assert {k for k, _ in runs} == {"pairs", "subset_users", "users"}
    before = snapshot(db)
    folder = keys_dir(db)
    for plant in (lambda p: _planted_pickle(p, marker), lambda p: _planted_header(p, (10**12,), "<i8")):
        for _, file in runs:
            plant(folder / file)
        with pytest.raises(StoreError, match="key set file of the store is missing or damaged"):
            ingest(db, second, songs)
        assert snapshot(db) == before
    assert not marker.exists()
