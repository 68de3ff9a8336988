"""The process pool survives a worker that dies between two rounds of work, not only during one."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from hitsong.features import executors
from hitsong.features.executors import Task, run_processes


def song_id_of(task: Task) -> str:
    return task.song_id


class _PoolWhoseWorkerDiesBeforeTheThirdSubmit(ProcessPoolExecutor):
    """A real process pool; before its third task is submitted one of its workers is killed, and the
    pool has noticed (the submit then raises ``BrokenProcessPool``): a worker that died after the
    results of its earlier tasks were read."""

    submits = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        type(self).submits += 1
        if type(self).submits == 3:
            victim = next(iter(self._processes.values()))  # type: ignore[attr-defined]
            victim.kill()
            victim.join()
            deadline = time.monotonic() + 60
            while not self._broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.01)
            assert self._broken  # type: ignore[attr-defined]
        return super().submit(*args, **kwargs)


def test_a_worker_dying_between_tasks_loses_no_song(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "ProcessPoolExecutor", _PoolWhoseWorkerDiesBeforeTheThirdSubmit)
    tasks = [Task(song_id=f"s{i}", subset="x", path="/nowhere") for i in range(5)]
    outcomes = list(run_processes(tasks, song_id_of, workers=1))
    assert _PoolWhoseWorkerDiesBeforeTheThirdSubmit.submits >= 6  # the pool broke and a new one took over
    assert sorted((o[0].song_id, o[1], o[2]) for o in outcomes) == [(f"s{i}", f"s{i}", None) for i in range(5)]
