"""The three splits of one subset, scanned once: ids, targets, m1's mel statistics and the tags.

Data comes as one torch ``Dataset`` per split whose items are dicts
``{"mel": (n_mels, T) float32, "tags": (n_tags,) float32, "target": float hit score,
"song_id": str}`` (``hitsong.features.MelDataset`` or any in-memory equivalent), optionally with
the song's metadata ``"artist": str`` and ``"release_days": float`` (days from the observation
window's start), which only the metadata baseline m0 reads.
:func:`scan_subset` reads each split once; the linear models train on the scanned vectors, the
CNNs re-read batches of spectrograms from the dataset every epoch (the store is never loaded whole).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hitsong.errors import InputError
from hitsong.models import mel_stats
from hitsong.store.schema import SPLITS

#: A target standard deviation below this is treated as 1.
TARGET_STD_FLOOR = 1e-8


@dataclass(frozen=True)
class SplitData:
    """One split, scanned once.

    Attributes
    ----------
    dataset : Dataset
        The item source (spectrograms are re-read from it for CNN batches).
    song_ids : tuple of str [length N]
    targets : np.ndarray [shape=(N,)]
        Hit scores (float64).
    stats : Tensor [shape=(N, 2 * n_mels)]
        Per-band mel mean and std over time (m1's input), float32.
    tags : Tensor [shape=(N, n_tags)]
        Tag activations, float32.
    artists : tuple of str [length N] or None
        Artist names ("" when unknown); ``None`` when the items carry no metadata.
    release_days : np.ndarray [shape=(N,)] or None
        Days from the observation window's start to the release (float64, negative before it).
    """

    dataset: Dataset
    song_ids: tuple[str, ...]
    targets: np.ndarray
    stats: Tensor
    tags: Tensor
    artists: tuple[str, ...] | None = None
    release_days: np.ndarray | None = None

    @property
    def has_metadata(self) -> bool:
        """Whether the split carries artists and release dates (what m0 needs)."""
        return self.artists is not None and self.release_days is not None

    def __len__(self) -> int:
        return len(self.song_ids)


def scan_split(dataset: Dataset, *, name: str, batch_size: int = 32) -> SplitData:
    """Read every item of ``dataset`` once: ids, targets, mel statistics and tags."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise InputError(f"split {name!r} has no songs; build the sample and features first")
    ids: list[str] = []
    targets, stats, tags = [], [], []
    artists: list[str] | None = []
    days: list[Tensor] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        ids.extend(str(s) for s in batch["song_id"])
        targets.append(torch.as_tensor(batch["target"], dtype=torch.float64))
        stats.append(mel_stats(torch.as_tensor(batch["mel"])))
        tags.append(torch.as_tensor(batch["tags"], dtype=torch.float32))
        if artists is not None and "artist" in batch and "release_days" in batch:
            artists.extend(str(a) for a in batch["artist"])
            days.append(torch.as_tensor(batch["release_days"], dtype=torch.float64))
        else:
            artists = None
    y = torch.cat(targets).numpy()
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise InputError(f"split {name!r}: song {ids[bad[0]]!r} has a non-finite hit score {y[bad[0]]}")
    if artists is None:
        return SplitData(dataset, tuple(ids), y, torch.cat(stats), torch.cat(tags))
    return SplitData(dataset, tuple(ids), y, torch.cat(stats), torch.cat(tags), tuple(artists), torch.cat(days).numpy())


@dataclass(frozen=True)
class SubsetData:
    """The three splits of one subset plus the target standardisation from ``train``."""

    subset: str
    train: SplitData
    val: SplitData
    test: SplitData
    shuffled_targets: bool = False

    @property
    def target_mean(self) -> float:
        return float(self.train.targets.mean())

    @property
    def target_std(self) -> float:
        std = float(self.train.targets.std())
        return std if std > TARGET_STD_FLOOR else 1.0

    def z(self, split: SplitData) -> Tensor:
        """Standardised targets of ``split``: (N,) float32."""
        return torch.as_tensor((split.targets - self.target_mean) / self.target_std, dtype=torch.float32)

    def with_shuffled_targets(self, *, seed: int) -> SubsetData:
        """A negative control: train and validation hit scores permuted among their songs.

        The test split keeps its true scores, so a model trained on this learns nothing that
        the test metrics can reward.
        """
        rng = np.random.default_rng(seed)
        train = replace(self.train, targets=rng.permutation(self.train.targets))
        val = replace(self.val, targets=rng.permutation(self.val.targets))
        return replace(self, train=train, val=val, shuffled_targets=True)

    def data_version(
        self,
        *,
        audio_config: Mapping[str, Any],
        tagger: str | None,
        shuffled_targets: bool = False,
        split_by: str | None = None,
    ) -> str:
        """Hash of the split membership and method, hit scores and feature config (16 hex digits)."""
        doc: dict[str, Any] = {
            "subset": self.subset,
            "splits": {
                name: sorted(zip(s.song_ids, np.round(s.targets, 9).tolist(), strict=True))
                for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
            },
            "audio": dict(audio_config),
            "tagger": tagger,
            "shuffled_targets": shuffled_targets or self.shuffled_targets,
        }
        if split_by is not None:
            doc["split_by"] = split_by
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def scan_subset(datasets: Mapping[str, Dataset], *, subset: str) -> SubsetData:
    """Scan the ``train``, ``val`` and ``test`` datasets of one subset."""
    missing = [s for s in SPLITS if s not in datasets]
    if missing:
        raise InputError(f"subset {subset!r}: missing split(s) {missing}; expected {list(SPLITS)}")
    parts = {name: scan_split(datasets[name], name=f"{subset}/{name}") for name in SPLITS}
    if len(parts["train"]) < 2 or len(parts["test"]) < 2:
        raise InputError(f"subset {subset!r}: need at least 2 train and 2 test songs")
    return SubsetData(subset=subset, train=parts["train"], val=parts["val"], test=parts["test"])


class IndexedItems(Dataset):
    """Items of ``dataset`` reduced to mel, tags and their index (targets come from SplitData)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        return {"mel": item["mel"], "tags": item["tags"], "index": i}
