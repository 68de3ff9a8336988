"""Aggregation of validated events into per-song and per-subset listening statistics.

The SQL path handles every input; large aggregated Parquet files with integer ids take the
compiled pair counter of :mod:`hitsong.store.pairs` (the same exact result, several times faster).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date

import duckdb
import numpy as np

from hitsong.errors import InputError
from hitsong.store.schema import AGGREGATED_COLUMNS, NOT_CHANGED, UnknownSongs
from hitsong.store.sources import CheckedFile, find_rows, ids_table, rows_text

log = logging.getLogger(__name__)


def aggregate(
    con: duckdb.DuckDBPyConnection,
    checked: list[CheckedFile],
    window_start: date,
    window_end: date | None,
    memory_limit_mb: int,
) -> int:
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
            inside = (
                f"{c.value_sql} >= CAST($ws AS TIMESTAMP) AND "
                f"($we IS NULL OR {c.value_sql} < CAST($we AS TIMESTAMP) + INTERVAL 1 DAY)"
            )
            outside += con.execute(f"SELECT count(*) FILTER (WHERE NOT ({inside})) FROM {name}", bounds).fetchall()[0][
                0
            ]
            selects.append(f"SELECT {u} AS user_id, {s} AS song_id, 1 AS plays FROM {name} WHERE {inside}")
            uses_bounds = True
    key_type = next(iter(id_types["song_id"])) if len(id_types["song_id"]) == 1 else "VARCHAR"
    if key_type == "VARCHAR":
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _song_map AS SELECT song_id AS song_key, song_id, subset FROM _new_songs"
        )
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


KERNEL_MIN_BYTES = 4 << 20  # events files this large may take the compiled path


_KERNEL_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")


_KERNEL_MAX_SONG_RANGE = 1 << 26  # song ids spread wider than this go to SQL (lookup table size)


_KERNEL_BATCH_ROWS = 1 << 22  # rows read at a time (a Parquet row group if not larger)


def _kernel_user_range(
    con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], memory_limit_mb: int
) -> tuple[int, int] | None:
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
        if (
            c.file.shape != "aggregated"
            or src.kind != "parquet"
            or any(src.types[col] not in _KERNEL_TYPES for col in AGGREGATED_COLUMNS)
        ):
            return None
    from hitsong.store.pairs import MAX_USER_BITS, memory_bytes

    lo_hi = [
        c.file.src.relation(con).aggregate(f"min({c.user_sql}), max({c.user_sql})").fetchall()[0] for c in checked
    ]  # Parquet statistics answer this without a scan
    user_lo, user_hi = min(int(x[0]) for x in lo_hi), max(int(x[1]) for x in lo_hi)
    songs = con.execute(
        """SELECT count(*), min(k), max(k), count(DISTINCT subset) FROM (
               SELECT TRY_CAST(song_id AS BIGINT) AS k, subset FROM _new_songs)"""
    ).fetchall()[0]
    song_range = int(songs[2]) - int(songs[1]) + 1 if songs[1] is not None else 1
    need = memory_bytes(
        rows=rows,
        batch_rows=_KERNEL_BATCH_ROWS,
        song_range=song_range,
        user_range=user_hi - user_lo + 1,
        n_subsets=int(songs[3]),
        n_songs=int(songs[0]),
    )
    if (
        (user_hi - user_lo).bit_length() > MAX_USER_BITS
        or song_range > _KERNEL_MAX_SONG_RANGE
        or need > memory_limit_mb << 20
    ):
        log.info("aggregating in SQL: ids too spread out or too many rows for the compiled path")
        return None
    return user_lo, user_hi


def _aggregate_kernel(con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], user_lo: int, user_hi: int) -> None:
    """:func:`aggregate` for aggregated Parquet files with integer ids, via :mod:`hitsong.store.pairs`.

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
                yield np.asarray(part.column(0)), np.asarray(part.column(1)), np.asarray(part.column(2))

    tot = count_pairs(
        batches(),
        song_lut=lut,
        song_lo=song_lo,
        subset_of=subset_of,
        n_subsets=max(1, subsets.size),
        user_lo=user_lo,
        user_hi=user_hi,
        capacity=sum(c.rows for c in checked),
    )
    played = np.flatnonzero(tot.events)
    n_unknown = tot.unknown_ids.size
    agg = pa.table(
        {
            "song_key": np.concatenate([keys[played], tot.unknown_ids]),
            "plays": np.concatenate([tot.plays[played], tot.unknown_plays]),
            "listeners": pa.array(
                np.concatenate([tot.listeners[played], np.zeros(n_unknown, np.int64)]),
                mask=np.arange(played.size + n_unknown) >= played.size,
            ),
            "events": np.concatenate([tot.events[played], tot.unknown_rows]),
            "song_id": pa.array(
                list(np.asarray(smap["song_id"], dtype=object)[played]) + [None] * n_unknown, pa.string()
            ),
        }
    )
    s_idx, u_idx = np.nonzero(tot.subset_users)
    users = pa.table(
        {
            "subset": pa.array(subsets[s_idx] if subsets.size else [], pa.string()),
            "user_id": (u_idx + user_lo).astype(np.int64),
        }
    )
    for name, table in (("_agg", agg), ("_subset_users", users)):
        con.register(f"{name}_arrow", table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")


def count_unknown_songs(
    con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], policy: UnknownSongs
) -> tuple[int, int, int]:
    """``(songs, event rows, plays)`` of events for songs not in the catalogue; raise if ``error``."""
    unknown = con.execute(
        "SELECT count(*), coalesce(sum(events), 0), coalesce(sum(plays), 0) FROM _agg WHERE song_id IS NULL"
    ).fetchall()[0]
    if unknown[0] and policy == "error":
        _raise_unknown(con, checked, int(unknown[0]), int(unknown[1]))
    if unknown[0]:
        log.warning(
            "dropped %d events rows (%d plays) of %d songs not in the songs file", unknown[1], unknown[2], unknown[0]
        )
    return int(unknown[0]), int(unknown[1]), int(unknown[2])


def _raise_unknown(con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], n_songs: int, n_rows: int) -> None:
    examples = [
        r[0]
        for r in con.execute(
            "SELECT CAST(song_key AS VARCHAR) AS k FROM _agg WHERE song_id IS NULL ORDER BY k LIMIT 3"
        ).fetchall()
    ]
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
