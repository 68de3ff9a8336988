"""The song catalogue at ingest: validated into ``_new_songs``, and numbered for the key sets.

Every song and subset that was ever in a catalogue keeps its number (``song_numbers``,
``subset_numbers``): the pair keys of :mod:`hitsong.store.keysets` hold numbers, so a number is
never reused. The staging temp table ``_catalogue(song_id, song_no, subset_no, song_key)`` is the
current catalogue with its numbers (``song_key``: the id as a whole number where it is one, see
``catalogue_numbers`` in :mod:`hitsong.store.schema`); ``_numbers_new`` and ``_subsets_new``
hold what the commit adds.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from hitsong.store.schema import SONG_COLUMNS
from hitsong.store.sources import (
    Source,
    id_checks,
    quote,
    refuse_duplicate_ids,
    require_columns,
    run_checks,
    time_expr,
)


def load_songs(con: duckdb.DuckDBPyConnection, src: Source) -> int:
    """Validate the songs file and load it into the temp table ``_new_songs``; returns its rows."""
    require_columns(src, SONG_COLUMNS, "songs")
    date_sql, date_checks = time_expr(src, "release_date", "DATE")
    sid = quote(src.columns["song_id"])
    checks = [("song_id", *c) for c in id_checks(src, "song_id")]
    checks += [("release_date", *c) for c in date_checks]
    for col in ("subset", "audio_path"):
        c = quote(src.columns[col])
        checks.append((col, f"{c} IS NULL OR trim(CAST({c} AS VARCHAR)) = ''", "is empty", None))
    n_rows = run_checks(con, src, "songs", checks)
    refuse_duplicate_ids(con, src, "songs", "Each song must appear once.")
    base = str(Path(src.path).parent)
    ap = f"trim(CAST({quote(src.columns['audio_path'])} AS VARCHAR))"
    src.relation(con).create_view("_songs_src", replace=True)
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


def number_catalogue(con: duckdb.DuckDBPyConnection) -> None:
    """Number the songs and subsets of ``_new_songs`` that have no number yet.

    Reads the staged ``_numbers(song_id, song_no)`` and ``_subsets(subset, subset_no, listeners)``
    (empty for a new store); writes ``_numbers_new``, ``_subsets_new`` and ``_catalogue``.
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _numbers_new AS
           SELECT n.song_id, CAST((SELECT coalesce(max(song_no), -1) FROM _numbers)
                                  + row_number() OVER () AS INTEGER) AS song_no
           FROM _new_songs n ANTI JOIN _numbers o USING (song_id)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _subsets_new AS
           SELECT s.subset, CAST((SELECT coalesce(max(subset_no), -1) FROM _subsets)
                                 + row_number() OVER (ORDER BY s.subset) AS INTEGER) AS subset_no,
                  CAST(0 AS BIGINT) AS listeners
           FROM (SELECT DISTINCT subset FROM _new_songs) s ANTI JOIN _subsets o USING (subset)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _catalogue AS
           SELECT s.song_id, n.song_no, b.subset_no,
                  CASE WHEN CAST(TRY_CAST(s.song_id AS BIGINT) AS VARCHAR) = s.song_id
                       THEN TRY_CAST(s.song_id AS BIGINT) END AS song_key
           FROM _new_songs s
           JOIN (SELECT song_id, song_no FROM _numbers UNION ALL SELECT song_id, song_no FROM _numbers_new) n
             USING (song_id)
           JOIN (SELECT subset, subset_no FROM _subsets UNION ALL SELECT subset, subset_no FROM _subsets_new) b
             USING (subset)"""
    )
