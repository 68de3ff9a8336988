"""Where per-song work runs: a local ``spawn`` process pool or a dask.distributed cluster.

The contract, for any per-song job (the feature store, catalog scoring, ...):

- A **task** is a :class:`Task` ``(song_id, subset, path)``.
- A **task function** ``fn(task) -> result`` runs in a worker process, on this machine or on a
  dask worker. It must be picklable (a module-level function, or ``functools.partial`` of one
  with picklable arguments), deterministic for its arguments, and return a *small* picklable
  result: anything large (a mel is 165 kB) is written by the worker itself to a per-task file
  under a store folder that every worker can reach, and the result names that file. Nothing of a
  song's size crosses the network back to the client. An exception in ``fn`` fails that song only.
  (Catalog scoring is the one job that returns a mel, as float16: its network runs in the client.)
- A **result sink** (:class:`ResultSink`) lives in the client: ``record(task, result)`` for a
  song that finished, ``fail(task, error_text)`` for one that did not, and ``flush()``, which
  must make what was recorded durable (e.g. one DuckDB transaction). :func:`run_tasks` calls
  ``flush`` at least every ``batch_size`` outcomes or ``batch_seconds``, and once at the end,
  also when the run stops with an error or Ctrl-C.

:func:`run_tasks` drives a job: it validates the executor options, runs the tasks, feeds the
sink in completion order and shows progress (count, rate, ETA). :func:`run_processes` and
:func:`run_dask` are the two engines; both yield :data:`Outcome` ``(task, result or None,
error text or None)``.

Failures of the machinery, not of a song:

- process pool: a worker that dies (a decoder crash, out of memory, ``kill -9``) breaks the
  pool; every task it had in flight is retried one at a time in a fresh single-worker pool, and
  only a task that kills a worker on its own is recorded as failed;
- dask: the scheduler reschedules the tasks of a worker that is lost onto the other workers;
  a task that keeps killing workers ends as ``KilledWorker`` (dask's ``allowed-failures``) and is
  recorded as failed. A scheduler that cannot be reached is a :class:`~hitsong.errors.ConfigError`.

Workers use one thread each for torch and BLAS: the executor owns the parallelism.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from hitsong.errors import ConfigError, HitsongError
from hitsong.progress import Progress
from hitsong.workers import init_worker, use_threads

log = logging.getLogger(__name__)


#: The executor names ``hitsong features --executor`` (and other per-song jobs) accept.
EXECUTORS = ("process", "dask")


@dataclass(frozen=True)
class Task:
    """One song to work on: its id, its subset and its audio path (absolute, readable by workers)."""

    song_id: str
    subset: str
    path: str


#: ``(task, result, None)`` for a finished song, ``(task, None, error text)`` for a failed one.
Outcome = tuple[Task, Any, "str | None"]


#: A task function: runs in a worker, returns a small picklable result.
TaskFunction = Callable[[Task], Any]


class ResultSink(Protocol):
    """Receives outcomes in the client process (see the module docstring)."""

    def record(self, task: Task, result: Any) -> None:
        """A song finished with ``result``."""

    def fail(self, task: Task, error: str) -> None:
        """A song failed; ``error`` says why."""

    def flush(self) -> None:
        """Make everything recorded so far durable."""


@dataclass(frozen=True)
class RunCounts:
    """What :func:`run_tasks` did: songs finished and failed, and the wall time in seconds."""

    done: int
    failed: int
    seconds: float


def check_options(executor: str, workers: int | None, scheduler: str | None) -> int:
    """Validate executor options; return the worker count (``None``: all cores).

    Raises
    ------
    ConfigError
        Unknown executor, a worker count that is not a positive integer, or a scheduler address
        without ``executor="dask"``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if scheduler is not None and executor != "dask":
        raise ConfigError("a dask scheduler address needs --executor dask")
    return workers


def outcomes(
    tasks: Iterable[Task], fn: TaskFunction, *, executor: str, workers: int, scheduler: str | None = None
) -> Iterator[Outcome]:
    """Run ``fn`` over ``tasks`` with the named executor; yield outcomes as songs finish."""
    if executor == "process":
        return run_processes(tasks, fn, workers=workers)
    return run_dask(tasks, fn, workers=workers, scheduler=scheduler)


