"""Features the feature store already holds: a sampled song is not decoded again to be scored.

``hitsong features`` keeps each sampled song's log-mel (a float16 shard file per song,
:mod:`hitsong.features.layout`) and tag vector. When the version's audio config (its hash: segment, mel settings,
tagger window) and tagger are the ones the store was built with, those are exactly the features
training read, so catalog scoring takes them from the store and only the other songs (new
releases, songs outside the sample) go through the decoder. Nothing is held in memory beyond the
shard paths: mels are read song by song.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitsong.audio import AudioConfig
from hitsong.features.layout import read_shard
from hitsong.store import connect
from hitsong.store.predictions import stored_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSong:
    """Where one song's stored features are: its shard (relative to the store), its tag vector and genre."""

    subset: str
    shard: str
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

    def find(self, song_ids: Sequence[str]) -> dict[str, StoredSong]:
        """The songs of ``song_ids`` with stored features for this config and tagger (and a shard on disk)."""
        if not self.db_path.exists():
            return {}
        with connect(self.db_path, read_only=True) as con:
            frame = stored_features(con, song_ids, config_hash=self.config.config_hash(), tagger=self.tagger)
        found = {
            str(r.song_id): StoredSong(str(r.subset), str(r.shard), np.asarray(r.tags, dtype=np.float32), r.genre)
            for r in frame.itertuples()
        }
        missing = [song_id for song_id, song in found.items() if not (self.store_dir / song.shard).is_file()]
        if missing:
            log.warning("the index lists features of %d song(s) whose shard is missing under %s (e.g. %s); "
                        "they are decoded again", len(missing), self.store_dir, missing[0])  # fmt: skip
        gone = set(missing)
        return {song_id: song for song_id, song in found.items() if song_id not in gone}

    def mel(self, song: StoredSong) -> np.ndarray:
        """The song's log-mel as training read it: ``(n_mels, n_frames)`` float32 from the float16 shard.

        Raises
        ------
        StoreError
            The shard is missing, unreadable or of another shape.
        """
        mel = read_shard(self.store_dir, song.shard, n_mels=self.config.n_mels, n_frames=self.config.n_frames)
        return np.asarray(mel, dtype=np.float32)
