"""Listening data in DuckDB: ingest of events and songs, hit scores, samples and splits.

Tables (DESIGN.md section 2, ARCHITECTURE.md):

- ``songs(song_id, title, artist, subset, release_date, audio_path)``: the catalogue, ids as
  text, ``audio_path`` absolute (relative paths resolve against the songs file's folder).
- ``song_stats(song_id, subset, playcount, listeners, events, hit_score, release_quarter,
  quarter_index)``: one row per song, songs without plays included with zeros;
  ``hit_score = ln(1 + playcount) * ln(1 + listeners)``. Aggregated once, at ingest.
- ``subset_stats(subset, songs, songs_played, listeners, events, plays)``: listeners are
  distinct users over the whole subset (not a sum over songs), also computed at ingest.
- ``window(window_start, window_end, source)``: the observation window (one row).
- ``splits(song_id, subset, split)`` and ``sample_log``: the experiment sample.
- ``ingest_log`` and ``event_files``: what was ingested, with content hashes.

Release quarters count whole months from the window start ``S`` to the release date ``d``
(a month is complete once the day of month of ``S`` is reached): months 0-2 are ``Q1``,
3-5 ``Q2``, ...; months -1 to -3 are ``-Q1``, -4 to -6 ``-Q2``, ... ``quarter_index`` is
``k`` for ``Qk`` and ``-k`` for ``-Qk``.

Every function opens the database for a short while (``hitsong.store.connect``); writers run in
one transaction, readers open read-only.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from hitsong.errors import ConfigError, InputError, StoreError
from hitsong.store import connect, transaction

log = logging.getLogger(__name__)

EventShape = Literal["auto", "aggregated", "plays"]
UnknownSongs = Literal["error", "drop"]
SampleBy = Literal["random", "release_date"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
SONG_COLUMNS: tuple[str, ...] = ("song_id", "title", "artist", "subset", "release_date", "audio_path")
AGGREGATED_COLUMNS: tuple[str, ...] = ("user_id", "song_id", "play_count")
PLAYS_COLUMNS: tuple[str, ...] = ("user_id", "song_id", "played_at")
MAX_ROWS_SHOWN = 5

_NOT_CHANGED = "The database was not changed."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS songs (
    song_id VARCHAR PRIMARY KEY, title VARCHAR, artist VARCHAR, subset VARCHAR NOT NULL,
    release_date DATE NOT NULL, audio_path VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS song_stats (
    song_id VARCHAR NOT NULL, subset VARCHAR NOT NULL, playcount BIGINT NOT NULL,
    listeners BIGINT NOT NULL, events BIGINT NOT NULL, hit_score DOUBLE NOT NULL,
    release_quarter VARCHAR NOT NULL, quarter_index INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subset_stats (
    subset VARCHAR NOT NULL, songs BIGINT, songs_played BIGINT, listeners BIGINT,
    events BIGINT, plays BIGINT);
CREATE TABLE IF NOT EXISTS "window" (window_start DATE NOT NULL, window_end DATE, source VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS splits (song_id VARCHAR PRIMARY KEY, subset VARCHAR NOT NULL, split VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS sample_log (
    created_at TIMESTAMP, per_subset INTEGER, seed BIGINT, fractions VARCHAR, sample_by VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_log (
    ingest_id INTEGER PRIMARY KEY, created_at TIMESTAMP, request_key VARCHAR, songs_path VARCHAR,
    songs_sha256 VARCHAR, report JSON);
CREATE TABLE IF NOT EXISTS event_files (
    ingest_id INTEGER, path VARCHAR, sha256 VARCHAR, shape VARCHAR, rows BIGINT);
"""


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestReport:
    """What one ``ingest`` call did.

    ``skipped`` is True when the same songs and events (by content hash) with the same options
    were already ingested; then nothing was written and the counts are those stored.
    """

    skipped: bool
    message: str
    ingest_id: int
    songs: int
    songs_played: int
    event_files: tuple[str, ...]
    event_rows: int
    plays: int
    listeners: int
    dropped_unknown_rows: int = 0
    dropped_unknown_plays: int = 0
    outside_window_rows: int = 0
    window_start: date | None = None
    window_end: date | None = None
    window_source: str = ""
    splits_cleared: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class _Source:
    """One input file as DuckDB sees it: a FROM clause and its column map."""

    path: Path
    kind: Literal["csv", "parquet"]
    gzip: bool
    delimiter: str
    columns: dict[str, str]  # normalised name -> name in the file
    types: dict[str, str] = field(default_factory=dict)  # normalised name -> DuckDB type

    def relation(self, con: duckdb.DuckDBPyConnection, *, row_numbers: bool = False) -> duckdb.DuckDBPyRelation:
        """The file as a relation (all text for CSV); with ``row_no`` (1-based) when asked."""
        if self.kind == "parquet":
            return _parquet_relation(con, self.path, row_numbers)
        return _csv_relation(con, self, row_numbers)


def _parquet_relation(con: duckdb.DuckDBPyConnection, path: Path, row_numbers: bool) -> duckdb.DuckDBPyRelation:
    if row_numbers:
        return con.query(
            "SELECT *, file_row_number + 1 AS row_no FROM read_parquet($p, file_row_number = true)",
            params={"p": str(path)},
        )
    return con.query("SELECT * FROM read_parquet($p)", params={"p": str(path)})


def _csv_relation(con: duckdb.DuckDBPyConnection, src: _Source, row_numbers: bool) -> duckdb.DuckDBPyRelation:
    if not row_numbers:
        return con.query(
            "SELECT * FROM read_csv($p, header = true, all_varchar = true, delim = $d, "
            "compression = $c)",
            params={"p": str(src.path), "d": src.delimiter, "c": "gzip" if src.gzip else "none"},
        )
    # DuckDB's CSV reader has no row numbers; pyarrow reads in order, all columns as text.
    import pyarrow as pa
    import pyarrow.csv as pacsv

    stream = pa.input_stream(str(src.path), compression="gzip" if src.gzip else None)
    table = pacsv.read_csv(
        stream,
        parse_options=pacsv.ParseOptions(delimiter=src.delimiter),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in src.columns.values()},
            strings_can_be_null=True,
        ),
    )
    table = table.append_column("row_no", pa.array(np.arange(1, table.num_rows + 1)))
    return con.from_arrow(table)


# --------------------------------------------------------------------------------------------
# Files: existence, format, columns
# --------------------------------------------------------------------------------------------

_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx file is one; export it as CSV)"),
    (b"ID3", "an MP3 audio file"),
    (b"RIFF", "a RIFF (WAV/AVI) file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg file"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Office file (export it as CSV)"),
)


