"""Features the feature store already holds: a sampled song is not decoded again to be scored.

``hitsong features`` keeps each sampled song's log-mel (float16 rows of ``<store>/<subset>/
mel.f16``) and tag vector. When the version's audio config (its hash: segment, mel settings,
tagger window) and tagger are the ones the store was built with, those are exactly the features
training read, so catalog scoring takes them from the store and only the other songs (new
releases, songs outside the sample) go through the decoder. Nothing is held in memory beyond the
row numbers: mels are read from the memory map song by song.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitsong.audio import AudioConfig
from hitsong.errors import StoreError
from hitsong.features.layout import mel_path, open_mels
from hitsong.store import connect
from hitsong.store.predictions import stored_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSong:
    """Where one song's stored features are: its subset's memmap row, its tag vector and genre."""

    subset: str
    row: int
    tags: np.ndarray
    genre: str | None


class FeatureStore:
    """Read-only access to the stored features of one audio config and tagger.

    Parameters
    ----------
    db_path, store_dir : Path
        The DuckDB file (feature index, tag vectors) and the feature store folder.
    config : AudioConfig
        The version's audio config; only rows computed with its hash are used.
    tagger : str
        The tagger whose tag vectors are used.
    """

    def __init__(self, db_path: Path, store_dir: Path, *, config: AudioConfig, tagger: str) -> None:
        self.db_path, self.store_dir = Path(db_path), Path(store_dir)
        self.config, self.tagger = config, tagger
        self._maps: dict[str, np.memmap] = {}

    def find(self, song_ids: Sequence[str]) -> dict[str, StoredSong]:
        """The songs of ``song_ids`` with stored features for this config and tagger (and an array on disk)."""
        if not self.db_path.exists():
            return {}
        with connect(self.db_path, read_only=True) as con:
            frame = stored_features(con, song_ids, config_hash=self.config.config_hash(), tagger=self.tagger)
        on_disk = {s for s in frame["subset"].unique() if mel_path(self.store_dir, str(s)).is_file()}
        for subset in set(frame["subset"].unique()) - on_disk:
            log.warning("the index lists features of %s but %s is missing; its songs are decoded again", subset,
                        mel_path(self.store_dir, str(subset)))  # fmt: skip
        return {
            str(r.song_id): StoredSong(str(r.subset), int(r.row), np.asarray(r.tags, dtype=np.float32), r.genre)
            for r in frame.itertuples()
            if r.subset in on_disk
        }

    def mel(self, song: StoredSong) -> np.ndarray:
        """The song's log-mel as training read it: ``(n_mels, n_frames)`` float32 from the float16 row.

        Raises
        ------
        StoreError
            The array is missing or shorter than the index says.
        """
        if song.subset not in self._maps:
            self._maps[song.subset] = open_mels(
                self.store_dir, song.subset, n_mels=self.config.n_mels, n_frames=self.config.n_frames
            )
        mels = self._maps[song.subset]
        if song.row >= mels.shape[0]:
            raise StoreError(
                f"the feature store of {song.subset} holds {mels.shape[0]} rows but the index points at row "
                f"{song.row}; run `hitsong features --subset {song.subset}` to repair it"
            )
        return np.asarray(mels[song.row], dtype=np.float32)
