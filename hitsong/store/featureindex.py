"""SQL of the feature store: which shard file holds which song's mel, failures, tag vectors.

Tables (created on first use):

- ``feature_meta(subset, config_hash, config_json, n_mels, n_frames, updated_at)``: the audio
  config the rows of a subset were computed with.
- ``feature_index(song_id, subset, shard, config_hash, padded, silent, truncated, duration,
  native_sr, channels, computed_at)``: a song whose mel is stored; ``shard`` is its file relative
  to the store (``hitsong.features.layout``). A row is committed only after the worker wrote and
  synced the shard, so every index row points at complete data.
- ``feature_failures(song_id, subset, audio_path, error, failed_at)``: the last error of songs
  that could not be computed; removed when the song later succeeds.
- ``song_tags(song_id, subset, model, tags FLOAT[50], genre)``: the tagger's song-level vector
  and predominant genre.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from hitsong.store import transaction

#: Length of a tag vector (the MagnaTagATune-50 vocabulary).
N_TAGS = 50

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS feature_meta (
        subset VARCHAR PRIMARY KEY, config_hash VARCHAR NOT NULL, config_json VARCHAR NOT NULL,
        n_mels INTEGER NOT NULL, n_frames INTEGER NOT NULL, updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS feature_index (
        song_id VARCHAR NOT NULL, subset VARCHAR NOT NULL, shard VARCHAR NOT NULL,
        config_hash VARCHAR NOT NULL, padded BOOLEAN NOT NULL, silent BOOLEAN NOT NULL,
        truncated BOOLEAN NOT NULL, duration DOUBLE NOT NULL, native_sr INTEGER NOT NULL,
        channels INTEGER NOT NULL, computed_at TIMESTAMP NOT NULL,
        PRIMARY KEY (song_id, subset))""",
    """CREATE TABLE IF NOT EXISTS feature_failures (
        song_id VARCHAR NOT NULL, subset VARCHAR NOT NULL, audio_path VARCHAR,
        error VARCHAR NOT NULL, failed_at TIMESTAMP NOT NULL, PRIMARY KEY (song_id, subset))""",
    f"""CREATE TABLE IF NOT EXISTS song_tags (
        song_id VARCHAR NOT NULL, subset VARCHAR NOT NULL, model VARCHAR NOT NULL,
        tags FLOAT[{N_TAGS}] NOT NULL, genre VARCHAR, PRIMARY KEY (song_id, subset, model))""",
)


@dataclass(frozen=True)
class IndexRow:
    """One computed song: its mel's shard file (relative to the store) and its flags."""

    song_id: str
    subset: str
    shard: str
    config_hash: str
    padded: bool
    silent: bool
    truncated: bool
    duration: float
    native_sr: int
    channels: int


@dataclass(frozen=True)
class TagRow:
    """One song's tag vector (``N_TAGS`` floats) and predominant genre."""

    song_id: str
    subset: str
    model: str
    tags: tuple[float, ...]
    genre: str | None


@dataclass(frozen=True)
class FailureRow:
    """One song that could not be computed."""

    song_id: str
    subset: str
    audio_path: str
    error: str


