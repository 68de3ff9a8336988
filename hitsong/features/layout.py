"""Where the feature store keeps mels: one shard file per song, written by the worker that computed it.

Layout::

    <store>/<subset>/mels-<config hash>/<h[:2]>/<h>.npy     h = sha1 of the song id (hex)

Each shard is a NumPy ``.npy`` file holding one log-mel, little-endian float16 of shape
``(n_mels, n_frames)`` (``(128, 646)`` for the paper's config, 165 kB), read with
``allow_pickle=False``. float16 keeps the log-mel (values 0..~10) to about 3 significant digits
(absolute error <= 0.004 at 8). The DuckDB table ``feature_index`` maps ``(song_id, subset)`` to
the shard's path relative to the store (``hitsong.store.featureindex``); a shard that no index row
names is an unfinished or abandoned one and is never read.

A worker writes a shard to a temporary name, syncs it, and renames it into place, so a shard
that exists is complete; the client records it only after the worker reported success. With dask
the store must be a folder every worker and the client reach (a shared file system).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from hitsong.errors import ConfigError, StoreError

#: Storage dtype of a mel shard (little-endian float16).
MEL_DTYPE = np.dtype("<f2")

#: Prefix of a subset's shard folder; the audio config hash follows.
SHARD_PREFIX = "mels-"

SUBSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def subset_dir(store_dir: str | Path, subset: str) -> Path:
    """``<store>/<subset>``; the subset must be a safe folder name."""
    if not SUBSET_NAME.match(subset):
        raise ConfigError(f"subset name {subset!r} cannot name a folder of the feature store (letters, digits, _ . -)")
    return Path(store_dir) / subset


def shard_relpath(subset: str, config_hash: str, song_id: str) -> str:
    """The shard of one song, relative to the store (what ``feature_index.shard`` holds)."""
    subset_dir("", subset)  # checks the name
    h = hashlib.sha1(song_id.encode("utf-8")).hexdigest()
    return f"{subset}/{SHARD_PREFIX}{config_hash}/{h[:2]}/{h}.npy"


def write_shard(store_dir: str | Path, relpath: str, mel: np.ndarray) -> None:
    """Write one mel shard atomically (temporary file, fsync, rename, fsync of the folder)."""
    path = Path(store_dir) / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(mel, dtype=MEL_DTYPE), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_shard(store_dir: str | Path, relpath: str, *, n_mels: int, n_frames: int) -> np.ndarray:
    """One stored mel as float16 ``(n_mels, n_frames)``.

    A shard is read as data only: the ``.npy`` header must name exactly this shape and dtype before
    any of it is read (a planted header cannot make this allocate more), and nothing is unpickled.

    Raises
    ------
    StoreError
        The shard is missing, unreadable, truncated, or of another shape or dtype.
    """
    path = Path(store_dir) / relpath
    try:
        with open(path, "rb") as fh:  # the header is checked before any data is read or allocated
            version = np.lib.format.read_magic(fh)
            if version not in _HEADER_READERS:
                raise ValueError(f".npy format version {version} is not one this store writes")
            shape, fortran, dtype = _HEADER_READERS[version](fh, max_header_size=_MAX_HEADER)
            if shape != (n_mels, n_frames) or dtype != MEL_DTYPE or fortran:
                raise StoreError(
                    f"{path}: holds a {dtype} array of shape {shape}, expected float16 ({n_mels}, {n_frames})"
                )
            mel = np.fromfile(fh, dtype=MEL_DTYPE, count=n_mels * n_frames)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"{path}: cannot read the stored mel ({exc}); the feature store and the database do not match. "
            "Run `hitsong features` again to recompute missing songs."
        ) from exc
    if mel.size != n_mels * n_frames:
        raise StoreError(f"{path}: holds {mel.size} values, expected {n_mels * n_frames}; the shard is truncated")
    return mel.reshape(n_mels, n_frames)


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_MAX_HEADER = 1024  # bytes; a shard's header is 128


#: The one-array-per-subset file of earlier versions of the store (removed when found).
LEGACY_MEL_FILE = "mel.f16"


def remove_other_configs(store_dir: str | Path, subset: str, config_hash: str) -> int:
    """Delete what ``subset`` holds besides the shards of ``config_hash``: shard folders of other
    audio configs and the earlier one-array layout. Returns how many were removed."""
    folder = subset_dir(store_dir, subset)
    removed = 0
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and child.name.startswith(SHARD_PREFIX) and child.name != SHARD_PREFIX + config_hash:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
            elif child.is_file() and child.name == LEGACY_MEL_FILE:
                child.unlink()
                removed += 1
    return removed
