"""Two models on the same test songs: metrics with intervals, rank agreement, disagreements.

Input: each model's predictions of the held-out test songs (``song_id, true, predicted``, the
layout's ``predictions`` table of a repetition run). Only the songs both predicted are compared.

- The metrics are :func:`hitsong.results.table1` with the two models as its "methods", one
  repetition each: the point value of each metric, a percentile-bootstrap interval over the test
  songs, and the paired difference of the second model minus the first (baseline) with its
  interval and two-sided bootstrap p-value, both models scored on the same resampled songs.
- Rank agreement: Spearman's rho and Kendall's tau between the two models' predictions (not
  the truth), and the overlap of their top-k lists (k = 10 % of the songs, as the metrics).
- Disagreements: the songs whose ranks differ most between the two models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hitsong.errors import InputError
from hitsong.metrics import kendall_tau, spearman_rho
from hitsong.results import ResultsConfig, table1

#: Columns each model's predictions must have.
PREDICTION_COLUMNS = ("song_id", "true", "predicted")


@dataclass(frozen=True)
class Comparison:
    """Two models compared on their common test songs.

    Attributes
    ----------
    labels : tuple of str
        The two models' names, first = baseline of the paired differences.
    songs : pd.DataFrame
        One row per common song: ``song_id, true, a, b, rank_true, rank_a, rank_b, rank_gap``
        (ranks from 1 = highest; ``rank_gap = rank_b - rank_a``).
    metrics : pd.DataFrame
        ``hitsong.results.Table1.frame`` of the two (``method`` holds the labels).
    spearman, kendall : float
        Rank agreement between the two models' predictions.
    top_overlap : float
        Share of the first model's top-k songs that are also in the second's.
    k : int
        The top-list size.
    """

    labels: tuple[str, str]
    songs: pd.DataFrame
    metrics: pd.DataFrame
    spearman: float
    kendall: float
    top_overlap: float
    k: int

    def disagreements(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` songs whose ranks differ most (largest ``|rank_gap|``, ties by song id)."""
        order = self.songs.assign(gap=self.songs["rank_gap"].abs()).sort_values(
            ["gap", "song_id"], ascending=[False, True]
        )
        return order.drop(columns="gap").head(n).reset_index(drop=True)


def _check(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"the predictions of {label} lack the columns {missing}; expected {list(PREDICTION_COLUMNS)}")
    if frame["song_id"].duplicated().any():
        raise InputError(f"the predictions of {label} name some songs twice")
    return frame[list(PREDICTION_COLUMNS)]


def compare(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    labels: tuple[str, str] = ("a", "b"),
    config: ResultsConfig | None = None,
) -> Comparison:
    """Compare two models' test predictions on the songs both predicted.

    Parameters
    ----------
    a, b : pd.DataFrame
        ``song_id, true, predicted`` of each model.
    labels : tuple of str
        Names of the two (must differ); the first is the baseline of the paired differences.
    config : ResultsConfig or None
        Bootstrap replicates, confidence and seed (its ``baselines`` are replaced by ``labels[0]``);
        default ``ResultsConfig()``.

    Raises
    ------
    InputError
        Missing columns, repeated songs, equal labels, fewer than 3 common songs, or true hit
        scores that differ between the two tables (they were not tested on the same data).
    """
    config = config or ResultsConfig()
    if labels[0] == labels[1]:
        raise InputError(f"the two models need different labels, got {labels}")
    joined = _check(a, labels[0]).merge(_check(b, labels[1]), on="song_id", suffixes=("_a", "_b"))
    if len(joined) < 3:
        raise InputError(
            f"{labels[0]} and {labels[1]} share {len(joined)} test songs; they were trained on different samples "
            "and cannot be compared song by song"
        )
    if not np.allclose(joined["true_a"], joined["true_b"], rtol=0, atol=1e-6):
        raise InputError(
            f"{labels[0]} and {labels[1]} record different true hit scores for the same songs; their data "
            "versions differ, so their test figures are not comparable"
        )
    songs = pd.DataFrame(
        {"song_id": joined["song_id"], "true": joined["true_a"], "a": joined["predicted_a"], "b": joined["predicted_b"]}
    )
    for col in ("true", "a", "b"):
        songs[f"rank_{col}"] = songs[col].rank(ascending=False, method="first").astype(int)
    songs["rank_gap"] = songs["rank_b"] - songs["rank_a"]
    y, pa, pb = (songs[c].to_numpy(dtype=np.float64) for c in ("true", "a", "b"))
    table = table1(
        y,
        {labels[0]: pa[None], labels[1]: pb[None]},
        subset="comparison",
        config=ResultsConfig(
            n_bootstrap=config.n_bootstrap, confidence=config.confidence, baselines=(labels[0],), seed=config.seed,
            k=config.k,
        ),
    )  # fmt: skip
    k = table.k
    top_a = set(songs.nsmallest(k, "rank_a")["song_id"])
    top_b = set(songs.nsmallest(k, "rank_b")["song_id"])
    return Comparison(
        labels=labels,
        songs=songs,
        metrics=table.frame,
        spearman=float(spearman_rho(pa, pb)),
        kendall=float(kendall_tau(pa, pb)),
        top_overlap=len(top_a & top_b) / k,
        k=k,
    )
