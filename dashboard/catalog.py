"""The Catalog page's data: a version's scored catalog from DuckDB, filters, the CSV, the audio.

``hitsong score --catalog`` writes the ``predictions`` table; these loaders read it (through
``hitsong.store.predictions``) with the catalog's titles, markets and release quarters. Plain
functions for tests, plus ``cached_*`` wrappers keyed by the database's modification time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from hitsong.audio import AudioConfig
from hitsong.errors import StoreError

#: Songs that get an audio player under the table.
PLAYERS = 5
#: The segment a player plays: the middle of the song the models hear (paper: 60 s).
SEGMENT_SECONDS = AudioConfig().seconds
#: Columns of the table shown and downloaded, in order.
TABLE_COLUMNS = (
    "rank", "title", "artist", "subset", "release_date", "release_quarter", "genre", "top_tags", "score",
    "percentile", "song_id", "path",
)  # fmt: skip


def scored_versions(db_path: Path) -> pd.DataFrame:
    """``model, version, method, songs, failed, last_scored`` of every version that scored songs.

    Raises
    ------
    StoreError
        No database (the message names the commands that make one).
    """
    from dashboard.data import check_db
    from hitsong.store import connect
    from hitsong.store.predictions import scored_versions as query

    check_db(db_path)
    with connect(db_path, read_only=True) as con:
        return query(con)


def _tags_text(value: object) -> str:
    """``piano .96, solo .47, ...`` from the stored JSON ``[[tag, p], ...]``."""
    if not isinstance(value, str) or not value:
        return ""
    return ", ".join(f"{tag} {p:.2f}" for tag, p in json.loads(value))


def catalog_table(db_path: Path, model: str, version: str) -> pd.DataFrame:
    """The version's scored songs, best first, numbered, with readable top tags (:data:`TABLE_COLUMNS`)."""
    from dashboard.data import check_db
    from hitsong.store import connect
    from hitsong.store.predictions import top_predictions

    check_db(db_path)
    with connect(db_path, read_only=True) as con:
        frame = top_predictions(con, model, version)
    frame["top_tags"] = frame["top_tags"].map(_tags_text)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    frame["release_date"] = pd.to_datetime(frame["release_date"]).dt.date
    return frame.reindex(columns=[*TABLE_COLUMNS, "quarter_index"])


def quarter_order(frame: pd.DataFrame) -> list[str]:
    """The table's release quarters in time order (``-Q2, -Q1, Q1, Q2, ...``)."""
    known = frame.dropna(subset=["release_quarter", "quarter_index"])
    return known.sort_values("quarter_index")["release_quarter"].drop_duplicates().tolist()


def filter_table(
    frame: pd.DataFrame,
    *,
    markets: Sequence[str] = (),
    genres: Sequence[str] = (),
    quarters: Sequence[str] = (),
) -> pd.DataFrame:
    """The rows in the chosen markets, genres and release quarters (an empty choice keeps all)."""
    keep = pd.Series(True, index=frame.index)
    for column, chosen in (("subset", markets), ("genre", genres), ("release_quarter", quarters)):
        if chosen:
            keep &= frame[column].isin(list(chosen))
    return frame[keep]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The table as a UTF-8 CSV file, as the download button sends it."""
    return frame.reindex(columns=list(TABLE_COLUMNS)).to_csv(index=False).encode("utf-8")


def middle_segment(path: str, *, seconds: float = SEGMENT_SECONDS) -> tuple[np.ndarray, int]:
    """The middle ``seconds`` of the song at its own rate, mono float32, for ``st.audio``.

    Raises
    ------
    AudioError
        The file is gone or cannot be decoded.
    """
    import warnings

    from hitsong.audio import decode_middle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short or quiet songs play as they are
        wave, sr, _ = decode_middle(path, seconds=seconds)
    return wave, int(sr)


@st.cache_data(show_spinner=False)
def cached_scored_versions(db_path: Path, version: float) -> pd.DataFrame:
    """``scored_versions`` cached per ``db_version``."""
    return scored_versions(db_path)


@st.cache_data(show_spinner=False)
def cached_catalog_table(db_path: Path, model: str, version: str, db_version: float) -> pd.DataFrame:
    """``catalog_table`` cached per ``db_version``."""
    return catalog_table(db_path, model, version)


@st.cache_data(show_spinner=False, max_entries=2 * PLAYERS)
def cached_middle_segment(path: str, mtime: float) -> tuple[np.ndarray, int]:
    """``middle_segment`` cached per file and modification time."""
    return middle_segment(path)


def file_mtime(path: str) -> float:
    """The file's modification time (the audio cache key); ``StoreError`` when it is gone."""
    try:
        return Path(path).stat().st_mtime
    except OSError as exc:
        raise StoreError(f"the audio file {path} is not readable here ({exc.strerror})") from exc