def run_tasks(
    tasks: Iterable[Task],
    fn: TaskFunction,
    sink: ResultSink,
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    label: str = "tasks",
    batch_size: int = 16,
    batch_seconds: float = 5.0,
) -> RunCounts:
    """Run a per-song job: ``fn`` on every task, each outcome into ``sink``, flushed in batches.

    Parameters
    ----------
    tasks : iterable of Task
        The songs; their ``path`` must be readable where the workers run.
    fn : callable
        The task function (see the module docstring).
    sink : ResultSink
        Receives every outcome in this process.
    executor : {"process", "dask"}
        A local ``spawn`` process pool, or dask.distributed.
    workers : int or None
        Local worker processes (``None``: all cores); with dask and no ``scheduler``, the size
        of the local cluster.
    scheduler : str or None
        Address of a running dask scheduler (``tcp://host:port``); needs ``executor="dask"``.
    label : str
        The progress line's label (it counts songs).
    batch_size : int
        Outcomes between two ``flush`` calls, at most.
    batch_seconds : float
        Seconds between two ``flush`` calls, at most (checked as outcomes arrive).

    Returns
    -------
    RunCounts
    """
    n_workers = check_options(executor, workers, scheduler)
    todo = list(tasks)
    t0 = time.monotonic()
    if not todo:
        sink.flush()
        return RunCounts(done=0, failed=0, seconds=0.0)
    bar = Progress(label, len(todo), unit="songs")
    done = failed = pending = 0
    last = time.monotonic()
    stream = outcomes(todo, fn, executor=executor, workers=n_workers, scheduler=scheduler)
    try:
        for task, result, error in stream:
            if error is None:
                sink.record(task, result)
                done += 1
            else:
                sink.fail(task, error)
                failed += 1
            pending += 1
            bar.update()
            if pending >= batch_size or time.monotonic() - last >= batch_seconds:
                sink.flush()
                pending, last = 0, time.monotonic()
    finally:
        if hasattr(stream, "close"):
            stream.close()
        sink.flush()
    return RunCounts(done=done, failed=failed, seconds=time.monotonic() - t0)


def describe(exc: BaseException) -> str:
    """The text recorded for a failed song: a project error's message, else type and message."""
    return str(exc) if isinstance(exc, HitsongError) else f"{type(exc).__name__}: {exc}"


@functools.cache
def _one_thread() -> None:
    """In a worker: one thread for torch, BLAS and decoding (the executor owns the parallelism); once per process."""
    use_threads(1)


def call_task(fn: TaskFunction, task: Task) -> Any:
    """What a worker runs for one task: ``fn(task)`` with one compute thread."""
    _one_thread()
    return fn(task)


_DIED = "the worker process died while working on this song (a crash in the decoder, out of memory, or killed)"


def run_processes(tasks: Iterable[Task], fn: TaskFunction, *, workers: int) -> Iterator[Outcome]:
    """Run ``fn`` over ``tasks`` in a ``spawn`` process pool of ``workers``, surviving worker deaths.

    When a worker dies every task in flight fails with ``BrokenProcessPool``; those tasks are
    retried one at a time in a fresh single-worker pool, and only a task that kills a worker
    on its own is reported as failed.
    """
    ctx = multiprocessing.get_context("spawn")
    queue: deque[tuple[Task, int]] = deque((t, 0) for t in tasks)
    while queue:
        isolate = queue[0][1] > 0
        n = 1 if isolate else workers
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=init_worker)
        inflight: dict[Future, tuple[Task, int]] = {}
        finished = False
        try:
            while queue or inflight:
                while queue and len(inflight) < 2 * n and (queue[0][1] > 0) == isolate:
                    task, crashes = queue.popleft()
                    try:
                        future = pool.submit(call_task, fn, task)
                    except BrokenProcessPool:  # a worker died after the last results: this task never ran
                        queue.appendleft((task, crashes))
                        break  # the tasks in flight fail below, or a new pool starts
                    inflight[future] = (task, crashes)
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
                            yield task, None, _DIED
                        else:
                            queue.appendleft((task, crashes + 1))
                    except Exception as exc:
                        yield task, None, describe(exc)
                if broken:
                    log.warning("a worker process died; retrying the songs it was given one at a time")
                    for task, crashes in inflight.values():
                        queue.appendleft((task, crashes + 1))
                    inflight.clear()
                    break
            finished = True
        finally:
            # A pool left running (wait=False) makes Python 3.11's exit hook write to its closed wake-up
            # pipe ("OSError: Bad file descriptor" at exit): wait for it unless the caller stopped early.
            pool.shutdown(wait=finished, cancel_futures=True)


def run_dask(
    tasks: Iterable[Task], fn: TaskFunction, *, workers: int, scheduler: str | None, connect_seconds: float = 30.0
) -> Iterator[Outcome]:
    """Run ``fn`` over ``tasks`` on dask.distributed: the cluster at ``scheduler``, or a local one.

    Without ``scheduler`` a local cluster of ``workers`` processes (one thread each) is started
    and closed afterwards. At most two tasks per worker are queued at a time, so a long list
    does not sit in the scheduler's memory and progress reflects finished songs.
    """
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
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=connect_seconds)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the dask scheduler at {scheduler} within {connect_seconds:.0f} s ({exc}); "
                "check the address (tcp://host:port) and that `dask scheduler` runs"
            ) from exc
    try:
        todo = deque(tasks)
        n_workers = len(client.scheduler_info().get("workers", {})) or workers
        futures: dict[Any, Task] = {}

        def submit() -> Any:
            task = todo.popleft()
            fut = client.submit(call_task, fn, task, pure=False)
            futures[fut] = task
            return fut

        pending = as_completed([submit() for _ in range(min(2 * max(1, n_workers), len(todo)))])
        for fut in pending:
            task = futures.pop(fut)
            if fut.status == "finished":
                yield task, fut.result(), None
            elif fut.status == "error":
                err = fut.exception()
                if type(err).__name__ == "KilledWorker":
                    yield task, None, f"{_DIED}; dask gave up after it killed workers repeatedly"
                else:
                    yield task, None, describe(err)
            else:
                yield task, None, f"the dask task ended as {fut.status!r} (worker lost or cancelled)"
            fut.release()
            if todo:
                pending.add(submit())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
