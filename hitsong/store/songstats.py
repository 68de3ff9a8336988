"""Per-song listening statistics computed elsewhere (a warehouse), as the store's listening data.

``hitsong ingest --song-stats F --songs S --window-start D [--window-end E]``: ``F`` holds one row
per song, ``song_id, playcount, listeners`` and optionally ``events``, counted over the stated
window by the team's own engine (Spark, BigQuery, Snowflake; docs/SCALE.md has the SQL). The
hit score and the release quarters are then computed here exactly as for events.

Checked like every other input (the error names file, column and rows; the database is left as
it was): ids present and unique; counts whole numbers from 0 to 2**63 - 1; at most as many
listeners as plays (each listener played at least once), and some listener for any plays; when
given, at least as many event rows as listeners. Catalogue songs missing from ``F`` have no plays.

Listeners are not additive, so these statistics *replace* the store's listening data, and events
cannot be added to them later (``--replace`` with all events, or a new ``--song-stats`` file).
Distinct listeners per subset cannot be derived from per-song counts: ``subset_stats.listeners``
is NULL for such a store.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date
from pathlib import Path

import duckdb

from hitsong.errors import ConfigError, InputError
from hitsong.store.catalogue import load_songs, number_catalogue
from hitsong.store.ingest import IngestReport, log_row, skipped_report
from hitsong.store.keysets import KEYSETS
from hitsong.store.schema import NOT_CHANGED, UnknownSongs
from hitsong.store.sources import (
    INT_TYPES,
    Source,
    count_expr,
    file_sha256,
    find_rows,
    id_checks,
    ids_table,
    open_source,
    quote,
    refuse_duplicate_ids,
    require_columns,
    rows_text,
    run_checks,
)
from hitsong.store.state import Commit, State, write
from hitsong.store.window import check_window

#: The columns of a song-stats file (``events`` is optional).
SONG_STATS_COLUMNS = ("song_id", "playcount", "listeners")


def _checked_stats(con: duckdb.DuckDBPyConnection, src: Source) -> tuple[str, str, str]:
    """Validate the file; returns the SQL of playcount, listeners and events (BIGINT)."""
    require_columns(src, SONG_STATS_COLUMNS, "song-stats", " (and optionally events)")
    checks = [("song_id", *c) for c in id_checks(src, "song_id")]
    exprs = {}
    for col in ("playcount", "listeners", "events"):
        if col in src.columns:
            exprs[col], c = count_expr(src, col)
            checks += [(col, *x) for x in c]
    pc, li = exprs["playcount"], exprs["listeners"]
    ev = exprs.get("events", li)
    checks.append(("listeners", f"{li} > {pc}", "is larger than the playcount (each listener played)", None))
    checks.append(("listeners", f"{pc} > 0 AND {li} = 0", "is 0 while the playcount is not", None))
    if "events" in src.columns:
        checks.append(("events", f"{ev} < {li}", "is smaller than listeners (a listener has an event row)", None))
    run_checks(con, src, "song-stats", checks)
    refuse_duplicate_ids(con, src, "song-stats", "One row per song.")
    return pc, li, ev


def ingest_song_stats(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    state: State,
    path: Path,
    songs_path: Path,
    window_start: date | None,
    window_end: date | None,
    unknown_songs: UnknownSongs,
    t0: float,
) -> tuple[IngestReport, list[str]]:
    """Replace the store's listening data with the per-song statistics in ``path``.

    Called by :func:`hitsong.store.ingest.ingest` inside its lock and staging connection;
    returns the report and the key run files to delete after the commit.
    """
    if window_start is None:
        raise ConfigError(
            "--song-stats needs --window-start (and --window-end): the window the statistics were counted over"
        )
    check_window(window_start, window_end)
    src = open_source(con, path, "song-stats")
    sha = file_sha256(src.path)
    songs_src = open_source(con, songs_path, "songs")
    songs_sha = file_sha256(songs_src.path)
    if (
        state.source == "song_stats"
        and state.last is not None
        and state.last[3] == songs_sha
        and any(f.sha256 == sha for f in state.files)
        and state.window is not None
        and state.window[:2] == (window_start, window_end)
    ):
        return skipped_report(state.last, t0), []
    pc, li, ev = _checked_stats(con, src)
    for table in ("_numbers", "_subsets"):
        con.execute(f"DELETE FROM {table}")
    load_songs(con, songs_src)
    number_catalogue(con)
    sid = quote(src.columns["song_id"])
    key = f"CAST({sid} AS VARCHAR)"
    src.relation(con).create_view("_song_stats_src", replace=True)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _given AS
            SELECT k.*, c.song_no FROM (
                SELECT {key} AS song_key, {pc} AS plays, {ev} AS events, {li} AS listeners FROM _song_stats_src) k
            LEFT JOIN _catalogue c ON c.song_id = k.song_key"""
    )
    unknown = con.execute(
        "SELECT count(*), coalesce(sum(plays), 0), (SELECT count(*) FROM _given) FROM _given WHERE song_no IS NULL"
    ).fetchall()[0]
    if unknown[0] and unknown_songs == "error":
        ids = [
            r[0] for r in con.execute("SELECT song_key FROM _given WHERE song_no IS NULL ORDER BY 1 LIMIT 3").fetchall()
        ]
        rows = find_rows(con, src, f"{key} IN (SELECT i FROM {ids_table(con, ids)})")
        hint = (
            " (whole-number ids must be written the same way in both files)"
            if src.types["song_id"] in INT_TYPES
            else ""
        )
        raise InputError(
            f"song-stats file {src.path}, column {src.columns['song_id']!r}: {unknown[0]} song id(s) not in the songs "
            f"file{hint}, e.g. {', '.join(repr(i) for i in ids)} ({rows_text(src, rows, unknown[0])}). Add the songs "
            f"to the songs file, or drop these rows with --drop-unknown. {NOT_CHANGED}"
        )
    con.execute("DROP VIEW _song_stats_src")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _delta AS SELECT song_no, plays, events, listeners FROM _given "
        "WHERE song_no IS NOT NULL"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _subset_listeners AS SELECT subset_no, CAST(NULL AS BIGINT) AS listeners "
        "FROM _subsets_new"
    )
    ingest_id = state.last[0] + 1 if state.last else 1
    window = (window_start, window_end, "flags")
    request_key = hashlib.sha256(json.dumps({"song_stats": sha, "songs": songs_sha}).encode()).hexdigest()

    def make_report(totals: tuple[int, int, int, int, int]) -> IngestReport:
        songs, played, event_rows, plays, n_splits = totals
        msg = (
            f"ingest #{ingest_id}: {songs} songs ({played} played), {plays} plays from per-song statistics "
            f"{src.path}; window {window_start} to {window_end or '?'} (flags); distinct listeners per subset "
            f"are unknown for per-song statistics"
        )
        if unknown[0]:
            msg += f"; dropped {unknown[0]} rows ({unknown[1]} plays) of songs not in the songs file"
        if n_splits:
            msg += "; the previous splits were cleared (run `hitsong sample` again)"
        return IngestReport(
            skipped=False,
            message=msg,
            ingest_id=ingest_id,
            songs=songs,
            songs_played=played,
            event_files=(src.path,),
            event_rows=event_rows,
            plays=plays,
            listeners=None,
            new_event_files=1,
            dropped_unknown_rows=int(unknown[0]),
            dropped_unknown_plays=int(unknown[1]),
            window_start=window_start,
            window_end=window_end,
            window_source="flags",
            splits_cleared=bool(n_splits),
            seconds=time.monotonic() - t0,
        )

    st = Path(src.path).stat()
    commit = Commit(
        fresh=True,
        catalogue=True,
        window=window,
        user_keys=state.user_keys or "numbers",
        source="song_stats",
        listeners=None,
        runs={k: [] for k in KEYSETS},
        users_new=False,
        files=[(src.path, sha, "song_stats", int(unknown[2]), int(st.st_size), int(st.st_mtime_ns))],
        ingest_id=ingest_id,
        log_row=lambda totals: log_row(ingest_id, request_key, songs_src.path, songs_sha, make_report(totals)),
    )
    totals = write(con, db_path, commit)
    dropped = [r.file for runs in state.runs.values() for r in runs]
    return make_report(totals), dropped
