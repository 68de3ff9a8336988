"""The compiled pair counter (hitsong.store.pairs) against pandas, and ingest through it, NumPy and SQL alike."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import hitsong.store.aggregate as aggregate_module
from hitsong.errors import InputError
from hitsong.store import keysets
from hitsong.store.ingest import ingest
from hitsong.store.keyruns import SCAN_GAP, absent_sorted
from hitsong.store.pairs import count_pairs
from hitsong.store.smallpairs import count_pairs_small, load_append_loops
from tests.helpers.store import WINDOW_START

COMPILED = "compiled pair counter"


def _expected(users, songs, counts, catalogue, subset_of):
    """Per catalogue song: plays, events, listeners (pandas); per subset: users; unknown songs."""
    frame = pd.DataFrame({"u": users, "s": songs, "c": counts})
    known = frame[frame.s.isin(catalogue)]
    per = known.groupby("s").agg(plays=("c", "sum"), events=("c", "size"))
    per["listeners"] = known[known.c > 0].groupby("s").u.nunique()
    per = per.reindex(catalogue).fillna(0).astype("int64")
    song_subset = dict(zip(catalogue, subset_of))
    positive = known[known.c > 0]
    subset_users = {k: set(g.u) for k, g in positive.groupby(positive.s.map(song_subset))}
    unknown = frame[~frame.s.isin(catalogue)].groupby("s").agg(rows=("c", "size"), plays=("c", "sum"))
    return per, subset_users, unknown


@pytest.mark.parametrize("counter", ["batches, 1 thread", "batches, 2 threads", "small"])
@pytest.mark.parametrize("span", [2**20, 100])
def test_count_pairs_matches_pandas_with_duplicates_unknowns_and_many_buckets(rng, counter, span):
    """20 user bits: 8 songs per bucket, 38 sparse buckets; 100 users: one dense bucket.
    ``count_pairs_small`` (all rows at once, grouped by song) must give the same."""
    catalogue = np.sort(rng.choice(10_000, size=300, replace=False)) + 5_000  # ids with gaps
    subset_of = rng.integers(0, 3, size=catalogue.size)
    pool = np.concatenate([[3, span + 2], rng.choice(span, size=min(150, span), replace=False) + 3])
    n = 20_000
    users = rng.choice(pool, size=n)
    songs = np.where(rng.random(n) < 0.02, rng.choice([1, 4_999, 99_999], size=n), rng.choice(catalogue, size=n))
    counts = rng.integers(0, 4, size=n)  # zeros included; (user, song) pairs repeat often
    assert pd.DataFrame({"u": users, "s": songs}).duplicated().sum() > 1_000
    lut = np.full(catalogue[-1] - catalogue[0] + 1, -1, np.int32)
    lut[catalogue - catalogue[0]] = np.arange(catalogue.size)
    cuts = [0, 1, 1_000, 7_777, n]
    batches = [(users[a:b], songs[a:b].astype(np.int32), counts[a:b].astype(np.int32)) for a, b in zip(cuts, cuts[1:])]
    tables = {"song_lut": lut, "song_lo": int(catalogue[0]), "subset_of": subset_of, "n_subsets": 3}
    users_range = {"user_lo": int(pool.min()), "user_hi": int(pool.max())}
    if counter == "small":
        got = count_pairs_small(users, songs.astype(np.int32), counts.astype(np.int32), **tables, **users_range)
    else:
        threads = 1 if counter.endswith("1 thread") else 2
        got = count_pairs(iter(batches), **tables, **users_range, capacity=n, threads=threads)
    per, subset_users, unknown = _expected(users, songs, counts, catalogue, subset_of)
    np.testing.assert_array_equal(got.plays, per.plays.to_numpy())
    np.testing.assert_array_equal(got.events, per.events.to_numpy())
    np.testing.assert_array_equal(got.listeners, per.listeners.to_numpy())
    for k in range(3):
        assert set(np.flatnonzero(got.subset_users[k]) + pool.min()) == subset_users[k]
    np.testing.assert_array_equal(got.unknown_ids, unknown.index.to_numpy())
    np.testing.assert_array_equal(got.unknown_rows, unknown.rows.to_numpy())
    np.testing.assert_array_equal(got.unknown_plays, unknown.plays.to_numpy())
    # the distinct pairs with plays, sorted, as song index << 32 | user id
    index = dict(zip(catalogue, range(catalogue.size)))
    known = [(index[s], u) for u, s, c in zip(users, songs, counts) if c > 0 and s in index]
    want = np.unique(np.array([(s << 32) | u for s, u in known], dtype=np.int64))
    np.testing.assert_array_equal(got.pair_keys, want)
    assert got.pair_keys.size == int(got.listeners.sum())


def test_count_pairs_small_equals_count_pairs_on_heavy_tailed_songs(rng):
    """Most songs with a few rows (insertion-sorted), a few with thousands (sorted by a call)."""
    n_songs, n = 6_000, 40_000
    weights = (np.arange(n_songs) + 3.0) ** -1.2
    songs = rng.choice(n_songs, size=n, p=weights / weights.sum()).astype(np.int32) + 10
    users = rng.integers(5, 3_000, size=n).astype(np.int32)
    counts = rng.integers(0, 3, size=n).astype(np.int32)
    sizes = np.bincount(songs)
    assert (sizes[(sizes > 0) & (sizes <= 32)]).size > 1_000 and sizes.max() > 1_000
    lut = np.arange(n_songs, dtype=np.int32)  # song id 10 + k is song number k
    subset_of = rng.integers(0, 2, size=n_songs)
    kw = {"song_lut": lut, "song_lo": 10, "subset_of": subset_of, "n_subsets": 2, "user_lo": 5, "user_hi": 2_999}
    small = count_pairs_small(users, songs, counts, **kw)
    batched = count_pairs(iter([(users, songs, counts)]), **kw, capacity=n)
    for name in ("plays", "events", "listeners", "subset_users", "pair_keys"):
        np.testing.assert_array_equal(getattr(small, name), getattr(batched, name), err_msg=name)


def test_loading_the_append_loops_ahead_leaves_them_working(rng):
    """What an ingest's background import calls: afterwards the loops still give exact answers."""
    load_append_loops()
    run = np.unique(rng.integers(0, 1 << 40, size=1_000))
    run.flags.writeable = False
    new = np.unique(np.concatenate([run[::3], rng.integers(0, 1 << 40, size=100)]))
    out = np.ones(new.size, np.bool_)
    absent_sorted(new, run, out)
    np.testing.assert_array_equal(out, ~np.isin(new, run))


