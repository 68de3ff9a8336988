"""Feature extraction on a two-worker dask cluster vs the local process pool, same songs, same run.

The same task function (:func:`hitsong.features.compute.compute_to_shard`: decode, log-mel, write
the song's mel shard) runs over the same generated 4-minute 44.1 kHz stereo MP3 files
(``benchmarks.bench_features.make_files``) through :func:`hitsong.features.executors.run_tasks`:

- serial: the task function in this process, one song after another (the one-core baseline);
- process: the local ``spawn`` pool with ``--workers`` processes;
- dask: a cluster started as separate processes, ``dask scheduler`` and ``--workers`` x
  ``dask worker --nworkers 1 --nthreads 1`` on loopback (TCP), the client in this process;
  "cold" is its first round (workers import hitsong and librosa on their first task), "warm"
  the later ones.

A sink records when each song's outcome reached the client: start-up is the time to the first
song, the rate is songs per second over the whole round (start-up included), the steady rate
is songs per second from the first song to the last. Rounds alternate process and dask
(the machine is shared); the best warm round of each is reported with all rounds.

Command: ``.venv/bin/python -m benchmarks.bench_cluster [--songs 48 --workers 2 --rounds 3]``
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.bench_features import make_files
from hitsong.audio import AudioConfig
from hitsong.features.compute import compute_to_shard
from hitsong.features.executors import Task, run_tasks

log = logging.getLogger("benchmarks.bench_cluster")


class TimingSink:
    """A result sink that only notes when each outcome arrived (and fails loudly on a failure)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.times: list[float] = []

    def record(self, task: Task, result: Any) -> None:
        self.times.append(time.perf_counter() - self.t0)

    def fail(self, task: Task, error: str) -> None:
        raise RuntimeError(f"{task.song_id} failed: {error}")

    def flush(self) -> None:
        """Nothing to make durable: the shards are written by the workers."""


def _round(kind: str, tasks: list[Task], store: Path, workers: int, scheduler: str | None) -> dict:
    shutil.rmtree(store, ignore_errors=True)
    fn = functools.partial(compute_to_shard, store_dir=str(store), audio_config=AudioConfig(), tagger_name="none")
    sink = TimingSink()
    counts = run_tasks(
        tasks, fn, sink, executor="process" if kind == "process" else "dask", workers=workers, scheduler=scheduler
    )
    if counts.failed or len(list(store.rglob("*.npy"))) != len(tasks):
        raise RuntimeError(f"{kind}: {counts.failed} failed, {len(list(store.rglob('*.npy')))} shards written")
    span = sink.times[-1] - sink.times[0]
    steady = (len(tasks) - 1) / span if span > 0 else float("nan")
    return {"seconds": counts.seconds, "first": sink.times[0], "rate": len(tasks) / counts.seconds, "steady": steady}


def run(n_songs: int, workers: int, rounds: int, workdir: Path) -> str:
    from tests.helpers.dask_cluster import dask_cluster

    paths = make_files(workdir / "audio", n_songs)
    tasks = [Task(f"song{i}", "bench", str(p)) for i, p in enumerate(paths)]
    store = workdir / "store"
    # one core, this process: the task function over every song after a warm-up song
    fn = functools.partial(compute_to_shard, store_dir=str(store), audio_config=AudioConfig(), tagger_name="none")
    fn(tasks[0])
    t0 = time.perf_counter()
    for t in tasks:
        fn(t)
    serial = n_songs / (time.perf_counter() - t0)
    log.info("serial: %.2f songs/s", serial)
    results: dict[str, list[dict]] = {"process": [], "dask": []}
    with dask_cluster(workdir / "cluster", workers=workers) as cluster:
        plan = [("dask", -1)] + [
            (k, r) for r in range(rounds) for k in (("process", "dask"), ("dask", "process"))[r % 2]
        ]
        for kind, r in plan:
            res = _round(kind, tasks, store, workers, cluster.address if kind == "dask" else None)
            results[kind].append(res)
            log.info("round %d %s: %.2f songs/s (first song after %.1f s)", r, kind, res["rate"], res["first"])
    cold, warm = results["dask"][0], results["dask"][1:]
    best_proc = max(results["process"], key=lambda x: x["rate"])
    best_dask = max(warm, key=lambda x: x["rate"])
    load = os.getloadavg()[0]

    def line(name: str, res: list[dict]) -> str:
        best = max(res, key=lambda x: x["rate"])
        alls = ", ".join(f"{x['rate']:.2f}" for x in res)
        return f"| {name} | {best['rate']:.2f} | {best['steady']:.2f} | {best['first']:.1f} | {alls} |"

    table = [
        f"| serial, this process (1 core) | {serial:.2f} | {serial:.2f} | - | - |",
        line(f"process pool, {workers} workers (started per run)", results["process"]),
        line(f"dask cluster, {workers} workers, cold (first round)", [cold]),
        line(f"dask cluster, {workers} workers, warm", warm),
    ]
    return "\n".join(
        [
            f"Command: `.venv/bin/python -m benchmarks.bench_cluster --songs {n_songs} --workers {workers} "
            f"--rounds {rounds}`",
            "",
            f"Run {date.today().isoformat()}, {os.cpu_count()}-core {platform.machine()} shared with other jobs "
            f"(load average {load:.1f} at the end), {n_songs} songs, tagger off:",
            "",
            "| executor | songs/s (best round) | steady songs/s | first song after s | all rounds songs/s |",
            "|---|---|---|---|---|",
            *table,
            "",
            f"Cluster (warm) vs process pool: {best_dask['rate'] / best_proc['rate']:.2f}x overall, "
            f"{best_dask['steady'] / best_proc['steady']:.2f}x steady; steady process pool vs serial: "
            f"{best_proc['steady'] / serial:.2f}x; medians "
            f"{statistics.median(x['rate'] for x in results['process']):.2f} (process) and "
            f"{statistics.median(x['rate'] for x in warm):.2f} (dask warm) songs/s.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hitsong-bench-cluster")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hitsong.progress").setLevel(logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    sys.stdout.write(run(args.songs, args.workers, args.rounds, args.workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
