"""The listening store: hit scores, release quarters, event shapes, re-ingest, samples, readers, CLI."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from hitsong.cli import main
from hitsong.errors import ConfigError, StoreError
from hitsong.store.ingest import ingest
from hitsong.store.read import (
    hit_score_frame,
    quarter_playcounts,
    split_frame,
    stats,
    window,
)
from hitsong.store.rules import hit_score, release_quarter
from hitsong.store.sample import check_fractions, sample, split_counts
from tests.helpers.store import (
    EVENTS,
    EXPECTED,
    SONGS,
    WINDOW_START,
    random_dataset,
    snapshot,
    write_events,
    write_plays,
    write_songs,
)


def _table(db: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "db.duckdb", write_events(tmp_path), write_songs(tmp_path)


def test_hit_scores_and_quarters_match_hand_computed(small):
    db, events, songs = small
    report = ingest(db, events, songs, window_start=WINDOW_START)
    assert (report.songs, report.songs_played, report.event_rows, report.plays, report.listeners) == (6, 3, 4, 11, 3)
    got = _table(db, "SELECT * FROM song_stats").set_index("song_id")
    for song_id, _, _, subset, _, _, quarter, index in SONGS:
        playcount, listeners, hit = EXPECTED[song_id]
        row = got.loc[song_id]
        assert (row.subset, row.playcount, row.listeners) == (subset, playcount, listeners)
        assert row.hit_score == pytest.approx(hit, rel=1e-12)
        assert (row.release_quarter, row.quarter_index) == (quarter, index)
    audio = _table(db, "SELECT song_id, audio_path FROM songs").set_index("song_id")["audio_path"]
    assert audio["a"] == str(songs.parent / "audio/a.mp3") and audio["c"] == "/abs/c.mp3"


@pytest.mark.parametrize(
    ("release", "start", "label"),
    [
        (date(2012, 10, 1), date(2012, 10, 1), "Q1"),
        (date(2012, 12, 31), date(2012, 10, 1), "Q1"),
        (date(2013, 1, 1), date(2012, 10, 1), "Q2"),
        (date(2012, 9, 30), date(2012, 10, 1), "-Q1"),
        (date(2012, 7, 1), date(2012, 10, 1), "-Q1"),
        (date(2012, 6, 30), date(2012, 10, 1), "-Q2"),
        (date(2013, 4, 14), date(2013, 1, 15), "Q1"),  # 2 whole months and 30 days
        (date(2013, 4, 15), date(2013, 1, 15), "Q2"),
        (date(2010, 10, 1), date(2012, 10, 1), "-Q8"),
    ],
)
def test_release_quarter_rule(release, start, label):
    assert release_quarter(release, start)[0] == label


def test_sql_quarters_agree_with_python_rule(tmp_path, rng):
    days = rng.integers(-800, 800, size=200)
    start = date(2013, 1, 31)
    rows = [
        (f"s{i}", "t", "a", "m", (start + pd.Timedelta(days=int(d))).isoformat(), "x.mp3", "", 0)
        for i, d in enumerate(days)
    ]
    db = tmp_path / "q.duckdb"
    ingest(db, write_events(tmp_path, [("u", "s0", 1)]), write_songs(tmp_path, rows), window_start=start)
    got = _table(
        db,
        "SELECT s.song_id, s.release_date, st.release_quarter, st.quarter_index "
        "FROM songs s JOIN song_stats st USING (song_id)",
    )
    for r in got.itertuples():
        assert (r.release_quarter, r.quarter_index) == release_quarter(pd.Timestamp(r.release_date).date(), start)


def test_both_event_shapes_give_the_same_song_stats(tmp_path):
    songs = write_songs(tmp_path)
    agg_db, plays_db = tmp_path / "agg.duckdb", tmp_path / "plays.duckdb"
    ingest(agg_db, write_events(tmp_path, name="ev.parquet"), songs, window_start=WINDOW_START)
    report = ingest(plays_db, write_plays(tmp_path), songs)
    assert report.window_start == WINDOW_START and report.window_source == "data"
    cols = "song_id, subset, playcount, listeners, hit_score, release_quarter, quarter_index"
    a = _table(agg_db, f"SELECT {cols} FROM song_stats ORDER BY song_id")
    b = _table(plays_db, f"SELECT {cols} FROM song_stats ORDER BY song_id")
    pd.testing.assert_frame_equal(a, b)
    # plays parquet (real timestamps) too
    p2 = tmp_path / "p2.duckdb"
    ingest(p2, write_plays(tmp_path, name="plays.parquet"), songs)
    pd.testing.assert_frame_equal(a, _table(p2, f"SELECT {cols} FROM song_stats ORDER BY song_id"))


def test_window_flags_drop_plays_outside(tmp_path):
    db = tmp_path / "db.duckdb"
    # plays fall on 2012-10-01 (a x3), 10-02 (a), 10-03 (b x2), 10-04 (c x5)
    report = ingest(
        db, write_plays(tmp_path), write_songs(tmp_path), window_start=date(2012, 10, 2), window_end=date(2012, 10, 3)
    )
    assert report.outside_window_rows == 3 + 5
    got = _table(db, "SELECT song_id, playcount FROM song_stats").set_index("song_id")["playcount"]
    assert (got["a"], got["b"], got["c"]) == (1, 2, 0)
    assert window(db) == (date(2012, 10, 2), date(2012, 10, 3))


def test_gzipped_csv_and_parquet_read_the_same(tmp_path):
    songs = write_songs(tmp_path)
    dbs = []
    for name in ("e.csv.gz", "e.parquet", "e.csv"):
        db = tmp_path / f"{name}.duckdb"
        ingest(db, write_events(tmp_path, name=name), songs, window_start=WINDOW_START)
        dbs.append(_table(db, "SELECT * FROM song_stats ORDER BY song_id"))
    pd.testing.assert_frame_equal(dbs[0], dbs[1])
    pd.testing.assert_frame_equal(dbs[0], dbs[2])


def test_reingest_same_content_is_skipped(small, tmp_path):
    db, events, songs = small
    ingest(db, events, songs, window_start=WINDOW_START)
    before = snapshot(db)
    again = ingest(db, events, songs)  # the window is remembered
    assert again.skipped and "already ingested" in again.message
    assert snapshot(db) == before
    # the same bytes under another name are not counted twice either
    copy = tmp_path / "copy.csv"
    copy.write_bytes(events.read_bytes())
    third = ingest(db, copy, songs, window_start=WINDOW_START)
    assert third.skipped and third.plays == 11
    assert snapshot(db) == before


def test_second_events_file_adds_plays_and_distinct_listeners(tmp_path):
    songs = write_songs(tmp_path)
    db = tmp_path / "db.duckdb"
    first = write_events(tmp_path, EVENTS[:2], "jan.csv")  # u1 a 3, u2 a 1
    second = write_events(tmp_path, [("u1", "a", 2), ("u4", "c", 1)], "feb.csv")
    ingest(db, first, songs, window_start=WINDOW_START)
    report = ingest(db, second, songs)
    assert not report.skipped and len(report.event_files) == 2
    got = _table(db, "SELECT song_id, playcount, listeners FROM song_stats").set_index("song_id")
    assert tuple(got.loc["a"]) == (6, 2)  # u1 in both files is one listener
    assert tuple(got.loc["c"]) == (1, 1)
    subsets = _table(db, "SELECT subset, listeners, plays FROM subset_stats").set_index("subset")
    assert tuple(subsets.loc["m"]) == (2, 6)
    # replace forgets jan
    ingest(db, second, songs, replace=True, window_start=WINDOW_START)
    got = _table(db, "SELECT song_id, playcount, listeners FROM song_stats").set_index("song_id")
    assert tuple(got.loc["a"]) == (2, 1)


def test_drop_unknown_counts(tmp_path):
    db = tmp_path / "db.duckdb"
    events = write_events(tmp_path, [*EVENTS, ("u9", "zz", 7), ("u8", "zz", 1)])
    report = ingest(db, events, write_songs(tmp_path), window_start=WINDOW_START, unknown_songs="drop")
    assert (report.dropped_unknown_rows, report.dropped_unknown_plays, report.plays, report.listeners) == (2, 8, 11, 3)


def test_stats_match_a_pandas_computation(tmp_path, rng):
    songs, events, frame = random_dataset(tmp_path, rng)
    db = tmp_path / "db.duckdb"
    ingest(db, events, songs, window_start=WINDOW_START)
    got = stats(db).set_index("subset")
    cat = pd.read_csv(songs)[["song_id", "subset"]]
    ev = frame.merge(cat, on="song_id")
    per_song = cat.merge(
        ev.groupby("song_id").agg(pc=("play_count", "sum"), li=("user_id", "nunique")), on="song_id", how="left"
    ).fillna(0)
    per_song["hit"] = np.log1p(per_song.pc) * np.log1p(per_song.li)
    for subset, grp in per_song.groupby("subset"):
        row = got.loc[subset]
        assert row.songs == len(grp)
        assert row.listeners == ev[ev.subset == subset].user_id.nunique()
        assert row.plays == grp.pc.sum() and row.events == len(ev[ev.subset == subset])
        assert row.hit_median == pytest.approx(grp.hit.median())
        assert row.hit_q90 == pytest.approx(grp.hit.quantile(0.9))
    # the Python twin of the stored SQL rule gives the same values
    np.testing.assert_allclose(hit_score(per_song.pc, per_song.li), per_song.hit, rtol=1e-12)


@pytest.fixture
def sampled_db(tmp_path, rng):
    songs, events, _ = random_dataset(tmp_path, rng)
    db = tmp_path / "db.duckdb"
    ingest(db, events, songs, window_start=WINDOW_START)
    return db


def test_sample_is_deterministic_disjoint_and_sized(sampled_db):
    db = sampled_db
    sample(db, per_subset=40, seed=7)
    first = split_frame(db)
    sample(db, per_subset=40, seed=8)
    other = split_frame(db)
    sample(db, per_subset=40, seed=7)
    again = split_frame(db)
    pd.testing.assert_frame_equal(first, again)
    assert not first[["song_id", "split"]].equals(other[["song_id", "split"]])
    assert first.song_id.is_unique
    sizes = first.groupby(["subset", "split"]).size().unstack()
    assert (sizes[["train", "val", "test"]].to_numpy() == [[32, 4, 4]] * 3).all()
    # the sample is the top 40 by playcount, ties by song_id
    stats = _table(db, "SELECT song_id, subset, playcount FROM song_stats")
    top = (
        stats.sort_values(["subset", "playcount", "song_id"], ascending=[True, False, True]).groupby("subset").head(40)
    )
    assert set(top.song_id) == set(first.song_id)
    assert set(first.columns) >= {
        "song_id",
        "subset",
        "split",
        "hit_score",
        "playcount",
        "listeners",
        "audio_path",
        "release_date",
        "title",
        "artist",
        "release_quarter",
    }
    assert len(split_frame(db, subset="w", split="test")) == 4


def test_sample_by_release_date_puts_the_past_in_train(sampled_db):
    sample(sampled_db, per_subset=20, seed=0, split=(0.5, 0.25, 0.25), by="release_date")
    frame = split_frame(sampled_db)
    for _, grp in frame.groupby("subset"):
        d = {s: grp[grp.split == s].release_date for s in ("train", "val", "test")}
        assert d["train"].max() <= d["val"].min() and d["val"].max() <= d["test"].min()
        assert [len(d[s]) for s in ("train", "val", "test")] == [10, 5, 5]


def test_split_counts_and_fraction_checks():
    assert split_counts(10000, (0.8, 0.1, 0.1)) == (8000, 1000, 1000)
    assert split_counts(7, (0.8, 0.1, 0.1)) == (5, 1, 1)  # largest remainders
    assert sum(split_counts(13, (0.6, 0.2, 0.2))) == 13
    with pytest.raises(ConfigError, match="summing to 1"):
        check_fractions((0.8, 0.1, 0.2))


def test_dashboard_readers(sampled_db):
    db = sampled_db
    sample(db, per_subset=10, seed=1)
    q = quarter_playcounts(db)
    stats = _table(db, "SELECT * FROM song_stats")
    expect = stats.groupby(["subset", "release_quarter"]).playcount.mean()
    for r in q[q.group == "all"].itertuples():
        assert r.mean_playcount == pytest.approx(expect[(r.subset, r.release_quarter)])
    assert q[q.group == "sampled"].songs.sum() == 30
    h = hit_score_frame(db)
    assert len(h) == len(stats) and h.split.notna().sum() == 30


def test_ingest_clears_stale_splits_and_readers_explain(tmp_path, sampled_db):
    sample(sampled_db, per_subset=5, seed=1)
    report = ingest(sampled_db, write_events(tmp_path, [("u1", "m001", 1)], "more.csv"), tmp_path / "songs.csv")
    assert report.splits_cleared
    with pytest.raises(StoreError, match="hitsong sample"):
        split_frame(sampled_db)
    with pytest.raises(StoreError, match="hitsong ingest"):
        stats(tmp_path / "none.duckdb")
    with pytest.raises(StoreError, match="hitsong ingest"):
        sample(tmp_path / "none.duckdb", per_subset=3, seed=0)
    assert not (tmp_path / "none.duckdb").exists()


def test_cli_end_to_end(tmp_path, capsys, rng):
    songs, events, _ = random_dataset(tmp_path, rng)
    db = str(tmp_path / "cli.duckdb")
    assert (
        main(["ingest", "--db", db, "--events", str(events), "--songs", str(songs), "--window-start", "2012-10-01"])
        == 0
    )
    assert "150 songs" in capsys.readouterr().out
    assert main(["sample", "--db", db, "--per-subset", "20", "--seed", "3", "--split", "0.5,0.25,0.25"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "10" in out
    assert main(["stats", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "listeners" in out and "2012-10-01" in out
    # typed options: a bad date or split is refused by the parser
    with pytest.raises(SystemExit):
        main(["ingest", "--db", db, "--events", str(events), "--songs", str(songs), "--window-start", "2012-13-01"])
    with pytest.raises(SystemExit):
        main(["sample", "--db", db, "--per-subset", "20", "--seed", "3", "--split", "0.5,0.5,0.5"])
    # bad input: exit 1, one log line
    assert main(["ingest", "--db", db, "--events", str(tmp_path / "nope.csv"), "--songs", str(songs)]) == 1


def test_cli_db_defaults_to_the_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HITSONG_HOME", str(tmp_path / "home"))
    assert (
        main(
            [
                "ingest",
                "--events",
                str(write_events(tmp_path)),
                "--songs",
                str(write_songs(tmp_path)),
                "--window-start",
                "2012-10-01",
            ]
        )
        == 0
    )
    assert (tmp_path / "home" / "hitsong.duckdb").exists()
    assert math.isclose(stats(tmp_path / "home" / "hitsong.duckdb").plays.sum(), 11)


def test_integer_song_ids_in_parquet_match_text_ids(tmp_path):
    rows = [(str(i), f"t{i}", "a", "m", "2012-10-01", f"{i}.mp3", "Q1", 1) for i in (7, 8)]
    rows.append(("007", "t", "a", "m", "2012-10-01", "x.mp3", "Q1", 1))
    songs = write_songs(tmp_path, rows)
    events = tmp_path / "ev.parquet"
    pd.DataFrame({"user_id": [1, 2, 1], "song_id": [7, 7, 8], "play_count": [1, 2, 3]}).to_parquet(events, index=False)
    db = tmp_path / "db.duckdb"
    ingest(db, events, songs, window_start=WINDOW_START)
    got = _table(db, "SELECT song_id, playcount, listeners FROM song_stats").set_index("song_id")
    assert tuple(got.loc["7"]) == (3, 2) and tuple(got.loc["8"]) == (3, 1) and tuple(got.loc["007"]) == (0, 0)


@pytest.mark.parametrize("kind", ["parquet", "csv", "text ids"])
def test_an_append_matches_integer_song_ids_like_the_first_ingest(tmp_path, kind):
    """An append with the same catalogue finds whole-number song ids by the stored ``song_key``
    (no text ids read; the SQL path for CSV, NumPy or the compiled counter for Parquet) and text
    ids by the text: '7' and 7 match, '007' does not, either way."""
    rows = [(str(i), f"t{i}", "a", "m", "2012-10-01", f"{i}.mp3", "Q1", 1) for i in (7, 8)]
    rows.append(("007", "t", "a", "m", "2012-10-01", "x.mp3", "Q1", 1))
    songs = write_songs(tmp_path, rows)
    days = [
        pd.DataFrame({"user_id": [1, 2, 1], "song_id": [7, 7, 8], "play_count": [1, 2, 3]}),
        pd.DataFrame({"user_id": [3, 1], "song_id": [7, 8], "play_count": [4, 5]}),
    ]
    files = []
    for i, day in enumerate(days):
        if kind == "text ids":
            day = day.assign(song_id=day.song_id.map({7: "007", 8: "8"}))
        path = tmp_path / f"day{i}.{'parquet' if kind == 'parquet' else 'csv'}"
        day.to_parquet(path, index=False) if kind == "parquet" else day.to_csv(path, index=False)
        files.append(path)
    db = tmp_path / "db.duckdb"
    for path in files:
        ingest(db, path, songs, window_start=WINDOW_START)
    got = _table(db, "SELECT song_id, playcount, listeners FROM song_stats").set_index("song_id")
    if kind == "text ids":
        assert tuple(got.loc["007"]) == (7, 3) and tuple(got.loc["8"]) == (8, 1) and tuple(got.loc["7"]) == (0, 0)
    else:
        assert tuple(got.loc["7"]) == (7, 3) and tuple(got.loc["8"]) == (8, 1) and tuple(got.loc["007"]) == (0, 0)
