"""m0, the metadata baseline: what artist and release date alone predict, with no audio.

Large-catalogue studies find that metadata such as the artist's popularity and the release
date carry most of the predictable signal of hit scores, and that random splits let a model
learn the artist instead of the song. m0 measures that share on the user's own data, so every
audio method (m1..m6) is reported beside its gap to m0.

The model, on standardised hit scores ``z`` (training mean and std)::

    z(song) = f(release_days) + b(artist)

- ``f`` is a least-squares piecewise-linear function of the days from the observation window's
  start to the release (knots at quantiles of the training songs' days): release recency within
  the window.
- ``b(artist) = sum of the residuals z - f over the artist's training songs / (n_artist + lambda)``:
  the artist's mean, shrunk towards the global level (0) the fewer songs the artist has. An
  artist without training songs (or an unknown one) gets ``b = 0``: recency alone.
- ``f`` and ``b`` are fitted jointly on the training songs: the penalised least-squares problem
  ``|z - X c - A b|^2 + ridge * N * |slopes of c|^2 + lambda * |b|^2`` (``X`` the recency
  basis, ``A`` the artist indicators) is solved exactly, the artist block eliminated through
  its diagonal normal matrix (``n_artist + lambda``), so the cost is linear in the songs.
  ``lambda`` is the value of :attr:`MetadataConfig.shrinkage_grid` with the lowest mean squared
  error on the validation songs (ties: the larger ``lambda``); ``inf`` means no artist term.

Everything is closed form and deterministic: no seed, no epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hitsong.baselines import BASELINES, M0
from hitsong.errors import ConfigError, InputError
from hitsong.store.sample import artist_key

#: The method's name and the label Table 1 shows.
NAME = M0
LABEL = BASELINES[M0]


@dataclass(frozen=True)
class MetadataConfig:
    """Settings of m0.

    Parameters
    ----------
    shrinkage_grid : tuple of float
        Candidate values of ``lambda`` (pseudo-songs at the global level added to each artist),
        each > 0 (at 0 the split between the global level and the artists' effects, and so the
        score of an unseen artist, would be undetermined); ``inf`` drops the artist term. The
        validation split picks one.
    recency_knots : int
        Interior knots of the piecewise-linear recency term, at evenly spaced quantiles of the
        training songs' release days (0: a straight line).
    ridge : float
        Ridge penalty on the recency slopes, per song (keeps a constant release date solvable).
    """

    shrinkage_grid: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, math.inf)
    recency_knots: int = 3
    ridge: float = 1e-3

    def __post_init__(self) -> None:
        if not self.shrinkage_grid or any(not (g > 0) for g in self.shrinkage_grid):
            raise ConfigError(f"shrinkage_grid must be values > 0 (inf allowed), got {self.shrinkage_grid!r}")
        if self.recency_knots < 0 or not self.ridge >= 0:
            raise ConfigError(f"recency_knots and ridge must be >= 0, got {self.recency_knots}, {self.ridge}")


@dataclass(frozen=True)
class Recency:
    """The recency term ``f``: a piecewise-linear function of release days."""

    center: float
    scale: float
    knots: tuple[float, ...]
    coef: tuple[float, ...]  # intercept, slope, one per knot

    def basis(self, days: np.ndarray) -> np.ndarray:
        """``(N,) days -> (N, 2 + n_knots)``: 1, the scaled days, a hinge per knot (missing days: the center)."""
        d = np.where(np.isfinite(days), days, self.center)
        cols = [np.ones_like(d), (d - self.center) / self.scale]
        cols += [np.maximum(0.0, d - k) / self.scale for k in self.knots]
        return np.stack(cols, axis=1)

    def __call__(self, days: np.ndarray) -> np.ndarray:
        return self.basis(days) @ np.asarray(self.coef)


def _recency_shell(days: np.ndarray, config: MetadataConfig) -> Recency:
    """The recency basis of the training songs' days (center, scale, knots), without coefficients."""
    finite = days[np.isfinite(days)]
    center = float(np.median(finite)) if finite.size else 0.0
    scale = float(max(np.std(finite), 1.0)) if finite.size else 1.0
    qs = np.linspace(0.0, 1.0, config.recency_knots + 2)[1:-1]
    knots = tuple(sorted({float(k) for k in np.quantile(finite, qs)})) if finite.size and qs.size else ()
    return Recency(center, scale, knots, ())