def _sniff_format(path: Path, what: str) -> tuple[Literal["csv", "parquet"], bool]:
    """Decide the format from the file's bytes, not its name: ``(kind, gzipped)``."""
    if not path.exists():
        raise InputError(f"{what} file {path} does not exist. Check the path. {_NOT_CHANGED}")
    if not path.is_file():
        raise InputError(f"{what} file {path} is not a regular file. {_NOT_CHANGED}")
    with path.open("rb") as fh:
        head = fh.read(65536)
    if not head.strip():
        raise InputError(f"{what} file {path} is empty. {_NOT_CHANGED}")
    if head.startswith(b"PAR1"):
        return "parquet", False
    gz = head.startswith(b"\x1f\x8b")
    if gz:
        import gzip

        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(65536)
        except (OSError, EOFError) as exc:
            raise InputError(f"{what} file {path} looks gzipped but cannot be decompressed: {exc}. {_NOT_CHANGED}") from exc
        if not head.strip():
            raise InputError(f"{what} file {path} is empty (after gunzip). {_NOT_CHANGED}")
    for magic, name in _MAGIC:
        if head.startswith(magic):
            raise InputError(
                f"{what} file {path} is {name}, not CSV or Parquet. Give a CSV (optionally gzipped) "
                f"or Parquet file. {_NOT_CHANGED}"
            )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the read boundary
            raise InputError(
                f"{what} file {path} is not UTF-8 text (bad byte at offset {exc.start}), so it is "
                f"neither CSV nor Parquet. {_NOT_CHANGED}"
            ) from exc
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        raise InputError(f"{what} file {path} contains binary data (NUL bytes); it is not a CSV file. {_NOT_CHANGED}")
    return "csv", gz


def _normalise(name: str) -> str:
    return name.strip().lower()


def _open_source(con: duckdb.DuckDBPyConnection, path: Path, what: str) -> _Source:
    """Check the file exists and has a readable format; read its column names and types."""
    path = Path(path).expanduser().resolve()
    kind, gz = _sniff_format(path, what)
    delimiter = ","
    try:
        if kind == "csv":
            sniff = con.execute(
                "SELECT Delimiter FROM sniff_csv($p, header = true, compression = $c)",
                {"p": str(path), "c": "gzip" if gz else "none"},
            ).fetchall()[0]
            delimiter = sniff[0] if sniff and sniff[0] else ","
            src = _Source(path, kind, gz, delimiter, {})
        else:
            src = _Source(path, kind, False, delimiter, {})
        rel = src.relation(con)
        names, types = rel.columns, [str(t) for t in rel.types]
    except duckdb.Error as exc:
        raise InputError(f"{what} file {path} cannot be read as {kind.upper()}: {exc}. {_NOT_CHANGED}") from exc
    if kind == "csv":
        _check_csv_header(path, gz, delimiter, names, what)
    columns: dict[str, str] = {}
    col_types: dict[str, str] = {}
    for name, typ in zip(names, types):
        key = _normalise(name)
        if key in columns:
            raise InputError(f"{what} file {path}: column {key!r} appears twice in the header. {_NOT_CHANGED}")
        columns[key] = name
        col_types[key] = typ
    return _Source(path, kind, gz, delimiter, columns, col_types)


def _check_csv_header(path: Path, gz: bool, delimiter: str, names: Sequence[str], what: str) -> None:
    """DuckDB's sniffer must have read the first line as the header; else find the ragged line."""
    import csv
    import gzip

    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:  # type: ignore[operator]
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, [])
        if [h.strip() for h in header] == [n.strip() for n in names]:
            return
        for line_no, row in enumerate(reader, start=2):
            if row and len(row) != len(header):
                raise InputError(
                    f"{what} file {path}: line {line_no} has {len(row)} fields but the header (line 1) "
                    f"has {len(header)} ({delimiter!r}-separated). Every line needs one value per "
                    f"column. {_NOT_CHANGED}"
                )
    raise InputError(
        f"{what} file {path}: cannot read a table with the header on line 1 (found columns "
        f"{list(names)}). Check the separator and quoting. {_NOT_CHANGED}"
    )


def _require_columns(src: _Source, required: Sequence[str], what: str, hint: str = "") -> None:
    missing = [c for c in required if c not in src.columns]
    if not missing:
        return
    found = list(src.columns.values())
    guesses = []
    for m in missing:
        close = difflib.get_close_matches(m, [_normalise(f) for f in found], n=1, cutoff=0.6)
        if close:
            guesses.append(f"{src.columns[close[0]]!r} -> {m!r}?")
    raise InputError(
        f"{what} file {src.path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
        f"found {', '.join(repr(f) for f in found)}. The header must name "
        f"{', '.join(required)}{hint}."
        + (f" Did you mean {'; '.join(guesses)}" if guesses else "")
        + f" {_NOT_CHANGED}"
    )


def _detect_shape(src: _Source, shape: EventShape) -> Literal["aggregated", "plays"]:
    has_count = "play_count" in src.columns
    has_time = "played_at" in src.columns
    if shape == "auto":
        if has_count and has_time:
            raise InputError(
                f"events file {src.path} has both 'play_count' and 'played_at'; say which it is "
                f"with --event-shape aggregated|plays. {_NOT_CHANGED}"
            )
        if not has_count and not has_time:
            _require_columns(src, ("user_id", "song_id", "play_count"), "events",
                             " (aggregated) or user_id, song_id, played_at (one row per play)")
        shape = "aggregated" if has_count else "plays"
    _require_columns(src, AGGREGATED_COLUMNS if shape == "aggregated" else PLAYS_COLUMNS, "events")
    return shape


def _first(result: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of a result (``None`` when empty), reading it to the end."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --------------------------------------------------------------------------------------------
# Row checks: SQL decides whether a problem exists; a second pass finds its rows
# --------------------------------------------------------------------------------------------


def _q(name: str) -> str:
    """Quote an identifier taken from a file header."""
    return '"' + name.replace('"', '""') + '"'


_INT_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
              "UINTEGER", "UBIGINT", "UHUGEINT")
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")


def _is_decimal(t: str) -> bool:
    return t.startswith("DECIMAL")


def _id_checks(src: _Source, col: str) -> list[tuple[str, str, str | None]]:
    c = _q(src.columns[col])
    checks: list[tuple[str, str, str | None]] = [(f"{c} IS NULL", "is empty", f"count(*) - count({c})")]
    if src.types[col] == "VARCHAR":
        checks = [(f"{c} IS NULL OR trim({c}) = ''", "is empty", None)]
    elif src.types[col] not in _INT_TYPES:
        raise InputError(
            f"file {src.path}: column {src.columns[col]!r} has type {src.types[col]}; ids must be "
            f"text or whole numbers. {_NOT_CHANGED}"
        )
    return checks


def _count_expr(src: _Source, col: str) -> tuple[str, list[tuple[str, str, str | None]]]:
    """SQL for a whole-number count column and its checks.

    A check is ``(bad-row predicate, reason, quick)``: ``quick`` is an aggregate that is non-zero
    when a bad row may exist and that DuckDB can answer from Parquet statistics (or ``None``).
    """
    c = _q(src.columns[col])
    t = src.types[col]
    if t in _INT_TYPES:
        return f"CAST({c} AS BIGINT)", [(f"{c} IS NULL", "is empty", f"count(*) - count({c})"),
                                        (f"{c} < 0", "is negative", f"CASE WHEN min({c}) < 0 THEN 1 ELSE 0 END")]
    if t in _FLOAT_TYPES or _is_decimal(t) or t == "VARCHAR":
        x = f"TRY_CAST({c} AS DOUBLE)"
        checks: list[tuple[str, str, str | None]] = [(f"{c} IS NULL", "is empty", f"count(*) - count({c})")]
        if t == "VARCHAR":
            checks.append((f"{c} IS NOT NULL AND {x} IS NULL", "is not a number", None))
        checks += [
            (f"NOT isfinite({x})", "is not a finite number", None),
            (f"isfinite({x}) AND {x} < 0", "is negative", None),
            (f"isfinite({x}) AND {x} <> floor({x})", "is not a whole number", None),
        ]
        return f"CAST({x} AS BIGINT)", checks
    raise InputError(f"file {src.path}: column {src.columns[col]!r} has type {t}; play counts must be "
                     f"whole numbers. {_NOT_CHANGED}")


