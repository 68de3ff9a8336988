"""Read-only queries of the listening store: summaries, the sampled songs, figure data.

Each opens a short read-only connection (``hitsong.store.connect``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from hitsong.errors import ConfigError, StoreError
from hitsong.store import connect
from hitsong.store.schema import SPLITS


def _relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the database's tables and views."""
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def require_ingested(con: duckdb.DuckDBPyConnection, db_path: str | Path) -> None:
    """Raise unless the store holds listening data; reads no per-song rows (``song_stats`` is a
    view over the whole catalogue, so counting it would compute it)."""
    names = _relations(con)
    if "song_totals" in names:
        query = 'SELECT (SELECT count(*) FROM song_totals) > 0 AND (SELECT count(*) FROM "window") > 0'
    else:  # a store of an earlier layout, song_stats a table
        query = "SELECT count(*) > 0 FROM song_stats" if "song_stats" in names else ""
    if not query or not con.execute(query).fetchall()[0][0]:
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
        require_ingested(con, db_path)
        listeners = "subset_numbers" if "subset_numbers" in _relations(con) else "subset_stats"
        return con.execute(
            f"""WITH h AS (  -- one pass over song_stats
                   SELECT subset, count(*) AS songs, count(*) FILTER (WHERE playcount > 0) AS songs_played,
                          CAST(sum(events) AS BIGINT) AS events, CAST(sum(playcount) AS BIGINT) AS plays,
                          min(hit_score) AS hit_min, quantile_cont(hit_score, [0.25, 0.5, 0.75, 0.9]) AS q,
                          max(hit_score) AS hit_max
                   FROM song_stats GROUP BY subset),
               sp AS (
                   SELECT subset, count(*) FILTER (WHERE split = 'train') AS train,
                          count(*) FILTER (WHERE split = 'val') AS val,
                          count(*) FILTER (WHERE split = 'test') AS test
                   FROM splits GROUP BY subset)
               SELECT h.subset, h.songs, h.songs_played, b.listeners, h.events, h.plays,
                      h.hit_min, h.q[1] AS hit_q25, h.q[2] AS hit_median, h.q[3] AS hit_q75,
                      h.q[4] AS hit_q90, h.hit_max,
                      coalesce(sp.train, 0) AS train, coalesce(sp.val, 0) AS val, coalesce(sp.test, 0) AS test
               FROM h LEFT JOIN {listeners} b USING (subset) LEFT JOIN sp USING (subset)
               ORDER BY h.subset"""
        ).df()


def check_split_name(split: str | None) -> None:
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
    check_split_name(split)
    with connect(db_path, read_only=True) as con:
        require_ingested(con, db_path)
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
        require_ingested(con, db_path)
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
        require_ingested(con, db_path)
        return con.execute(
            """SELECT st.song_id, st.subset, st.hit_score, sp.split
               FROM song_stats st LEFT JOIN splits sp USING (song_id) ORDER BY st.subset, st.song_id"""
        ).df()


def window(db_path: str | Path) -> tuple[date, date | None]:
    """The observation window ``(start, end)`` of the ingested data."""
    with connect(db_path, read_only=True) as con:
        require_ingested(con, db_path)
        row = con.execute('SELECT window_start, window_end FROM "window"').fetchall()[0]
    return row[0], row[1]


@dataclass(frozen=True)
class SampleRecord:
    """How the current sample was drawn: the last row of ``sample_log``."""

    created_at: datetime
    per_subset: int
    seed: int
    fractions: tuple[float, ...]
    by: str


def last_sample(db_path: str | Path) -> SampleRecord | None:
    """The last ``hitsong sample`` of the store (``None`` before the first).

    Its ``by`` (``random``, ``release_date`` or ``artist``) is the split method that training
    records in every run and in the data version.
    """
    with connect(db_path, read_only=True) as con:
        require_ingested(con, db_path)
        rows = con.execute(
            "SELECT created_at, per_subset, seed, fractions, sample_by FROM sample_log "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ).fetchall()
    if not rows:
        return None
    created, per_subset, seed, fractions, by = rows[0]
    split = tuple(float(f) for f in str(fractions).split(","))
    return SampleRecord(created, int(per_subset), int(seed), split, str(by))