def _artist_codes(keys: Sequence[str | None], vocabulary: dict[str, int]) -> np.ndarray:
    """Index of each song's artist in ``vocabulary``; -1 for unknown or unseen artists."""
    return np.array([vocabulary.get(k, -1) if k is not None else -1 for k in keys], dtype=np.int64)


@dataclass(frozen=True)
class MetadataBaseline:
    """A fitted m0 (see the module docstring): recency term, artist effects and the chosen ``lambda``.

    Attributes
    ----------
    recency : Recency
    artists : tuple of str
        Artist keys (:func:`hitsong.store.sample.artist_key`) with training songs.
    artist_songs : np.ndarray [shape=(A,), int]
        Training songs per artist.
    artist_effects : np.ndarray [shape=(A,)]
        ``b(artist)`` in standardised hit-score units.
    shrinkage : float
        The chosen ``lambda``.
    val_losses : dict
        ``lambda -> validation MSE`` over the grid (standardised units).
    """

    recency: Recency
    artists: tuple[str, ...]
    artist_songs: np.ndarray
    artist_effects: np.ndarray
    shrinkage: float
    val_losses: dict[float, float] = field(default_factory=dict)

    def predict(self, artists: Sequence[str], release_days: np.ndarray) -> np.ndarray:
        """Standardised hit scores ``(N,)`` of songs by ``artists`` released ``release_days`` after the window start."""
        keys = [artist_key(a) for a in artists]
        codes = _artist_codes(keys, {a: i for i, a in enumerate(self.artists)})
        effect = np.where(codes >= 0, self.artist_effects[np.maximum(codes, 0)], 0.0) if len(codes) else codes * 0.0
        return self.recency(np.asarray(release_days, dtype=np.float64)) + effect

    def seen_share(self, artists: Sequence[str]) -> float:
        """Share of ``artists`` that have training songs (0 for an artist-disjoint split)."""
        known = set(self.artists)
        keys = [artist_key(a) for a in artists]
        return float(np.mean([k is not None and k in known for k in keys])) if keys else 0.0

    def effects_frame(self) -> pd.DataFrame:
        """``artist, train_songs, effect`` (standardised units), strongest first."""
        frame = pd.DataFrame(
            {"artist": list(self.artists), "train_songs": self.artist_songs, "effect": self.artist_effects}
        )
        return frame.sort_values(["effect", "artist"], ascending=[False, True], ignore_index=True)

    def params(self) -> dict[str, str]:
        """The fitted numbers as flat strings (recorded as run params)."""
        return {
            "shrinkage": str(self.shrinkage),
            "recency_center_days": f"{self.recency.center:.6g}",
            "recency_scale_days": f"{self.recency.scale:.6g}",
            "recency_knots_days": "[" + ", ".join(f"{k:.6g}" for k in self.recency.knots) + "]",
            "recency_coef": "[" + ", ".join(f"{c:.6g}" for c in self.recency.coef) + "]",
            "artists": str(len(self.artists)),
        }


