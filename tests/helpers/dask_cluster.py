"""A real dask.distributed cluster for tests: ``dask scheduler`` and ``dask worker`` processes on loopback.

Use::

    with dask_cluster(tmp_path, workers=2) as cluster:
        build_features(..., executor="dask", scheduler=cluster.address)
        cluster.kill_worker("w0")  # SIGKILL of the worker and its nanny

Each process is started in its own session and logs to a file under ``tmp_path`` (never a pipe:
a pipe nobody reads can block a chatty process). Workers run ``--nworkers 1 --nthreads 1`` with
the test's Python environment, so they import the same ``hitsong``. Everything started here is
killed on exit, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask() -> str:
    """The ``dask`` command of the test's environment."""
    return str(Path(sys.executable).with_name("dask"))


@dataclass
class DaskCluster:
    """A running cluster: its scheduler address and its processes by name."""

    address: str
    folder: Path
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def kill_worker(self, name: str) -> None:
        """SIGKILL worker ``name`` (its nanny and the worker process: the whole session)."""
        proc = self.workers[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def worker_count(self) -> int:
        """Workers the scheduler knows now."""
        from dask.distributed import Client

        with Client(self.address, timeout=30) as client:
            return len(client.scheduler_info()["workers"])

    def logs(self) -> str:
        """Every process's log, for an assertion message."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.folder.glob("*.log"))
        )


def _start(cmd: list[str], log_file: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_file.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@contextmanager
def dask_cluster(folder: Path, *, workers: int = 2, timeout: float = 120.0) -> Iterator[DaskCluster]:
    """Start ``dask scheduler`` and ``workers`` x ``dask worker`` on 127.0.0.1; wait until all registered.

    Parameters
    ----------
    folder : Path
        Logs and the workers' scratch folders go here.
    workers : int
        Worker processes (``w0``, ``w1``, ...), one thread each.
    timeout : float
        Seconds to wait for the scheduler and every worker.
    """
    from dask.distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start(
        [_dask(), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        folder / "scheduler.log",
    )
    cluster = DaskCluster(address=address, folder=folder, scheduler=scheduler)
    try:
        for i in range(workers):
            name = f"w{i}"
            cluster.workers[name] = _start(
                [
                    _dask(),
                    "worker",
                    address,
                    "--name",
                    name,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / name),
                    "--death-timeout",
                    str(int(timeout)),
                ],
                folder / f"{name}.log",
            )
        deadline = time.monotonic() + timeout
        with Client(address, timeout=timeout) as client:
            while len(client.scheduler_info()["workers"]) < workers:
                dead = [n for n, p in cluster.workers.items() if p.poll() is not None]
                if dead or scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dask cluster did not start (exited: {dead})\n{cluster.logs()}")
                time.sleep(0.2)
        yield cluster
    finally:
        for proc in cluster.workers.values():
            _stop(proc)
        _stop(scheduler)
