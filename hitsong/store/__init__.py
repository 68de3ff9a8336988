"""The DuckDB database: the only package that holds SQL.

One DuckDB file (``Settings.db_path``) holds the listening aggregates, the experiment splits,
the feature index, failures and tag vectors. DuckDB lets one process hold a read-write
connection at a time, and an open reader blocks writers, so: writers open, write in one
short transaction, close (an ingest does its work in a private in-memory database first);
readers open short read-only connections with a retry (see ECOSYSTEM.md). Values are always
passed as parameters, never formatted into SQL.

Sub-modules, one per concern:
- ``schema``: the tables, column and split names; ``rules``: the hit score and release quarter.
- ``sources``: input files as relations, with row checks; ``events``: an events data set (file,
  glob, folder, hive partitions, URL) and its files' identity; ``catalogue``: the songs file.
- ``ingest``: events and songs into ``song_stats``/``subset_stats``, incrementally: ``aggregate``
  (the new files' sums and pair keys; ``pairs``: the compiled exact counter), ``keysets`` (the
  stored pairs, as sorted key runs beside the file), ``merge``, ``window``, ``state`` (the two short
  moments the database file is open); ``songstats``: per-song statistics from a warehouse.
- ``sample``: the top-N sample and its split; ``read``: read-only queries for commands and the dashboard.
- ``featureindex``: the feature index, failures and tag vectors; ``lock``: one job of a kind per store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from hitsong.errors import StoreError

log = logging.getLogger(__name__)

_LOCK_MARKERS = ("lock", "Conflicting", "being used", "Could not set lock")


def _is_lock_error(exc: Exception) -> bool:
    return any(m in str(exc) for m in _LOCK_MARKERS)


def _open(path: Path, *, read_only: bool, retry_seconds: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + retry_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                raise StoreError(
                    f"cannot open the database {path}: {exc}. If another hitsong command is "
                    "writing to it, wait for it to finish and try again."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def connect(
    path: str | Path, *, read_only: bool = False, retry_seconds: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the DuckDB file for a short while and close it afterwards.

    Parameters
    ----------
    path : str or Path
        The database file. For ``read_only=True`` it must exist.
    read_only : bool
        Open read-only (dashboards, reports). Writers use ``read_only=False``.
    retry_seconds : float
        How long to retry while another process holds the file.

    Raises
    ------
    StoreError
        The file is missing (read-only) or stays locked.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(
            f"no database at {path}. Create it with `hitsong ingest --events FILE --songs FILE` "
            "or run the demo with `hitsong demo run`."
        )
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only=read_only, retry_seconds=retry_seconds)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run a block in one transaction: all of it lands, or none of it does."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")
