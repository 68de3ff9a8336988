"""m0, the metadata baseline: planted artist fame is recovered, no signal gives nothing, lambda is chosen on validation.

The fitted model is checked against a second implementation: the joint penalised least-squares
problem solved from its full normal equations (m0 eliminates the artist block first).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hitsong.errors import ConfigError, InputError
from hitsong.metrics import spearman_rho
from hitsong.models.metadata import MetadataConfig, fit_metadata_baseline


def _catalogue(
    rng: np.random.Generator,
    *,
    n: int = 900,
    artists: int = 120,
    fame_sd: float = 1.0,
    recency: float = 0.0,
    noise: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Songs by Zipf-sized artists: ``(artist names, release days, standardised-ish score)``.

    score = fame(artist) + recency * (a hump over release days) + noise.
    """
    weights = 1.0 / np.arange(1, artists + 1) ** 0.7
    artist = rng.choice(artists, size=n, p=weights / weights.sum())
    fame = rng.normal(0.0, fame_sd, size=artists)
    days = rng.uniform(-365.0, 365.0, size=n)
    hump = np.where(days < 0, np.exp(days / 200.0), 1.0 - days / 365.0)  # novelty before, exposure after
    score = fame[artist] + recency * hump + rng.normal(0.0, noise, size=n)
    return np.array([f"Artist {a}" for a in artist], dtype=object), days, score


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = rng.permutation(n)
    return idx[: int(0.6 * n)], idx[int(0.6 * n) : int(0.8 * n)], idx[int(0.8 * n) :]


def _fit_and_score(artist, days, score, rng, config=None):
    tr, va, te = _split(len(score), rng)
    model = fit_metadata_baseline(
        score[tr], artist[tr], days[tr], score[va], artist[va], days[va], config=config or MetadataConfig()
    )
    return model, spearman_rho(score[te], model.predict(artist[te], days[te]))


def test_m0_recovers_artist_fame_and_shuffled_artists_give_nothing(rng: np.random.Generator) -> None:
    artist, days, score = _catalogue(rng)
    model, rho = _fit_and_score(artist, days, score, rng)
    assert rho > 0.8, rho
    assert math.isfinite(model.shrinkage) and model.shrinkage <= 2.0  # the true noise/fame variance ratio is 0.25
    shuffled = rng.permutation(artist)
    null_model, null_rho = _fit_and_score(shuffled, days, score, rng)
    assert abs(null_rho) < 0.15, null_rho
    assert null_model.shrinkage >= 16.0  # validation sends the meaningless artist term away


def test_m0_is_near_zero_when_neither_artist_nor_date_matters(rng: np.random.Generator) -> None:
    artist, days, score = _catalogue(rng, fame_sd=0.0, recency=0.0, noise=1.0)
    rhos = []
    for _ in range(5):
        model, rho = _fit_and_score(artist, days, score, rng)
        rhos.append(rho)
        assert model.shrinkage >= 16.0
    assert abs(np.mean(rhos)) < 0.08, rhos


def test_unseen_artists_are_scored_by_recency_alone(rng: np.random.Generator) -> None:
    """Artist-disjoint data where only the release date matters: m0 still ranks by recency."""
    artist, days, score = _catalogue(rng, fame_sd=0.0, recency=2.0, noise=0.3)
    names = np.array([f"{a} {i}" for i, a in enumerate(artist)], dtype=object)  # every song its own artist
    model, rho = _fit_and_score(names, days, score, rng)
    assert rho > 0.7, rho
    test_days = np.array([-300.0, -10.0, 100.0])
    np.testing.assert_allclose(model.predict(["nobody", "", "someone else"], test_days), model.recency(test_days))
    assert model.seen_share(["nobody", names[0]]) in (0.0, 0.5)


def test_artist_names_match_case_and_space_blind() -> None:
    z = np.array([2.0, 2.0, -2.0, -2.0, 0.0, 0.0])
    artists = ["The Band", "the band", "Other", "OTHER ", "", ""]
    days = np.zeros(6)
    model = fit_metadata_baseline(z, artists, days, z, artists, days, config=MetadataConfig(shrinkage_grid=(1e-9,)))
    np.testing.assert_allclose(model.predict(["  THE   band"], np.zeros(1)), [2.0], atol=1e-6)
    assert set(model.artists) == {"the band", "other"}  # unknown artists are no artist


