"""The private in-memory DuckDB an ingest stages its files in, kept by the process between ingests."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

_STAGING_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "preserve_insertion_order": False,
    "autoinstall_known_extensions": False,  # never download during an ingest
}

_kept_lock = threading.Lock()
_kept: dict[int, duckdb.DuckDBPyConnection] = {}  # this process's kept staging database, by process id


@contextmanager
def staging(tmp: Path, memory_limit_mb: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB connection for one ingest, spilling to ``tmp`` (removed after).

    Opening and closing an in-memory DuckDB costs 15-25 ms here, a tenth of a day's append, so
    the process keeps one and gives each ingest a connection of its own (``cursor()``: its temp
    tables and registered arrays are its own and go with it). The memory limit and the spill
    folder belong to the database, so one ingest at a time uses the kept one (another thread's
    ingest meanwhile opens its own), and after an ingest that spilled it is closed: DuckDB cannot
    move a spill folder once it has used it. A forked child never uses its parent's.
    """
    limits = {"m": f"{memory_limit_mb}MB", "d": str(tmp)}
    if not _kept_lock.acquire(blocking=False):
        config = {**_STAGING_CONFIG, "memory_limit": limits["m"], "temp_directory": limits["d"]}
        own = duckdb.connect(":memory:", config=config)
        try:
            own.execute("SET enable_progress_bar = false")  # progress goes through logging
            yield own
        finally:
            own.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        pid = os.getpid()
        if pid not in _kept:
            _kept.clear()  # a parent's, inherited through fork: not ours to use or close
            _kept[pid] = duckdb.connect(":memory:", config=_STAGING_CONFIG)
        kept = _kept[pid]
        kept.execute("SET memory_limit = $m", {"m": limits["m"]})
        kept.execute("SET temp_directory = $d", {"d": limits["d"]})
        kept.execute("DETACH DATABASE IF EXISTS store")  # left attached only if a detach failed
        con = kept.cursor()
        try:
            con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()
            if tmp.exists():  # it spilled
                _kept.pop(pid).close()
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        _kept_lock.release()
