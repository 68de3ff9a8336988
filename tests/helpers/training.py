"""An in-memory dataset with a planted signal, shaped like ``hitsong.features.MelDataset`` items.

Each song has a latent "appeal" ``a ~ N(0, 1)``. Its log-mel has extra energy ``gain * a`` in a
few bands (all frames) on top of noise, its first tag activation is a noisy copy of ``a``, and
its hit score is ``10 + 2 a + noise``. So every method (audio or tags) can learn the ranking,
and a model trained on permuted hit scores cannot.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class PlantedDataset(Dataset):
    """Songs as dicts ``{"mel": (n_mels, T) float32, "tags": (n_tags,), "target": float, "song_id": str}``.

    Parameters
    ----------
    n : int
        Number of songs.
    seed : int
        Seed of the generator (different per split).
    n_mels, n_frames, n_tags : int
        Shapes.
    bands : slice
        Mel bands that carry the signal.
    gain : float
        Signal energy per unit of appeal.
    noise : float
        Standard deviation of the hit-score noise (in units of appeal).
    prefix : str
        Song id prefix.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        n_mels: int = 16,
        n_frames: int = 40,
        n_tags: int = 6,
        bands: slice = slice(3, 7),
        gain: float = 1.0,
        noise: float = 0.3,
        prefix: str = "s",
    ) -> None:
        rng = np.random.default_rng(seed)
        self.appeal = rng.normal(size=n)
        # per-song timbre (every band, as strong as the signal) + frame noise: the signal is one
        # direction among many, so an untrained or mis-trained model does not rank by it
        timbre = rng.normal(scale=gain, size=(n, n_mels, 1))
        mel = timbre + rng.normal(scale=0.5, size=(n, n_mels, n_frames)) + 2.0
        mel[:, bands, :] += gain * self.appeal[:, None, None]
        self.mel = mel.astype(np.float32)
        tags = rng.uniform(0.0, 0.3, size=(n, n_tags))
        tags[:, 0] = 1.0 / (1.0 + np.exp(-(self.appeal + rng.normal(scale=0.3, size=n))))
        self.tags = tags.astype(np.float32)
        self.target = (10.0 + 2.0 * (self.appeal + rng.normal(scale=noise, size=n))).astype(np.float32)
        self.ids = [f"{prefix}{seed}-{i:04d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {
            "mel": torch.from_numpy(self.mel[i]),
            "tags": torch.from_numpy(self.tags[i]),
            "target": float(self.target[i]),
            "song_id": self.ids[i],
        }


def planted_splits(n_train: int = 60, n_val: int = 20, n_test: int = 40, **kwargs: object) -> dict[str, PlantedDataset]:
    """Train/val/test datasets drawn independently from the same planted model."""
    return {
        "train": PlantedDataset(n_train, seed=1, **kwargs),  # type: ignore[arg-type]
        "val": PlantedDataset(n_val, seed=2, **kwargs),  # type: ignore[arg-type]
        "test": PlantedDataset(n_test, seed=3, **kwargs),  # type: ignore[arg-type]
    }


#: Artists of :class:`FamousDataset`.
N_ARTISTS = 12


class FamousDataset(PlantedDataset):
    """Planted songs by 12 artists whose fame (3 hit-score units per sd) outweighs the audio signal.

    Items carry ``artist`` and ``release_days`` like ``hitsong.features.MelDataset`` items. Every
    split draws from the same artists (a random split, where the artist leaks).
    """

    FAME = np.random.default_rng(99).normal(size=N_ARTISTS)

    def __init__(self, n: int, *, seed: int, **kwargs: object) -> None:
        super().__init__(n, seed=seed, **kwargs)  # type: ignore[arg-type]
        rng = np.random.default_rng(seed + 1000)
        self.artist_of = rng.integers(0, N_ARTISTS, size=n)
        self.days = rng.uniform(-300.0, 300.0, size=n).astype(np.float32)
        self.target = (self.target + 3.0 * self.FAME[self.artist_of]).astype(np.float32)

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "artist": f"Artist {self.artist_of[i]}", "release_days": self.days[i]}


def famous_splits(n_train: int = 60, n_val: int = 20, n_test: int = 40, **kwargs: object) -> dict[str, FamousDataset]:
    """Train/val/test :class:`FamousDataset` splits sharing the same artists (a random split)."""
    return {
        "train": FamousDataset(n_train, seed=1, **kwargs),  # type: ignore[arg-type]
        "val": FamousDataset(n_val, seed=2, **kwargs),  # type: ignore[arg-type]
        "test": FamousDataset(n_test, seed=3, **kwargs),  # type: ignore[arg-type]
    }