def _time_expr(src: _Source, col: str, as_type: str) -> tuple[str, list[tuple[str, str, str | None]]]:
    """SQL for a date/time column cast to ``as_type`` (DATE or TIMESTAMP) and its checks."""
    c = _q(src.columns[col])
    t = src.types[col]
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({c} AS {as_type})", [(f"{c} IS NULL", "is empty", f"count(*) - count({c})")]
    if t == "VARCHAR":
        x = f"TRY_CAST(trim({c}) AS {as_type})"
        return x, [(f"{c} IS NULL OR trim({c}) = ''", "is empty", None),
                   (f"trim({c}) <> '' AND {x} IS NULL", "is not a date (expected YYYY-MM-DD)", None)]
    raise InputError(f"file {src.path}: column {src.columns[col]!r} has type {t}; expected dates "
                     f"(YYYY-MM-DD). {_NOT_CHANGED}")


def _run_checks(con: duckdb.DuckDBPyConnection, src: _Source, what: str,
                checks: Sequence[tuple[str, str, str, str | None]]) -> int:
    """Run ``(column, predicate, reason, quick)`` checks over the file; raise on the first failing one.

    Quick aggregates run first (from Parquet statistics where possible); a check whose quick
    aggregate is non-zero, or that has none, is counted exactly. Returns the number of rows.
    An empty file (header only) is an error.
    """
    rel = src.relation(con)
    quick = ["count(*)"] + [q or "1" for _, _, _, q in checks]
    try:
        flags = rel.aggregate(", ".join(quick)).fetchall()[0]
        n_rows = int(flags[0])
        suspect = [c for c, flag in zip(checks, flags[1:]) if flag]
        exact = ["count(*)"] + [f"count(*) FILTER (WHERE {pred})" for _, pred, _, _ in suspect]
        counts = rel.aggregate(", ".join(exact)).fetchall()[0] if suspect and n_rows else [n_rows]
    except duckdb.Error as exc:
        raise InputError(f"{what} file {src.path} cannot be read: {exc}. {_NOT_CHANGED}") from exc
    if n_rows == 0:
        raise InputError(f"{what} file {src.path} has a header but no rows. {_NOT_CHANGED}")
    for (col, pred, reason, _), bad in zip(suspect, counts[1:]):
        if bad:
            rows = _find_rows(con, src, pred)
            raise InputError(
                f"{what} file {src.path}, column {src.columns[col]!r}: {bad} value(s) {reason} "
                f"({_rows_text(src, rows, bad)}). Fix the file and run the ingest again. {_NOT_CHANGED}"
            )
    return n_rows


def _find_rows(con: duckdb.DuckDBPyConnection, src: _Source, pred: str) -> list[int]:
    """The first few 1-based row numbers where ``pred`` holds ([] if they cannot be located)."""
    import pyarrow as pa

    try:
        rel = src.relation(con, row_numbers=True)
        out = rel.filter(pred).order("row_no").limit(MAX_ROWS_SHOWN).project("row_no").fetchall()
    except (duckdb.Error, pa.ArrowException) as exc:  # the error message still names file and column
        log.debug("could not locate rows in %s: %s", src.path, exc)
        return []
    return [int(r[0]) for r in out]


def _ids_table(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> str:
    """A temp table ``_ids(i)`` holding ``ids`` (values as parameters, never in SQL text)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _ids (i VARCHAR)")
    con.executemany("INSERT INTO _ids VALUES (?)", [[i] for i in ids])
    return "_ids"


def _rows_text(src: _Source, rows: Sequence[int], total: int) -> str:
    if not rows:
        return "rows not located"
    more = f" and {total - len(rows)} more" if total > len(rows) else ""
    text = "row" + ("s " if len(rows) > 1 else " ") + ", ".join(str(r) for r in rows) + more
    if src.kind == "csv":
        text += "; line" + ("s " if len(rows) > 1 else " ") + ", ".join(str(r + 1) for r in rows)
    return text + ", first data row = 1"


# --------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------


def _load_songs(con: duckdb.DuckDBPyConnection, src: _Source) -> int:
    """Validate the songs file and load it into the temp table ``_new_songs``."""
    _require_columns(src, SONG_COLUMNS, "songs")
    date_sql, date_checks = _time_expr(src, "release_date", "DATE")
    sid = _q(src.columns["song_id"])
    checks = [("song_id", *c) for c in _id_checks(src, "song_id")]
    checks += [("release_date", *c) for c in date_checks]
    for col in ("subset", "audio_path"):
        c = _q(src.columns[col])
        checks.append((col, f"{c} IS NULL OR trim(CAST({c} AS VARCHAR)) = ''", "is empty", None))
    n_rows = _run_checks(con, src, "songs", checks)
    # duplicate song ids
    rel = src.relation(con)
    dup = rel.aggregate(f"count(*) - count(DISTINCT CAST({sid} AS VARCHAR))").fetchall()[0][0]
    if dup:
        dup_ids = [r[0] for r in rel.aggregate(f"CAST({sid} AS VARCHAR) AS i, count(*) AS n")
                   .filter("n > 1").order("i").limit(3).fetchall()]
        rows = _find_rows(con, src, f"CAST({sid} AS VARCHAR) IN (SELECT i FROM {_ids_table(con, dup_ids)})")
        raise InputError(
            f"songs file {src.path}, column {src.columns['song_id']!r}: {dup} duplicate song id(s), "
            f"e.g. {', '.join(repr(i) for i in dup_ids)} ({_rows_text(src, rows, len(rows))}). "
            f"Each song must appear once. {_NOT_CHANGED}"
        )
    base = str(src.path.parent)
    ap = f"trim(CAST({_q(src.columns['audio_path'])} AS VARCHAR))"
    rel.create_view("_songs_src", replace=True)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _new_songs AS SELECT
            CAST({sid} AS VARCHAR) AS song_id,
            CAST({_q(src.columns['title'])} AS VARCHAR) AS title,
            CAST({_q(src.columns['artist'])} AS VARCHAR) AS artist,
            trim(CAST({_q(src.columns['subset'])} AS VARCHAR)) AS subset,
            {date_sql} AS release_date,
            CASE WHEN starts_with({ap}, '/') THEN {ap} ELSE $base || '/' || {ap} END AS audio_path
        FROM _songs_src""",
        {"base": base},
    )
    con.execute("DROP VIEW _songs_src")
    return n_rows


@dataclass(frozen=True)
class _EventFile:
    """An events file of the dataset: where, which shape, which content."""

    src: _Source
    shape: Literal["aggregated", "plays"]
    sha256: str


@dataclass(frozen=True)
class _CheckedFile:
    """A validated events file and the SQL that reads its columns."""

    file: _EventFile
    rows: int
    user_sql: str
    song_sql: str
    value_sql: str  # play count (aggregated) or play time (plays)


