"""SQL of catalog scoring: the ``predictions`` table and the catalog songs to score.

Table (created on first use)::

    predictions(song_id, path, model, version, method, score, percentile, genre, top_tags,
                error, scored_at)  PRIMARY KEY (model, version, song_id)

- ``song_id``: the catalog's song id, or the audio file's absolute path for a file that is not
  in the catalog (``songs.audio_path``); one row per song and registered version.
- ``score`` (hit-score scale) and ``percentile`` (0..100 within the version's training catalog)
  are NULL when the file could not be scored; ``error`` then says why.
- ``genre``: the tagger's predominant genre; ``top_tags``: JSON ``[[tag, probability], ...]``.

A batch of rows lands in one transaction (:func:`write_rows`), so a scorer killed at any moment
leaves whole rows only; the primary key makes a re-run replace, never duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from hitsong.store import transaction

TABLE = "predictions"

_SCHEMA = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    song_id VARCHAR NOT NULL, path VARCHAR NOT NULL, model VARCHAR NOT NULL, version VARCHAR NOT NULL,
    method VARCHAR, score DOUBLE, percentile DOUBLE, genre VARCHAR, top_tags VARCHAR, error VARCHAR,
    scored_at TIMESTAMP NOT NULL, PRIMARY KEY (model, version, song_id))"""

#: Columns in table order (what :func:`write_rows` writes and the exports keep).
COLUMNS = (
    "song_id", "path", "model", "version", "method", "score", "percentile", "genre", "top_tags", "error", "scored_at",
)  # fmt: skip


@dataclass(frozen=True)
class PredictionRow:
    """One scored (or failed) song of one registered version; ``scored_at`` is set on write."""

    song_id: str
    path: str
    model: str
    version: str
    method: str
    score: float | None
    percentile: float | None
    genre: str | None
    top_tags: str | None
    error: str | None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``predictions`` table if it does not exist."""
    con.execute(_SCHEMA)


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    (n,) = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0]
    return n > 0


def scored(con: duckdb.DuckDBPyConnection, model: str, version: str, *, include_failed: bool = True) -> set[str]:
    """Song ids already in ``predictions`` for this version (failed ones unless ``include_failed`` is false)."""
    if not _has_table(con, TABLE):
        return set()
    rows = con.execute(
        f"SELECT song_id FROM {TABLE} WHERE model = ? AND version = ? AND (? OR error IS NULL)",
        [model, version, include_failed],
    ).fetchall()
    return {r[0] for r in rows}


def write_rows(con: duckdb.DuckDBPyConnection, rows: Sequence[PredictionRow]) -> None:
    """Insert (or replace) ``rows`` in one transaction, stamped with the current time."""
    if not rows:
        return
    with transaction(con):
        con.executemany(
            f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [list(astuple(r)) for r in rows],
        )


def catalog_songs(
    con: duckdb.DuckDBPyConnection, *, subset: str | None = None, released_after: date | None = None
) -> pd.DataFrame:
    """Songs of the catalog to score: ``song_id, subset, release_date, audio_path``.

    Parameters
    ----------
    subset : str or None
        Only this market (``songs.subset``).
    released_after : date or None
        Only songs released on or after this day.

    Ordered newest release first, then by song id.
    """
    if not _has_table(con, "songs"):
        return pd.DataFrame(columns=["song_id", "subset", "release_date", "audio_path"])
    return con.execute(
        """SELECT song_id, subset, release_date, audio_path FROM songs
           WHERE ($subset IS NULL OR subset = $subset) AND ($after IS NULL OR release_date >= $after)
           ORDER BY release_date DESC, song_id""",
        {"subset": subset, "after": released_after},
    ).df()


def song_ids_for_paths(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> dict[str, str]:
    """``audio_path -> song_id`` for the paths that the catalog knows (first song id per path)."""
    if not paths or not _has_table(con, "songs"):
        return {}
    frame = pd.DataFrame({"audio_path": list(paths)})
    con.register("wanted_paths", frame)
    try:
        rows = con.execute(
            "SELECT audio_path, min(song_id) FROM songs SEMI JOIN wanted_paths USING (audio_path) GROUP BY audio_path"
        ).fetchall()
    finally:
        con.unregister("wanted_paths")
    return dict(rows)


def stored_features(
    con: duckdb.DuckDBPyConnection, song_ids: Sequence[str], *, config_hash: str, tagger: str
) -> pd.DataFrame:
    """Songs of ``song_ids`` whose features the feature store holds for this audio config and tagger.

    Returns
    -------
    pandas.DataFrame
        ``song_id, subset, shard, tags (FLOAT[50]), genre``: the shard of the song's log-mel
        (``hitsong.features.layout``) computed with ``config_hash``, and its tag vector from
        ``tagger``. Songs missing either are not listed.
    """
    empty = pd.DataFrame(columns=["song_id", "subset", "shard", "tags", "genre"])
    if not song_ids or not all(_has_table(con, t) for t in ("feature_index", "feature_meta", "song_tags")):
        return empty
    con.register("wanted_songs", pd.DataFrame({"song_id": list(song_ids)}))
    try:
        return con.execute(
            """SELECT i.song_id, i.subset, i.shard, t.tags, t.genre
               FROM feature_index i SEMI JOIN wanted_songs USING (song_id)
               JOIN feature_meta m ON m.subset = i.subset AND m.config_hash = i.config_hash
               JOIN song_tags t ON t.song_id = i.song_id AND t.subset = i.subset AND t.model = ?
               WHERE i.config_hash = ?
               ORDER BY i.song_id""",
            [tagger, config_hash],
        ).df()
    finally:
        con.unregister("wanted_songs")


def export(con: duckdb.DuckDBPyConnection, model: str, version: str, song_ids: Sequence[str], out: Path) -> int:
    """Write this version's rows of ``song_ids`` to ``out`` (``.csv`` or ``.parquet``); return the row count."""
    fmt = "parquet" if out.suffix.lower() == ".parquet" else "csv"
    con.register("export_ids", pd.DataFrame({"song_id": list(song_ids)}))
    try:
        query = (
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} SEMI JOIN export_ids USING (song_id) "
            "WHERE model = ? AND version = ? ORDER BY score DESC NULLS LAST, song_id"
        )
        frame = con.execute(query, [model, version]).df()
    finally:
        con.unregister("export_ids")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    return len(frame)


