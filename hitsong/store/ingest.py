"""Ingest: listening events (or per-song aggregates) and the song catalogue into DuckDB, incrementally.

A store describes one listening dataset: the union of every events file ingested since the last
``replace``. An ingest reads only the *new* files: it aggregates them on their own into per-song
sums and the keys of their (song, user) and (subset, user) pairs (:mod:`hitsong.store.aggregate`),
finds which keys the store has not seen (:mod:`hitsong.store.keysets`: the new listeners,
exactly), and adds the sums and the new listeners to ``song_totals`` of the songs the new files
touched (``song_stats`` is a view of those totals). The totals equal those of ingesting every
file at once; earlier files are never read again (they may be archived or deleted).

How an ingest stays safe:

- one ingest at a time per database (the ``ingest`` lock, :mod:`hitsong.store.lock`);
- all validation, aggregation and key work happens in a private in-memory DuckDB, with the
  database file closed; the file is attached read-only for a moment at the start and
  read-write for one short transaction at the end (:mod:`hitsong.store.state`), so readers
  (the dashboard) never wait for more than that transaction;
- bad input raises before the transaction, so the database is exactly as before (a database
  file the call would have created does not appear); key run files written for a failed
  ingest are deleted.
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
from hitsong.store import keysets
from hitsong.store.aggregate import KERNEL_MIN_BYTES, Delta, aggregate, needs_song_ids
from hitsong.store.catalogue import load_songs, number_catalogue
from hitsong.store.events import (
    EventFile,
    EventInput,
    EventShape,
    check_events,
    detect_shape,
    expand_events,
    identity,
    numbers_fit,
)
from hitsong.store.lock import exclusive
from hitsong.store.merge import add_keys, check_totals, empty_delta, user_dictionary
from hitsong.store.schema import NOT_CHANGED, STORE_FORMAT, UnknownSongs
from hitsong.store.sources import file_sha256, open_source
from hitsong.store.staging import staging
from hitsong.store.state import Commit, State, read_state, stage_numbers, write
from hitsong.store.window import check_window, resolve_window, same_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    """What one ``ingest`` call did.

    ``skipped`` is True when nothing was new (every events file already counted, same catalogue
    and window); then nothing was written and the counts are those stored. ``listeners`` is
    ``None`` for per-song aggregates (distinct users over a subset cannot be derived from them).
    """

    skipped: bool
    message: str
    ingest_id: int
    songs: int
    songs_played: int
    event_files: tuple[str, ...]
    event_rows: int
    plays: int
    listeners: int | None
    new_event_files: int = 0
    dropped_unknown_rows: int = 0
    dropped_unknown_plays: int = 0
    outside_window_rows: int = 0
    window_start: date | None = None
    window_end: date | None = None
    window_source: str = ""
    splits_cleared: bool = False
    seconds: float = 0.0


def ingest(
    db_path: str | Path,
    events_path: str | Path | Sequence[str | Path] | None,
    songs_path: str | Path,
    *,
    song_stats: str | Path | None = None,
    window_start: date | None = None,
    window_end: date | None = None,
    unknown_songs: UnknownSongs = "error",
    event_shape: EventShape = "auto",
    replace: bool = False,
    memory_limit_mb: int = 2048,
    wait_seconds: float = 0.0,
) -> IngestReport:
    """Read listening events (or per-song aggregates) and the song catalogue into the database.

    Parameters
    ----------
    db_path : str or Path
        The DuckDB file (created when missing); the key sets go to ``<db>.pairs/`` beside it.
    events_path : path, glob, folder, URL, or a sequence of them; or None with ``song_stats``
        Events: CSV, gzipped CSV or Parquet (recognised by content). Each file is either
        aggregated rows ``(user_id, song_id, play_count)`` or one row per play
        ``(user_id, song_id, played_at)``, detected from the columns (``event_shape``). A folder
        or glob stands for its files, hive partitions included (:mod:`hitsong.store.events`).
    songs_path : str or Path
        The catalogue: ``song_id, title, artist, subset, release_date, audio_path`` (CSV or
        Parquet). It replaces the previous catalogue.
    song_stats : str or Path or None
        Instead of events: per-song ``song_id, playcount, listeners`` (and optionally
        ``events``) for the window ``window_start``..``window_end``, computed elsewhere
        (:mod:`hitsong.store.songstats`). They replace the store's listening data.
    window_start, window_end : date or None
        The observation window. Plays outside it are dropped (and counted). Without flags the
        window of one-row-per-play data is its first to last play date; aggregated data has no
        dates, so it needs ``window_start`` (or the store's window). Once a store has data its
        window stays (``replace`` to change it); a window taken from the data grows with it.
    unknown_songs : {"error", "drop"}
        Events whose song is not in the catalogue: an error (default), or dropped and counted.
    event_shape : {"auto", "aggregated", "plays"}
        Force the shape instead of detecting it.
    replace : bool
        Forget every earlier events file; the store holds just these files.
    memory_limit_mb : int
        DuckDB's memory limit for the ingest, in MiB; larger aggregations spill to disk
        (``<db>.tmp``). Large aggregated Parquet files with integer ids are aggregated by the
        compiled loops of :mod:`hitsong.store.pairs` when their footprint (12 bytes per event
        row plus ~0.4 GB) fits this limit; else in SQL.
    wait_seconds : float
        How long to wait for another ingest into the same database to finish (0: fail at once).

    Returns
    -------
    IngestReport

    Notes
    -----
    A file is counted once: a file whose path, size and modification time match a counted file
    is skipped unread, and a file whose bytes (SHA-256) match one is skipped too. A counted file
    that has changed since is an error (its old content is in the totals; ``replace`` recounts).
    A changed catalogue recomputes every song's row (and, when played songs moved between
    subsets or left the catalogue, the subsets' distinct listeners from the stored pairs).
    Events of songs not in the catalogue at their ingest are dropped for good (``--drop-unknown``).
    Any change clears ``splits`` (run ``sample`` again).

    Raises
    ------
    InputError
        A file is missing, of the wrong type, lacks columns, or has bad values (the message
        names the file, the column and the first few rows).
    ConfigError
        Invalid options (window end before start, a window unlike the store's, unknown values).
    StoreError
        Another ingest holds the database.
    """
    t0 = time.monotonic()
    if unknown_songs not in ("error", "drop"):
        raise ConfigError(f"unknown_songs must be 'error' or 'drop', not {unknown_songs!r}")
    if event_shape not in ("auto", "aggregated", "plays"):
        raise ConfigError(f"event_shape must be 'auto', 'aggregated' or 'plays', not {event_shape!r}")
    check_window(window_start, window_end)
    if isinstance(memory_limit_mb, bool) or not isinstance(memory_limit_mb, int) or memory_limit_mb < 64:
        raise ConfigError(f"memory_limit_mb must be a whole number >= 64, got {memory_limit_mb!r}")
    if song_stats is not None and events_path is not None:
        raise ConfigError("give events or per-song statistics (--song-stats), not both")
    paths = [] if events_path is None else [events_path] if isinstance(events_path, (str, Path)) else list(events_path)
    if song_stats is None and not paths:
        raise ConfigError("give at least one events file (or --song-stats)")
    db_path = Path(db_path).expanduser().resolve()
    tmp = db_path.with_name(db_path.name + ".tmp")
    written: list[str] = []
    with exclusive(db_path, "ingest", wait_seconds=wait_seconds), staging(tmp, memory_limit_mb) as con:
        try:
            state = read_state(con, db_path)
            if not state.legacy:  # run files the database does not list are leftovers of a failed run
                listed = {r.file for runs in state.runs.values() for r in runs}
                keysets.remove_leftovers(keysets.keys_dir(db_path), listed)
            if song_stats is not None:
                from hitsong.store.songstats import ingest_song_stats

                report, dropped = ingest_song_stats(
                    con, db_path, state, Path(song_stats), Path(songs_path), window_start, window_end, unknown_songs, t0
                )
            else:
                request = _Request(paths, Path(songs_path), window_start, window_end, unknown_songs, event_shape)
                report, dropped = _ingest(con, db_path, state, request, replace, memory_limit_mb, written, t0)
        except BaseException:
            keysets.remove_files(keysets.keys_dir(db_path), written)
            raise
        keysets.remove_files(keysets.keys_dir(db_path), dropped)
    log.info("%s", report.message)
    return report


@dataclass(frozen=True)
class _Request:
    paths: list[str | Path]
    songs: Path
    window_start: date | None
    window_end: date | None
    unknown_songs: UnknownSongs
    event_shape: EventShape


def _import_pairs() -> None:
    """Import (and so compile-load) the compiled loops (:mod:`hitsong.store.pairs`,
    :mod:`hitsong.store.smallpairs`, :mod:`hitsong.store.keyruns`) ahead of their first use, and
    load those of a later append of this process (a daily job that stays up)."""
    from hitsong.store.smallpairs import load_append_loops

    load_append_loops()


def _ingest(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    state: State,
    req: _Request,
    replace: bool,
    memory_limit_mb: int,
    written: list[str],
    t0: float,
) -> tuple[IngestReport, list[str]]:
    """The body of :func:`ingest` for events; returns the report and the run files to delete."""
    fresh = replace or state.last is None or state.legacy
    if state.source == "song_stats" and not fresh:
        raise InputError(
            f"{db_path} holds per-song statistics (--song-stats), not events: listeners are not additive, so "
            f"events cannot be added to them exactly. Ingest all events with --replace, or a new --song-stats "
            f"file. {NOT_CHANGED}"
        )
    if fresh:
        for table in ("_numbers", "_subsets", "_played"):
            con.execute(f"DELETE FROM {table}")
    songs_src = open_source(con, req.songs, "songs")
    songs_sha = file_sha256(songs_src.path)
    # a store of an earlier format gets its catalogue numbered (and catalogue_numbers written) again
    catalogue = fresh or state.last is None or state.last[3] != songs_sha or state.format != STORE_FORMAT
    inputs = [item for p in req.paths for item in expand_events(con, p)]
    if state.legacy and not replace:  # the earlier layout kept no pairs: rebuild from its files
        log.info(
            "%s was written by an earlier hitsong: rebuilding it from its %d events file(s)",
            db_path,
            len(state.legacy_files),
        )
        inputs = [_legacy_input(path) for path, _, _ in state.legacy_files] + inputs
    if sum(i.size for i in inputs) > KERNEL_MIN_BYTES:
        # numba's import (~0.3 s) overlaps the hashing and checks below, which release the GIL
        threading.Thread(target=_import_pairs, daemon=True).start()
    files, n_known = _new_files(con, inputs, state, fresh, req.event_shape)
    ws, we = req.window_start, req.window_end
    if state.legacy and not replace and ws is None and we is None and state.window and state.window[2] == "flags":
        ws, we = state.window[0], state.window[1]
    if not files and not catalogue and state.last is not None and same_window(state, ws, we):
        return skipped_report(state.last, t0), []
    user_keys = state.user_keys if not fresh and state.user_keys else _choose_user_keys(con, files)
    checked = [check_events(con, ev, user_numbers=user_keys == "numbers") for ev in files]
    if not fresh:
        stage_numbers(con, db_path, catalogue_changed=catalogue, song_ids=needs_song_ids(checked))

    if catalogue:
        n_songs = load_songs(con, songs_src)
        number_catalogue(con)
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE _numbers_new (song_id VARCHAR, song_no INTEGER)")
        con.execute("CREATE OR REPLACE TEMP TABLE _subsets_new (subset VARCHAR, subset_no INTEGER, listeners BIGINT)")
        n_songs = con.execute("SELECT count(*) FROM _catalogue").fetchall()[0][0]
    window = resolve_window(con, checked, ws, we, state, fresh)
    users_new = False
    if user_keys == "dictionary" and checked:
        user_dictionary(con, checked, db_path, fresh)
        users_new = True
    if checked:
        delta = aggregate(
            con,
            checked,
            user_numbers=user_keys == "numbers",
            window_start=window[0],
            window_end=window[1],
            memory_limit_mb=memory_limit_mb,
            unknown_songs=req.unknown_songs,
        )
    else:
        delta = empty_delta()
    check_totals(con, db_path, state, delta)
    runs, listeners, dropped = add_keys(con, db_path, state, fresh, catalogue, delta, written)
    ingest_id = state.last[0] + 1 if state.last else 1
    all_files = ([] if fresh else [f.path for f in state.files]) + [c.file.src.path for c in checked]
    request_key = hashlib.sha256(
        json.dumps({"files": sorted(c.file.sha256 for c in checked), "songs": songs_sha}).encode()
    ).hexdigest()

    def make_report(totals: tuple[int, int, int, int, int]) -> IngestReport:
        return _report(
            ingest_id, n_songs, totals, all_files, len(checked), n_known, listeners, delta, window, t0, req.songs
        )

    commit = Commit(
        fresh=fresh,
        catalogue=catalogue,
        window=window,
        user_keys=user_keys,
        source="events",
        listeners=listeners,
        runs=runs,
        users_new=users_new,
        files=[(c.file.src.path, c.file.sha256, c.file.shape, c.rows, c.file.size, c.file.mtime_ns) for c in checked],
        ingest_id=ingest_id,
        log_row=lambda totals: log_row(ingest_id, request_key, songs_src.path, songs_sha, make_report(totals)),
    )
    totals = write(con, db_path, commit)
    return make_report(totals), dropped


def _legacy_input(path: str) -> EventInput:
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"events file {p}, ingested earlier, is missing; the store is being rebuilt from every earlier file "
            f"(it was written by an earlier hitsong). Restore it, or ingest with --replace and the files you want. "
            f"{NOT_CHANGED}"
        )
    st = p.stat()
    return EventInput(str(p), "", int(st.st_size), int(st.st_mtime_ns))


def _new_files(
    con: duckdb.DuckDBPyConnection, inputs: list[EventInput], state: State, fresh: bool, event_shape: EventShape
) -> tuple[list[EventFile], int]:
    """The inputs not counted yet, opened; and how many were known already.

    Known: same path, size and modification time as a counted file (not read again), or the
    same bytes as one. A counted path whose bytes changed is an error.
    """
    by_path = {} if fresh else {f.path: f for f in state.files}
    shas = set() if fresh else {f.sha256 for f in state.files}
    legacy = {p: sha for p, sha, _ in state.legacy_files} if state.legacy else {}
    out: list[EventFile] = []
    known = 0
    for item in inputs:
        old = by_path.get(item.path)
        if old is not None and old.size == item.size and old.mtime_ns == item.mtime_ns:
            known += 1
            continue
        src = open_source(con, item.path, "events", hive=item.hive)
        sha = identity(item)
        if item.path in legacy and legacy[item.path] != sha:
            raise InputError(
                f"events file {item.path}, ingested earlier, has changed; the store is being rebuilt from every "
                f"earlier file. Restore it, or ingest with --replace and the files you want. {NOT_CHANGED}"
            )
        if sha in shas:
            known += 1
            log.info("events file %s was already ingested (same content); it is counted once", item.path)
            continue
        if old is not None:
            raise InputError(
                f"events file {item.path} was ingested before and has changed since (its earlier content is in the "
                f"totals). To count the new content, ingest every events file again with --replace. {NOT_CHANGED}"
            )
        out.append(EventFile(src, detect_shape(src, event_shape), sha, item.size, item.mtime_ns))
        shas.add(sha)
    return out, known


def _choose_user_keys(con: duckdb.DuckDBPyConnection, files: list[EventFile]) -> str:
    """A new store numbers users by their ids when every id is a plain number below 2**32."""
    return "numbers" if files and all(numbers_fit(con, f.src) for f in files) else "dictionary"


def _report(
    ingest_id: int,
    n_songs: int,
    totals: tuple[int, int, int, int, int],
    all_files: list[str],
    n_new: int,
    n_known: int,
    listeners: int | None,
    delta: Delta,
    window: tuple[date, date | None, str],
    t0: float,
    songs_path: Path,
) -> IngestReport:
    songs, played, event_rows, plays, n_splits = totals
    msg = (
        f"ingest #{ingest_id}: {songs} songs ({played} played), {event_rows} event rows from {len(all_files)} "
        f"file(s) ({n_new} new, {n_known} already counted), {plays} plays, {listeners} listeners; window "
        f"{window[0]} to {window[1] or '?'} ({window[2]})"
    )
    if delta.unknown[1]:
        msg += (
            f"; dropped {delta.unknown[1]} rows ({delta.unknown[2]} plays) of {delta.unknown[0]} songs not in the "
            f"songs file {songs_path}"
        )
    if delta.outside:
        msg += f"; dropped {delta.outside} plays outside the window"
    if n_splits:
        msg += "; the previous splits were cleared (run `hitsong sample` again)"
    return IngestReport(
        skipped=False,
        message=msg,
        ingest_id=ingest_id,
        songs=songs,
        songs_played=played,
        event_files=tuple(all_files),
        event_rows=event_rows,
        plays=plays,
        listeners=listeners,
        new_event_files=n_new,
        dropped_unknown_rows=delta.unknown[1],
        dropped_unknown_plays=delta.unknown[2],
        outside_window_rows=delta.outside,
        window_start=window[0],
        window_end=window[1],
        window_source=window[2],
        splits_cleared=bool(n_splits),
        seconds=time.monotonic() - t0,
    )


def log_row(ingest_id: int, key: str, songs_path: str, songs_sha: str, report: IngestReport) -> dict:
    stored = {
        **asdict(report),
        "window_start": str(report.window_start) if report.window_start else None,
        "window_end": str(report.window_end) if report.window_end else None,
    }
    return {
        "i": ingest_id,
        "t": datetime.now(UTC).replace(tzinfo=None),
        "k": key,
        "p": songs_path,
        "h": songs_sha,
        "r": json.dumps(stored),
    }


def skipped_report(last: tuple, t0: float) -> IngestReport:
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
    fields = set(IngestReport.__dataclass_fields__)
    return IngestReport(**{k: v for k, v in prev.items() if k in fields})
