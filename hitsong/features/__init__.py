"""The feature store: every sampled song's log-mel (and tag vector), computed once, in parallel.

Modules: :mod:`.compute` (one song, a pure function, and the store's task function),
:mod:`.executors` (process pool or dask: task function + result sink), :mod:`.build`
(``build_features``: the resumable, crash-safe job), :mod:`.layout` (one shard file per song),
:mod:`.dataset` (``MelDataset``, the training reader).
"""

from hitsong.features.build import FeatureReport, SubsetReport, build_features, failures
from hitsong.features.compute import NO_TAGGER, SongFeatures, compute_song_features, tagger_audio_config
from hitsong.features.dataset import MelDataset
from hitsong.features.executors import EXECUTORS
from hitsong.features.layout import read_shard, shard_relpath

__all__ = [
    "EXECUTORS",
    "NO_TAGGER",
    "FeatureReport",
    "MelDataset",
    "SongFeatures",
    "SubsetReport",
    "build_features",
    "compute_song_features",
    "failures",
    "read_shard",
    "shard_relpath",
    "tagger_audio_config",
]
