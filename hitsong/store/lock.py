"""Exclusive locks for jobs that must not run twice on one store at the same time.

A lock is an ``flock`` on a small file beside what it protects (``<db>.features.lock``,
``<store>/.features.lock``, ``<db>.ingest.lock``). The kernel releases it when the holder exits,
however it exits (``kill -9`` included), so a stale lock file never blocks anyone; the file
itself stays, holding the last holder's pid, command and start time for the next one's message.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from hitsong.errors import StoreError

log = logging.getLogger(__name__)


def lock_path(target: str | Path, job: str) -> Path:
    """The lock file of ``job`` on ``target``: ``<target>.<job>.lock``, or ``<target>/.<job>.lock`` for a folder."""
    target = Path(target)
    if target.is_dir():
        return target / f".{job}.lock"
    return target.with_name(f"{target.name}.{job}.lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not info:
        return "another process"
    return f"pid {info.get('pid')} ({info.get('command', '?')}, since {info.get('started', '?')})"


@contextmanager
def exclusive(target: str | Path, job: str, *, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold the ``job`` lock of ``target`` for the duration of a block.

    Parameters
    ----------
    target : str or Path
        What the lock protects (a database file or a store folder); the lock file sits beside
        it (see :func:`lock_path`). Its folder is created if needed.
    job : str
        The kind of job (``"features"``, ``"ingest"``): jobs of different kinds do not exclude
        each other.
    wait_seconds : float
        How long to wait for a running holder to finish; 0 fails at once.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    StoreError
        Another process holds the lock (the message names its pid and command).
    """
    path = lock_path(target, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{target} is in use: a `hitsong {job}` run holds {path}: {_holder(path)}. Two {job} runs "
                        f"on one store would overwrite each other's work; wait for that run to finish (or stop "
                        f"it) and start again."
                    ) from None
                time.sleep(0.2)
        info = {
            "pid": os.getpid(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        log.debug("locked %s", path)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
