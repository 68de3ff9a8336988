"""Aggregation of one ingest's new events files: per-song sums and the keys of their listeners.

What comes out (:class:`Delta`) is all an ingest needs from the new files: per catalogue song
the summed plays and event rows, the distinct (song, user) pairs with plays and the distinct
(subset, user) pairs with plays, as the keys of :mod:`hitsong.store.keysets`. Which of those
keys are new to the store decides the listener counts; the earlier files are never read again.

The SQL path handles every input. Aggregated Parquet files with whole-number ids (users
numbered by their ids) take the compiled pair counter of :mod:`hitsong.store.pairs`, or NumPy
below ``_KERNEL_MIN_ROWS`` rows in a process that has not loaded the compiler yet (a daily
append in a fresh process: no compiler start-up); all three give the same exact result (tests
compare them).
Both need the staging temp table ``_catalogue(song_id, song_no, subset_no, song_key)`` and, for
stores that number users through a dictionary, ``_user_map(user_id, user_no)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np

from hitsong.errors import InputError
from hitsong.store import keysets
from hitsong.store.events import CheckedFile
from hitsong.store.schema import AGGREGATED_COLUMNS, NOT_CHANGED, UnknownSongs
from hitsong.store.sources import MAX_COUNT, find_rows, ids_table, quote, rows_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delta:
    """The new files' contribution, by song and subset number.

    Attributes
    ----------
    song_no, plays, events, listeners : np.ndarray [shape=(n_touched,), int64]
        Catalogue songs with at least one event row (sorted), their summed plays and event rows,
        and their distinct users with plays in the new files (new listeners of an empty store).
    pair_keys : np.ndarray [shape=(n_pairs,), int64]
        Distinct ``song_no << 32 | user_no`` with plays > 0, sorted.
    subset_user_keys : np.ndarray [shape=(n,), int64]
        Distinct ``subset_no << 32 | user_no`` with plays > 0, sorted.
    outside : int
        Plays outside the observation window (dropped).
    unknown : (songs, rows, plays)
        Events of songs not in the catalogue (dropped, or an error before this is returned).
    """

    song_no: np.ndarray
    plays: np.ndarray
    events: np.ndarray
    listeners: np.ndarray
    pair_keys: np.ndarray
    subset_user_keys: np.ndarray
    outside: int = 0
    unknown: tuple[int, int, int] = field(default=(0, 0, 0))


def aggregate(
    con: duckdb.DuckDBPyConnection,
    checked: list[CheckedFile],
    *,
    user_numbers: bool,
    window_start: date,
    window_end: date | None,
    memory_limit_mb: int,
    unknown_songs: UnknownSongs,
) -> Delta:
    """Aggregate the validated new events files (see the module docstring).

    ``user_numbers``: user ids are their own numbers (else ``_user_map`` numbers them). Plays of
    one-row-per-play files outside ``[window_start, window_end]`` are dropped and counted.

    Raises
    ------
    InputError
        Events of songs not in the catalogue (``unknown_songs="error"``), or play counts whose
        sum per song would not fit 64 bits.
    """
    if user_numbers and _integer_parquet(con, checked):
        catalogue = _song_lut(con)
        small = sum(c.rows for c in checked) < _KERNEL_MIN_ROWS
        if not small or keysets.compiled_loaded():
            user_range = _kernel_user_range(con, checked, catalogue, memory_limit_mb)
            if user_range is not None:
                return _aggregate_kernel(con, checked, catalogue, *user_range, unknown_songs)
        if small:
            return _aggregate_numpy(con, checked, catalogue, unknown_songs)
    return _aggregate_sql(con, checked, user_numbers, window_start, window_end, unknown_songs)


#: Song id types of events that find their songs by ``_catalogue.song_key`` (the whole-number ids
#: of the catalogue as BIGINT): every value of these fits BIGINT.
_SONG_KEY_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")


def needs_song_ids(checked: list[CheckedFile]) -> bool:
    """Whether aggregating these files matches song ids as text (``_catalogue.song_id``): ids of
    text, of wider integer types or of several types; whole-number ids use ``song_key``."""
    types = {c.file.src.types["song_id"] for c in checked}
    return len(types) > 1 or not types <= set(_SONG_KEY_TYPES)


def _song_map(con: duckdb.DuckDBPyConnection, key_type: str) -> None:
    """``_song_map(song_key, song_no, subset_no)``: the catalogue keyed like the events' song ids.

    Integer ids: '7' in the songs file matches 7 in the events, '007' does not (``song_key``
    holds the ids that are whole numbers written plainly; they fit BIGINT).
    """
    if key_type in _SONG_KEY_TYPES:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _song_map AS
                SELECT CAST(song_key AS {key_type}) AS song_key, song_no, subset_no FROM _catalogue
                WHERE TRY_CAST(song_key AS {key_type}) IS NOT NULL"""
        )
    elif key_type == "VARCHAR":
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _song_map AS SELECT song_id AS song_key, song_no, subset_no FROM _catalogue"
        )
    else:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _song_map AS
                SELECT TRY_CAST(song_id AS {key_type}) AS song_key, song_no, subset_no FROM _catalogue
                WHERE CAST(TRY_CAST(song_id AS {key_type}) AS VARCHAR) = song_id"""
        )


def _keys(con: duckdb.DuckDBPyConnection, sql: str) -> np.ndarray:
    return np.asarray(con.execute(sql).fetchnumpy()["k"], dtype=np.int64)


def _aggregate_sql(
    con: duckdb.DuckDBPyConnection,
    checked: list[CheckedFile],
    user_numbers: bool,
    window_start: date,
    window_end: date | None,
    unknown_songs: UnknownSongs,
) -> Delta:
    """:func:`aggregate` in SQL: one pass for per-song sums, one for the distinct pairs."""
    song_types = {c.file.src.types["song_id"] for c in checked}
    bounds = {"ws": window_start, "we": window_end}
    selects, outside, uses_bounds = [], 0, False
    for i, c in enumerate(checked):
        name = f"_ev{i}"
        c.file.src.relation(con).create_view(name, replace=True)
        u = f"CAST({c.user_sql} AS BIGINT)" if user_numbers else f"CAST({c.user_sql} AS VARCHAR)"
        s = c.song_sql if len(song_types) == 1 else f"CAST({c.song_sql} AS VARCHAR)"
        if c.file.shape == "aggregated":
            selects.append(f"SELECT {u} AS user_id, {s} AS song_id, {c.value_sql} AS plays FROM {name}")
        else:
            inside = (
                f"{c.value_sql} >= CAST($ws AS TIMESTAMP) AND "
                f"($we IS NULL OR {c.value_sql} < CAST($we AS TIMESTAMP) + INTERVAL 1 DAY)"
            )
            outside += con.execute(f"SELECT count(*) FILTER (WHERE NOT ({inside})) FROM {name}", bounds).fetchall()[0][
                0
            ]
            selects.append(f"SELECT {u} AS user_id, {s} AS song_id, 1 AS plays FROM {name} WHERE {inside}")
            uses_bounds = True
    _song_map(con, next(iter(song_types)) if len(song_types) == 1 else "VARCHAR")
    events = "(" + " UNION ALL ".join(selects) + ")"
    params = bounds if uses_bounds else None
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _per_song AS
            SELECT k.*, m.song_no FROM (
                SELECT song_id AS song_key, sum(CAST(plays AS HUGEINT)) AS plays, count(*) AS events
                FROM {events} GROUP BY ALL) k
            LEFT JOIN _song_map m USING (song_key)""",
        params,
    )
    unknown = _count_unknown(con, checked, unknown_songs)
    _check_sums(con, checked)

    user = "e.user_id" if user_numbers else "um.user_no"
    join_users = "" if user_numbers else "JOIN _user_map um ON um.user_id = e.user_id"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _pairs AS
            SELECT DISTINCT m.song_no, m.subset_no, {user} AS user_no
            FROM {events} e JOIN _song_map m ON m.song_key = e.song_id {join_users}
            WHERE e.plays > 0""",
        params,
    )
    pair_keys = _keys(con, "SELECT (CAST(song_no AS BIGINT) << 32) | user_no AS k FROM _pairs ORDER BY k")
    sums = con.execute(
        """SELECT p.song_no, CAST(p.plays AS BIGINT) AS plays, p.events, coalesce(l.n, 0) AS listeners
           FROM _per_song p LEFT JOIN (SELECT song_no, count(*) AS n FROM _pairs GROUP BY song_no) l USING (song_no)
           WHERE p.song_no IS NOT NULL ORDER BY p.song_no"""
    ).fetchnumpy()
    subset_keys = _keys(
        con,
        "SELECT k FROM (SELECT DISTINCT (CAST(subset_no AS BIGINT) << 32) | user_no AS k FROM _pairs) ORDER BY k",
    )
    for i in range(len(checked)):
        con.execute(f"DROP VIEW IF EXISTS _ev{i}")
    con.execute("DROP TABLE _pairs")
    return Delta(
        song_no=np.asarray(sums["song_no"], dtype=np.int64),
        plays=np.asarray(sums["plays"], dtype=np.int64),
        events=np.asarray(sums["events"], dtype=np.int64),
        listeners=np.asarray(sums["listeners"], dtype=np.int64),
        pair_keys=pair_keys,
        subset_user_keys=subset_keys,
        outside=int(outside),
        unknown=unknown,
    )


def _check_sums(con: duckdb.DuckDBPyConnection, checked: list[CheckedFile]) -> None:
    """Per-song sums of the new files must fit BIGINT (each value already does)."""
    row = con.execute(
        "SELECT CAST(song_key AS VARCHAR), plays FROM _per_song WHERE plays > $m ORDER BY plays DESC LIMIT 1",
        {"m": MAX_COUNT},
    ).fetchall()
    if row:
        files = ", ".join(c.file.src.path for c in checked)
        raise InputError(
            f"events file(s) {files}, column 'play_count': the plays of song {row[0][0]!r} add up to {row[0][1]}, "
            f"more than {MAX_COUNT}, the largest play count the store holds. Check the play counts. {NOT_CHANGED}"
        )


_KERNEL_MIN_ROWS = 1_000_000  # smaller inputs take NumPy unless the compiled loops are loaded


KERNEL_MIN_BYTES = 4 << 20  # events files this large may take the compiled path


_KERNEL_TYPES = _SONG_KEY_TYPES


_KERNEL_MAX_SONG_RANGE = 1 << 26  # song ids spread wider than this go to SQL (lookup table size)


_KERNEL_BATCH_ROWS = 1 << 22  # rows read at a time (a Parquet row group if not larger)


def _integer_parquet(con: duckdb.DuckDBPyConnection, checked: list[CheckedFile]) -> bool:
    """Whether every file is local aggregated Parquet with whole-number ids and counts whose
    per-song sums cannot overflow (else the SQL path, which checks sums exactly)."""
    rows = sum(c.rows for c in checked)
    for c in checked:
        src = c.file.src
        if (
            c.file.shape != "aggregated"
            or src.kind != "parquet"
            or src.hive
            or "://" in src.path
            or any(src.types[col] not in _KERNEL_TYPES for col in AGGREGATED_COLUMNS)
        ):
            return False
    top = [_min_max(con, c, "play_count", quote(c.file.src.columns["play_count"]))[1] for c in checked]
    return max(int(x or 0) for x in top) * rows <= MAX_COUNT


def _min_max(con: duckdb.DuckDBPyConnection, c: CheckedFile, column: str, sql: str) -> tuple:
    """Smallest and largest value of a Parquet file's ``column`` (``sql`` selects it), from the
    file's row group statistics (no scan; pyarrow reads them in microseconds, a DuckDB query
    costs ~1-2 ms), or from DuckDB when a row group lacks them."""
    import pyarrow.parquet as pq

    name = c.file.src.columns[column]
    meta = pq.read_metadata(c.file.src.path)
    found: list[tuple] = []
    for i in range(meta.num_row_groups if sql == quote(name) else 0):
        group = meta.row_group(i)
        chunks = [group.column(j) for j in range(group.num_columns)]
        stats = next((k.statistics for k in chunks if k.path_in_schema == name), None)
        if stats is None or not stats.has_min_max:
            found = []
            break
        found.append((stats.min, stats.max))
    if found:
        return min(lo for lo, _ in found), max(hi for _, hi in found)
    return tuple(c.file.src.relation(con).aggregate(f"min({sql}), max({sql})").fetchall()[0])


_SongLut = tuple[np.ndarray, int, np.ndarray]  # (lut, song_lo, subset_of): see _song_lut


def _song_lut(con: duckdb.DuckDBPyConnection) -> _SongLut:
    """``(lut, song_lo, subset_of)``: song number of integer song id ``song_lo + k`` at ``lut[k]``
    (-1: not in the catalogue), and the subset number of each song number."""
    smap = con.execute("SELECT song_key, song_no, subset_no FROM _catalogue WHERE song_key IS NOT NULL").fetchnumpy()
    keys = np.asarray(smap["song_key"], dtype=np.int64)
    song_no = np.asarray(smap["song_no"], dtype=np.int64)
    song_lo = int(keys.min()) if keys.size else 0
    lut = np.full(int(keys.max()) - song_lo + 1 if keys.size else 1, -1, np.int32)
    lut[keys - song_lo] = song_no.astype(np.int32)
    subset_of = np.zeros(int(song_no.max()) + 1 if song_no.size else 1, np.int64)
    subset_of[song_no] = np.asarray(smap["subset_no"], dtype=np.int64)
    return lut, song_lo, subset_of


def _aggregate_numpy(
    con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], catalogue: _SongLut, policy: UnknownSongs
) -> Delta:
    """:func:`aggregate` for a small aggregated Parquet input with integer ids, in NumPy."""
    lut, song_lo, subset_of = catalogue
    cols = []
    for c in checked:
        names = [quote(c.file.src.columns[n]) for n in AGGREGATED_COLUMNS]
        got = c.file.src.relation(con).project(", ".join(f"CAST({n} AS BIGINT)" for n in names)).fetchnumpy()
        cols.append([np.asarray(v, dtype=np.int64) for v in got.values()])
    users, songs, counts = (np.concatenate([c[i] for c in cols]) for i in range(3))
    k = songs - song_lo
    song_no = np.full(songs.shape[0], -1, np.int64)
    fits = (k >= 0) & (k < lut.shape[0])
    song_no[fits] = lut[k[fits]]
    known = song_no >= 0
    if not known.all():
        ids = keysets.distinct(songs[~known])
        unknown = (int(ids.size), int((~known).sum()), int(counts[~known].sum()))
        _unknown(con, checked, policy, unknown, [str(i) for i in ids[:3]])
    else:
        unknown = (0, 0, 0)
    song_no, users, counts = song_no[known], users[known], counts[known]
    n = subset_of.shape[0]
    events = np.bincount(song_no, minlength=n).astype(np.int64)
    plays = np.zeros(n, np.int64)
    np.add.at(plays, song_no, counts)
    played = counts > 0
    pairs = keysets.distinct((song_no[played] << 32) | users[played])
    listeners = np.bincount(pairs >> 32, minlength=n).astype(np.int64)
    touched = np.flatnonzero(events)
    return Delta(
        song_no=touched.astype(np.int64),
        plays=plays[touched],
        events=events[touched],
        listeners=listeners[touched],
        pair_keys=pairs,
        subset_user_keys=keysets.distinct((subset_of[pairs >> 32] << 32) | (pairs & 0xFFFFFFFF)),
        unknown=unknown,
    )


def _kernel_user_range(
    con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], catalogue: _SongLut, memory_limit_mb: int
) -> tuple[int, int] | None:
    """``(min, max)`` user id when the compiled path applies, else ``None``.

    It applies to files that pass :func:`_integer_parquet` with user and song ids in compact
    ranges, sums that cannot overflow, and a footprint within ``memory_limit_mb`` (see
    :func:`hitsong.store.pairs.memory_bytes`).
    """
    rows = sum(c.rows for c in checked)
    from hitsong.store.pairs import MAX_USER_BITS, memory_bytes

    stats = [_min_max(con, c, "user_id", c.user_sql) for c in checked]
    user_lo, user_hi = min(int(x[0]) for x in stats), max(int(x[1]) for x in stats)
    lut, _, subset_of = catalogue
    need = memory_bytes(
        rows=rows,
        batch_rows=_KERNEL_BATCH_ROWS,
        song_range=lut.shape[0],
        user_range=user_hi - user_lo + 1,
        n_subsets=int(subset_of.max(initial=0)) + 1,
        n_songs=subset_of.shape[0],
    )
    if (
        (user_hi - user_lo).bit_length() > MAX_USER_BITS
        or lut.shape[0] > _KERNEL_MAX_SONG_RANGE
        or need > memory_limit_mb << 20
    ):
        log.info("not the compiled path: ids too spread out, or too many rows for the memory limit")
        return None
    return user_lo, user_hi


def _aggregate_kernel(
    con: duckdb.DuckDBPyConnection,
    checked: list[CheckedFile],
    catalogue: _SongLut,
    user_lo: int,
    user_hi: int,
    policy: UnknownSongs,
) -> Delta:
    """:func:`aggregate` for aggregated Parquet files with integer ids, via :mod:`hitsong.store.pairs`
    (below ``_KERNEL_MIN_ROWS`` rows all at once on one thread, else in batches on two)."""
    import pyarrow.parquet as pq

    from hitsong.store.pairs import count_pairs
    from hitsong.store.smallpairs import count_pairs_small

    rows = sum(c.rows for c in checked)
    log.info("aggregating %d event rows with the compiled pair counter", rows)
    lut, song_lo, subset_of = catalogue
    n_subsets = int(subset_of.max()) + 1 if subset_of.size else 1

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
                yield np.asarray(part.column(0)), np.asarray(part.column(1)), np.asarray(part.column(2))

    lookups: dict[str, Any] = {  # the song and user numbering both counters take
        "song_lut": lut,
        "song_lo": song_lo,
        "subset_of": subset_of,
        "n_subsets": n_subsets,
        "user_lo": user_lo,
        "user_hi": user_hi,
    }
    if rows < _KERNEL_MIN_ROWS:  # each file whole, in one read (~3x faster than by row group)
        tables = [
            pq.ParquetFile(c.file.src.path).read(columns=[c.file.src.columns[name] for name in AGGREGATED_COLUMNS])
            for c in checked
        ]
        users, songs, counts = (
            np.concatenate([t.column(i).to_numpy() for t in tables] or [np.zeros(0, np.int64)]) for i in range(3)
        )
        tot = count_pairs_small(users, songs, counts, **lookups)
    else:
        tot = count_pairs(batches(), **lookups, capacity=rows)
    unknown = (int(tot.unknown_ids.size), int(tot.unknown_rows.sum()), int(tot.unknown_plays.sum()))
    if unknown[0]:
        examples = [str(i) for i in tot.unknown_ids[:3]]
        _unknown(con, checked, policy, unknown, examples)
    touched = np.flatnonzero(tot.events)
    s_idx, u_idx = np.nonzero(tot.subset_users)
    return Delta(
        song_no=touched.astype(np.int64),
        plays=tot.plays[touched],
        events=tot.events[touched],
        listeners=tot.listeners[touched],
        pair_keys=tot.pair_keys,
        subset_user_keys=(s_idx.astype(np.int64) << 32) | (u_idx.astype(np.int64) + user_lo),
        unknown=unknown,
    )


def _count_unknown(
    con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], policy: UnknownSongs
) -> tuple[int, int, int]:
    """``(songs, event rows, plays)`` of ``_per_song`` rows for songs not in the catalogue."""
    row = con.execute(
        "SELECT count(*), coalesce(sum(events), 0), coalesce(sum(plays), 0) FROM _per_song WHERE song_no IS NULL"
    ).fetchall()[0]
    unknown = (int(row[0]), int(row[1]), int(row[2]))
    if unknown[0]:
        examples = [
            r[0]
            for r in con.execute(
                "SELECT CAST(song_key AS VARCHAR) AS k FROM _per_song WHERE song_no IS NULL ORDER BY k LIMIT 3"
            ).fetchall()
        ]
        _unknown(con, checked, policy, unknown, examples)
    return unknown


def _unknown(
    con: duckdb.DuckDBPyConnection,
    checked: list[CheckedFile],
    policy: UnknownSongs,
    unknown: tuple[int, int, int],
    examples: list[str],
) -> None:
    """Raise for unknown songs (``policy="error"``, naming file, column and rows), or log the drop."""
    n_songs, n_rows, n_plays = unknown
    if policy != "error":
        log.warning("dropped %d events rows (%d plays) of %d songs not in the songs file", n_rows, n_plays, n_songs)
        return
    table = ids_table(con, examples)
    for c in checked:
        ev = c.file
        rows = find_rows(con, ev.src, f"CAST({c.song_sql} AS VARCHAR) IN (SELECT i FROM {table})")
        if rows:
            raise InputError(
                f"events file {ev.src.path}, column {ev.src.columns['song_id']!r}: {n_rows} event rows "
                f"name {n_songs} song id(s) not in the songs file, e.g. "
                f"{', '.join(repr(e) for e in examples)} ({rows_text(ev.src, rows, n_rows)}). Add the "
                f"songs to the songs file, or drop these events with --drop-unknown. {NOT_CHANGED}"
            )
    raise InputError(
        f"{n_rows} event rows name {n_songs} song id(s) not in the songs file, e.g. "
        f"{examples}. Use --drop-unknown to drop them. {NOT_CHANGED}"
    )
