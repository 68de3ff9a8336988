"""Metrics against hand-computed cases, scikit-learn's nDCG, and brute-force definitions of the correlations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from hitsong.errors import ConfigError, HitsongError, InputError
from hitsong.metrics import (
    METRIC_NAMES,
    default_k,
    evaluate,
    kendall_tau,
    ndcg_at_k,
    recall_at_k,
    spearman_rho,
)

# ten songs (default k = 1); with k=2 the true top-2 are songs 0 and 1
Y_TRUE = np.array([10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])


def test_default_k_is_ten_percent_at_least_one() -> None:
    assert default_k(1000) == 100
    assert default_k(20) == 2
    assert default_k(9) == 1
    assert default_k(2) == 1


def test_recall_hand_computed() -> None:
    # predicted top-2 = songs 0 and 5: one of the true top-2 found
    pred = np.array([9.0, 1.0, 2.0, 3.0, 4.0, 10.0, 0.0, 0.0, 0.0, 0.0])
    assert recall_at_k(Y_TRUE, pred, k=2) == 0.5
    assert recall_at_k(Y_TRUE, pred) == 0.0  # default k=1: song 5 is not song 0
    # k=3: true top {0,1,2}, predicted top {5,0,4} -> 1/3
    assert recall_at_k(Y_TRUE, pred, k=3) == pytest.approx(1 / 3)
    assert recall_at_k(Y_TRUE, Y_TRUE) == 1.0
    assert recall_at_k(Y_TRUE, -Y_TRUE) == 0.0


def test_ndcg_hand_computed() -> None:
    # predicted ranking: song 5 (irrelevant) first, song 0 (relevant) second
    pred = np.array([9.0, 1.0, 2.0, 3.0, 4.0, 10.0, 0.0, 0.0, 0.0, 0.0])
    expected = (1 / math.log2(3)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert ndcg_at_k(Y_TRUE, pred, k=2) == pytest.approx(expected)
    # relevant song ranked first instead -> higher
    pred2 = pred.copy()
    pred2[0] = 11.0
    assert ndcg_at_k(Y_TRUE, pred2, k=2) == pytest.approx(1.0 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(Y_TRUE, Y_TRUE) == pytest.approx(1.0)
    assert ndcg_at_k(Y_TRUE, -Y_TRUE, k=2) == 0.0


def test_ndcg_matches_sklearn_without_ties(rng: np.random.Generator) -> None:
    for n, k in ((50, 5), (200, 20), (31, 7)):
        t = rng.normal(size=n)
        p = t + rng.normal(size=n)
        rel = np.zeros(n)
        rel[np.argsort(-t)[:k]] = 1.0
        assert ndcg_at_k(t, p, k=k) == pytest.approx(ndcg_score(rel[None], p[None], k=k))


def test_kendall_hand_computed() -> None:
    # pairs of (1,2,3) vs (1,3,2): C=2 D=1 -> tau = 1/3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # ties: t=(1,1,2), p=(1,2,3): n0=3, n_t=1, n_p=0, C=2, D=0 -> 2/sqrt(2*3)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def _brute_tau_b(t: np.ndarray, p: np.ndarray) -> float:
    """Kendall's tau-b by counting every pair (the textbook definition, O(n^2))."""
    n = len(t)
    c = d = tied_t = tied_p = 0
    for i in range(n):
        for j in range(i + 1, n):
            st, sp = np.sign(t[i] - t[j]), np.sign(p[i] - p[j])
            tied_t += st == 0
            tied_p += sp == 0
            c += st * sp > 0
            d += st * sp < 0
    n0 = n * (n - 1) / 2
    return (c - d) / math.sqrt((n0 - tied_t) * (n0 - tied_p))


def _brute_rho(t: np.ndarray, p: np.ndarray) -> float:
    """Spearman's rho as the Pearson correlation of average ranks, ranks counted by hand."""

    def ranks(x: np.ndarray) -> np.ndarray:
        return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])

    return float(np.corrcoef(ranks(t), ranks(p))[0, 1])


def test_correlations_match_their_definitions(rng: np.random.Generator) -> None:
    for n in (2, 3, 17, 100):
        t = rng.normal(size=n)
        p = 0.5 * t + rng.normal(size=n)
        assert kendall_tau(t, p) == pytest.approx(_brute_tau_b(t, p), abs=1e-12)
        assert spearman_rho(t, p) == pytest.approx(_brute_rho(t, p), abs=1e-12)
    # heavy ties (bootstrap-like resamples, rounded predictions)
    t = np.round(rng.normal(size=120), 1)
    p = np.round(t + rng.normal(size=120), 0)
    assert kendall_tau(t, p) == pytest.approx(_brute_tau_b(t, p), abs=1e-12)
    assert spearman_rho(t, p) == pytest.approx(_brute_rho(t, p), abs=1e-12)


def test_ties_in_top_k_keep_song_order() -> None:
    # all predictions equal: the predicted top-2 are the first two songs by input order
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    flat = np.zeros(10)
    assert recall_at_k(t, flat, k=2) == 0.0
    assert recall_at_k(t[::-1], flat, k=2) == 1.0


def test_constant_predictions_give_zero_correlation() -> None:
    out = evaluate(Y_TRUE, np.full(10, 3.0))
    assert out["kendall_tau"] == 0.0
    assert out["spearman_rho"] == 0.0


def test_k_larger_than_n_is_clipped() -> None:
    pred = np.arange(10.0)
    assert recall_at_k(Y_TRUE, pred, k=50) == 1.0
    assert ndcg_at_k(Y_TRUE, pred, k=50) == pytest.approx(1.0)


def test_evaluate_keys_and_values() -> None:
    out = evaluate(Y_TRUE, Y_TRUE)
    assert tuple(out) == METRIC_NAMES
    assert all(v == pytest.approx(1.0) for v in out.values())


@pytest.mark.parametrize(
    ("y_true", "y_pred", "error", "match"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], InputError, "3 songs but y_pred has 2"),
        ([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0], InputError, "position 1"),
        ([1.0, 2.0], [1.0, float("inf")], InputError, "y_pred"),
        ([1.0], [1.0], InputError, "at least 2"),
        ([[1.0, 2.0]], [[1.0, 2.0]], InputError, "1-D"),
    ],
)
def test_bad_input(y_true: list, y_pred: list, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate(y_true, y_pred)
    assert issubclass(error, HitsongError)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k: object) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        recall_at_k(Y_TRUE, Y_TRUE, k=k)  # type: ignore[arg-type]