def _check_events(con: duckdb.DuckDBPyConnection, ev: _EventFile) -> _CheckedFile:
    """Validate one events file (raises ``InputError`` naming rows)."""
    src = ev.src
    checks: list[tuple[str, str, str, str | None]] = []
    for col in ("user_id", "song_id"):
        checks += [(col, *c) for c in _id_checks(src, col)]
    if ev.shape == "aggregated":
        value_sql, c = _count_expr(src, "play_count")
        checks += [("play_count", *x) for x in c]
    else:
        value_sql, c = _time_expr(src, "played_at", "TIMESTAMP")
        checks += [("played_at", *x) for x in c]
    rows = _run_checks(con, src, "events", checks)
    return _CheckedFile(ev, rows, _q(src.columns["user_id"]), _q(src.columns["song_id"]), value_sql)


def _check_window(window_start: date | None, window_end: date | None) -> None:
    if window_start is not None and window_end is not None and window_end < window_start:
        raise ConfigError(f"--window-end {window_end} is before --window-start {window_start}.")


def ingest(
    db_path: str | Path,
    events_path: str | Path | Sequence[str | Path],
    songs_path: str | Path,
    *,
    window_start: date | None = None,
    window_end: date | None = None,
    unknown_songs: UnknownSongs = "error",
    event_shape: EventShape = "auto",
    replace: bool = False,
    memory_limit_mb: int = 2048,
) -> IngestReport:
    """Read listening events and the song catalogue into the database and aggregate them.

    Parameters
    ----------
    db_path : str or Path
        The DuckDB file (created when missing).
    events_path : path or sequence of paths
        Events files: CSV, gzipped CSV or Parquet (recognised by content, not name). Each is
        either aggregated rows ``(user_id, song_id, play_count)`` or one row per play
        ``(user_id, song_id, played_at)``, detected from the columns (``event_shape``).
    songs_path : str or Path
        The catalogue: ``song_id, title, artist, subset, release_date, audio_path`` (CSV or
        Parquet). It replaces the previous catalogue.
    window_start, window_end : date or None
        The observation window. Plays outside it are dropped (and counted). Without flags the
        window of one-row-per-play data is its first to last play date; aggregated data has no
        dates, so it needs ``window_start`` (or a window stored by an earlier ingest).
    unknown_songs : {"error", "drop"}
        Events whose song is not in the catalogue: an error (default), or dropped and counted.
    event_shape : {"auto", "aggregated", "plays"}
        Force the shape instead of detecting it.
    replace : bool
        Forget the events files of earlier ingests instead of adding to them.
    memory_limit_mb : int
        DuckDB's memory limit for the ingest, in MiB; larger aggregations spill to disk
        (``<db>.tmp``) instead of growing the process. Large aggregated Parquet files with
        integer ids are aggregated by the compiled loops of :mod:`hitsong.store.pairs` when
        their footprint (4 bytes per event row plus ~0.4 GB) fits this limit; else in SQL.

    Returns
    -------
    IngestReport

    Notes
    -----
    Several events files and re-ingest: the database describes one listening dataset, the
    union of every events file ingested so far (listed in ``event_files``, by SHA-256). An
    ingest with a new events file *adds* it: the statistics are re-aggregated over all files,
    so plays add up and listeners stay distinct users across files (earlier files are read
    again; they must still exist unchanged, or use ``replace=True``). A file whose content was
    already ingested is never counted twice, whatever its name. When nothing changed (same
    files, catalogue, window and options) the call is skipped with a message. Re-aggregating
    changes the playcounts, so existing ``splits`` are cleared (run ``sample`` again).

    Everything runs in one transaction after validation: on any error the database is exactly
    as before (a database file created by the failed call is removed).

    Raises
    ------
    InputError
        A file is missing, of the wrong type, lacks columns, or has bad values (the message
        names the file, the column and the first few rows).
    ConfigError
        Invalid options (window end before start, unknown option values).
    """
    t0 = time.monotonic()
    if unknown_songs not in ("error", "drop"):
        raise ConfigError(f"unknown_songs must be 'error' or 'drop', not {unknown_songs!r}")
    if event_shape not in ("auto", "aggregated", "plays"):
        raise ConfigError(f"event_shape must be 'auto', 'aggregated' or 'plays', not {event_shape!r}")
    _check_window(window_start, window_end)
    if isinstance(memory_limit_mb, bool) or not isinstance(memory_limit_mb, int) or memory_limit_mb < 64:
        raise ConfigError(f"memory_limit_mb must be a whole number >= 64, got {memory_limit_mb!r}")
    paths = [events_path] if isinstance(events_path, (str, Path)) else list(events_path)
    if not paths:
        raise ConfigError("give at least one events file")
    db_path = Path(db_path)
    existed = db_path.exists()
    try:
        with connect(db_path) as con:
            con.execute(f"SET memory_limit = '{memory_limit_mb}MB'")  # a checked int, not user text
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar = false")  # progress goes through logging
            with transaction(con):
                report = _ingest(con, [Path(p) for p in paths], Path(songs_path), window_start,
                                 window_end, unknown_songs, event_shape, replace, memory_limit_mb, t0)
    except BaseException:
        if not existed:
            for p in (db_path, db_path.with_name(db_path.name + ".wal")):
                p.unlink(missing_ok=True)
        raise
    log.info("%s", report.message)
    return report


