"""Compiled search and merge of the sorted key runs of :mod:`hitsong.store.keysets`."""

from __future__ import annotations

import numpy as np

from hitsong.store.jit import compiled

#: Run keys per looked-up key below which :func:`absent_sorted` walks the run instead of galloping:
#: at about one new key per 8 KiB of run, the gallops touch nearly every page anyway, and a
#: walk reads them in order (measured on a 50 M-key run: 0.5 M keys 45 ms walking against 100 ms
#: galloping, 50 k keys even, 5 k keys 33 ms against 16 ms).
SCAN_GAP = 1024


@compiled
def absent_sorted(new: np.ndarray, run: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i] &= new[i] not in run`` for sorted unique ``new`` and ``run``.

    Many keys against the run (fewer than :data:`SCAN_GAP` run keys per key): a merge that walks
    the run eight keys (one cache line) at a time. Few: a galloping search from the previous
    key's place.
    """
    n_run = run.shape[0]
    dense = n_run < SCAN_GAP * new.shape[0]
    j = 0
    for i in range(new.shape[0]):
        if j >= n_run:
            break
        if not out[i]:  # in an earlier run (runs are disjoint)
            continue
        key = new[i]
        if dense:
            while j + 8 <= n_run and run[j + 7] < key:
                j += 8
            while j < n_run and run[j] < key:
                j += 1
        elif run[j] < key:  # gallop to the first run[j] >= key
            step = 1
            lo = j
            hi = j + 1
            while hi < n_run and run[hi] < key:
                lo = hi
                step *= 2
                hi = j + step
            hi = min(hi, n_run)
            while lo + 1 < hi:  # run[lo] < key <= run[hi] (or hi == n_run)
                mid = (lo + hi) // 2
                if run[mid] < key:
                    lo = mid
                else:
                    hi = mid
            j = hi
        if j < n_run and run[j] == key:
            out[i] = False


@compiled
def merge_sorted(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Merge two sorted disjoint arrays into ``out`` (length ``len(a) + len(b)``)."""
    i = j = k = 0
    while i < a.shape[0] and j < b.shape[0]:
        if a[i] < b[j]:
            out[k] = a[i]
            i += 1
        else:
            out[k] = b[j]
            j += 1
        k += 1
    while i < a.shape[0]:
        out[k] = a[i]
        i += 1
        k += 1
    while j < b.shape[0]:
        out[k] = b[j]
        j += 1
        k += 1
