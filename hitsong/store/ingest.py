"""Ingest: listening events and the song catalogue into DuckDB, in one transaction.

Every function opens the database for a short while (``hitsong.store.connect``); the writer
runs in one transaction, so a failed ingest leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from hitsong.errors import ConfigError, InputError
from hitsong.store import connect, transaction
from hitsong.store.aggregate import KERNEL_MIN_BYTES, aggregate, count_unknown_songs
from hitsong.store.rules import (
    hit_score_sql,
    months_sql,
    quarter_index_sql,
    quarter_label_sql,
)
from hitsong.store.schema import NOT_CHANGED, SCHEMA, SONG_COLUMNS, UnknownSongs
from hitsong.store.sources import (
    CheckedFile,
    EventFile,
    EventShape,
    Source,
    check_events,
    detect_shape,
    file_sha256,
    find_rows,
    first_row,
    id_checks,
    ids_table,
    open_source,
    quote,
    require_columns,
    rows_text,
    run_checks,
    time_expr,
)

log = logging.getLogger(__name__)


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


def _load_songs(con: duckdb.DuckDBPyConnection, src: Source) -> int:
    """Validate the songs file and load it into the temp table ``_new_songs``."""
    require_columns(src, SONG_COLUMNS, "songs")
    date_sql, date_checks = time_expr(src, "release_date", "DATE")
    sid = quote(src.columns["song_id"])
    checks = [("song_id", *c) for c in id_checks(src, "song_id")]
    checks += [("release_date", *c) for c in date_checks]
    for col in ("subset", "audio_path"):
        c = quote(src.columns[col])
        checks.append((col, f"{c} IS NULL OR trim(CAST({c} AS VARCHAR)) = ''", "is empty", None))
    n_rows = run_checks(con, src, "songs", checks)
    # duplicate song ids
    rel = src.relation(con)
    dup = rel.aggregate(f"count(*) - count(DISTINCT CAST({sid} AS VARCHAR))").fetchall()[0][0]
    if dup:
        dup_ids = [
            r[0]
            for r in rel.aggregate(f"CAST({sid} AS VARCHAR) AS i, count(*) AS n")
            .filter("n > 1")
            .order("i")
            .limit(3)
            .fetchall()
        ]
        rows = find_rows(con, src, f"CAST({sid} AS VARCHAR) IN (SELECT i FROM {ids_table(con, dup_ids)})")
        raise InputError(
            f"songs file {src.path}, column {src.columns['song_id']!r}: {dup} duplicate song id(s), "
            f"e.g. {', '.join(repr(i) for i in dup_ids)} ({rows_text(src, rows, len(rows))}). "
            f"Each song must appear once. {NOT_CHANGED}"
        )
    base = str(src.path.parent)
    ap = f"trim(CAST({quote(src.columns['audio_path'])} AS VARCHAR))"
    rel.create_view("_songs_src", replace=True)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _new_songs AS SELECT
            CAST({sid} AS VARCHAR) AS song_id,
            CAST({quote(src.columns["title"])} AS VARCHAR) AS title,
            CAST({quote(src.columns["artist"])} AS VARCHAR) AS artist,
            trim(CAST({quote(src.columns["subset"])} AS VARCHAR)) AS subset,
            {date_sql} AS release_date,
            CASE WHEN starts_with({ap}, '/') THEN {ap} ELSE $base || '/' || {ap} END AS audio_path
        FROM _songs_src""",
        {"base": base},
    )
    con.execute("DROP VIEW _songs_src")
    return n_rows


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
                report = _ingest(
                    con,
                    [Path(p) for p in paths],
                    Path(songs_path),
                    window_start,
                    window_end,
                    unknown_songs,
                    event_shape,
                    replace,
                    memory_limit_mb,
                    t0,
                )
    except BaseException:
        if not existed:
            for p in (db_path, db_path.with_name(db_path.name + ".wal")):
                p.unlink(missing_ok=True)
        raise
    log.info("%s", report.message)
    return report


def _import_pairs() -> None:
    """Import (and so compile-load) :mod:`hitsong.store.pairs` ahead of its first use."""
    import hitsong.store.pairs  # noqa: F401