#: Columns of :func:`top_predictions`.
TOP_COLUMNS = (
    "song_id", "title", "artist", "subset", "release_date", "release_quarter", "quarter_index",
    "score", "percentile", "genre", "top_tags", "path", "scored_at",
)  # fmt: skip


def top_predictions(con: duckdb.DuckDBPyConnection, model: str, version: str) -> pd.DataFrame:
    """This version's scored songs, best first, with the catalog's facts (:data:`TOP_COLUMNS`).

    ``release_quarter``/``quarter_index`` come from ``song_stats`` when the song has listening
    data, else from its release date and the window start (the same rule,
    :mod:`hitsong.store.rules`): a new release is labelled like the songs it is compared with.
    Files outside the catalog have no title, market, release date or quarter.
    """
    from hitsong.store.rules import months_sql, quarter_index_sql, quarter_label_sql

    if not _has_table(con, TABLE):
        return pd.DataFrame(columns=list(TOP_COLUMNS))
    title = "NULL::VARCHAR AS title, NULL::VARCHAR AS artist, NULL::VARCHAR AS subset, NULL::DATE AS release_date"
    quarter, index, joins = "NULL::VARCHAR", "NULL::INTEGER", ""
    if _has_table(con, "songs"):
        title = "s.title, s.artist, s.subset, s.release_date"
        joins = "LEFT JOIN songs s ON s.song_id = p.song_id"
        if _has_table(con, "window"):
            months = months_sql("s.release_date", "w.window_start")
            quarter, index = quarter_label_sql(months), quarter_index_sql(months)
            joins += ' LEFT JOIN (SELECT window_start FROM "window" LIMIT 1) w ON true'
        if _has_table(con, "song_stats"):
            quarter, index = f"coalesce(st.release_quarter, {quarter})", f"coalesce(st.quarter_index, {index})"
            joins += " LEFT JOIN song_stats st ON st.song_id = p.song_id"
    return con.execute(
        f"""SELECT p.song_id, {title}, {quarter} AS release_quarter, {index} AS quarter_index,
                   p.score, p.percentile, p.genre, p.top_tags, p.path, p.scored_at
            FROM {TABLE} p {joins}
            WHERE p.model = ? AND p.version = ? AND p.error IS NULL
            ORDER BY p.score DESC, p.song_id""",
        [model, version],
    ).df()


def scored_versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Which versions scored how many songs: ``model, version, method, songs, failed, last_scored``."""
    if not _has_table(con, TABLE):
        return pd.DataFrame(columns=["model", "version", "method", "songs", "failed", "last_scored"])
    return con.execute(
        f"""SELECT model, version, any_value(method) AS method, count(*) FILTER (WHERE error IS NULL) AS songs,
                   count(*) FILTER (WHERE error IS NOT NULL) AS failed, max(scored_at) AS last_scored
            FROM {TABLE} GROUP BY model, version ORDER BY model, try_cast(version AS INTEGER) DESC"""
    ).df()
