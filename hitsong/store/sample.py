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


SampleBy = Literal["random", "release_date", "artist"]
#: The split methods of :func:`sample`, in the order the CLI lists them.
SAMPLE_BY: tuple[SampleBy, ...] = ("random", "release_date", "artist")


def artist_key(name: object) -> str | None:
    """The grouping key of an artist name: whitespace collapsed, case folded; ``None`` when unknown.

    ``"  The  Band"`` and ``"the band"`` are one artist; an empty or missing name is no artist
    (such a song forms a group of its own in the artist split and has no artist effect in m0).
    """
    if name is None or (isinstance(name, float) and math.isnan(name)) or name is pd.NA:
        return None
    key = " ".join(str(name).split()).casefold()
    return key or None


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


#: Seeded group orders :func:`group_split` tries, keeping the one closest to the target sizes.
GROUP_SPLIT_TRIES = 64


def group_split(
    song_ids: Sequence[str],
    groups: Sequence[str | None],
    counts: Sequence[int],
    *,
    rng: np.random.Generator,
    tries: int = GROUP_SPLIT_TRIES,
) -> np.ndarray:
    """Assign whole groups (artists) to splits, each split as close to its target count as the groups allow.

    The distinct groups are taken in an order shuffled by ``rng``; each goes whole to the split
    furthest below its target count (ties: the earlier split). Of ``tries`` shuffled orders,
    the one whose split sizes are closest to the targets (least sum of absolute differences;
    ties: the first) is kept. A song whose group is ``None`` is a group of its own. Groups are
    never ordered by size, so large artists are as likely to land in test as in train.

    Parameters
    ----------
    song_ids : sequence of str [length n]
    groups : sequence of str or None [length n]
        Each song's group key (:func:`artist_key`).
    counts : sequence of int
        Target songs per split (summing to n), e.g. :func:`split_counts`.
    rng : numpy.random.Generator
    tries : int
        Shuffled orders to try (>= 1).

    Returns
    -------
    numpy.ndarray [shape=(n,), dtype=int]
        The split index of each song.

    Notes
    -----
    A split is only chosen while it is below its target, and some split always is until every
    song is placed, so a split ends at most ``g - 1`` songs above its target and at most
    ``(S - 1)(g - 1)`` below (``g`` the largest group, ``S`` the number of splits).
    """
    if tries < 1:
        raise ConfigError(f"tries must be >= 1, got {tries}")
    keys = [g if g is not None else f"\x00song:{s}" for s, g in zip(song_ids, groups, strict=True)]
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    sizes = np.array([len(members[k]) for k in sorted(members)], dtype=np.int64)
    target = np.asarray(counts, dtype=np.int64)
    best, best_miss = np.zeros(len(sizes), dtype=np.int64), math.inf
    for _ in range(tries):
        choice = np.empty(len(sizes), dtype=np.int64)
        filled = np.zeros(len(target), dtype=np.int64)
        for j in rng.permutation(len(sizes)):
            split = int(np.argmax(target - filled))
            choice[j] = split
            filled[split] += sizes[j]
        miss = int(np.abs(filled - target).sum())
        if miss < best_miss:
            best, best_miss = choice, miss
        if miss == 0:
            break
    group_of = {k: j for j, k in enumerate(sorted(members))}
    return best[[group_of[k] for k in keys]]


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
    ``by="artist"``: no artist has songs in more than one split (:func:`group_split` with a
    generator seeded like the random split; artists compared by :func:`artist_key`); the sizes
    are as close to :func:`split_counts` as the artists allow, and the achieved shares are logged.

    Returns
    -------
    pandas.DataFrame
        Per subset and split, the number of songs.
    """
    if per_subset < 1:
        raise ConfigError(f"per_subset must be >= 1, got {per_subset}")
    fractions = check_fractions(split)
    if by not in SAMPLE_BY:
        raise ConfigError(f"by must be one of {', '.join(SAMPLE_BY)}, not {by!r}")
    if not Path(db_path).exists():
        raise StoreError(f"no database at {db_path}: run `hitsong ingest --events FILE --songs FILE` first.")
    with connect(db_path) as con:
        require_ingested(con, db_path)
        top = con.execute(
            """SELECT song_id, subset, release_date, artist FROM (
                   SELECT st.song_id, st.subset, s.release_date, s.artist,
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
            counts = split_counts(n, fractions)
            rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(str(subset).encode())]))
            if by == "artist":
                grp = grp.sort_values("song_id")
                ids = grp["song_id"].to_numpy(dtype=object)
                groups = [artist_key(a) for a in grp["artist"]]
                labels = np.array(SPLITS, dtype=object)[group_split(list(ids), groups, counts, rng=rng)]
                _log_group_split(str(subset), labels, counts, groups)
            else:
                if by == "random":
                    ids = np.array(sorted(grp["song_id"]), dtype=object)[rng.permutation(n)]
                else:
                    ids = grp.sort_values(["release_date", "song_id"])["song_id"].to_numpy(dtype=object)
                labels = np.repeat(np.array(SPLITS, dtype=object), counts)
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


def _log_group_split(subset: str, labels: np.ndarray, counts: Sequence[int], groups: Sequence[str | None]) -> None:
    """Log the achieved split sizes and shares of an artist split beside their targets."""
    n = len(labels)
    sizes: dict[str, int] = {}
    for key in groups:
        if key is not None:
            sizes[key] = sizes.get(key, 0) + 1
    largest = max(sizes.values(), default=1)
    achieved = [int(np.sum(labels == name)) for name in SPLITS]
    log.info(
        "subset %s, artist split: %s songs (target %s; shares %s) from %d artists, the largest with %d songs; "
        "a split can miss its target by at most %d songs",
        subset,
        "/".join(str(a) for a in achieved),
        "/".join(str(c) for c in counts),
        "/".join(f"{a / max(n, 1):.3f}" for a in achieved),
        len(sizes),
        largest,
        (len(SPLITS) - 1) * (largest - 1),
    )
