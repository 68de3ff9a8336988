"""Where the feature store keeps a subset's mels: ``<store>/<subset>/mel.f16``, float16, memory-mapped.

Layout, per subset: a headerless little-endian float16 array of shape ``(N, n_mels, n_frames)``
(``(N, 128, 646)`` for the paper's config) read as a memory map; its rows are indexed in DuckDB
(``hitsong.store.featureindex``). float16 keeps the log-mel (values 0..~10) to about 3
significant digits (absolute error <= 0.004 at 8).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hitsong.errors import ConfigError, StoreError

#: File name of a subset's mel array inside ``<store>/<subset>/``.
MEL_FILE = "mel.f16"


#: Storage dtype of the mel array (little-endian float16).
MEL_DTYPE = np.dtype("<f2")


SUBSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def mel_path(store_dir: str | Path, subset: str) -> Path:
    """``<store>/<subset>/mel.f16``."""
    if not SUBSET_NAME.match(subset):
        raise ConfigError(f"subset name {subset!r} cannot name a folder of the feature store (letters, digits, _ . -)")
    return Path(store_dir) / subset / MEL_FILE


def open_mels(store_dir: str | Path, subset: str, *, n_mels: int, n_frames: int) -> np.memmap:
    """The subset's mel array as a read-only memory map ``(N, n_mels, n_frames)`` float16."""
    path = mel_path(store_dir, subset)
    if not path.exists():
        raise StoreError(f"{path}: no feature array; run `hitsong features` first")
    row_bytes = n_mels * n_frames * MEL_DTYPE.itemsize
    n = path.stat().st_size // row_bytes
    return np.memmap(path, dtype=MEL_DTYPE, mode="r", shape=(n, n_mels, n_frames))