@dataclass(frozen=True)
class SubsetMeta:
    """The audio config a subset's rows were computed with (``config``: its ``to_dict`` document)."""

    config_hash: str
    n_mels: int
    n_frames: int
    config: dict[str, Any]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the feature tables if they do not exist.

    An index of the earlier one-array layout (a ``row`` column instead of ``shard``) is dropped
    with the subsets' configs, so every subset is recomputed into shards. Returns whether that
    happened.
    """
    legacy = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'feature_index' AND column_name = 'row'"
    ).fetchall()[0][0]
    if legacy:
        with transaction(con):
            con.execute("DROP TABLE feature_index")
            con.execute("DROP TABLE IF EXISTS feature_meta")
    for sql in _SCHEMA:
        con.execute(sql)
    return bool(legacy)


def subset_meta(con: duckdb.DuckDBPyConnection, subset: str) -> SubsetMeta | None:
    """The stored config of ``subset``, or ``None`` if it was never computed."""
    row = con.execute(
        "SELECT config_hash, n_mels, n_frames, config_json FROM feature_meta WHERE subset = ?", [subset]
    ).fetchone()
    return None if row is None else SubsetMeta(row[0], int(row[1]), int(row[2]), json.loads(row[3]))


def reset_subset(
    con: duckdb.DuckDBPyConnection, subset: str, *, config_hash: str, config_json: str, n_mels: int, n_frames: int
) -> int:
    """Forget every row and tag vector of ``subset`` and record a new config (one transaction).

    Tag vectors go too: the tagger's window is part of the config, so old vectors no longer fit.

    Returns
    -------
    int
        Index rows deleted.
    """
    with transaction(con):
        (n,) = con.execute("SELECT count(*) FROM feature_index WHERE subset = ?", [subset]).fetchall()[0]
        con.execute("DELETE FROM feature_index WHERE subset = ?", [subset])
        con.execute("DELETE FROM song_tags WHERE subset = ?", [subset])
        con.execute(
            "INSERT OR REPLACE INTO feature_meta VALUES (?, ?, ?, ?, ?, now())",
            [subset, config_hash, config_json, n_mels, n_frames],
        )
    return int(n)


def index_rows(con: duckdb.DuckDBPyConnection, subset: str, config_hash: str) -> dict[str, str]:
    """``song_id -> shard`` of the committed rows of ``subset`` computed with ``config_hash``."""
    rows = con.execute(
        "SELECT song_id, shard FROM feature_index WHERE subset = ? AND config_hash = ?", [subset, config_hash]
    ).fetchall()
    return {str(song_id): str(shard) for song_id, shard in rows}


def tagged_songs(con: duckdb.DuckDBPyConnection, subset: str, model: str) -> set[str]:
    """Songs of ``subset`` that have a tag vector from ``model``."""
    rows = con.execute("SELECT song_id FROM song_tags WHERE subset = ? AND model = ?", [subset, model]).fetchall()
    return {r[0] for r in rows}


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    computed: Sequence[IndexRow],
    tags: Sequence[TagRow],
    failures: Sequence[FailureRow],
) -> None:
    """Record a batch of results in one transaction.

    Computed songs get (or replace) their index row and lose any failure record; failed songs
    get (or replace) their failure record.
    """
    with transaction(con):
        if computed:
            con.executemany(
                "INSERT OR REPLACE INTO feature_index VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [
                    [
                        r.song_id,
                        r.subset,
                        r.shard,
                        r.config_hash,
                        r.padded,
                        r.silent,
                        r.truncated,
                        r.duration,
                        r.native_sr,
                        r.channels,
                    ]
                    for r in computed
                ],
            )
            con.executemany(
                "DELETE FROM feature_failures WHERE song_id = ? AND subset = ?",
                [[r.song_id, r.subset] for r in computed],
            )
        if tags:
            con.executemany(
                "INSERT OR REPLACE INTO song_tags VALUES (?, ?, ?, ?, ?)",
                [[t.song_id, t.subset, t.model, list(t.tags), t.genre] for t in tags],
            )
        if failures:
            con.executemany(
                "INSERT OR REPLACE INTO feature_failures VALUES (?, ?, ?, ?, now())",
                [[f.song_id, f.subset, f.audio_path, f.error] for f in failures],
            )


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    (n,) = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0]
    return n > 0


def failure_frame(con: duckdb.DuckDBPyConnection, subset: str | None = None) -> pd.DataFrame:
    """Recorded failures (song_id, subset, audio_path, error, failed_at), optionally of one subset."""
    if not _has_table(con, "feature_failures"):
        return pd.DataFrame(columns=["song_id", "subset", "audio_path", "error", "failed_at"])
    sql = "SELECT * FROM feature_failures WHERE (? IS NULL OR subset = ?) ORDER BY subset, song_id"
    return con.execute(sql, [subset, subset]).df()


def index_frame(con: duckdb.DuckDBPyConnection, subset: str) -> pd.DataFrame:
    """The committed rows of ``subset`` with the current config (song_id, shard, flags...)."""
    if not _has_table(con, "feature_index") or not _has_table(con, "feature_meta"):
        return pd.DataFrame(columns=["song_id", "shard", "padded"])
    return con.execute(
        """SELECT i.* FROM feature_index i JOIN feature_meta m
           ON i.subset = m.subset AND i.config_hash = m.config_hash
           WHERE i.subset = ? ORDER BY i.song_id""",
        [subset],
    ).df()


def tags_frame(con: duckdb.DuckDBPyConnection, subset: str, model: str) -> pd.DataFrame:
    """Tag vectors of ``subset`` from ``model`` (song_id, tags, genre)."""
    if not _has_table(con, "song_tags"):
        return pd.DataFrame(columns=["song_id", "tags", "genre"])
    return con.execute(
        "SELECT song_id, tags, genre FROM song_tags WHERE subset = ? AND model = ? ORDER BY song_id",
        [subset, model],
    ).df()


def subset_meta_readonly(con: duckdb.DuckDBPyConnection, subset: str) -> SubsetMeta | None:
    """Like :func:`subset_meta`, for a read-only connection that may predate the tables."""
    return subset_meta(con, subset) if _has_table(con, "feature_meta") else None
