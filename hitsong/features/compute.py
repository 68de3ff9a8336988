"""One song's features, as a pure function: the log-mel of its middle segment and its tag vector.

:func:`compute_song_features` returns them; :func:`compute_to_shard` is the feature store's task
function (see :mod:`hitsong.features.executors`): it also writes the mel to the song's shard.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hitsong.audio import (
    TAGGER_SR,
    AudioConfig,
    FeatureFlags,
    decode_for_features,
    log_mel,
)
from hitsong.errors import HitsongWarning
from hitsong.features.executors import Task
from hitsong.features.layout import shard_relpath, write_shard
from hitsong.store.featureindex import N_TAGS

#: ``--tagger none``: compute mels only.
NO_TAGGER = "none"


@dataclass(frozen=True)
class SongFeatures:
    """What :func:`compute_song_features` returns for one song.

    Attributes
    ----------
    mel : np.ndarray [shape=(n_mels, n_frames), dtype=float32]
        The log-mel of the middle segment.
    tags : np.ndarray [shape=(50,), dtype=float32] or None
        Song-level tag probabilities (``None`` without a tagger).
    genre : str or None
        The predominant genre tag.
    flags : FeatureFlags
        Padding, silence, truncation and warning texts.
    """

    mel: np.ndarray
    tags: np.ndarray | None
    genre: str | None
    flags: FeatureFlags

    @property
    def padded(self) -> bool:
        """The song was shorter than the segment and zero-padded."""
        return self.flags.padded


@lru_cache(maxsize=2)
def cached_tagger(name: str, precision: str) -> Any:
    """Load a tagger once per process."""
    from hitsong.tagger import Tagger

    return Tagger.from_pretrained(name, device="auto", precision=precision)


def tagger_audio_config(config: AudioConfig, tagger: str) -> AudioConfig:
    """``config`` with the tagger precision resolved to what runs here (it is hashed and recorded).

    See :func:`hitsong.tagger.precision.resolve_audio_config`; the tagger runs on ``device="auto"``.
    """
    from hitsong.tagger.inference import resolve_device
    from hitsong.tagger.precision import resolve_audio_config

    model = None if tagger == NO_TAGGER else tagger
    return resolve_audio_config(config, device=resolve_device("auto"), model=model)


def compute_song_features(path: str | Path, audio_config: AudioConfig, tagger_name: str = NO_TAGGER) -> SongFeatures:
    """Decode one song once and compute its log-mel and (optionally) its tag vector.

    A pure function of its arguments (the tagger is loaded once per process and cached), so it
    runs unchanged in a local process pool or on a dask cluster.

    Parameters
    ----------
    path : str or Path
        The audio file.
    audio_config : AudioConfig
        The CNN front end's settings.
    tagger_name : str
        ``"MTT_musicnn"`` (or another name ``Tagger.from_pretrained`` knows), or ``"none"``.

    Returns
    -------
    SongFeatures

    Raises
    ------
    AudioError
        The file cannot be decoded (see :func:`hitsong.audio.decode_middle`).
    """
    use_tagger = tagger_name != NO_TAGGER
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HitsongWarning)  # their texts travel in flags.warnings
        wave, wave_tagger, flags = decode_for_features(
            path, config=audio_config, tagger_sr=TAGGER_SR if use_tagger else None
        )
        mel = log_mel(wave, config=audio_config)
        tags = genre = None
        if use_tagger:
            from hitsong.tagger import predominant_genre

            tagger = cached_tagger(tagger_name, audio_config.tagger_precision)
            result = tagger.tag_batch([wave_tagger], sr=TAGGER_SR)[0]
            tags = np.asarray(result.song, dtype=np.float32).reshape(N_TAGS)
            genre = str(predominant_genre(tags))
    extra = tuple(str(w.message) for w in caught if issubclass(w.category, HitsongWarning))
    flags = replace(flags, warnings=tuple(dict.fromkeys(flags.warnings + extra)))
    return SongFeatures(mel=mel, tags=tags, genre=genre, flags=flags)


@dataclass(frozen=True)
class StoredFeatures:
    """What :func:`compute_to_shard` returns to the client: everything but the mel, and where it is.

    Attributes
    ----------
    shard : str
        The mel's shard file, relative to the store (see :mod:`hitsong.features.layout`).
    tags : np.ndarray [shape=(50,), dtype=float32] or None
        Song-level tag probabilities (``None`` without a tagger).
    genre : str or None
        The predominant genre tag.
    flags : FeatureFlags
        Padding, silence, truncation and warning texts.
    """

    shard: str
    tags: np.ndarray | None
    genre: str | None
    flags: FeatureFlags


def compute_to_shard(
    task: Task, *, store_dir: str, audio_config: AudioConfig, tagger_name: str = NO_TAGGER
) -> StoredFeatures:
    """The feature store's task function: compute one song and write its mel shard in the worker.

    Runs where the executor puts it (a local process or a dask worker); ``store_dir`` must be
    reachable there. Only the small :class:`StoredFeatures` travels back to the client.

    Raises
    ------
    AudioError
        The file cannot be decoded.
    """
    features = compute_song_features(task.path, audio_config, tagger_name)
    rel = shard_relpath(task.subset, audio_config.config_hash(), task.song_id)
    write_shard(store_dir, rel, features.mel)
    return StoredFeatures(shard=rel, tags=features.tags, genre=features.genre, flags=features.flags)
