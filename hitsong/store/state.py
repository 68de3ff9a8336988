"""The two moments an ingest touches the database file: reading its state, and one short commit.

An ingest works in its own in-memory DuckDB (the *staging* connection) and attaches the database
file only twice: read-only at the start, to copy the small tables it needs into staging temp
tables, and read-write at the end, for one transaction that writes the results. Both are short
(the commit writes per-song and per-subset rows, never events), so the dashboard's read-only
connections wait at most that long; while the heavy work runs, the file is not open at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from hitsong.errors import StoreError
from hitsong.store import _is_lock_error
from hitsong.store.keysets import KEYSETS, Run
from hitsong.store.schema import LISTENING_TABLES, SCHEMA, STORE_FORMAT, UPGRADABLE_FORMATS, VIEWS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    """An events file the store has counted."""

    path: str
    sha256: str
    size: int
    mtime_ns: int


@dataclass
class State:
    """What the database holds, as far as the next ingest needs it."""

    exists: bool = False
    format: int | None = None  # listening_state.format (STORE_FORMAT, or one of UPGRADABLE_FORMATS)
    legacy: bool = False  # written by the earlier layout that re-read every file
    legacy_files: list[tuple[str, str, str]] = field(default_factory=list)  # (path, sha256, shape)
    last: tuple | None = None  # (ingest_id, request_key, report json, songs sha256)
    window: tuple[date, date | None, str] | None = None  # (start, end, source)
    user_keys: str | None = None  # "numbers" | "dictionary"
    source: str | None = None  # "events" | "song_stats"
    listeners: int | None = None
    files: list[StoredFile] = field(default_factory=list)
    runs: dict[str, list[Run]] = field(default_factory=lambda: {k: [] for k in KEYSETS})
    max_plays: int = 0
    max_events: int = 0


def attach(con: duckdb.DuckDBPyConnection, db_path: Path, *, read_only: bool, retry_seconds: float = 30.0) -> None:
    """Attach the database file as ``store`` (retrying while another process holds it).

    Read-write, commits write no WAL (``RECOVERY_MODE no_wal_writes``): :func:`write` makes its
    one transaction durable by a checkpoint right after it, instead of writing it twice.
    """
    deadline = time.monotonic() + retry_seconds
    delay = 0.02
    mode = "READ_ONLY" if read_only else "RECOVERY_MODE no_wal_writes"
    while True:
        try:
            con.execute(f"ATTACH $p AS store ({mode})", {"p": str(db_path)})
            return
        except duckdb.Error as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                raise StoreError(
                    f"cannot open the database {db_path}: {exc}. If another hitsong command is writing to it, "
                    "wait for it to finish and try again."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def detach(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("USE memory")
    con.execute("DETACH store")


_EMPTY = {
    "_numbers": "song_id VARCHAR, song_no INTEGER",
    "_subsets": "subset VARCHAR, subset_no INTEGER, listeners BIGINT",
    "_played": "song_no INTEGER, subset_no INTEGER",
}


def read_state(con: duckdb.DuckDBPyConnection, db_path: Path) -> State:
    """Read the store's state; create the (empty) staging tables of its numbering, which
    :func:`stage_numbers` fills when the ingest needs them."""
    for name, cols in _EMPTY.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({cols})")
    state = State()
    if not db_path.exists():
        return state
    attach(con, db_path, read_only=True)
    try:
        state.exists = True
        listed = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'store'").fetchall()
        tables = {r[0] for r in listed}
        if "ingest_log" not in tables:
            return state
        last = con.execute(
            "SELECT ingest_id, request_key, report, songs_sha256 FROM store.ingest_log ORDER BY ingest_id DESC LIMIT 1"
        ).fetchall()
        state.last = last[0] if last else None
        if state.last is None:
            return state
        if (
            "listening_state" not in tables
            or not con.execute("SELECT count(*) FROM store.listening_state").fetchall()[0][0]
        ):
            state.legacy = True
            state.legacy_files = [
                (str(r[0]), str(r[1]), str(r[2]))
                for r in con.execute(
                    "SELECT path, sha256, shape FROM store.event_files WHERE ingest_id = ? ORDER BY path",
                    [state.last[0]],
                ).fetchall()
            ]
            w = con.execute('SELECT window_start, window_end, source FROM store."window"').fetchall()
            state.window = w[0] if w else None
            return state
        state.format, state.user_keys, state.source, state.listeners = con.execute(
            "SELECT format, user_keys, source, listeners FROM store.listening_state"
        ).fetchall()[0]
        if state.format != STORE_FORMAT and state.format not in UPGRADABLE_FORMATS:
            raise StoreError(f"{db_path} has store format {state.format}; this hitsong reads format {STORE_FORMAT}")
        w = con.execute('SELECT window_start, window_end, source FROM store."window"').fetchall()
        state.window = w[0] if w else None
        state.files = [
            StoredFile(str(p), str(h), int(s or 0), int(m or 0))
            for p, h, s, m in con.execute("SELECT path, sha256, size, mtime_ns FROM store.event_files").fetchall()
        ]
        for keyset, file, keys in con.execute(
            "SELECT keyset, file, keys FROM store.key_runs ORDER BY keyset, keys DESC, file"
        ).fetchall():
            state.runs.setdefault(keyset, []).append(Run(file, int(keys)))
        mx = con.execute("SELECT coalesce(max(plays), 0), coalesce(max(events), 0) FROM store.song_totals").fetchall()
        state.max_plays, state.max_events = int(mx[0][0]), int(mx[0][1])
        return state
    finally:
        detach(con)


def stage_numbers(
    con: duckdb.DuckDBPyConnection, db_path: Path, *, catalogue_changed: bool, song_ids: bool = True
) -> None:
    """Copy what an ingest into an existing store needs of its numbering into staging tables.

    Always ``_subsets`` (numbers and listeners per subset). With the same catalogue,
    ``_catalogue`` (the catalogue with its numbers, from ``catalogue_numbers``), with its text ids
    only when ``song_ids`` (events with whole-number song ids find their songs by ``song_key``;
    reading 125 k text ids costs ~15 ms, several % of a day's append). With a new catalogue,
    ``_numbers`` (to number new songs) and ``_played`` (songs with listeners and their old
    subset, to see whether subsets must be recounted). A store of 10 M songs copies 10 M rows
    either way, never both.
    """
    attach(con, db_path, read_only=True)
    try:
        con.execute("INSERT INTO _subsets SELECT subset, subset_no, listeners FROM store.subset_numbers")
        if catalogue_changed:
            con.execute("INSERT INTO _numbers SELECT song_id, song_no FROM store.song_numbers")
            con.execute(
                """INSERT INTO _played SELECT t.song_no, b.subset_no FROM store.song_totals t
                   JOIN store.song_numbers n USING (song_no) LEFT JOIN store.songs s USING (song_id)
                   LEFT JOIN store.subset_numbers b USING (subset) WHERE t.listeners > 0"""
            )
        elif song_ids:
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _catalogue AS
                   SELECT n.song_id, c.song_no, c.subset_no, c.song_key
                   FROM store.catalogue_numbers c JOIN store.song_numbers n USING (song_no)"""
            )
        else:  # no song_id column: a query that needs one fails instead of matching nothing
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _catalogue AS
                   SELECT song_no, subset_no, song_key FROM store.catalogue_numbers"""
            )
    finally:
        detach(con)


@dataclass
class Commit:
    """What one ingest writes (the staged temp tables it names must exist in the staging connection).

    ``_catalogue(song_id, song_no, subset_no, song_key)`` is the catalogue after the commit.

    ``fresh``: forget the listening data first (first ingest, ``replace``, a rebuild).
    ``catalogue``: ``_new_songs``, ``_numbers_new`` and ``_subsets_new`` replace the catalogue.
    ``_delta(song_no, plays, events, listeners)`` is added to ``song_totals``;
    ``_subset_listeners(subset_no, listeners)`` holds new absolute subset listener counts (NULL:
    unknown). ``runs`` replaces the run lists of the sets it names; ``users_new``: append
    ``_users_new(user_id, user_no)`` to ``user_numbers``.
    """

    fresh: bool
    catalogue: bool
    window: tuple[date, date | None, str]
    user_keys: str
    source: str
    listeners: int | None
    runs: dict[str, list[Run]]
    users_new: bool
    files: list[tuple[str, str, str, int, int, int]]  # path, sha256, shape, rows, size, mtime_ns
    ingest_id: int
    log_row: Callable[[tuple[int, int, int, int, int]], dict]  # the ingest_log row, given the totals


def write(con: duckdb.DuckDBPyConnection, db_path: Path, c: Commit) -> tuple[int, int, int, int, int]:
    """Apply ``c`` to the database in one transaction.

    The transaction writes no WAL; the checkpoint after it writes the changed tables to the file
    and swaps the file's header last, so the file holds either the state before the ingest (a
    failure or a crash up to that moment) or after it, never part of it. A WAL would only write
    the same changes once more (~15 ms for an append's 80 k updated totals here).

    Returns ``(songs, songs played, event rows, plays, splits cleared)`` after the commit.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    attach(con, db_path, read_only=False)
    try:
        con.execute("USE store")
        con.execute("BEGIN TRANSACTION")
        try:
            out = _write(con, c)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        con.execute("CHECKPOINT store")
        return out
    finally:
        detach(con)


def _write(con: duckdb.DuckDBPyConnection, c: Commit) -> tuple[int, int, int, int, int]:
    if c.fresh:
        for name, kind in con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = 'main'"
        ).fetchall():
            if name in LISTENING_TABLES:  # also drops an earlier layout's tables and columns
                con.execute(f'DROP {"VIEW" if kind == "VIEW" else "TABLE"} "{name}"')
    if c.fresh or c.catalogue:  # a store of the current format has every table (an earlier one: see ingest)
        con.execute(SCHEMA)
    con.execute(VIEWS)
    if c.catalogue:
        con.execute("DELETE FROM songs")
        con.execute("INSERT INTO songs SELECT * FROM _new_songs")
        con.execute("INSERT INTO song_numbers SELECT song_id, song_no FROM _numbers_new")
        con.execute("INSERT INTO subset_numbers SELECT subset, subset_no, listeners FROM _subsets_new")
        con.execute("DELETE FROM catalogue_numbers")
        con.execute("INSERT INTO catalogue_numbers SELECT song_no, subset_no, song_key FROM _catalogue")
    if c.users_new:
        con.execute("INSERT INTO user_numbers SELECT user_id, user_no FROM _users_new")
    if c.fresh:  # every song is new: its totals are the delta (one insert, no update)
        con.execute(
            """INSERT INTO song_totals SELECT n.song_no, coalesce(d.plays, 0), coalesce(d.events, 0),
                      coalesce(d.listeners, 0) FROM _numbers_new n LEFT JOIN _delta d USING (song_no)"""
        )
    else:
        con.execute("INSERT INTO song_totals SELECT song_no, 0, 0, 0 FROM _numbers_new")
        con.execute(
            """UPDATE song_totals t SET plays = t.plays + d.plays, events = t.events + d.events,
                   listeners = t.listeners + d.listeners
               FROM _delta d WHERE t.song_no = d.song_no"""
        )
    con.execute(
        "UPDATE subset_numbers b SET listeners = s.listeners FROM _subset_listeners s WHERE b.subset_no = s.subset_no"
    )
    con.execute('DELETE FROM "window"')
    con.execute('INSERT INTO "window" VALUES ($s, $e, $src)', dict(zip(("s", "e", "src"), c.window)))
    con.execute("DELETE FROM key_runs WHERE list_contains($k, keyset)", {"k": list(c.runs)})
    listed = [[keyset, r.file, r.keys] for keyset, runs in c.runs.items() for r in runs]
    if listed:
        con.executemany("INSERT INTO key_runs VALUES (?, ?, ?)", listed)
    con.execute("DELETE FROM listening_state")
    con.execute("INSERT INTO listening_state VALUES (?, ?, ?, ?)", [STORE_FORMAT, c.user_keys, c.source, c.listeners])
    if c.files:
        con.executemany("INSERT INTO event_files VALUES (?, ?, ?, ?, ?, ?, ?)", [[c.ingest_id, *f] for f in c.files])
    # the counts of the song_stats view, from the totals of the staged catalogue's numbers (the
    # view joins the stored catalogue on its text ids: several times slower). Every song ever
    # numbered has one totals row and every catalogue song a number, so when there are as many
    # rows as catalogue songs, they are the catalogue's (no join needed).
    counts = "count(*), count(*) FILTER (WHERE plays > 0), coalesce(sum(events), 0), coalesce(sum(plays), 0)"
    row = con.execute(f"SELECT {counts} FROM song_totals").fetchall()[0]
    if row[0] != con.execute("SELECT count(*) FROM _catalogue").fetchall()[0][0]:
        row = con.execute(f"SELECT {counts} FROM song_totals SEMI JOIN _catalogue USING (song_no)").fetchall()[0]
    n_splits = con.execute("DELETE FROM splits").fetchall()[0][0]  # a DELETE returns how many rows it deleted
    totals = (int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(n_splits))
    con.execute("INSERT INTO ingest_log VALUES ($i, $t, $k, $p, $h, $r)", c.log_row(totals))
    return totals
