"""The paper's four evaluation metrics (Yang et al. 2017 section 4; DESIGN.md section 6).

All functions are pure, take the true and predicted hit scores of the same test songs in the
same order, and validate their input first (:func:`check_scores`).

Defined behaviour
-----------------
- Input: two 1-D arrays of equal length ``n >= 2`` with finite values; anything else is an
  ``InputError`` naming the offending length or position.
- ``k`` defaults to 10 % of the songs, ``max(1, n // 10)`` (paper: 100 of 1,000). ``k < 1`` is a
  ``ConfigError``; ``k > n`` is clipped to ``n`` (then recall@k and nDCG@k are 1).
- Top-k and ranks for recall@k and nDCG@k: songs sorted by descending score with a *stable*
  sort, so tied scores keep the input (song) order; the same rule defines the true top-k.
- Kendall's tau-b and Spearman's rho handle ties (tau-b's tie correction; rho on average ranks).
  When either side is constant no ranking exists; both correlations are then defined as 0.0
  (the expected value of an uninformative predictor), never NaN, so averages over repetitions
  stay defined.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from hitsong.errors import ConfigError, InputError

METRIC_NAMES: tuple[str, ...] = ("recall_at_k", "ndcg_at_k", "kendall_tau", "spearman_rho")
#: Display labels of the metrics, in Table-1 order.
METRIC_LABELS: dict[str, str] = {
    "recall_at_k": "recall@k",
    "ndcg_at_k": "nDCG@k",
    "kendall_tau": "Kendall τ",
    "spearman_rho": "Spearman ρ",
}


def check_scores(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert true and predicted scores to float64 arrays of shape (n,).

    Raises
    ------
    InputError
        Not 1-D, lengths differ, fewer than 2 songs, or a NaN/infinite value (its position is named).
    """
    out = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise InputError(f"{name} must be 1-D (one score per song), got shape {arr.shape}")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise InputError(
                f"{name} has {bad.size} non-finite value(s), first at position {bad[0]} ({arr[bad[0]]}); "
                f"drop or fix those songs before evaluating"
            )
        out.append(arr)
    if out[0].shape != out[1].shape:
        raise InputError(f"y_true has {out[0].size} songs but y_pred has {out[1].size}; they must match")
    if out[0].size < 2:
        raise InputError(f"need at least 2 songs to evaluate a ranking, got {out[0].size}")
    return out[0], out[1]


def default_k(n: int) -> int:
    """10 % of ``n`` songs, at least 1."""
    return max(1, n // 10)


def _resolve_k(n: int, k: int | None) -> int:
    if k is None:
        return default_k(n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return min(int(k), n)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; ties keep input order (stable sort)."""
    return np.argsort(-scores, kind="stable")[:k]


def recall_at_k(y_true: ArrayLike, y_pred: ArrayLike, *, k: int | None = None) -> float:
    """Share of the true top-k songs that are in the predicted top-k.

    Parameters
    ----------
    y_true, y_pred : array-like [shape=(n,)]
        True and predicted hit scores of the same songs.
    k : int or None
        Size of the top list; default 10 % of n (at least 1), clipped to n.

    Returns
    -------
    float in [0, 1]
    """
    t, p = check_scores(y_true, y_pred)
    k = _resolve_k(t.size, k)
    return len(np.intersect1d(top_k(t, k), top_k(p, k))) / k


def ndcg_at_k(y_true: ArrayLike, y_pred: ArrayLike, *, k: int | None = None) -> float:
    """Normalised discounted cumulative gain at k with binary relevance.

    A song is relevant when it is in the true top-k. The predicted ranking's gain is
    ``sum_{r=1..k} rel(r) / log2(r + 1)``, divided by the ideal gain ``sum_{r=1..k} 1 / log2(r + 1)``.

    Parameters
    ----------
    y_true, y_pred : array-like [shape=(n,)]
    k : int or None
        As in :func:`recall_at_k`.

    Returns
    -------
    float in [0, 1]
    """
    t, p = check_scores(y_true, y_pred)
    k = _resolve_k(t.size, k)
    relevant = np.zeros(t.size, dtype=bool)
    relevant[top_k(t, k)] = True
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    return float(np.sum(relevant[top_k(p, k)] * discount) / np.sum(discount))


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def spearman_rho(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``, average ranks for ties); 0.0 if a side is constant."""
    t, p = check_scores(y_true, y_pred)
    if _constant(t) or _constant(p):
        return 0.0
    return float(stats.spearmanr(t, p).statistic)


def kendall_tau(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``, with its tie correction); 0.0 if a side is constant."""
    t, p = check_scores(y_true, y_pred)
    if _constant(t) or _constant(p):
        return 0.0
    return float(stats.kendalltau(t, p, variant="b").statistic)


def evaluate(y_true: ArrayLike, y_pred: ArrayLike, *, k: int | None = None) -> dict[str, float]:
    """All four metrics of the paper's Table 1.

    Parameters
    ----------
    y_true, y_pred : array-like [shape=(n,)]
        True and predicted hit scores of the same test songs (n >= 2, finite).
    k : int or None
        Top-list size for recall and nDCG; default ``max(1, n // 10)``, clipped to n.

    Returns
    -------
    dict
        ``recall_at_k``, ``ndcg_at_k``, ``kendall_tau``, ``spearman_rho`` (floats).
    """
    t, p = check_scores(y_true, y_pred)
    return {
        "recall_at_k": recall_at_k(t, p, k=k),
        "ndcg_at_k": ndcg_at_k(t, p, k=k),
        "kendall_tau": kendall_tau(t, p),
        "spearman_rho": spearman_rho(t, p),
    }
