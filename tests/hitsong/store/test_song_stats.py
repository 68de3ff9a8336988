"""Per-song statistics from a warehouse (``--song-stats``): the same hit scores, the same checks on input."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from hitsong.cli import main
from hitsong.errors import ConfigError, InputError
from hitsong.store.ingest import ingest
from hitsong.store.read import stats
from hitsong.store.sample import sample
from tests.helpers.store import EVENTS, SONGS, WINDOW_START, snapshot, write_events, write_songs

HEADER = "song_id,playcount,listeners,events\n"
#: the listening of tests.helpers.store.EVENTS as per-song statistics (d, e, f have no plays)
GOOD = HEADER + "a,4,2,2\nb,2,1,1\nc,5,1,1\n"


def _write(folder: Path, text: str, name: str = "stats.csv") -> Path:
    (path := folder / name).write_text(text)
    return path


def _song_stats(db: Path) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM song_stats ORDER BY song_id").df()
    finally:
        con.close()


def test_song_stats_give_what_the_events_give(tmp_path):
    songs = write_songs(tmp_path)
    from_events, from_stats = tmp_path / "events.duckdb", tmp_path / "stats.duckdb"
    ingest(from_events, write_events(tmp_path), songs, window_start=WINDOW_START)
    report = ingest(from_stats, None, songs, song_stats=_write(tmp_path, GOOD), window_start=WINDOW_START)
    pd.testing.assert_frame_equal(_song_stats(from_events), _song_stats(from_stats))
    assert (report.songs, report.songs_played, report.plays, report.listeners) == (6, 3, 11, None)
    a = _song_stats(from_stats).set_index("song_id")
    assert a.hit_score["a"] == pytest.approx(math.log(5) * math.log(3), rel=1e-12)
    # per-subset distinct listeners cannot come from per-song counts: unknown, not a sum
    summary = stats(from_stats).set_index("subset")
    assert summary.listeners.isna().all() and summary.plays.to_dict() == {"m": 6, "w": 5}
    sample(from_stats, per_subset=2, seed=0)  # the rest of the pipeline runs on it

    # without an events column, events default to listeners (one aggregated row per listener)
    no_events = tmp_path / "no_events.duckdb"
    ingest(
        no_events,
        None,
        songs,
        song_stats=_write(tmp_path, "song_id,playcount,listeners\na,4,2\n", "s2.csv"),
        window_start=WINDOW_START,
    )
    assert _song_stats(no_events).set_index("song_id").events["a"] == 2

    # the same file again is skipped; events cannot be added to per-song statistics, --replace can
    before = snapshot(from_stats)
    assert ingest(from_stats, None, songs, song_stats=tmp_path / "stats.csv", window_start=WINDOW_START).skipped
    with pytest.raises(InputError, match="listeners are not additive"):
        ingest(from_stats, write_events(tmp_path, EVENTS[:1], "more.csv"), songs)
    assert snapshot(from_stats) == before
    replaced = ingest(from_stats, write_events(tmp_path), songs, window_start=WINDOW_START, replace=True)
    assert replaced.listeners == 3
    pd.testing.assert_frame_equal(_song_stats(from_events), _song_stats(from_stats))


CASES = {
    "missing column": ("song_id,playcount\na,4\n", ["missing column", "'listeners'"]),
    "more listeners than plays": (HEADER + "a,4,2,2\nb,2,3,3\n", ["'listeners'", "larger than the playcount", "row 2"]),
    "plays without listeners": (HEADER + "a,4,0,2\n", ["'listeners'", "is 0 while the playcount is not", "row 1"]),
    "fewer events than listeners": (HEADER + "a,4,2,1\n", ["'events'", "smaller than listeners", "row 1"]),
    "negative": (HEADER + "a,-4,2,2\n", ["'playcount'", "negative", "row 1"]),
    "fractional": (HEADER + "a,4,2,2\nb,2.5,1,1\n", ["'playcount'", "not a whole number", "row 2"]),
    "beyond int64": (HEADER + "a,4,2,2\nb,99999999999999999999999,1,1\n", ["'playcount'", "larger than", "row 2"]),
    "not a number": (HEADER + "a,many,2,2\n", ["'playcount'", "not a number", "row 1"]),
    "duplicate song": (HEADER + "a,4,2,2\nb,1,1,1\na,1,1,1\n", ["duplicate song id", "'a'", "rows 1, 3"]),
    "unknown song": (HEADER + "a,4,2,2\nzz,1,1,1\n", ["'song_id'", "not in the songs file", "'zz'", "row 2"]),
    "empty id": (HEADER + "a,4,2,2\n,1,1,1\n", ["'song_id'", "is empty", "row 2"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_song_stats_name_file_column_row_and_change_nothing(tmp_path, case):
    text, fragments = CASES[case]
    songs = write_songs(tmp_path)
    db = tmp_path / "db.duckdb"
    ingest(db, write_events(tmp_path), songs, window_start=WINDOW_START)
    bad = _write(tmp_path, text, "bad_stats.csv")
    before = snapshot(db)
    with pytest.raises(InputError) as info:
        ingest(db, None, songs, song_stats=bad, window_start=WINDOW_START)
    message = str(info.value)
    assert str(bad) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "database was not changed" in message
    assert snapshot(db) == before


def test_unknown_songs_can_be_dropped_and_the_window_is_required(tmp_path):
    songs = write_songs(tmp_path)
    stats_file = _write(tmp_path, GOOD + "zz,7,3,3\n")
    db = tmp_path / "db.duckdb"
    report = ingest(db, None, songs, song_stats=stats_file, window_start=WINDOW_START, unknown_songs="drop")
    assert (report.plays, report.dropped_unknown_rows, report.dropped_unknown_plays) == (11, 1, 7)
    with pytest.raises(ConfigError, match="--window-start"):
        ingest(tmp_path / "new.duckdb", None, songs, song_stats=stats_file)
    assert not (tmp_path / "new.duckdb").exists()


def test_cli_song_stats(tmp_path, capsys):
    songs = str(write_songs(tmp_path, SONGS))
    stats_file = str(_write(tmp_path, GOOD))
    db = str(tmp_path / "cli.duckdb")
    args = ["ingest", "--db", db, "--songs", songs, "--window-start", "2012-10-01"]
    assert main([*args, "--song-stats", stats_file]) == 0
    assert "per-song statistics" in capsys.readouterr().out
    assert main([*args, "--song-stats", stats_file, "--events", stats_file]) == 1
    assert "not both" in capsys.readouterr().err
