"""Bad input to ``ingest``: a clear error naming file, column and rows; the database unchanged."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from hitsong.cli import main
from hitsong.errors import InputError
from hitsong.store.ingest import ingest
from hitsong.store.sample import sample
from tests.helpers.store import (
    SONGS,
    WINDOW_START,
    snapshot,
    write_events,
    write_songs,
)

HEADER = "user_id,song_id,play_count\n"
SONGS_HEADER = "song_id,title,artist,subset,release_date,audio_path\n"
GOOD_SONGS = SONGS_HEADER + "".join(",".join(r[:6]) + "\n" for r in SONGS)


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


# (events content or None for the good one, songs content or None, expected message fragments)
CASES = {
    "events missing column": ("user_id,song_id,plays\nu1,a,3\n", None, ["missing column", "'play_count'", "'plays'"]),
    "songs misnamed column": (
        None,
        GOOD_SONGS.replace("release_date", "release"),
        ["songs file", "'release_date'", "'release'"],
    ),
    "play count not a number": (
        HEADER + "u1,a,3\nu2,a,three\nu1,b,2\nu3,c,x\n",
        None,
        ["'play_count'", "2 value(s) is not a number", "rows 2, 4", "lines 3, 5"],
    ),
    "negative play count": (HEADER + "u1,a,-3\nu2,a,1\nu1,b,-2\n", None, ["'play_count'", "negative", "rows 1, 3"]),
    "fractional play count": (HEADER + "u1,a,3\nu2,a,1.5\n", None, ["'play_count'", "not a whole number", "row 2"]),
    "empty user id": (HEADER + "u1,a,3\n,a,1\n", None, ["'user_id'", "is empty", "row 2"]),
    "unknown song": (
        HEADER + "u1,a,3\nu2,zz,1\nu3,zz,4\n",
        None,
        ["'song_id'", "not in the songs file", "'zz'", "rows 2, 3", "--drop-unknown"],
    ),
    "bad release date": (
        None,
        GOOD_SONGS.replace("2013-01-01", "2013-13-45"),
        ["'release_date'", "not a date", "row 3"],
    ),
    "duplicate song id": (
        None,
        GOOD_SONGS + "a,A2,X,m,2012-10-01,audio/a2.mp3\n",
        ["duplicate song id", "'a'", "rows 1, 7"],
    ),
    "empty subset": (None, GOOD_SONGS.replace(",m,2013-12-31", ",,2013-12-31"), ["'subset'", "is empty", "row 6"]),
    "bad played_at": (
        "user_id,song_id,played_at\nu1,a,2012-10-01 10:00\nu1,a,yesterday\n",
        None,
        ["'played_at'", "not a date", "row 2"],
    ),
    "empty events file": ("", None, ["is empty"]),
    "header only": (HEADER, None, ["no rows"]),
    "png named csv": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, None, ["PNG image"]),
    "binary garbage": (bytes(range(256)) * 16, None, ["not UTF-8"]),
    "ragged csv line": (HEADER + "u1,a,3\nu2,a,1,9\n", None, ["line 3 has 4 fields", "header (line 1) has 3"]),
    "both shapes": ("user_id,song_id,play_count,played_at\nu1,a,1,2012-10-01\n", None, ["--event-shape"]),
}


@pytest.fixture
def ingested(tmp_path: Path) -> Path:
    db = tmp_path / "db.duckdb"
    ingest(db, write_events(tmp_path, name="good.csv"), write_songs(tmp_path), window_start=WINDOW_START)
    sample(db, per_subset=2, seed=0)
    return db


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_column_rows_and_changes_nothing(case, tmp_path, ingested):
    events, songs, fragments = CASES[case]
    events_path = _write(tmp_path, "bad_events.csv", events) if events is not None else tmp_path / "good.csv"
    songs_path = _write(tmp_path, "bad_songs.csv", songs) if songs is not None else tmp_path / "songs.csv"
    before = snapshot(ingested)
    with pytest.raises(InputError) as info:
        ingest(ingested, [events_path], songs_path, window_start=WINDOW_START, replace=True)
    message = str(info.value)
    bad_file = events_path if events is not None else songs_path
    assert str(bad_file) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "database was not changed" in message
    assert snapshot(ingested) == before


def test_bad_input_on_a_new_database_leaves_no_file(tmp_path):
    db = tmp_path / "new.duckdb"
    with pytest.raises(InputError, match="negative"):
        ingest(db, _write(tmp_path, "e.csv", HEADER + "u1,a,-1\n"), write_songs(tmp_path), window_start=WINDOW_START)
    assert not db.exists()


def test_missing_file(tmp_path, ingested):
    before = snapshot(ingested)
    with pytest.raises(InputError, match=r"nope\.csv does not exist"):
        ingest(ingested, tmp_path / "nope.csv", tmp_path / "songs.csv")
    assert snapshot(ingested) == before


def test_parquet_rows_are_numbered_too(tmp_path, ingested):
    frame = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "song_id": ["a", "b", "c"], "play_count": [1.0, 2.5, -1.0]})
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path, index=False)
    before = snapshot(ingested)
    with pytest.raises(InputError, match=r"negative \(row 3, first data row = 1\)"):
        ingest(ingested, path, tmp_path / "songs.csv", replace=True)
    assert snapshot(ingested) == before


def test_gzipped_bad_csv_names_rows(tmp_path, ingested):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "u1,a,1\nu1,b,oops\n").encode()))
    with pytest.raises(InputError, match=r"not a number \(row 2; line 3"):
        ingest(ingested, path, tmp_path / "songs.csv", replace=True)


def test_aggregated_events_need_a_window(tmp_path):
    with pytest.raises(InputError, match="--window-start"):
        ingest(tmp_path / "db.duckdb", write_events(tmp_path), write_songs(tmp_path))


def test_a_counted_file_that_changed_is_an_error_but_earlier_files_are_not_read_again(tmp_path, ingested):
    before = snapshot(ingested)
    (tmp_path / "good.csv").write_text(HEADER + "u1,a,100\n")
    with pytest.raises(InputError, match="was ingested before and has changed since"):
        ingest(ingested, tmp_path / "good.csv", tmp_path / "songs.csv")
    assert snapshot(ingested) == before
    # a new file is added without reading the earlier one again: it may change or go away
    (tmp_path / "good.csv").unlink()
    report = ingest(ingested, write_events(tmp_path, [("u9", "c", 2)], "new.csv"), tmp_path / "songs.csv")
    assert report.plays == 11 + 2 and report.listeners == 4 and report.new_event_files == 1


def test_cli_reports_bad_input_with_exit_code_1(tmp_path, ingested, capsys):
    bad = _write(tmp_path, "bad.csv", HEADER + "u1,a,-3\n")
    before = snapshot(ingested)
    code = main(
        [
            "ingest",
            "--db",
            str(ingested),
            "--events",
            str(bad),
            "--songs",
            str(tmp_path / "songs.csv"),
            "--replace",
            "--window-start",
            "2012-10-01",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "negative" in err and "bad.csv" in err
    assert snapshot(ingested) == before