def _ingest(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    songs_path: Path,
    window_start: date | None,
    window_end: date | None,
    unknown_songs: UnknownSongs,
    event_shape: EventShape,
    replace: bool,
    memory_limit_mb: int,
    t0: float,
) -> IngestReport:
    """The body of :func:`ingest`, inside its transaction."""
    if sum(p.stat().st_size for p in paths if p.is_file()) > KERNEL_MIN_BYTES:
        # numba's import (~0.3 s) overlaps the hashing and checks below, which release the GIL
        threading.Thread(target=_import_pairs, daemon=True).start()
    con.execute(SCHEMA)
    songs_src = open_source(con, songs_path, "songs")
    songs_sha = file_sha256(songs_src.path)
    last = first_row(
        con.execute("SELECT ingest_id, request_key, report FROM ingest_log ORDER BY ingest_id DESC LIMIT 1")
    )
    files, new_files = _gather_event_files(con, paths, None if replace else last, event_shape)
    if window_start is None and window_end is None and last is not None and not replace:
        stored = first_row(con.execute('SELECT window_start, window_end, source FROM "window"'))
        if stored is not None and stored[2] == "flags":  # a window from the data is recomputed
            window_start, window_end = stored[0], stored[1]
    request = {
        "events": sorted(f.sha256 for f in files),
        "shapes": sorted({f.shape for f in files}),
        "songs": songs_sha,
        "window": [str(window_start), str(window_end)],
        "unknown": unknown_songs,
    }
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    if last is not None and last[1] == key:
        return _skipped_report(last, t0)

    n_songs = _load_songs(con, songs_src)
    checked = [check_events(con, ev) for ev in files]
    window_start, window_end, source = _resolve_window(con, checked, window_start, window_end)
    outside = aggregate(con, checked, window_start, window_end, memory_limit_mb)
    unknown = count_unknown_songs(con, checked, unknown_songs)
    n_splits = _write_tables(con, window_start, window_end, source)

    totals = con.execute(
        "SELECT count(*) FILTER (WHERE playcount > 0), sum(events), sum(playcount) FROM song_stats"
    ).fetchall()[0]
    listeners = con.execute("SELECT count(DISTINCT user_id) FROM _subset_users").fetchall()[0][0]
    ingest_id = (last[0] + 1) if last else 1
    msg = (
        f"ingest #{ingest_id}: {n_songs} songs ({totals[0]} played), {totals[1]} event rows from "
        f"{len(files)} file(s) ({new_files} new), {totals[2]} plays, {listeners} listeners; window "
        f"{window_start} to {window_end or '?'} ({source})"
    )
    if unknown[1]:
        msg += f"; dropped {unknown[1]} rows ({unknown[2]} plays) of {unknown[0]} songs not in the songs file"
    if outside:
        msg += f"; dropped {outside} plays outside the window"
    if n_splits:
        msg += "; the previous splits were cleared (run `hitsong sample` again)"
    report = IngestReport(
        skipped=False,
        message=msg,
        ingest_id=ingest_id,
        songs=n_songs,
        songs_played=int(totals[0]),
        event_files=tuple(str(c.file.src.path) for c in checked),
        event_rows=int(totals[1] or 0),
        plays=int(totals[2] or 0),
        listeners=int(listeners),
        dropped_unknown_rows=int(unknown[1]),
        dropped_unknown_plays=int(unknown[2]),
        outside_window_rows=int(outside),
        window_start=window_start,
        window_end=window_end,
        window_source=source,
        splits_cleared=bool(n_splits),
        seconds=time.monotonic() - t0,
    )
    stored_report = {
        **asdict(report),
        "window_start": str(window_start),
        "window_end": str(window_end) if window_end else None,
    }
    con.execute(
        "INSERT INTO ingest_log VALUES ($i, $t, $k, $p, $h, $r)",
        {
            "i": ingest_id,
            "t": datetime.now(UTC).replace(tzinfo=None),
            "k": key,
            "p": str(songs_src.path),
            "h": songs_sha,
            "r": json.dumps(stored_report),
        },
    )
    for c in checked:
        con.execute(
            "INSERT INTO event_files VALUES ($i, $p, $h, $s, $n)",
            {"i": ingest_id, "p": str(c.file.src.path), "h": c.file.sha256, "s": c.file.shape, "n": c.rows},
        )
    for i in range(len(checked)):
        con.execute(f"DROP VIEW IF EXISTS _ev{i}")
    for t in ("_agg", "_subset_users", "_song_map", "_new_songs", "_ids"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return report


def _gather_event_files(
    con: duckdb.DuckDBPyConnection, paths: list[Path], last: tuple | None, event_shape: EventShape
) -> tuple[list[EventFile], int]:
    """The dataset's events files: those of the last ingest (``last``) plus the new ``paths``.

    Files are identified by content: a file whose SHA-256 is already in the set is skipped.
    Returns the files and how many of them are new.
    """
    files: list[EventFile] = []
    seen: set[str] = set()
    if last is not None:
        for path, sha, shape in con.execute(
            "SELECT path, sha256, shape FROM event_files WHERE ingest_id = $i ORDER BY path", {"i": last[0]}
        ).fetchall():
            p = Path(path)
            if not p.exists() or file_sha256(p) != sha:
                raise InputError(
                    f"events file {p}, ingested earlier, is missing or has changed; the statistics are "
                    f"aggregated over all events files. Restore it, or ingest with --replace and the "
                    f"files you want. {NOT_CHANGED}"
                )
            files.append(EventFile(open_source(con, p, "events"), shape, sha))
            seen.add(sha)
    new_files = 0
    for p in paths:
        src = open_source(con, p, "events")
        sha = file_sha256(src.path)
        if sha in seen:
            log.info("events file %s was already ingested (same content); it is counted once", src.path)
            continue
        files.append(EventFile(src, detect_shape(src, event_shape), sha))
        seen.add(sha)
        new_files += 1
    return files, new_files


def _skipped_report(last: tuple, t0: float) -> IngestReport:
    prev = json.loads(last[2])
    prev.update(
        skipped=True,
        seconds=time.monotonic() - t0,
        message=f"nothing to do: these songs and events were already ingested "
        f"(ingest #{last[0]}); nothing was counted twice",
    )
    prev["event_files"] = tuple(prev["event_files"])
    for k in ("window_start", "window_end"):
        prev[k] = date.fromisoformat(prev[k]) if prev[k] else None
    return IngestReport(**prev)


def _resolve_window(
    con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], window_start: date | None, window_end: date | None
) -> tuple[date, date | None, str]:
    """The observation window: the flags, else first/last play date of one-row-per-play files."""
    plays = [c for c in checked if c.file.shape == "plays"]
    source = "flags"
    if plays and (window_start is None or window_end is None):
        lo_hi = [
            c.file.src.relation(con).aggregate(f"min({c.value_sql})::DATE, max({c.value_sql})::DATE").fetchall()[0]
            for c in plays
        ]
        if window_start is None:
            window_start, source = min(x[0] for x in lo_hi), "data"
        if window_end is None:
            window_end = max(x[1] for x in lo_hi)
    if window_start is None:
        raise InputError(
            f"events file {checked[0].file.src.path} has play counts without dates, so the observation "
            f"window is unknown: pass --window-start YYYY-MM-DD (and --window-end). {NOT_CHANGED}"
        )
    _check_window(window_start, window_end)
    return window_start, window_end, source


def _write_tables(con: duckdb.DuckDBPyConnection, window_start: date, window_end: date | None, source: str) -> int:
    """Replace songs, window, song_stats and subset_stats; clear splits (returns how many there were)."""
    con.execute("DELETE FROM songs")
    con.execute("INSERT INTO songs SELECT * FROM _new_songs")
    con.execute('DELETE FROM "window"')
    con.execute('INSERT INTO "window" VALUES ($s, $e, $src)', {"s": window_start, "e": window_end, "src": source})
    con.execute("DELETE FROM song_stats")
    con.execute(
        f"""INSERT INTO song_stats
        WITH q AS (
            SELECT s.song_id, s.subset,
                   coalesce(k.plays, 0) AS playcount, coalesce(k.listeners, 0) AS listeners,
                   coalesce(k.events, 0) AS events,
                   {months_sql("s.release_date", "w.window_start")} AS months
            FROM songs s CROSS JOIN "window" w LEFT JOIN _agg k ON k.song_id = s.song_id)
        SELECT song_id, subset, playcount, listeners, events,
               {hit_score_sql("playcount", "listeners")} AS hit_score,
               {quarter_label_sql("months")}, {quarter_index_sql("months")}
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
