"""Does the pretrained tagger hear each archetype as the genre it is meant to be?

Every archetype names the MagnaTagATune genre tag it should sound like
(:attr:`hitsong.demo.archetypes.Archetype.genre`); the genre view (paper Fig. 4) shows the
tagger's strongest genre tag per song (:func:`hitsong.tagger.predominant_genre`). These
functions compare the two: a confusion table and the share of agreement per archetype.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hitsong.demo.archetypes import ARCHETYPE_NAMES, ARCHETYPES
from hitsong.errors import InputError


def _check(archetypes: Sequence[str], genres: Sequence[str]) -> None:
    if len(archetypes) != len(genres):
        raise InputError(f"{len(archetypes)} archetypes but {len(genres)} genres; give one genre per song")
    unknown = sorted(set(archetypes) - set(ARCHETYPES))
    if unknown:
        raise InputError(f"unknown archetype(s) {unknown}; valid: {', '.join(ARCHETYPES)}")


def genre_confusion(archetypes: Sequence[str], genres: Sequence[str]) -> pd.DataFrame:
    """Songs per (archetype, predominant genre).

    Parameters
    ----------
    archetypes : sequence of str [length N]
        Each song's archetype.
    genres : sequence of str [length N]
        Each song's strongest genre tag.

    Returns
    -------
    pd.DataFrame
        Rows: the archetypes present, in table order. Columns: every archetype's intended
        genre (in table order) then any other genre seen, alphabetically. Counts (int).
    """
    _check(archetypes, genres)
    table = pd.crosstab(pd.Series(list(archetypes), name="archetype"), pd.Series(list(genres), name="genre"))
    intended = [ARCHETYPES[a].genre for a in ARCHETYPE_NAMES]
    columns = list(dict.fromkeys(intended)) + sorted(set(table.columns) - set(intended))
    rows = [a for a in ARCHETYPE_NAMES if a in table.index]
    return table.reindex(index=rows, columns=columns, fill_value=0).astype(int)


def genre_agreement(archetypes: Sequence[str], genres: Sequence[str]) -> pd.Series:
    """Per archetype present, the share of its songs whose strongest genre tag is the intended one."""
    confusion = genre_confusion(archetypes, genres)
    return pd.Series(
        {a: confusion.loc[a, ARCHETYPES[a].genre] / confusion.loc[a].sum() for a in confusion.index},
        name="agreement",
    )


def confusion_markdown(archetypes: Sequence[str], genres: Sequence[str]) -> str:
    """The confusion table as Markdown, with the intended genre and the agreement per row."""
    confusion = genre_confusion(archetypes, genres)
    agreement = genre_agreement(archetypes, genres)
    cols = list(confusion.columns)
    lines = [
        "| archetype (intended genre) | " + " | ".join(cols) + " | agreement |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for a, row in confusion.iterrows():
        lines.append(
            f"| {a} ({ARCHETYPES[a].genre}) | "
            + " | ".join(str(int(row[c])) for c in cols)
            + f" | {agreement[a]:.0%} |"
        )
    return "\n".join(lines)


def demo_genres(demo_dir: str | Path, db_path: str | Path, *, tagger: str = "MTT_musicnn") -> pd.DataFrame:
    """Each demo song's archetype (from ``truth.parquet``) beside the genre the tagger gave it.

    Parameters
    ----------
    demo_dir : str or Path
        The demo folder (``truth.parquet``).
    db_path : str or Path
        The DuckDB file whose feature store holds the songs' tags.
    tagger : str
        The tagger whose tags to read.

    Returns
    -------
    pd.DataFrame
        ``song_id, subset, archetype, genre`` for every tagged demo song (empty before features).
    """
    from hitsong.store import connect, featureindex

    truth = pd.read_parquet(Path(demo_dir) / "truth.parquet", columns=["song_id", "subset", "archetype"])
    with connect(db_path, read_only=True) as con:
        tags = pd.concat(
            [featureindex.tags_frame(con, s, tagger) for s in sorted(truth["subset"].unique())], ignore_index=True
        )
    return truth.merge(tags[["song_id", "genre"]], on="song_id")
