"""Where :func:`~hitsong.features.compute.compute_song_features` runs: a process pool or dask.

Both yield ``(task, features or None, error or None)`` as songs finish. A worker process that
dies (a decoder crash, or killed) is replaced, and the songs it held are retried one at a time
so that only the song that kills a worker is recorded as failed.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from hitsong.audio import (
    AudioConfig,
)
from hitsong.errors import ConfigError, HitsongError
from hitsong.features.compute import SongFeatures, compute_song_features

log = logging.getLogger(__name__)


EXECUTORS = ("process", "dask")


@dataclass(frozen=True)
class Task:
    song_id: str
    subset: str
    path: str


Outcome = tuple[Task, "SongFeatures | None", "str | None"]


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, HitsongError) else f"{type(exc).__name__}: {exc}"


def _exit_with_parent() -> None:
    """Block until the parent process is gone, then end this worker.

    A pool worker holds both ends of its task pipe, so it never sees EOF when the parent is
    killed (``kill -9``) and would wait forever; this watchdog thread ends it instead.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _init_worker() -> None:
    """Worker processes leave Ctrl-C to the parent, die with it, and use one thread each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch is a dependency; a worker without it just skips this
        pass


def run_processes(tasks: Iterable[Task], *, workers: int, config: AudioConfig, tagger: str) -> Iterator[Outcome]:
    """Run tasks in a ``spawn`` process pool, surviving worker deaths.

    When a worker dies every task in flight fails with ``BrokenProcessPool``; those tasks are
    retried one at a time in a fresh single-worker pool, and only a task that kills a worker
    on its own is reported as failed.
    """
    ctx = multiprocessing.get_context("spawn")
    queue: deque[tuple[Task, int]] = deque((t, 0) for t in tasks)
    while queue:
        isolate = queue[0][1] > 0
        n = 1 if isolate else workers
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker)
        inflight: dict[Future, tuple[Task, int]] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < 2 * n and (queue[0][1] > 0) == isolate:
                    task, crashes = queue.popleft()
                    inflight[pool.submit(compute_song_features, task.path, config, tagger)] = (task, crashes)
                if not inflight:
                    break  # the next task needs the other mode: start a new pool
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    task, crashes = inflight.pop(fut)
                    try:
                        yield task, fut.result(), None
                    except BrokenProcessPool:
                        broken = True
                        if crashes > 0:
                            yield (
                                task,
                                None,
                                (
                                    "the worker process died while computing this song (a crash in the "
                                    "decoder, out of memory, or killed)"
                                ),
                            )
                        else:
                            queue.appendleft((task, crashes + 1))
                    except Exception as exc:
                        yield task, None, _describe(exc)
                if broken:
                    log.warning("a worker process died; retrying the songs it was given one at a time")
                    for task, crashes in inflight.values():
                        queue.appendleft((task, crashes + 1))
                    inflight.clear()
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def run_dask(
    tasks: Iterable[Task], *, workers: int, config: AudioConfig, tagger: str, scheduler: str | None
) -> Iterator[Outcome]:
    """Run tasks on dask.distributed: a local cluster of ``workers`` processes, or ``scheduler``."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ConfigError("--executor dask needs dask.distributed: pip install 'hitsong[dask]'") from exc
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
    client = Client(scheduler or cluster)
    try:
        client.run(_init_worker_threads)
        todo = deque(tasks)
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})) or workers)
        futures: dict[Any, Task] = {}

        def submit() -> Any:
            task = todo.popleft()
            fut = client.submit(compute_song_features, task.path, config, tagger, pure=False)
            futures[fut] = task
            return fut

        pending = as_completed([submit() for _ in range(min(window, len(todo)))])
        for fut in pending:
            task = futures.pop(fut)
            if fut.status == "finished":
                yield task, fut.result(), None
            elif fut.status == "error":
                yield task, None, _describe(fut.exception())
            else:
                yield task, None, f"the dask task ended as {fut.status!r} (worker lost or cancelled)"
            fut.release()
            if todo:
                pending.add(submit())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _init_worker_threads() -> None:
    """On a dask worker: one thread for torch/BLAS (dask owns the parallelism)."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
