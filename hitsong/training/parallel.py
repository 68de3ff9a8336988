"""Repetitions in parallel processes: one per core, each single-threaded, the same results as in turn.

Training a subset is many independent (method, repetition) jobs. On a CPU, one process per core
with one torch thread each beats one process with several threads (small convolutions at batch
10 leave threads idle; BENCHMARKS.md, "Training"). :func:`run_repetitions` runs the jobs in a
``spawn`` process pool; every job seeds itself (``seed + repetition``), so a job's result does not
depend on where or in which order it runs: parallel training gives the same predictions as
sequential training, bit for bit on CPU (tested).

The subset's data and the run logger travel to each worker once (pool initializer); a job is a
``(method, repetition)`` pair and returns its ``RepResult``. A worker logs its own repetition
run (nested under the method run the parent process opened). Workers ignore Ctrl-C (the parent
handles it) and end with the parent; runs a killed worker left open are marked FAILED by the
tracking backend's orphan check.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from hitsong.workers import init_worker

log = logging.getLogger(__name__)

Job = tuple[str, int]  # (method, repetition)

#: The job function and its fixed arguments, set once per worker process by the initializer.
_WORKER: dict[str, Any] = {}


def processes_for(requested: int | None) -> int:
    """``requested`` processes, or one per core when ``None``."""
    return max(1, requested if requested is not None else (os.cpu_count() or 1))


def _init_worker(run_job: Callable[..., Any], fixed: dict[str, Any], threads: int) -> None:
    init_worker(threads)
    _WORKER["run_job"] = run_job
    _WORKER["fixed"] = fixed


def _in_worker(job: Job) -> Any:
    method, repetition = job
    return _WORKER["run_job"](method, repetition, **_WORKER["fixed"])


def run_repetitions(
    jobs: Sequence[Job],
    run_job: Callable[..., Any],
    fixed: dict[str, Any],
    *,
    processes: int,
    threads: int = 1,
) -> Iterator[tuple[Job, Any]]:
    """Run ``run_job(method, repetition, **fixed)`` for every job; yield ``(job, result)`` as they finish.

    Parameters
    ----------
    jobs : sequence of (method, repetition)
    run_job : callable
        A module-level function (it is pickled into ``spawn`` workers).
    fixed : dict
        Keyword arguments every job gets (the data, configs, run context, logger, parent runs).
    processes : int
        1 runs the jobs in this process, in order; more starts that many worker processes.
    threads : int
        torch threads per worker process.

    Raises
    ------
    Exception
        The first job's error, after the other running jobs are cancelled.
    """
    if processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, run_job(job[0], job[1], **fixed)
        return
    ctx = multiprocessing.get_context("spawn")
    n = min(processes, len(jobs))
    log.info("training %d repetitions in %d processes (%d torch thread each)", len(jobs), n, threads)
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                             initargs=(run_job, fixed, threads)) as pool:  # fmt: skip
        pending: dict[Future, Job] = {pool.submit(_in_worker, job): job for job in jobs}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    yield job, fut.result()
        finally:
            for fut in pending:
                fut.cancel()