def _ingest(con: duckdb.DuckDBPyConnection, paths: list[Path], songs_path: Path,
            window_start: date | None, window_end: date | None, unknown_songs: UnknownSongs,
            event_shape: EventShape, replace: bool, memory_limit_mb: int, t0: float) -> IngestReport:
    """The body of :func:`ingest`, inside its transaction."""
    if sum(p.stat().st_size for p in paths if p.is_file()) > _KERNEL_MIN_BYTES:
        # numba's import (~0.3 s) overlaps the hashing and checks below, which release the GIL
        threading.Thread(target=importlib.import_module, args=("hitsong.store.pairs",), daemon=True).start()
    con.execute(_SCHEMA)
    songs_src = _open_source(con, songs_path, "songs")
    songs_sha = _sha256(songs_src.path)
    last = _first(con.execute("SELECT ingest_id, request_key, report FROM ingest_log ORDER BY ingest_id DESC LIMIT 1"))
    files, new_files = _gather_event_files(con, paths, None if replace else last, event_shape)
    if window_start is None and window_end is None and last is not None and not replace:
        stored = _first(con.execute('SELECT window_start, window_end, source FROM "window"'))
        if stored is not None and stored[2] == "flags":  # a window from the data is recomputed
            window_start, window_end = stored[0], stored[1]
    request = {
        "events": sorted(f.sha256 for f in files), "shapes": sorted({f.shape for f in files}),
        "songs": songs_sha, "window": [str(window_start), str(window_end)], "unknown": unknown_songs,
    }
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    if last is not None and last[1] == key:
        return _skipped_report(last, t0)

    n_songs = _load_songs(con, songs_src)
    checked = [_check_events(con, ev) for ev in files]
    window_start, window_end, source = _resolve_window(con, checked, window_start, window_end)
    outside = _aggregate(con, checked, window_start, window_end, memory_limit_mb)
    unknown = _unknown_songs(con, checked, unknown_songs)
    n_splits = _write_tables(con, window_start, window_end, source)

    totals = con.execute(
        "SELECT count(*) FILTER (WHERE playcount > 0), sum(events), sum(playcount) FROM song_stats"
    ).fetchall()[0]
    listeners = con.execute("SELECT count(DISTINCT user_id) FROM _subset_users").fetchall()[0][0]
    ingest_id = (last[0] + 1) if last else 1
    msg = (f"ingest #{ingest_id}: {n_songs} songs ({totals[0]} played), {totals[1]} event rows from "
           f"{len(files)} file(s) ({new_files} new), {totals[2]} plays, {listeners} listeners; window "
           f"{window_start} to {window_end or '?'} ({source})")
    if unknown[1]:
        msg += f"; dropped {unknown[1]} rows ({unknown[2]} plays) of {unknown[0]} songs not in the songs file"
    if outside:
        msg += f"; dropped {outside} plays outside the window"
    if n_splits:
        msg += "; the previous splits were cleared (run `hitsong sample` again)"
    report = IngestReport(
        skipped=False, message=msg, ingest_id=ingest_id, songs=n_songs, songs_played=int(totals[0]),
        event_files=tuple(str(c.file.src.path) for c in checked), event_rows=int(totals[1] or 0),
        plays=int(totals[2] or 0), listeners=int(listeners), dropped_unknown_rows=int(unknown[1]),
        dropped_unknown_plays=int(unknown[2]), outside_window_rows=int(outside), window_start=window_start,
        window_end=window_end, window_source=source, splits_cleared=bool(n_splits),
        seconds=time.monotonic() - t0,
    )
    stored_report = {**asdict(report), "window_start": str(window_start),
                     "window_end": str(window_end) if window_end else None}
    con.execute(
        "INSERT INTO ingest_log VALUES ($i, $t, $k, $p, $h, $r)",
        {"i": ingest_id, "t": datetime.now(timezone.utc).replace(tzinfo=None), "k": key,
         "p": str(songs_src.path), "h": songs_sha, "r": json.dumps(stored_report)},
    )
    for c in checked:
        con.execute("INSERT INTO event_files VALUES ($i, $p, $h, $s, $n)",
                    {"i": ingest_id, "p": str(c.file.src.path), "h": c.file.sha256, "s": c.file.shape,
                     "n": c.rows})
    for i in range(len(checked)):
        con.execute(f"DROP VIEW IF EXISTS _ev{i}")
    for t in ("_agg", "_subset_users", "_song_map", "_new_songs", "_ids"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return report


def _gather_event_files(con: duckdb.DuckDBPyConnection, paths: list[Path], last: tuple | None,
                        event_shape: EventShape) -> tuple[list[_EventFile], int]:
    """The dataset's events files: those of the last ingest (``last``) plus the new ``paths``.

    Files are identified by content: a file whose SHA-256 is already in the set is skipped.
    Returns the files and how many of them are new.
    """
    files: list[_EventFile] = []
    seen: set[str] = set()
    if last is not None:
        for path, sha, shape in con.execute(
            "SELECT path, sha256, shape FROM event_files WHERE ingest_id = $i ORDER BY path", {"i": last[0]}
        ).fetchall():
            p = Path(path)
            if not p.exists() or _sha256(p) != sha:
                raise InputError(
                    f"events file {p}, ingested earlier, is missing or has changed; the statistics are "
                    f"aggregated over all events files. Restore it, or ingest with --replace and the "
                    f"files you want. {_NOT_CHANGED}"
                )
            files.append(_EventFile(_open_source(con, p, "events"), shape, sha))
            seen.add(sha)
    new_files = 0
    for p in paths:
        src = _open_source(con, p, "events")
        sha = _sha256(src.path)
        if sha in seen:
            log.info("events file %s was already ingested (same content); it is counted once", src.path)
            continue
        files.append(_EventFile(src, _detect_shape(src, event_shape), sha))
        seen.add(sha)
        new_files += 1
    return files, new_files


def _skipped_report(last: tuple, t0: float) -> IngestReport:
    prev = json.loads(last[2])
    prev.update(skipped=True, seconds=time.monotonic() - t0,
                message=f"nothing to do: these songs and events were already ingested "
                        f"(ingest #{last[0]}); nothing was counted twice")
    prev["event_files"] = tuple(prev["event_files"])
    for k in ("window_start", "window_end"):
        prev[k] = date.fromisoformat(prev[k]) if prev[k] else None
    return IngestReport(**prev)


def _resolve_window(con: duckdb.DuckDBPyConnection, checked: list[_CheckedFile], window_start: date | None,
                    window_end: date | None) -> tuple[date, date | None, str]:
    """The observation window: the flags, else first/last play date of one-row-per-play files."""
    plays = [c for c in checked if c.file.shape == "plays"]
    source = "flags"
    if plays and (window_start is None or window_end is None):
        lo_hi = [c.file.src.relation(con).aggregate(f"min({c.value_sql})::DATE, max({c.value_sql})::DATE")
                 .fetchall()[0] for c in plays]
        if window_start is None:
            window_start, source = min(x[0] for x in lo_hi), "data"
        if window_end is None:
            window_end = max(x[1] for x in lo_hi)
    if window_start is None:
        raise InputError(
            f"events file {checked[0].file.src.path} has play counts without dates, so the observation "
            f"window is unknown: pass --window-start YYYY-MM-DD (and --window-end). {_NOT_CHANGED}"
        )
    _check_window(window_start, window_end)
    return window_start, window_end, source


def _aggregate(con: duckdb.DuckDBPyConnection, checked: list[_CheckedFile], window_start: date,
               window_end: date | None, memory_limit_mb: int) -> int:
    """Aggregate the events into temp tables ``_agg`` (per song key) and ``_subset_users``.

    Large aggregated Parquet files with integer ids go through the compiled path of
    :mod:`hitsong.store.pairs` (the same exact result, duplicate (user, song) rows included,
    ~7x faster at 50M rows, BENCHMARKS.md); everything else through SQL.

    Per song: the events grouped into (song, user) pairs, then by song (listeners = pairs with
    plays > 0; a (user, song) row with play_count 0 is not a listener). Per subset: the distinct
    (subset, user) pairs, a second scan with a small hash table. Nothing of the events' size is
    materialised.
    Song keys keep the events' own type, so the events are never cast to text. Returns the
    number of plays outside the window (dropped).
    """
    user_range = _kernel_user_range(con, checked, memory_limit_mb)
    if user_range is not None:
        _aggregate_kernel(con, checked, *user_range)
        return 0
    id_types = {col: {c.file.src.types[col] for c in checked} for col in ("user_id", "song_id")}
    bounds = {"ws": window_start, "we": window_end}
    selects, outside, uses_bounds = [], 0, False
    for i, c in enumerate(checked):
        name = f"_ev{i}"
        c.file.src.relation(con).create_view(name, replace=True)
        u = c.user_sql if len(id_types["user_id"]) == 1 else f"CAST({c.user_sql} AS VARCHAR)"
        s = c.song_sql if len(id_types["song_id"]) == 1 else f"CAST({c.song_sql} AS VARCHAR)"
        if c.file.shape == "aggregated":
            selects.append(f"SELECT {u} AS user_id, {s} AS song_id, {c.value_sql} AS plays FROM {name}")
        else:
            inside = (f"{c.value_sql} >= CAST($ws AS TIMESTAMP) AND "
                      f"($we IS NULL OR {c.value_sql} < CAST($we AS TIMESTAMP) + INTERVAL 1 DAY)")
            outside += con.execute(f"SELECT count(*) FILTER (WHERE NOT ({inside})) FROM {name}",
                                   bounds).fetchall()[0][0]
            selects.append(f"SELECT {u} AS user_id, {s} AS song_id, 1 AS plays FROM {name} WHERE {inside}")
            uses_bounds = True
    key_type = next(iter(id_types["song_id"])) if len(id_types["song_id"]) == 1 else "VARCHAR"
    if key_type == "VARCHAR":
        con.execute("CREATE OR REPLACE TEMP TABLE _song_map AS SELECT song_id AS song_key, song_id, subset FROM _new_songs")
    else:  # integer ids: '7' in the songs file matches 7 in the events, '007' does not
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _song_map AS
                SELECT TRY_CAST(song_id AS {key_type}) AS song_key, song_id, subset FROM _new_songs
                WHERE CAST(TRY_CAST(song_id AS {key_type}) AS VARCHAR) = song_id"""
        )
    events = "(" + " UNION ALL ".join(selects) + ")"
    params = bounds if uses_bounds else None
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _agg AS
            SELECT k.*, m.song_id FROM (
                SELECT song_key, CAST(sum(plays) AS BIGINT) AS plays,
                       count(*) FILTER (WHERE plays > 0) AS listeners, CAST(sum(events) AS BIGINT) AS events
                FROM (SELECT song_id AS song_key, user_id, sum(plays) AS plays, count(*) AS events
                      FROM {events} GROUP BY ALL)
                GROUP BY song_key) k
            LEFT JOIN _song_map m USING (song_key)""",
        params,
    )
    # plays are >= 0, so "a pair with plays > 0" is "a row with plays > 0": no pairs needed here
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _subset_users AS
            SELECT DISTINCT m.subset, e.user_id FROM {events} e JOIN _song_map m ON m.song_key = e.song_id
            WHERE e.plays > 0""",
        params,
    )
    return int(outside)


_KERNEL_MIN_ROWS = 1_000_000  # smaller inputs aggregate in SQL in a second or less
_KERNEL_MIN_BYTES = 4 << 20  # events files this large may take the compiled path
_KERNEL_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
_KERNEL_MAX_SONG_RANGE = 1 << 26  # song ids spread wider than this go to SQL (lookup table size)
_KERNEL_BATCH_ROWS = 1 << 22  # rows read at a time (a Parquet row group if not larger)


def _kernel_user_range(con: duckdb.DuckDBPyConnection, checked: list[_CheckedFile],
                       memory_limit_mb: int) -> tuple[int, int] | None:
    """``(min, max)`` user id when the compiled path applies, else ``None``.

    It applies to aggregated Parquet files with integer ids and counts, at least
    ``_KERNEL_MIN_ROWS`` rows in all, user and song ids in compact ranges, and a footprint
    within ``memory_limit_mb`` (see :func:`hitsong.store.pairs.memory_bytes`).
    """
    rows = sum(c.rows for c in checked)
    if rows < _KERNEL_MIN_ROWS:
        return None
    for c in checked:
        src = c.file.src
        if c.file.shape != "aggregated" or src.kind != "parquet" or any(
                src.types[col] not in _KERNEL_TYPES for col in AGGREGATED_COLUMNS):
            return None
    from hitsong.store.pairs import MAX_USER_BITS, memory_bytes

    lo_hi = [c.file.src.relation(con).aggregate(f"min({c.user_sql}), max({c.user_sql})").fetchall()[0]
             for c in checked]  # Parquet statistics answer this without a scan
    user_lo, user_hi = min(int(x[0]) for x in lo_hi), max(int(x[1]) for x in lo_hi)
    songs = con.execute(
        """SELECT count(*), min(k), max(k), count(DISTINCT subset) FROM (
               SELECT TRY_CAST(song_id AS BIGINT) AS k, subset FROM _new_songs)"""
    ).fetchall()[0]
    song_range = int(songs[2]) - int(songs[1]) + 1 if songs[1] is not None else 1
    need = memory_bytes(rows=rows, batch_rows=_KERNEL_BATCH_ROWS, song_range=song_range, user_range=user_hi - user_lo + 1,
                        n_subsets=int(songs[3]), n_songs=int(songs[0]))
    if (user_hi - user_lo).bit_length() > MAX_USER_BITS or song_range > _KERNEL_MAX_SONG_RANGE \
            or need > memory_limit_mb << 20:
        log.info("aggregating in SQL: ids too spread out or too many rows for the compiled path")
        return None
    return user_lo, user_hi


def _aggregate_kernel(con: duckdb.DuckDBPyConnection, checked: list[_CheckedFile], user_lo: int,
                      user_hi: int) -> None:
    """:func:`_aggregate` for aggregated Parquet files with integer ids, via :mod:`hitsong.store.pairs`.

    Fills ``_song_map``, ``_agg`` and ``_subset_users`` exactly as the SQL path does (song keys
    as BIGINT; ``listeners`` is NULL for songs not in the catalogue, which only count as dropped).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hitsong.store.pairs import count_pairs

    log.info("aggregating %d event rows with the compiled pair counter", sum(c.rows for c in checked))
    # integer ids: '7' in the songs file matches 7 in the events, '007' does not
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _song_map AS
           SELECT TRY_CAST(song_id AS BIGINT) AS song_key, song_id, subset FROM _new_songs
           WHERE CAST(TRY_CAST(song_id AS BIGINT) AS VARCHAR) = song_id"""
    )
    smap = con.execute("SELECT song_key, song_id, subset FROM _song_map ORDER BY song_key").fetchnumpy()
    keys = np.asarray(smap["song_key"], dtype=np.int64)
    song_lo = int(keys[0]) if keys.size else 0
    lut = np.full(int(keys[-1]) - song_lo + 1 if keys.size else 1, -1, np.int32)
    lut[keys - song_lo] = np.arange(keys.size, dtype=np.int32)
    subsets, subset_of = np.unique(np.asarray(smap["subset"], dtype=object).astype(str), return_inverse=True)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for c in checked:
            cols = [c.file.src.columns[name] for name in AGGREGATED_COLUMNS]
            pf = pq.ParquetFile(c.file.src.path)
            groups = range(pf.metadata.num_row_groups)
            if all(pf.metadata.row_group(i).num_rows <= _KERNEL_BATCH_ROWS for i in groups):
                parts = (pf.read_row_group(i, columns=cols) for i in groups)  # the fastest read
            else:  # big row groups: bounded batches
                parts = pf.iter_batches(batch_size=_KERNEL_BATCH_ROWS, columns=cols)
            for part in parts:
                yield tuple(np.asarray(part.column(i)) for i in range(3))

    tot = count_pairs(batches(), song_lut=lut, song_lo=song_lo, subset_of=subset_of, n_subsets=max(1, subsets.size),
                      user_lo=user_lo, user_hi=user_hi, capacity=sum(c.rows for c in checked))
    played = np.flatnonzero(tot.events)
    n_unknown = tot.unknown_ids.size
    agg = pa.table({
        "song_key": np.concatenate([keys[played], tot.unknown_ids]),
        "plays": np.concatenate([tot.plays[played], tot.unknown_plays]),
        "listeners": pa.array(np.concatenate([tot.listeners[played], np.zeros(n_unknown, np.int64)]),
                              mask=np.arange(played.size + n_unknown) >= played.size),
        "events": np.concatenate([tot.events[played], tot.unknown_rows]),
        "song_id": pa.array(list(np.asarray(smap["song_id"], dtype=object)[played]) + [None] * n_unknown,
                            pa.string()),
    })
    s_idx, u_idx = np.nonzero(tot.subset_users)
    users = pa.table({"subset": pa.array(subsets[s_idx] if subsets.size else [], pa.string()),
                      "user_id": (u_idx + user_lo).astype(np.int64)})
    for name, table in (("_agg", agg), ("_subset_users", users)):
        con.register(f"{name}_arrow", table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")


def _unknown_songs(con: duckdb.DuckDBPyConnection, checked: list[_CheckedFile],
                   policy: UnknownSongs) -> tuple[int, int, int]:
    """``(songs, event rows, plays)`` of events for songs not in the catalogue; raise if ``error``."""
    unknown = con.execute(
        "SELECT count(*), coalesce(sum(events), 0), coalesce(sum(plays), 0) FROM _agg WHERE song_id IS NULL"
    ).fetchall()[0]
    if unknown[0] and policy == "error":
        _raise_unknown(con, checked, int(unknown[0]), int(unknown[1]))
    if unknown[0]:
        log.warning("dropped %d events rows (%d plays) of %d songs not in the songs file",
                    unknown[1], unknown[2], unknown[0])
    return int(unknown[0]), int(unknown[1]), int(unknown[2])


def _write_tables(con: duckdb.DuckDBPyConnection, window_start: date, window_end: date | None,
                  source: str) -> int:
    """Replace songs, window, song_stats and subset_stats; clear splits (returns how many there were)."""
    con.execute("DELETE FROM songs")
    con.execute("INSERT INTO songs SELECT * FROM _new_songs")
    con.execute('DELETE FROM "window"')
    con.execute('INSERT INTO "window" VALUES ($s, $e, $src)', {"s": window_start, "e": window_end, "src": source})
    con.execute("DELETE FROM song_stats")
    con.execute(
        """INSERT INTO song_stats
        WITH q AS (
            SELECT s.song_id, s.subset,
                   coalesce(k.plays, 0) AS playcount, coalesce(k.listeners, 0) AS listeners,
                   coalesce(k.events, 0) AS events,
                   (year(s.release_date) - year(w.window_start)) * 12
                     + month(s.release_date) - month(w.window_start)
                     - CASE WHEN day(s.release_date) < day(w.window_start) THEN 1 ELSE 0 END AS months
            FROM songs s CROSS JOIN "window" w LEFT JOIN _agg k ON k.song_id = s.song_id)
        SELECT song_id, subset, playcount, listeners, events,
               ln(1 + playcount) * ln(1 + listeners) AS hit_score,
               CASE WHEN months >= 0 THEN 'Q' || (months // 3 + 1) ELSE '-Q' || ((-months - 1) // 3 + 1) END,
               CASE WHEN months >= 0 THEN months // 3 + 1 ELSE -((-months - 1) // 3 + 1) END
        FROM q"""
    )
    con.execute("DELETE FROM subset_stats")
    con.execute(
        """INSERT INTO subset_stats
        WITH lis AS (SELECT subset, count(*) AS listeners FROM _subset_users GROUP BY subset)
        SELECT st.subset, count(*), count(*) FILTER (WHERE playcount > 0), coalesce(any_value(lis.listeners), 0),
               sum(events), sum(playcount)
        FROM song_stats st LEFT JOIN lis USING (subset) GROUP BY st.subset"""
    )
    n_splits = con.execute("SELECT count(*) FROM splits").fetchall()[0][0]
    con.execute("DELETE FROM splits")
    return int(n_splits)


def _raise_unknown(con: duckdb.DuckDBPyConnection, checked: list[_CheckedFile], n_songs: int, n_rows: int) -> None:
    examples = [r[0] for r in con.execute(
        "SELECT CAST(song_key AS VARCHAR) AS k FROM _agg WHERE song_id IS NULL ORDER BY k LIMIT 3"
    ).fetchall()]
    table = _ids_table(con, examples)
    for c in checked:
        ev = c.file
        rows = _find_rows(con, ev.src, f"CAST({c.song_sql} AS VARCHAR) IN (SELECT i FROM {table})")
        if rows:
            raise InputError(
                f"events file {ev.src.path}, column {ev.src.columns['song_id']!r}: {n_rows} event rows "
                f"name {n_songs} song id(s) not in the songs file, e.g. "
                f"{', '.join(repr(e) for e in examples)} ({_rows_text(ev.src, rows, n_rows)}). Add the "
                f"songs to the songs file, or drop these events with --drop-unknown. {_NOT_CHANGED}"
            )
    raise InputError(f"{n_rows} event rows name {n_songs} song id(s) not in the songs file, e.g. "
                     f"{examples}. Use --drop-unknown to drop them. {_NOT_CHANGED}")


# --------------------------------------------------------------------------------------------
# Sample and splits
# --------------------------------------------------------------------------------------------


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """Sizes of the splits of ``n`` songs: floors, the remainder to the largest remainders.

    >>> split_counts(10000, (0.8, 0.1, 0.1))
    (8000, 1000, 1000)
    """
    raw = [n * f for f in fractions]
    counts = [math.floor(r + 1e-9) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions: three numbers >= 0 summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not math.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"split must be three fractions >= 0 for train, val, test summing to 1, got {fractions!r}")
    return fr  # type: ignore[return-value]


def sample(
    db_path: str | Path,
    *,
    per_subset: int,
    seed: int,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    by: SampleBy = "random",
) -> pd.DataFrame:
    """Pick the experiment sample and split it into train/val/test (replaces earlier splits).

    Per subset, the ``per_subset`` songs with the highest playcount (ties: smaller song_id
    first; fewer songs if the subset has fewer, with a warning) are split with the sizes of
    :func:`split_counts`. ``by="random"``: the songs sorted by id are permuted by a NumPy
    generator seeded with ``(seed, crc32(subset))``, so the same seed gives the same split on
    any machine, and adding a subset leaves the others' splits unchanged.
    ``by="release_date"``: oldest to train, newest to test (ties by song_id); the seed is unused.

    Returns
    -------
    pandas.DataFrame
        Per subset and split, the number of songs.
    """
    if per_subset < 1:
        raise ConfigError(f"per_subset must be >= 1, got {per_subset}")
    fractions = check_fractions(split)
    if by not in ("random", "release_date"):
        raise ConfigError(f"by must be 'random' or 'release_date', not {by!r}")
    if not Path(db_path).exists():
        raise StoreError(f"no database at {db_path}: run `hitsong ingest --events FILE --songs FILE` first.")
    with connect(db_path) as con:
        _require_ingested(con, db_path)
        top = con.execute(
            """SELECT song_id, subset, release_date FROM (
                   SELECT st.song_id, st.subset, s.release_date,
                          row_number() OVER (PARTITION BY st.subset ORDER BY st.playcount DESC, st.song_id) AS r
                   FROM song_stats st JOIN songs s USING (song_id))
               WHERE r <= $n ORDER BY subset, song_id""",
            {"n": per_subset},
        ).df()
        parts = []
        for subset, grp in top.groupby("subset", sort=True):
            n = len(grp)
            if n < per_subset:
                log.warning("subset %s has %d songs, fewer than --per-subset %d: all are sampled", subset, n, per_subset)
            if by == "random":
                ids = np.array(sorted(grp["song_id"]), dtype=object)
                rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(str(subset).encode())]))
                ids = ids[rng.permutation(n)]
            else:
                ids = grp.sort_values(["release_date", "song_id"])["song_id"].to_numpy(dtype=object)
            labels = np.repeat(np.array(SPLITS, dtype=object), split_counts(n, fractions))
            parts.append(pd.DataFrame({"song_id": ids, "subset": subset, "split": labels}))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["song_id", "subset", "split"])
        with transaction(con):
            con.execute("DELETE FROM splits")
            con.register("_new_splits", frame)
            con.execute("INSERT INTO splits SELECT CAST(song_id AS VARCHAR), CAST(subset AS VARCHAR), CAST(split AS VARCHAR) FROM _new_splits")
            con.unregister("_new_splits")
            con.execute(
                "INSERT INTO sample_log VALUES ($t, $n, $s, $f, $b)",
                {"t": datetime.now(timezone.utc).replace(tzinfo=None), "n": per_subset, "s": seed,
                 "f": ",".join(str(f) for f in fractions), "b": by},
            )
    summary = frame.groupby(["subset", "split"]).size().rename("songs").reset_index()
    log.info("sampled %d songs in %d subsets (%s split, seed %d)", len(frame), frame["subset"].nunique(), by, seed)
    return summary


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _require_ingested(con: duckdb.DuckDBPyConnection, db_path: str | Path) -> None:
    have = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'song_stats'"
    ).fetchall()[0][0]
    if not have or not con.execute("SELECT count(*) FROM song_stats").fetchall()[0][0]:
        raise StoreError(f"no listening data in {db_path}: run `hitsong ingest --events FILE --songs FILE` first.")


def stats(db_path: str | Path) -> pd.DataFrame:
    """Per-subset summary: songs, listeners (distinct over the subset), events, plays, hit scores.

    Returns
    -------
    pandas.DataFrame
        One row per subset: ``subset, songs, songs_played, listeners, events, plays,
        hit_min, hit_q25, hit_median, hit_q75, hit_q90, hit_max, train, val, test``
        (the last three: songs in each split, 0 before ``sample``).
    """
    with connect(db_path, read_only=True) as con:
        _require_ingested(con, db_path)
        return con.execute(
            """WITH h AS (
                   SELECT subset, min(hit_score) AS hit_min,
                          quantile_cont(hit_score, [0.25, 0.5, 0.75, 0.9]) AS q, max(hit_score) AS hit_max
                   FROM song_stats GROUP BY subset),
               sp AS (
                   SELECT subset, count(*) FILTER (WHERE split = 'train') AS train,
                          count(*) FILTER (WHERE split = 'val') AS val,
                          count(*) FILTER (WHERE split = 'test') AS test
                   FROM splits GROUP BY subset)
               SELECT s.subset, s.songs, s.songs_played, s.listeners, s.events, s.plays,
                      h.hit_min, h.q[1] AS hit_q25, h.q[2] AS hit_median, h.q[3] AS hit_q75,
                      h.q[4] AS hit_q90, h.hit_max,
                      coalesce(sp.train, 0) AS train, coalesce(sp.val, 0) AS val, coalesce(sp.test, 0) AS test
               FROM subset_stats s JOIN h USING (subset) LEFT JOIN sp USING (subset)
               ORDER BY s.subset"""
        ).df()


def _check_split_name(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")


def split_frame(db_path: str | Path, subset: str | None = None, split: str | None = None) -> pd.DataFrame:
    """The sampled songs with their targets and metadata.

    Returns
    -------
    pandas.DataFrame
        ``song_id, subset, split, hit_score, playcount, listeners, audio_path, release_date,
        title, artist, release_quarter``, ordered by subset, split (train, val, test), song_id.
    """
    _check_split_name(split)
    with connect(db_path, read_only=True) as con:
        _require_ingested(con, db_path)
        if not con.execute("SELECT count(*) FROM splits").fetchall()[0][0]:
            raise StoreError(f"no splits in {db_path}: run `hitsong sample --per-subset N --seed S` first.")
        frame = con.execute(
            """SELECT sp.song_id, sp.subset, sp.split, st.hit_score, st.playcount, st.listeners,
                      s.audio_path, s.release_date, s.title, s.artist, st.release_quarter
               FROM splits sp JOIN song_stats st USING (song_id) JOIN songs s USING (song_id)
               WHERE ($subset IS NULL OR sp.subset = $subset) AND ($split IS NULL OR sp.split = $split)
               ORDER BY sp.subset, CASE sp.split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END, sp.song_id""",
            {"subset": subset, "split": split},
        ).df()
    if subset is not None and frame.empty:
        raise StoreError(f"no sampled songs for subset {subset!r} in {db_path}; see `hitsong stats`.")
    return frame


def quarter_playcounts(db_path: str | Path) -> pd.DataFrame:
    """Mean playcount by release quarter, all songs vs sampled songs (paper Fig. 1).

    Returns
    -------
    pandas.DataFrame
        ``subset, release_quarter, quarter_index, group ('all' | 'sampled'), mean_playcount,
        songs``, ordered by subset, group, quarter_index.
    """
    with connect(db_path, read_only=True) as con:
        _require_ingested(con, db_path)
        return con.execute(
            """SELECT subset, release_quarter, quarter_index, 'all' AS "group",
                      avg(playcount) AS mean_playcount, count(*) AS songs
               FROM song_stats GROUP BY ALL
               UNION ALL
               SELECT st.subset, release_quarter, quarter_index, 'sampled', avg(playcount), count(*)
               FROM song_stats st SEMI JOIN splits USING (song_id) GROUP BY ALL
               ORDER BY subset, "group", quarter_index"""
        ).df()


def hit_score_frame(db_path: str | Path) -> pd.DataFrame:
    """Every song's hit score with its split (NULL when not sampled), for paper Fig. 2.

    Returns
    -------
    pandas.DataFrame
        ``song_id, subset, hit_score, split``, ordered by subset, song_id.
    """
    with connect(db_path, read_only=True) as con:
        _require_ingested(con, db_path)
        return con.execute(
            """SELECT st.song_id, st.subset, st.hit_score, sp.split
               FROM song_stats st LEFT JOIN splits sp USING (song_id) ORDER BY st.subset, st.song_id"""
        ).df()


def window(db_path: str | Path) -> tuple[date, date | None]:
    """The observation window ``(start, end)`` of the ingested data."""
    with connect(db_path, read_only=True) as con:
        _require_ingested(con, db_path)
        row = con.execute('SELECT window_start, window_end FROM "window"').fetchall()[0]
    return row[0], row[1]


def release_quarter(release: date, start: date) -> tuple[str, int]:
    """Pure-Python release quarter of ``release`` for a window starting at ``start``.

    The same rule as the SQL in ``ingest`` (module docstring); used by tests and callers
    that label a single date.
    """
    months = (release.year - start.year) * 12 + release.month - start.month - (release.day < start.day)
    k = months // 3 + 1 if months >= 0 else -((-months - 1) // 3 + 1)
    return (f"Q{k}" if k > 0 else f"-Q{-k}"), k


__all__: Iterable[str] = (
    "IngestReport", "ingest", "sample", "stats", "split_frame", "quarter_playcounts",
    "hit_score_frame", "window", "release_quarter", "split_counts", "check_fractions", "SPLITS",
)
