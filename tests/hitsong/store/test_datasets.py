"""Events as data sets: folders, hive partitions and globs, read by DuckDB; each file counted once.

Object stores (``s3://``, ``gs://``) cannot be reached from these machines, so only the error for
a missing httpfs extension is tested here; the local forms go through the same code.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from hitsong.cli import main
from hitsong.errors import InputError
from hitsong.store.events import expand_events
from hitsong.store.ingest import ingest
from tests.helpers.store import WINDOW_START, snapshot, write_songs


def _songs(folder: Path) -> Path:
    rows = [(f"s{i}", f"t{i}", "a", "m" if i % 2 else "w", "2012-11-01", f"{i}.mp3") for i in range(30)]
    return write_songs(folder, rows)


def _day(rng: np.random.Generator, n: int = 400) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 25, size=n).astype(str),
            "song_id": [f"s{i}" for i in rng.integers(0, 30, size=n)],
            "play_count": rng.integers(1, 4, size=n),
        }
    )


def _hive(root: Path, days: dict[str, pd.DataFrame], *, parts: int = 1) -> list[Path]:
    """``root/date=<day>/part-<k>.parquet`` (plus a Spark ``_SUCCESS`` marker and a hidden file)."""
    written = []
    for day, frame in days.items():
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(parts):
            frame.iloc[k::parts].to_parquet(path := folder / f"part-{k}.parquet", index=False)
            written.append(path)
    (root / "_SUCCESS").write_text("")
    (root / ".part-0.parquet.crc").write_bytes(b"\x00\x01")
    return written


def _stats(db: Path) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM song_stats ORDER BY song_id").df()
    finally:
        con.close()


def test_a_hive_folder_ingests_and_a_new_partition_adds_just_itself(tmp_path, rng):
    songs = _songs(tmp_path)
    root = tmp_path / "events"
    days = {f"2013-01-0{d}": _day(rng) for d in range(1, 5)}
    first = _hive(root, dict(list(days.items())[:3]), parts=2)
    db = tmp_path / "db.duckdb"
    report = ingest(db, root, songs, window_start=WINDOW_START)
    assert report.new_event_files == len(first) == 6
    assert sorted(report.event_files) == sorted(str(p) for p in first)

    _hive(root, dict(list(days.items())[3:]), parts=2)  # a new day arrives
    added = ingest(db, root, songs)
    assert added.new_event_files == 2 and len(added.event_files) == 8
    assert "(2 new, 6 already counted)" in added.message
    # the same as the whole folder at once
    once = tmp_path / "once.duckdb"
    ingest(once, root, songs, window_start=WINDOW_START)
    pd.testing.assert_frame_equal(_stats(db), _stats(once))
    whole = pd.concat(days.values())
    assert added.plays == whole.play_count.sum() and added.listeners == whole.user_id.nunique()

    # nothing new: skipped; a file touched without a change is read (its time changed) and known by content
    before = snapshot(db)
    assert ingest(db, root, songs).skipped
    os.utime(first[0], ns=(1, 1))
    assert ingest(db, root, songs).skipped
    assert snapshot(db) == before


def test_partition_columns_are_read_as_columns(tmp_path, rng):
    """A hive dataset whose play count lives in the file and whose user lives in the path."""
    songs = _songs(tmp_path)
    for user in ("u1", "u2"):
        folder = tmp_path / "ev" / f"user_id={user}"
        folder.mkdir(parents=True)
        pd.DataFrame({"song_id": ["s1", "s2"], "play_count": [3, 0]}).to_parquet(folder / "p.parquet", index=False)
    db = tmp_path / "db.duckdb"
    report = ingest(db, tmp_path / "ev", songs, window_start=WINDOW_START)
    got = _stats(db).set_index("song_id")
    assert (got.loc["s1", "playcount"], got.loc["s1", "listeners"], got.loc["s2", "listeners"]) == (6, 2, 0)
    assert report.listeners == 2


def test_globs_csv_folders_and_what_is_skipped(tmp_path, rng):
    songs = _songs(tmp_path)
    csvs = tmp_path / "csv"
    csvs.mkdir()
    frames = [_day(rng) for _ in range(3)]
    for i, f in enumerate(frames):
        f.to_csv(csvs / f"day{i}.csv", index=False)
    (csvs / "notes.txt").write_text("not events")
    (csvs / "_SUCCESS").write_text("")
    files = expand_events(duckdb.connect(), csvs)
    assert [Path(f.path).name for f in files] == ["day0.csv", "day1.csv", "day2.csv"]
    assert not any(f.hive for f in files)

    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    ingest(a, str(csvs / "day*.csv"), songs, window_start=WINDOW_START)
    ingest(b, [csvs / "day0.csv", csvs / "day1.csv", csvs / "day2.csv"], songs, window_start=WINDOW_START)
    pd.testing.assert_frame_equal(_stats(a), _stats(b))

    hive = tmp_path / "h"
    _hive(hive, {"2013-02-01": frames[0], "2013-02-02": frames[1]})
    found = expand_events(duckdb.connect(), str(hive / "**" / "*.parquet"))
    assert len(found) == 2 and all(f.hive for f in found)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("empty", "holds no .parquet"),
        ("nomatch/*.parquet", "matches no files"),
        ("s3://bucket/events/*.parquet", "httpfs extension"),
        ("gs://bucket/events/day.parquet", "httpfs extension"),
    ],
)
def test_bad_data_sets_are_clear_errors_and_change_nothing(tmp_path, rng, spec, message):
    songs = _songs(tmp_path)
    db = tmp_path / "db.duckdb"
    _day(rng).to_csv(good := tmp_path / "good.csv", index=False)
    ingest(db, good, songs, window_start=WINDOW_START)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("nothing here")
    before = snapshot(db)
    target = spec if "://" in spec else str(tmp_path / spec)
    with pytest.raises(InputError, match=message) as info:
        ingest(db, target, songs)
    assert "database was not changed" in str(info.value)
    assert snapshot(db) == before


def test_cli_takes_a_folder(tmp_path, rng, capsys):
    songs = _songs(tmp_path)
    _hive(tmp_path / "ev", {"2013-03-01": _day(rng), "2013-03-02": _day(rng)})
    db = str(tmp_path / "cli.duckdb")
    args = [
        "ingest",
        "--db",
        db,
        "--events",
        str(tmp_path / "ev"),
        "--songs",
        str(songs),
        "--window-start",
        "2012-10-01",
    ]
    assert main(args) == 0
    assert "(2 new, 0 already counted)" in capsys.readouterr().out
