"""Exact sets of 64-bit keys kept beside the database: what makes an ingest incremental.

The listening store keeps three sets (DESIGN.md section 2, ``hitsong.store.ingest``):

- ``pairs``: every (song, user) pair with plays, as ``song_no << 32 | user_no``;
- ``subset_users``: every (subset, user) pair with plays, as ``subset_no << 32 | user_no``;
- ``users``: every user with plays, as ``user_no``.

A new events file is aggregated on its own into the same kinds of keys; the keys that are not
in the store yet are exactly the new listeners of each song, of each subset and overall, so the
counts stay exact while only the new file is read. A DuckDB anti-join of 0.5M new pairs against
50M stored ones took 3.4 s here (BENCHMARKS.md), longer than the whole first ingest; a merge with a
sorted run reads it once in order (~40 ms for those 50M), and a few keys gallop to the cache lines
near them (:func:`hitsong.store.keyruns.absent_sorted`).

Storage: a set is a list of *runs*, each a NumPy ``.npy`` file of sorted, unique int64 keys;
runs of one set are disjoint, and their union is the set. The runs sit in ``<db>.pairs/``, named
``<set>-<random>.npy``; the DuckDB table ``key_runs`` lists the runs that count. A run is
written (temporary name, fsync, rename) before the ingest's transaction lists it, and deleted
only after a transaction stopped listing it, so a crash at any point leaves the database's list
valid; files the list does not name are leftovers, removed by the next ingest. New runs are
merged with the smaller recent ones (size-tiered: a run is merged while it holds at least a
quarter of its older neighbour's keys), so a set has O(log n) runs and each key is rewritten
O(log n) times over the store's life.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitsong.errors import StoreError

log = logging.getLogger(__name__)

#: The sets a listening store keeps.
KEYSETS = ("pairs", "subset_users", "users")

#: A run is merged into its older neighbour while it holds at least 1/MERGE_RATIO of its keys.
MERGE_RATIO = 4


@dataclass(frozen=True)
class Run:
    """One run file of a set: its name (inside the keys folder) and how many keys it holds."""

    file: str
    keys: int


def keys_dir(db_path: str | Path) -> Path:
    """The folder of a database's key runs: ``<db>.pairs`` beside the DuckDB file."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".pairs")


#: From this many keys on, the compiled search and merge of :mod:`hitsong.store.keyruns` are used;
#: below, NumPy's binary search, which needs no compiler start-up (numba's start in a process
#: costs 0.5-2 s here, more than searching a small append's keys with NumPy), unless this process
#: has started numba already (it ran the compiled pair counter).
COMPILED_MIN_KEYS = 2_000_000


def compiled_loaded() -> bool:
    """Whether this process has started numba for the store's compiled loops (:mod:`hitsong.store.jit`:
    then they cost nothing to start, and beat NumPy at any size)."""
    return "hitsong.store.jit" in sys.modules


def _compiled(n: int) -> bool:
    return n >= COMPILED_MIN_KEYS or compiled_loaded()


def _absent_numpy(new: np.ndarray, run: np.ndarray, out: np.ndarray) -> None:
    pos = np.searchsorted(run, new)
    hit = pos < run.shape[0]
    hit[hit] = run[pos[hit]] == new[hit]
    out &= ~hit


