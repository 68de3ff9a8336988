"""What one training call shares (:class:`RunContext`) and produces (:class:`RepResult`, :class:`SubsetResult`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hitsong.audio import AudioConfig
from hitsong.models.base import HitModel
from hitsong.results import Table1
from hitsong.training.loop import FitResult


@dataclass(frozen=True)
class RunContext:
    """Facts shared by every run of one ``train_subset`` call (recorded as params and tags)."""

    subset: str
    data_version: str
    code_version: str
    audio_config: AudioConfig
    tagger: str | None
    device: torch.device
    shuffle_targets: bool = False
    data_notes: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RepResult:
    """One repetition of one method."""

    method: str
    repetition: int
    seed: int
    metrics: dict[str, float]  # test metrics
    predictions: np.ndarray  # (n_test,) predicted hit scores
    fit: FitResult
    seconds: float
    w: float | None = None
    model: HitModel | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SubsetResult:
    """Everything one ``train_subset`` call produced."""

    subset: str
    table: Table1
    reps: list[RepResult]
    song_ids: tuple[str, ...]
    y_true: np.ndarray
    data_version: str
    outputs: dict[str, Path] = field(default_factory=dict)

    def predictions(self, method: str) -> np.ndarray:
        """Predicted hit scores of ``method``: (R, n_test)."""
        return np.stack([r.predictions for r in self.reps if r.method == method])

    def metric(self, method: str, name: str) -> np.ndarray:
        """One metric of ``method`` over its repetitions: (R,)."""
        return np.array([r.metrics[name] for r in self.reps if r.method == method])
