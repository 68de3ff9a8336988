"""The feature store as a torch-style map dataset, for training and evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from hitsong.errors import StoreError
from hitsong.features.compute import NO_TAGGER
from hitsong.features.layout import read_shard
from hitsong.settings import DEFAULT_TAGGER
from hitsong.store import connect, featureindex
from hitsong.store.featureindex import N_TAGS

log = logging.getLogger(__name__)


class MelDataset(Dataset):
    """(mel, tags, hit score) per song of one subset and split, read lazily from the store.

    A map-style dataset for ``torch.utils.data.DataLoader`` (its default collate turns the
    numpy arrays into tensors). Each item reads its song's shard file when asked
    (:mod:`hitsong.features.layout`), so the store is never read whole into memory and
    DataLoader workers read in parallel.

    Parameters
    ----------
    db_path : str or Path
        The DuckDB file (read once, with a short read-only connection, at construction).
    store_dir : str or Path
        The feature store.
    subset : str
        E.g. ``"mandarin"``.
    split : {"train", "val", "test"} or None
        ``None`` means all splits.
    tagger : str
        Which tag vectors to attach (``"none"``: zeros).

    Notes
    -----
    Items are ``{"mel": float32 (n_mels, n_frames), "tags": float32 (50,), "has_tags": bool,
    "target": float32 hit score, "song_id": str, "artist": str ("" when unknown),
    "release_days": float32 days from the observation window's start to the release (negative
    before it)}``; the last two are the metadata baseline m0's only input. A song without a tag
    vector gets zeros and ``has_tags=False``. Songs of the split without a stored mel (failed, or not computed
    yet) are left out with a warning; ``missing`` lists them.
    """

    def __init__(
        self,
        db_path: str | Path,
        store_dir: str | Path,
        subset: str,
        split: str | None = None,
        *,
        tagger: str = DEFAULT_TAGGER,
    ) -> None:
        from hitsong.store.read import split_frame, window

        self.store_dir = Path(store_dir)
        self.subset = subset
        self.split = split
        songs = split_frame(db_path, subset=subset, split=split)
        with connect(db_path, read_only=True) as con:
            meta = featureindex.subset_meta_readonly(con, subset)
            index = featureindex.index_frame(con, subset)
            tags = featureindex.tags_frame(con, subset, tagger) if tagger != NO_TAGGER else None
        if meta is None:
            raise StoreError(f"{db_path}: no features for subset {subset!r}; run `hitsong features` first")
        self.shape = (meta.n_mels, meta.n_frames)
        start = pd.Timestamp(window(db_path)[0])
        songs = songs.assign(
            release_days=(pd.to_datetime(songs["release_date"]) - start).dt.days.astype("float32"),
            artist=songs["artist"].fillna("").astype(str),
        )
        merged = songs[["song_id", "hit_score", "artist", "release_days"]].merge(
            index[["song_id", "shard"]], on="song_id", how="left"
        )
        self.missing = merged.loc[merged["shard"].isna(), "song_id"].astype(str).tolist()
        if self.missing:
            log.warning(
                "MelDataset %s/%s: %d song(s) have no stored features and are left out (e.g. %s)",
                subset,
                split,
                len(self.missing),
                ", ".join(self.missing[:3]),
            )
        merged = merged.dropna(subset=["shard"]).reset_index(drop=True)
        self.song_ids: list[str] = merged["song_id"].astype(str).tolist()
        self.shards: list[str] = merged["shard"].astype(str).tolist()
        self.targets = merged["hit_score"].to_numpy(dtype=np.float32)
        self.artists: list[str] = merged["artist"].tolist()
        self.release_days = merged["release_days"].to_numpy(dtype=np.float32)
        self.tags = np.zeros((len(merged), N_TAGS), dtype=np.float32)
        self.has_tags = np.zeros(len(merged), dtype=bool)
        if tags is not None and len(tags):
            pos = {s: i for i, s in enumerate(self.song_ids)}
            for song_id, vec in zip(tags["song_id"], tags["tags"], strict=True):
                i = pos.get(str(song_id))
                if i is not None:
                    self.tags[i] = np.asarray(vec, dtype=np.float32)
                    self.has_tags[i] = True

    def __len__(self) -> int:
        return len(self.song_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"MelDataset index {i} out of range for {len(self)} songs")
        mel = read_shard(self.store_dir, self.shards[i], n_mels=self.shape[0], n_frames=self.shape[1])
        mel = mel.astype(np.float32)
        return {
            "mel": mel,
            "tags": self.tags[i].copy(),
            "has_tags": bool(self.has_tags[i]),
            "target": np.float32(self.targets[i]),
            "song_id": self.song_ids[i],
            "artist": self.artists[i],
            "release_days": np.float32(self.release_days[i]),
        }