def _merge_numpy(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    at = np.searchsorted(a, b) + np.arange(b.shape[0])
    out[at] = b
    rest = np.ones(out.shape[0], dtype=np.bool_)
    rest[at] = False
    out[rest] = a


def distinct(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an int64 array (``np.unique`` without its masked-array import)."""
    out = np.sort(keys)
    if out.size:
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


def open_run(folder: Path, run: Run) -> np.ndarray:
    """A run's keys as a read-only memory map (int64, sorted, unique).

    Raises
    ------
    StoreError
        The file is missing, not a plain ``.npy`` array (never unpickled) or not the ``run.keys``
        int64 keys ``key_runs`` lists.
    """
    path = folder / run.file
    try:
        keys = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: {_DAMAGED} ({exc})") from exc
    if keys.dtype != np.int64 or keys.ndim != 1 or keys.shape[0] != run.keys:
        raise StoreError(f"{path}: {_DAMAGED} (expected {run.keys} int64 keys, found {keys.dtype} {keys.shape})")
    return keys


_DAMAGED = (
    "a key set file of the store is missing or damaged; rebuild the store from its events files with "
    "`hitsong ingest --replace`"
)


def absent(folder: Path, runs: list[Run], keys: np.ndarray) -> np.ndarray:
    """Which of the sorted unique ``keys`` are in none of ``runs``: a boolean mask of ``keys``' length."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    out = np.ones(keys.shape[0], dtype=np.bool_)
    for run in runs:
        if keys.size and run.keys:
            if _compiled(keys.shape[0]):
                from hitsong.store.keyruns import absent_sorted

                absent_sorted(keys, open_run(folder, run), out)
            else:
                _absent_numpy(keys, open_run(folder, run), out)
    return out


def write_run(folder: Path, name: str, keys: np.ndarray) -> Run:
    """Write sorted unique keys as a new run file ``<name>-<random>.npy`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    file = f"{name}-{uuid.uuid4().hex[:12]}.npy"
    tmp = folder / f".{file}.tmp"
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(keys, dtype=np.int64), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / file)
    finally:
        tmp.unlink(missing_ok=True)
    return Run(file, int(keys.shape[0]))


@dataclass(frozen=True)
class Added:
    """What :func:`add` did to one set: the keys that were new, and the run list to record."""

    new_keys: np.ndarray
    runs: list[Run]
    written: list[str]  # files written by this call (to delete if the ingest fails)
    dropped: list[str]  # files no longer listed (to delete once the ingest committed)


def add(folder: Path, runs: list[Run], keys: np.ndarray, *, name: str) -> Added:
    """Add sorted unique ``keys`` to the set made of ``runs``; nothing is deleted yet.

    Returns the keys that were not in the set and the new run list: the old runs, plus a run of
    the new keys, merged with its recent neighbours as :data:`MERGE_RATIO` says.
    """
    fresh = keys[absent(folder, runs, keys)] if runs else np.asarray(keys, dtype=np.int64)
    if not fresh.size:
        return Added(fresh, list(runs), [], [])
    stack = [(run, None) for run in runs]  # (run, keys in memory when written here)
    written: list[str] = []
    dropped: list[str] = []
    current = fresh
    while stack and MERGE_RATIO * current.shape[0] >= stack[-1][0].keys:
        older, _ = stack.pop()
        merged = np.empty(older.keys + current.shape[0], dtype=np.int64)
        if _compiled(merged.shape[0]):
            from hitsong.store.keyruns import merge_sorted

            merge_sorted(open_run(folder, older), current, merged)
        else:
            _merge_numpy(open_run(folder, older), current, merged)
        dropped.append(older.file)
        current = merged
    new_run = write_run(folder, name, current)
    written.append(new_run.file)
    if dropped:
        log.info("keys %s: merged %d run(s) into one of %d keys", name, len(dropped), new_run.keys)
    return Added(fresh, [r for r, _ in stack] + [new_run], written, dropped)


def union(folder: Path, runs: list[Run]) -> np.ndarray:
    """All keys of a set, sorted (read into memory)."""
    if not runs:
        return np.zeros(0, dtype=np.int64)
    parts = [np.asarray(open_run(folder, r)) for r in runs]
    out = np.concatenate(parts)
    out.sort(kind="stable")
    return out


def remove_files(folder: Path, files: list[str]) -> None:
    """Delete run files (missing ones are fine)."""
    for f in files:
        (folder / f).unlink(missing_ok=True)


def remove_leftovers(folder: Path, listed: set[str]) -> int:
    """Delete run files and temporaries that the database does not list; returns how many."""
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.iterdir():
        if p.is_file() and p.name not in listed and (p.suffix in (".npy", ".tmp")):
            p.unlink(missing_ok=True)
            n += 1
    if n:
        log.info("removed %d leftover key run file(s) from %s", n, folder)
    return n
