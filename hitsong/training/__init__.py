"""Training m1..m6 with repetitions and evaluating them as in the paper (sections 3-4).

Modules: :mod:`.config` (``TrainConfig`` and presets), :mod:`.data` (the splits, scanned once),
:mod:`.loop` (``fit``: one model, best-validation weights), :mod:`.experiment` (every method x
repetition of a subset, Table 1), :mod:`.runlayout` (the names of runs, tags, metrics and
tables: written here, read by ``registry`` and ``dashboard``), :mod:`.provenance` (code version).
"""

from hitsong.training.config import PROFILES, TrainConfig
from hitsong.training.data import SplitData, SubsetData, scan_split, scan_subset
from hitsong.training.experiment import (
    RepResult,
    SubsetResult,
    train_method,
    train_subset,
)
from hitsong.training.loop import FitResult, fit, predict_standardised, seed_everything
from hitsong.training.provenance import code_version

__all__ = [
    "PROFILES", "FitResult", "RepResult", "SplitData", "SubsetData", "SubsetResult", "TrainConfig", "code_version",
    "fit", "predict_standardised", "scan_split", "scan_subset", "seed_everything", "train_method", "train_subset",
]
