"""Worker processes decode with one thread: the pool already runs one song per core."""

from __future__ import annotations

from hitsong.audio.decode import decode_threads
from hitsong.features.executors import Task, run_processes


def threads_in_worker(task: Task) -> int:
    return decode_threads()


def test_a_process_pool_worker_decodes_each_song_on_one_thread() -> None:
    tasks = [Task(song_id=f"s{i}", subset="x", path="/nowhere") for i in range(2)]
    outcomes = list(run_processes(tasks, threads_in_worker, workers=2))
    assert [(o[1], o[2]) for o in outcomes] == [(1, None), (1, None)]
    assert decode_threads() >= 1  # this process keeps its own setting
