"""Incremental ingest: files added one by one give exactly the totals of ingesting them all at once.

Checked against a pandas computation of the whole dataset (a second implementation), for text
ids (a user dictionary, the SQL path), whole-number ids (users numbered by their ids, the
compiled path), one row per play (a window that grows with the data), and a catalogue that
moves played songs between subsets. Also the key sets on their own, against Python sets.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import hitsong.store.aggregate as aggregate_module
from hitsong.errors import StoreError
from hitsong.store import keysets
from hitsong.store.ingest import ingest
from tests.helpers.store import WINDOW_START, snapshot, write_songs

COLS = "song_id, subset, playcount, listeners, events, hit_score, release_quarter, quarter_index"


def _tables(db: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return (
            con.execute(f"SELECT {COLS} FROM song_stats ORDER BY song_id").df(),
            con.execute("SELECT * FROM subset_stats ORDER BY subset").df(),
        )
    finally:
        con.close()


def _catalogue(n_per_subset: int = 40, subsets=("m", "w", "k")) -> list[tuple]:
    rows = []
    for s in subsets:
        for i in range(n_per_subset):
            day = date(2012, 1, 1) + timedelta(days=37 * i % 700)
            rows.append((f"{i + 100 * (ord(s) % 7)}", f"t{i}", "a", s, day.isoformat(), f"{s}/{i}.mp3"))
    return rows


def _events(rng: np.random.Generator, song_ids: list[str], n: int, users: int) -> pd.DataFrame:
    """Aggregated rows with heavy-tailed songs, repeated (user, song) pairs and zero-play rows."""
    pop = rng.pareto(1.1, size=len(song_ids)) + 0.05
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, users, size=n),
            "song_id": rng.choice(np.array(song_ids), size=n, p=pop / pop.sum()),
            "play_count": rng.integers(0, 5, size=n),
        }
    )


def _expected(frame: pd.DataFrame, songs: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Per song (playcount, listeners, events) and per subset distinct listeners, in pandas."""
    known = frame[frame.song_id.isin(songs.song_id)]
    per = known.groupby("song_id").agg(playcount=("play_count", "sum"), events=("play_count", "size"))
    per["listeners"] = known[known.play_count > 0].groupby("song_id").user_id.nunique()
    per = per.reindex(songs.song_id).fillna(0).astype("int64")
    played = known[known.play_count > 0].merge(songs[["song_id", "subset"]], on="song_id")
    return per, played.groupby("subset").user_id.nunique()


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _split(frame: pd.DataFrame, parts: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Parts with overlapping users and songs (rows shuffled, so every part has a bit of everything)."""
    order = rng.permutation(len(frame))
    return [frame.iloc[order[i::parts]] for i in range(parts)]


@pytest.mark.parametrize("ids", ["text", "numbers"])
def test_files_one_by_one_equal_all_at_once_and_pandas(tmp_path, rng, monkeypatch, caplog, ids):
    rows = _catalogue()
    songs_csv = write_songs(tmp_path, rows)
    songs = pd.read_csv(songs_csv, dtype={"song_id": str})
    frame = _events(rng, list(songs.song_id), 6_000, users=70)
    if ids == "text":  # text ids: a user dictionary and the SQL path, CSV files
        frame["user_id"] = "user-" + frame.user_id.astype(str)
        suffix = ".csv"
    else:  # whole numbers in Parquet: users number themselves, and the compiled pair counter runs
        frame["song_id"] = frame.song_id.astype("int64")
        monkeypatch.setattr(aggregate_module, "_KERNEL_MIN_ROWS", 0)
        suffix = ".parquet"
    parts = [_write(p, tmp_path / f"part{i}{suffix}") for i, p in enumerate(_split(frame, 4, rng))]

    one_by_one = tmp_path / "one.duckdb"
    with caplog.at_level(logging.INFO, logger="hitsong.store.aggregate"):
        reports = [ingest(one_by_one, p, songs_csv, window_start=WINDOW_START) for p in parts]
    assert ("compiled pair counter" in caplog.text) == (ids == "numbers")
    assert [r.new_event_files for r in reports] == [1, 1, 1, 1]
    at_once = tmp_path / "once.duckdb"
    whole = ingest(at_once, parts, songs_csv, window_start=WINDOW_START)
    a, b = _tables(one_by_one), _tables(at_once)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert (reports[-1].plays, reports[-1].listeners, reports[-1].event_rows) == (
        whole.plays,
        whole.listeners,
        whole.event_rows,
    )

    frame["song_id"] = frame.song_id.astype(str)
    per, per_subset = _expected(frame, songs)
    got = a[0].set_index("song_id")
    np.testing.assert_array_equal(got.loc[per.index, "playcount"], per.playcount)
    np.testing.assert_array_equal(got.loc[per.index, "listeners"], per.listeners)
    np.testing.assert_array_equal(got.loc[per.index, "events"], per.events)
    np.testing.assert_allclose(got.hit_score, np.log1p(got.playcount) * np.log1p(got.listeners), rtol=1e-12)
    assert a[1].set_index("subset").listeners.to_dict() == per_subset.to_dict()
    assert whole.listeners == frame[frame.play_count > 0].user_id.nunique()

    # the same content again, under its name or another, is not counted twice
    before = snapshot(one_by_one)
    again = ingest(one_by_one, parts[1], songs_csv)
    copy = tmp_path / f"copy{parts[2].suffix}"
    copy.write_bytes(parts[2].read_bytes())
    third = ingest(one_by_one, [copy, parts[0]], songs_csv)
    assert again.skipped and third.skipped and third.plays == whole.plays
    assert snapshot(one_by_one) == before


def test_plays_one_by_one_grow_the_window_and_equal_all_at_once(tmp_path, rng):
    rows = _catalogue(15)
    songs_csv = write_songs(tmp_path, rows)
    ids = [r[0] for r in rows]
    n = 3_000
    plays = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, size=n).astype(str),
            "song_id": rng.choice(ids, size=n),
            "played_at": pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 200 * 24, size=n), unit="h"),
        }
    ).sort_values("played_at")
    cuts = [0, 900, 2_000, n]  # by time: each file extends the window
    parts = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:], strict=False)):
        parts.append(tmp_path / f"plays{i}.parquet")
        plays.iloc[lo:hi].to_parquet(parts[-1], index=False)
    one = tmp_path / "one.duckdb"
    reports = [ingest(one, p, songs_csv) for p in parts[::-1]]  # newest first: the start moves back
    assert reports[-1].window_start == plays.played_at.min().date()
    assert reports[-1].window_end == plays.played_at.max().date()
    assert reports[-1].window_source == "data"
    once = tmp_path / "once.duckdb"
    ingest(once, parts, songs_csv)
    for x, y in zip(_tables(one), _tables(once), strict=True):
        pd.testing.assert_frame_equal(x, y)


def test_a_catalogue_that_moves_played_songs_recounts_subset_listeners(tmp_path, rng, caplog):
    rows = _catalogue(20)
    songs_csv = write_songs(tmp_path, rows)
    frame = _events(rng, [r[0] for r in rows], 2_000, users=50)
    first, second = _split(frame, 2, rng)
    first.to_csv(f1 := tmp_path / "first.csv", index=False)
    second.to_csv(f2 := tmp_path / "second.csv", index=False)
    moved = [(r[0], r[1], r[2], "w" if r[3] == "m" else r[3], *r[4:]) for r in rows]  # market m merges into w
    moved = [r for r in moved if r[0] != rows[-1][0]]  # and one song leaves the catalogue
    new_songs = write_songs(tmp_path, moved, name="songs2.csv")

    db = tmp_path / "db.duckdb"
    ingest(db, f1, songs_csv, window_start=WINDOW_START)
    with caplog.at_level(logging.INFO, logger="hitsong.store.merge"):
        report = ingest(db, f2, new_songs, unknown_songs="drop")
    assert "recounting each subset's listeners" in caplog.text
    stats = _tables(db)[0]  # the report counts the catalogue's songs, not the one that left
    assert (report.songs, report.songs_played) == (len(stats), int((stats.playcount > 0).sum()))
    assert (report.plays, report.event_rows) == (stats.playcount.sum(), stats.events.sum())
    fresh = tmp_path / "fresh.duckdb"
    ingest(fresh, [f1, f2], new_songs, window_start=WINDOW_START, unknown_songs="drop")
    for x, y in zip(_tables(db), _tables(fresh), strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert set(_tables(db)[1].subset) == {"w", "k"}


@pytest.mark.parametrize("compiled", [False, True])
def test_key_sets_against_python_sets(tmp_path, rng, monkeypatch, compiled):
    """NumPy's search and merge (small appends) and the compiled ones (large) give the same sets."""
    monkeypatch.setattr(keysets, "_compiled", lambda n: compiled)
    folder = tmp_path / "keys"
    runs: list[keysets.Run] = []
    truth: set[int] = set()
    merges = 0
    for step in range(12):  # a big first batch, then small ones: runs are merged as they grow
        size = 20_000 if step == 0 else int(rng.integers(1, 3_000))
        batch = np.unique(rng.integers(0, 1 << 40, size=size) | (rng.integers(0, 5, size=size) << 50))
        added = keysets.add(folder, runs, batch, name="pairs")
        np.testing.assert_array_equal(added.new_keys, np.array(sorted(set(batch.tolist()) - truth), dtype=np.int64))
        truth |= set(batch.tolist())
        keysets.remove_files(folder, added.dropped)
        merges += bool(added.dropped)
        runs = added.runs
        assert sum(r.keys for r in runs) == len(truth)
        assert len(runs) <= 4
    assert merges >= 3
    np.testing.assert_array_equal(keysets.union(folder, runs), np.array(sorted(truth), dtype=np.int64))
    probe = np.unique(np.concatenate([np.array(sorted(truth))[::7], rng.integers(0, 1 << 40, size=500)]))
    mask = keysets.absent(folder, runs, probe)
    assert [bool(m) for m in mask] == [int(k) not in truth for k in probe]
    assert keysets.remove_leftovers(folder, {r.file for r in runs}) == 0
    (folder / "pairs-stale.npy").write_bytes(b"x")
    assert keysets.remove_leftovers(folder, {r.file for r in runs}) == 1


def test_a_store_of_the_earlier_layout_is_rebuilt_from_its_files(tmp_path, rng):
    """A database written before the key sets existed (every ingest re-read every file) is
    rebuilt from the events files it lists, then takes the new file like any store."""
    rows = _catalogue(10)
    songs_csv = write_songs(tmp_path, rows)
    frame = _events(rng, [r[0] for r in rows], 800, users=30)
    old_part, new_part = _split(frame, 2, rng)
    old_file, new_file = _write(old_part, tmp_path / "old.csv"), _write(new_part, tmp_path / "new.csv")
    db = tmp_path / "db.duckdb"
    ingest(db, old_file, songs_csv, window_start=WINDOW_START)
    con = duckdb.connect(str(db))  # what the earlier layout left: its five-column event_files, no key sets
    try:
        for table in ("listening_state", "song_numbers", "subset_numbers", "song_totals", "user_numbers", "key_runs"):
            con.execute(f"DROP TABLE {table}")
        con.execute("ALTER TABLE event_files DROP COLUMN size")
        con.execute("ALTER TABLE event_files DROP COLUMN mtime_ns")
    finally:
        con.close()
    report = ingest(db, new_file, songs_csv)
    assert report.new_event_files == 2 and not report.skipped
    fresh = tmp_path / "fresh.duckdb"
    ingest(fresh, [old_file, new_file], songs_csv, window_start=WINDOW_START)
    for x, y in zip(_tables(db), _tables(fresh), strict=True):
        pd.testing.assert_frame_equal(x, y)


@pytest.mark.parametrize("ids", ["text", "numbers"])
def test_a_format_3_store_gets_its_catalogue_numbers_at_the_next_ingest(tmp_path, rng, ids):
    """Format 3 had no ``catalogue_numbers``: the next ingest numbers the catalogue again (the
    same numbers), writes the table and format 4, and counts like a fresh ingest of every file.
    An unknown format is refused."""
    rows = _catalogue(10)
    songs_csv = write_songs(tmp_path, rows)
    frame = _events(rng, [r[0] for r in rows], 800, users=30)
    if ids == "numbers":
        frame["song_id"] = frame.song_id.astype("int64")
    old_part, new_part = _split(frame, 2, rng)
    old_file, new_file = (_write(p, tmp_path / f"{n}.parquet") for p, n in ((old_part, "old"), (new_part, "new")))
    db = tmp_path / "db.duckdb"
    ingest(db, old_file, songs_csv, window_start=WINDOW_START)
    con = duckdb.connect(str(db))
    try:
        numbers = con.execute("SELECT * FROM catalogue_numbers ORDER BY song_no").fetchall()
        con.execute("DROP TABLE catalogue_numbers")
        con.execute("UPDATE listening_state SET format = 3")
    finally:
        con.close()
    report = ingest(db, new_file, songs_csv)
    assert report.new_event_files == 1 and not report.skipped
    fresh = tmp_path / "fresh.duckdb"
    ingest(fresh, [old_file, new_file], songs_csv, window_start=WINDOW_START)
    for x, y in zip(_tables(db), _tables(fresh), strict=True):
        pd.testing.assert_frame_equal(x, y)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT format FROM listening_state").fetchall() == [(4,)]
        assert con.execute("SELECT * FROM catalogue_numbers ORDER BY song_no").fetchall() == numbers
        keys = con.execute("SELECT song_key FROM catalogue_numbers WHERE song_key IS NOT NULL").fetchall()
    finally:
        con.close()
    assert len(keys) == len(rows)  # every id of the test catalogue is a whole number
    assert ingest(db, new_file, songs_csv).skipped  # up to date now: nothing to do

    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE listening_state SET format = 2")
    finally:
        con.close()
    before = snapshot(db)
    with pytest.raises(StoreError, match="store format 2"):
        ingest(db, new_file, songs_csv)
    assert snapshot(db) == before