def _solve(
    z: np.ndarray, x: np.ndarray, codes: np.ndarray, n_artists: int, shrinkage: float, ridge: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact joint fit: recency coefficients ``(p,)``, artist song counts and effects ``(A,)``.

    Normal equations of ``|z - X c - A b|^2 + ridge N |c[1:]|^2 + lambda |b|^2`` with the artist
    block ``A'A + lambda I = diag(n_a + lambda)`` eliminated (a Schur complement).
    """
    n, p = x.shape
    seen = codes >= 0
    counts = np.bincount(codes[seen], minlength=n_artists).astype(np.float64)
    penalty = ridge * n * np.eye(p)
    penalty[0, 0] = 0.0
    if math.isinf(shrinkage) or n_artists == 0:
        coef = np.linalg.solve(x.T @ x + penalty, x.T @ z)
        return coef, counts, np.zeros(n_artists)
    # per-artist sums of the basis rows (A'X, shape (A, p)) and of the targets (A'z)
    ax = np.stack([np.bincount(codes[seen], weights=x[seen, j], minlength=n_artists) for j in range(p)], axis=1)
    az = np.bincount(codes[seen], weights=z[seen], minlength=n_artists)
    inv = 1.0 / (counts + shrinkage)
    lhs = x.T @ x + penalty - ax.T @ (ax * inv[:, None])
    rhs = x.T @ z - ax.T @ (az * inv)
    coef = np.linalg.solve(lhs, rhs)
    effects = (az - ax @ coef) * inv
    return coef, counts, effects


def _check(name: str, z: np.ndarray, artists: Sequence[str], days: np.ndarray) -> None:
    if not (len(z) == len(artists) == len(days)):
        raise InputError(f"m0 {name}: {len(z)} targets, {len(artists)} artists, {len(days)} release days")
    if len(z) == 0:
        raise InputError(f"m0 {name}: no songs")
    if not np.all(np.isfinite(z)):
        raise InputError(f"m0 {name}: non-finite standardised targets")


def fit_metadata_baseline(
    train_z: np.ndarray,
    train_artists: Sequence[str],
    train_days: np.ndarray,
    val_z: np.ndarray,
    val_artists: Sequence[str],
    val_days: np.ndarray,
    *,
    config: MetadataConfig = MetadataConfig(),
) -> MetadataBaseline:
    """Fit m0 on the training songs, choosing ``lambda`` on the validation songs.

    Parameters
    ----------
    train_z, val_z : np.ndarray [shape=(N,), (M,)]
        Standardised hit scores (the training mean and std for both).
    train_artists, val_artists : sequence of str
        Artist names ("" when unknown).
    train_days, val_days : np.ndarray [shape=(N,), (M,)]
        Days from the observation window's start to the release (NaN when unknown).
    config : MetadataConfig

    Returns
    -------
    MetadataBaseline
        Fitted on the training songs only, with the ``lambda`` of lowest validation MSE.
    """
    train_z, val_z = np.asarray(train_z, dtype=np.float64), np.asarray(val_z, dtype=np.float64)
    train_days, val_days = np.asarray(train_days, dtype=np.float64), np.asarray(val_days, dtype=np.float64)
    _check("training split", train_z, train_artists, train_days)
    _check("validation split", val_z, val_artists, val_days)
    train_keys = [artist_key(a) for a in train_artists]
    vocabulary = {a: i for i, a in enumerate(sorted({k for k in train_keys if k is not None}))}
    codes = _artist_codes(train_keys, vocabulary)
    val_codes = _artist_codes([artist_key(a) for a in val_artists], vocabulary)
    shell = _recency_shell(train_days, config)
    x, x_val = shell.basis(train_days), shell.basis(val_days)
    fits = {}
    losses: dict[float, float] = {}
    for shrinkage in config.shrinkage_grid:
        coef, counts, effects = _solve(train_z, x, codes, len(vocabulary), float(shrinkage), config.ridge)
        per_song = np.where(val_codes >= 0, effects[np.maximum(val_codes, 0)], 0.0) if vocabulary else 0.0
        losses[float(shrinkage)] = float(np.mean((val_z - x_val @ coef - per_song) ** 2))
        fits[float(shrinkage)] = (coef, counts, effects)
    best = min(losses.values())
    chosen = max(g for g, loss in losses.items() if loss <= best + 1e-12 * max(1.0, abs(best)))
    coef, counts, effects = fits[chosen]
    return MetadataBaseline(
        recency=Recency(shell.center, shell.scale, shell.knots, tuple(float(c) for c in coef)),
        artists=tuple(vocabulary),
        artist_songs=counts.astype(np.int64),
        artist_effects=effects,
        shrinkage=chosen,
        val_losses=losses,
    )
