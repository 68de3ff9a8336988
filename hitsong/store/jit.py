"""Numba compilation of the store's loops."""

from __future__ import annotations

from collections.abc import Callable

import numba


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled without the GIL, cached on disk (next to this file, else in the user's
    cache folder; with neither writable it compiles again in each process, ~1 s)."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        return numba.njit(nogil=True)(fn)