def _direct_solution(z, artists, days, shrinkage, model, ridge):
    """The second implementation: min |z - X b - A e|^2 + ridge n |b_slopes|^2 + lambda |e|^2 by normal equations."""
    x = model.recency.basis(days)
    keys = sorted(set(artists))
    a = np.zeros((len(z), len(keys)))
    a[np.arange(len(z)), [keys.index(k) for k in artists]] = 1.0
    design = np.hstack([x, a])
    penalty = np.diag([0.0] + [ridge * len(z)] * (x.shape[1] - 1) + [shrinkage] * len(keys))
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ z)
    return coef[: x.shape[1]], dict(zip(keys, coef[x.shape[1] :], strict=True))


def test_fit_matches_the_joint_least_squares_solution(rng: np.random.Generator) -> None:
    artist, days, score = _catalogue(rng, n=300, artists=30, recency=1.0)
    keys = [str(a).lower() for a in artist]
    config = MetadataConfig(shrinkage_grid=(3.0,))
    model = fit_metadata_baseline(score, artist, days, score[:10], artist[:10], days[:10], config=config)
    coef, effects = _direct_solution(score, keys, days, 3.0, model, config.ridge)
    np.testing.assert_allclose(model.recency.coef, coef, atol=1e-6)
    got = dict(zip(model.artists, model.artist_effects, strict=True))
    np.testing.assert_allclose([got[k] for k in effects], list(effects.values()), atol=1e-6)


def test_shrinkage_is_chosen_on_validation(rng: np.random.Generator) -> None:
    """Every grid value's validation MSE is what the direct solution gives; the smallest wins.

    Training loss alone would always pick the smallest lambda (the artist means fit the training songs
    best); with few songs per artist and much noise, validation picks a large lambda instead,
    and with little noise a small one.
    """
    grid = (0.25, 1.0, 4.0, 16.0, 64.0)
    chosen = {}
    for noise in (0.2, 3.0):
        artist, days, score = _catalogue(rng, n=400, artists=150, noise=noise)
        keys = np.array([str(a).lower() for a in artist])
        tr, va, _ = _split(len(score), rng)
        config = MetadataConfig(shrinkage_grid=grid)
        model = fit_metadata_baseline(score[tr], artist[tr], days[tr], score[va], artist[va], days[va], config=config)
        expected = {}
        for lam in grid:
            coef, effects = _direct_solution(score[tr], list(keys[tr]), days[tr], lam, model, config.ridge)
            pred = model.recency.basis(days[va]) @ coef + np.array([effects.get(k, 0.0) for k in keys[va]])
            expected[lam] = float(np.mean((score[va] - pred) ** 2))
        assert model.val_losses == pytest.approx(expected, rel=1e-6)
        assert model.shrinkage == min(expected, key=expected.get)
        chosen[noise] = model.shrinkage
    assert chosen[0.2] < chosen[3.0], chosen
    assert chosen[0.2] <= 1.0 and chosen[3.0] >= 4.0, chosen


def test_bad_input_and_config() -> None:
    with pytest.raises(ConfigError, match="shrinkage_grid"):
        MetadataConfig(shrinkage_grid=(0.0,))
    with pytest.raises(ConfigError, match="recency_knots and ridge"):
        MetadataConfig(recency_knots=-1)
    with pytest.raises(InputError, match="training split"):
        fit_metadata_baseline(np.zeros(3), ["a"], np.zeros(3), np.zeros(1), ["a"], np.zeros(1))
    with pytest.raises(InputError, match="validation split: no songs"):
        fit_metadata_baseline(np.zeros(2), ["a", "b"], np.zeros(2), np.zeros(0), [], np.zeros(0))
    with pytest.raises(InputError, match="non-finite"):
        fit_metadata_baseline(np.array([0.0, np.nan]), ["a", "b"], np.zeros(2), np.zeros(1), ["a"], np.zeros(1))
    # a missing release date is the training songs' median, not an error
    model = fit_metadata_baseline(np.array([0.0, 1.0, 2.0]), ["a", "b", "c"], np.array([0.0, np.nan, 10.0]),
                                  np.zeros(1), ["a"], np.zeros(1))  # fmt: skip
    assert np.isfinite(model.predict(["a"], np.array([np.nan]))).all()