@pytest.mark.parametrize("n_new", [3, 40, 2_000, 30_000])
def test_absent_sorted_walks_and_gallops_like_a_binary_search(rng, n_new):
    """Few keys against the run gallop, many walk it (``SCAN_GAP``); both must match NumPy's
    binary search, with keys at and beyond the run's ends, and leave keys already found alone."""
    run = np.unique(rng.integers(0, 1 << 40, size=60_000))
    assert (run.size < SCAN_GAP * n_new) == (n_new >= 2_000)  # both ways are exercised
    ends = [run[0] - 1, run[0], run[1], run[-2], run[-1], run[-1] + 1, 0, (1 << 62)]
    present = rng.choice(run, size=n_new // 2)
    new = np.unique(np.concatenate([ends, present, rng.integers(0, 1 << 40, size=n_new - n_new // 2)]))
    pos = np.searchsorted(run, new)
    want = ~((pos < run.size) & (run[np.minimum(pos, run.size - 1)] == new))
    out = np.ones(new.size, np.bool_)
    absent_sorted(new, run, out)
    np.testing.assert_array_equal(out, want)
    out = rng.random(new.size) < 0.5  # keys already found in another run stay found
    expected = out & want
    absent_sorted(new, run, out)
    np.testing.assert_array_equal(out, expected)
    empty = np.ones(new.size, np.bool_)
    absent_sorted(new, run[:0], empty)
    assert empty.all()


def _songs_csv(folder: Path, ids, subsets) -> Path:
    path = folder / "songs.csv"
    pd.DataFrame(
        {
            "song_id": [str(i) for i in ids],
            "title": "t",
            "artist": "a",
            "subset": subsets,
            "release_date": "2012-10-01",
            "audio_path": "x.mp3",
        }
    ).to_csv(path, index=False)
    return path


def _events_parquet(folder: Path, users, songs, counts, name: str = "events.parquet") -> Path:
    path = folder / name
    pd.DataFrame(
        {
            "user_id": np.asarray(users, np.int32),
            "song_id": np.asarray(songs, np.int32),
            "play_count": np.asarray(counts, np.int32),
        }
    ).to_parquet(path, index=False)
    return path


def _stats(db: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return (
            con.execute("SELECT * FROM song_stats ORDER BY song_id").df(),
            con.execute("SELECT * FROM subset_stats ORDER BY subset").df(),
        )
    finally:
        con.close()


PATHS = ("sql", "numpy", "compiled")


def _ingest_all(tmp_path, monkeypatch, caplog, events, songs, **kw):
    """Ingest the same input through SQL, NumPy (a small integer Parquet input) and the compiled
    counter; the three reports by path (databases ``<path>.duckdb``)."""
    reports = {}
    with caplog.at_level(logging.INFO, logger="hitsong.store.aggregate"):
        with monkeypatch.context() as m:
            m.setattr(aggregate_module, "_integer_parquet", lambda con, checked: False)
            reports["sql"] = ingest(tmp_path / "sql.duckdb", events, songs, window_start=WINDOW_START, **kw)
        with monkeypatch.context() as m:  # NumPy: a process that has not loaded the compiled loops
            m.setattr(keysets, "compiled_loaded", lambda: False)
            reports["numpy"] = ingest(tmp_path / "numpy.duckdb", events, songs, window_start=WINDOW_START, **kw)
        assert COMPILED not in caplog.text
        monkeypatch.setattr(aggregate_module, "_KERNEL_MIN_ROWS", 0)
        reports["compiled"] = ingest(tmp_path / "compiled.duckdb", events, songs, window_start=WINDOW_START, **kw)
        assert COMPILED in caplog.text
    return reports


def test_duplicate_pairs_are_summed_into_one_listener_on_every_path(tmp_path, monkeypatch, caplog):
    songs = _songs_csv(tmp_path, [7, 8, 9], ["m", "m", "w"])
    rows = [
        (1, 7, 2),
        (1, 7, 3),  # a repeated pair: 5 plays, 2 events, one listener
        (2, 7, 0),
        (2, 7, 0),  # a repeated pair without plays: 2 events, no listener
        (3, 8, 0),
        (3, 8, 4),  # zero plus plays: one listener
        (1, 9, 1),
    ]
    events = _events_parquet(tmp_path, *zip(*rows))
    reports = _ingest_all(tmp_path, monkeypatch, caplog, events, songs)
    for path in PATHS:
        per_song, per_subset = _stats(tmp_path / f"{path}.duckdb")
        got = {r.song_id: (r.playcount, r.listeners, r.events) for r in per_song.itertuples()}
        assert got == {"7": (5, 1, 4), "8": (4, 1, 2), "9": (1, 1, 1)}
        assert per_song.set_index("song_id").hit_score["7"] == pytest.approx(np.log(6) * np.log(2), rel=1e-12)
        assert per_subset[["subset", "listeners", "events", "plays"]].values.tolist() == [
            ["m", 2, 6, 9],
            ["w", 1, 1, 1],
        ]
    for report in reports.values():
        assert (report.plays, report.listeners, report.event_rows) == (10, 2, 7)


def test_random_data_gives_identical_tables_on_every_path(tmp_path, monkeypatch, caplog, rng):
    ids = np.arange(100, 400)
    songs = _songs_csv(tmp_path, ids, rng.choice(["m", "w", "k"], size=ids.size))
    n = 5_000
    events = _events_parquet(
        tmp_path, rng.integers(1_000, 1_500, size=n), rng.choice(ids[:250], size=n), rng.integers(0, 9, size=n)
    )
    _ingest_all(tmp_path, monkeypatch, caplog, events, songs)
    for path in PATHS[1:]:
        for a, b in zip(_stats(tmp_path / "sql.duckdb"), _stats(tmp_path / f"{path}.duckdb"), strict=True):
            pd.testing.assert_frame_equal(a, b)


def test_unknown_songs_on_every_path(tmp_path, monkeypatch, caplog):
    songs = _songs_csv(tmp_path, [7, 8], ["m", "w"])
    events = _events_parquet(tmp_path, [1, 2, 2, 3], [7, 55, 8, 55], [1, 2, 3, 4])
    reports = _ingest_all(tmp_path, monkeypatch, caplog, events, songs, unknown_songs="drop")
    for r in reports.values():
        assert (r.dropped_unknown_rows, r.dropped_unknown_plays, r.plays, r.listeners) == (2, 6, 4, 2)
    db = tmp_path / "err.duckdb"
    with pytest.raises(InputError, match=r"'song_id'.*not in the songs file.*'55'.*rows 2, 4"):
        ingest(db, events, songs, window_start=WINDOW_START)
    assert not db.exists()


def test_parquet_without_statistics_takes_the_same_paths_and_counts(tmp_path, monkeypatch, caplog, rng):
    """User ranges and the largest play count come from the row groups' statistics; a file
    written without them is asked through DuckDB instead, with the same result."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.arange(100, 160)
    songs = _songs_csv(tmp_path, ids, rng.choice(["m", "w"], size=ids.size))
    n = 3_000
    columns = {
        "user_id": pa.array(rng.integers(1_000, 1_200, size=n).astype(np.int32)),
        "song_id": pa.array(rng.choice(ids, size=n).astype(np.int32)),
        "play_count": pa.array(rng.integers(0, 6, size=n).astype(np.int32)),
    }
    plain, bare = tmp_path / "plain.parquet", tmp_path / "bare.parquet"
    pq.write_table(pa.table(columns), plain, row_group_size=1_000)
    pq.write_table(pa.table(columns), bare, row_group_size=1_000, write_statistics=False)
    assert not pq.read_metadata(bare).row_group(0).column(0).is_stats_set
    monkeypatch.setattr(aggregate_module, "_KERNEL_MIN_ROWS", 0)
    with caplog.at_level(logging.INFO, logger="hitsong.store.aggregate"):
        for path in (plain, bare):
            ingest(tmp_path / f"{path.stem}.duckdb", path, songs, window_start=WINDOW_START)
    assert caplog.text.count(COMPILED) == 2
    for a, b in zip(_stats(tmp_path / "plain.duckdb"), _stats(tmp_path / "bare.duckdb"), strict=True):
        pd.testing.assert_frame_equal(a, b)
