"""The experiment sample: the top-N songs per subset by playcount and their train/val/test split."""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hitsong.errors import ConfigError, StoreError
from hitsong.store import connect, transaction
from hitsong.store.read import require_ingested
from hitsong.store.schema import SPLITS

log = logging.getLogger(__name__)


SampleBy = Literal["random", "release_date"]


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """Sizes of the splits of ``n`` songs: floors, the remainder to the largest remainders.

    >>> split_counts(10000, (0.8, 0.1, 0.1))
    (8000, 1000, 1000)
    """
    raw = [n * f for f in fractions]
    counts = [math.floor(r + 1e-9) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions: three numbers >= 0 summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not math.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"split must be three fractions >= 0 for train, val, test summing to 1, got {fractions!r}")
    return fr[0], fr[1], fr[2]


def sample(
    db_path: str | Path,
    *,
    per_subset: int,
    seed: int,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    by: SampleBy = "random",
) -> pd.DataFrame:
    """Pick the experiment sample and split it into train/val/test (replaces earlier splits).

    Per subset, the ``per_subset`` songs with the highest playcount (ties: smaller song_id
    first; fewer songs if the subset has fewer, with a warning) are split with the sizes of
    :func:`split_counts`. ``by="random"``: the songs sorted by id are permuted by a NumPy
    generator seeded with ``(seed, crc32(subset))``, so the same seed gives the same split on
    any machine, and adding a subset leaves the others' splits unchanged.
    ``by="release_date"``: oldest to train, newest to test (ties by song_id); the seed is unused.

    Returns
    -------
    pandas.DataFrame
        Per subset and split, the number of songs.
    """
    if per_subset < 1:
        raise ConfigError(f"per_subset must be >= 1, got {per_subset}")
    fractions = check_fractions(split)
    if by not in ("random", "release_date"):
        raise ConfigError(f"by must be 'random' or 'release_date', not {by!r}")
    if not Path(db_path).exists():
        raise StoreError(f"no database at {db_path}: run `hitsong ingest --events FILE --songs FILE` first.")
    with connect(db_path) as con:
        require_ingested(con, db_path)
        top = con.execute(
            """SELECT song_id, subset, release_date FROM (
                   SELECT st.song_id, st.subset, s.release_date,
                          row_number() OVER (PARTITION BY st.subset ORDER BY st.playcount DESC, st.song_id) AS r
                   FROM song_stats st JOIN songs s USING (song_id))
               WHERE r <= $n ORDER BY subset, song_id""",
            {"n": per_subset},
        ).df()
        parts = []
        for subset, grp in top.groupby("subset", sort=True):
            n = len(grp)
            if n < per_subset:
                log.warning(
                    "subset %s has %d songs, fewer than --per-subset %d: all are sampled", subset, n, per_subset
                )
            if by == "random":
                ids = np.array(sorted(grp["song_id"]), dtype=object)
                rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(str(subset).encode())]))
                ids = ids[rng.permutation(n)]
            else:
                ids = grp.sort_values(["release_date", "song_id"])["song_id"].to_numpy(dtype=object)
            labels = np.repeat(np.array(SPLITS, dtype=object), split_counts(n, fractions))
            parts.append(pd.DataFrame({"song_id": ids, "subset": subset, "split": labels}))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["song_id", "subset", "split"])
        with transaction(con):
            con.execute("DELETE FROM splits")
            con.register("_new_splits", frame)
            con.execute(
                "INSERT INTO splits SELECT CAST(song_id AS VARCHAR), CAST(subset AS VARCHAR), "
                "CAST(split AS VARCHAR) FROM _new_splits"
            )
            con.unregister("_new_splits")
            con.execute(
                "INSERT INTO sample_log VALUES ($t, $n, $s, $f, $b)",
                {
                    "t": datetime.now(UTC).replace(tzinfo=None),
                    "n": per_subset,
                    "s": seed,
                    "f": ",".join(str(f) for f in fractions),
                    "b": by,
                },
            )
    summary = frame.groupby(["subset", "split"]).size().rename("songs").reset_index()
    log.info("sampled %d songs in %d subsets (%s split, seed %d)", len(frame), frame["subset"].nunique(), by, seed)
    return summary
