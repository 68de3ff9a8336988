"""``MlflowRunLogger``: the training output interface (``hitsong.tracking.RunLogger``) over MLflow.

One experiment per dataset and subset (``experiment_name``); a parent run per method with a
child run per repetition (MLflow's ``mlflow.parentRunId`` tag); params, stepped metrics, CSV
tables and the model bundle (logged as the audio-scoring pyfunc of ``registry.pyfunc``).

A run never stays RUNNING: ``hitsong.tracking.run_scope`` ends runs FAILED or KILLED on an
exception or Ctrl-C, the SIGTERM handler installed while runs are open ends them KILLED, and a
process killed outright (``kill -9``) leaves runs that ``fail_orphaned_runs`` marks FAILED the
next time a logger or the server starts. Each run carries ``hitsong.host``, ``hitsong.pid`` and
``hitsong.proc_start`` tags so that this check can tell a dead process from a live one, and
MLflow's standard context tags (:func:`context_tags`: user, source, git commit of the code).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hitsong.errors import ConfigError, RegistryError
from hitsong.settings import get_settings
from hitsong.tracking import RunHandle, RunStatus
from hitsong.training.runlayout import (
    DEFAULT_SPLIT_BY,
    EXPERIMENT_TAG_DATASET,
    EXPERIMENT_TAG_SPLIT_BY,
    EXPERIMENT_TAG_SUBSET,
    experiment_name,
)

log = logging.getLogger(__name__)

TAG_HOST = "hitsong.host"
TAG_PID = "hitsong.pid"
TAG_PROC_START = "hitsong.proc_start"
TAG_END_REASON = "hitsong.end_reason"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_BATCH = 100
MAX_METRIC_BATCH = 1000


def process_start_ticks(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux), or ``""`` if unknown.

    Together with the pid it names a process uniquely even when pids are reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_alive(pid: int, start_ticks: str) -> bool:
    from registry.server import pid_alive

    if not pid_alive(pid):
        return False
    return not start_ticks or process_start_ticks(pid) in ("", start_ticks)


def _process_tags() -> dict[str, str]:
    """MLflow's context tags plus host, pid and process start of this process (the orphan check's)."""
    return {
        **context_tags(),
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(os.getpid()),
        TAG_PROC_START: process_start_ticks(os.getpid()),
    }


@functools.lru_cache(maxsize=1)
def _code_git_tags() -> tuple[tuple[str, str], ...]:
    """MLflow's git tags of the checkout hitsong's code runs from (none outside a git checkout)."""
    from mlflow.utils import mlflow_tags
    from mlflow.utils.git_utils import get_git_branch, get_git_commit, get_git_repo_url

    import hitsong

    code = str(Path(hitsong.__file__).resolve().parent)
    commit = get_git_commit(code)
    if not commit:
        return ()
    found = {
        mlflow_tags.MLFLOW_GIT_COMMIT: commit,
        mlflow_tags.MLFLOW_GIT_BRANCH: get_git_branch(code),
        mlflow_tags.MLFLOW_GIT_REPO_URL: get_git_repo_url(code),
    }
    return tuple((k, v) for k, v in found.items() if v)


def context_tags() -> dict[str, str]:
    """MLflow's standard run-context tags, so the MLflow UI shows who ran what from which code.

    MLflow's own context providers (``mlflow.tracking.context.registry.resolve_tags``: the OS user
    as ``mlflow.user``, ``mlflow.source.name``/``type``, ...) with two hitsong choices: the user is
    the tracking server's basic-auth user when one is set (``MLFLOW_TRACKING_USERNAME``), and the
    git tags (``mlflow.source.git.commit``, ``.branch``, ``.repoURL``) describe the checkout that
    holds hitsong's code, not the folder of the command that started the process (for the
    ``hitsong`` console script, a virtualenv's ``bin``). Outside a git checkout there are no git tags.
    """
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils import mlflow_tags

    git_keys = (mlflow_tags.MLFLOW_GIT_COMMIT, mlflow_tags.MLFLOW_GIT_BRANCH, mlflow_tags.MLFLOW_GIT_REPO_URL)
    tags = {k: str(v) for k, v in resolve_tags().items() if k not in git_keys}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        tags[mlflow_tags.MLFLOW_USER] = user
    tags.update(dict(_code_git_tags()))
    return tags


def client_for(tracking_uri: str | None = None):
    """An ``MlflowClient`` for ``tracking_uri`` (default: settings), checked to be reachable.

    Raises
    ------
    RegistryError
        The server does not answer (the message names the URI and ``hitsong server``), or it
        refuses the Host header of ``tracking_uri`` (the message names ``--allowed-hosts``).
    """
    from mlflow import MlflowClient

    from registry.server import check_api

    uri = tracking_uri or get_settings().tracking_uri
    if uri.startswith(("http://", "https://")):
        check_api(uri)
    return MlflowClient(tracking_uri=uri)


def fail_orphaned_runs(client, *, experiment_ids: list[str] | None = None) -> list[str]:
    """Mark FAILED every RUNNING run whose training process on this host is gone.

    Runs started on another host (``hitsong.host`` differs) are left alone: this host cannot
    tell whether their process lives.

    Parameters
    ----------
    client : mlflow.MlflowClient
        Client of the tracking server.
    experiment_ids : list of str or None
        Where to look; ``None`` means every active experiment.

    Returns
    -------
    list of str
        The ids of the runs marked FAILED.
    """
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    host = socket.gethostname()
    marked: list[str] = []
    runs = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=5000)
    for run in runs:
        tags = run.data.tags
        if tags.get(TAG_HOST) != host or TAG_PID not in tags:
            continue
        try:
            pid = int(tags[TAG_PID])
        except ValueError:
            continue
        if _process_alive(pid, tags.get(TAG_PROC_START, "")):
            continue
        client.set_tag(run.info.run_id, TAG_END_REASON, f"process {pid} on {host} died while the run was open")
        client.set_terminated(run.info.run_id, status="FAILED")
        marked.append(run.info.run_id)
    if marked:
        log.warning("marked %d run(s) left RUNNING by dead processes as FAILED", len(marked))
    return marked


class MlflowRunLogger:
    """A ``hitsong.tracking.RunLogger`` that records runs on an MLflow tracking server.

    Parameters
    ----------
    experiment : str
        Experiment name (created when missing); see ``experiment_name``.
    tracking_uri : str or None
        The server; default ``get_settings().tracking_uri``.
    experiment_tags : Mapping or None
        Tags set on the experiment when it is created (``for_subset`` sets dataset and subset).
    fail_orphans : bool
        Mark runs left RUNNING by dead processes of this host FAILED on start.
    """

    def __init__(
        self,
        experiment: str,
        *,
        tracking_uri: str | None = None,
        experiment_tags: Mapping[str, str] | None = None,
        fail_orphans: bool = True,
    ) -> None:
        # MLflow prints a "View run" line to stdout per finished run; stdout is for data here,
        # so the links are logged (top-level runs) instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.client = client_for(tracking_uri)
        self.tracking_uri = self.client.tracking_uri
        self.experiment = experiment
        self.experiment_id = self._experiment_id(experiment, experiment_tags or {})
        self._open: dict[str, RunHandle] = {}
        self._previous_sigterm: Any = None
        self._sigterm_installed = False
        self._process_tags = _process_tags()
        if fail_orphans:
            fail_orphaned_runs(self.client, experiment_ids=[self.experiment_id])

    def __getstate__(self) -> dict[str, Any]:
        """What a worker process needs (parallel training): the server and the experiment, no client."""
        return {"tracking_uri": self.tracking_uri, "experiment": self.experiment, "experiment_id": self.experiment_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reconnect in the worker; its runs carry the worker's own pid, for the orphan check."""
        self.client = client_for(state["tracking_uri"])
        self.tracking_uri = state["tracking_uri"]
        self.experiment = state["experiment"]
        self.experiment_id = state["experiment_id"]
        self._open = {}
        self._previous_sigterm = None
        self._sigterm_installed = False
        self._process_tags = _process_tags()

    @classmethod
    def for_subset(
        cls, dataset: str, subset: str, *, split_by: str | None = None, tracking_uri: str | None = None
    ) -> MlflowRunLogger:
        """The logger for one dataset, subset and split method (its own experiment, tagged with all three)."""
        split = split_by or DEFAULT_SPLIT_BY
        return cls(
            experiment_name(dataset, subset, split),
            tracking_uri=tracking_uri,
            experiment_tags={
                EXPERIMENT_TAG_DATASET: dataset,
                EXPERIMENT_TAG_SUBSET: subset,
                EXPERIMENT_TAG_SPLIT_BY: split,
            },
        )

    def _experiment_id(self, name: str, tags: Mapping[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    raise RegistryError(
                        f"experiment {name!r} is deleted on {self.tracking_uri}; restore it in the UI "
                        "or choose another dataset name"
                    )
                return found.experiment_id
            return self.client.create_experiment(name, tags=dict(tags))
        except MlflowException as exc:
            raise RegistryError(f"cannot open experiment {name!r} on {self.tracking_uri}: {exc}") from exc

    # --- the RunLogger protocol -------------------------------------------------------------
    def start_run(
        self, name: str, *, parent: RunHandle | None = None, tags: Mapping[str, str] | None = None
    ) -> RunHandle:
        """Start a run, nested under ``parent`` when given; install the SIGTERM handler."""
        all_tags = {**self._process_tags, **{k: str(v) for k, v in (tags or {}).items()}}
        if parent is not None:
            all_tags[PARENT_TAG] = parent.run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        handle = RunHandle(run_id=run.info.run_id, name=name, parent_id=parent.run_id if parent else None)
        self._open[handle.run_id] = handle
        self._install_sigterm()
        if parent is None and self.tracking_uri.startswith("http"):
            log.info("run %r: %s/#/experiments/%s/runs/%s", name, self.tracking_uri.rstrip("/"),
                     self.experiment_id, handle.run_id)  # fmt: skip
        return handle

    def log_params(self, run: RunHandle, params: Mapping[str, Any]) -> None:
        """Record params in batches (values as strings, at most 6,000 characters each)."""
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAM_BATCH):
            self.client.log_batch(run.run_id, params=items[i : i + MAX_PARAM_BATCH])

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Record metrics (``step`` for per-epoch curves; NaN is kept as NaN)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(str(k), float(v), now, int(step or 0)) for k, v in metrics.items()]
        for i in range(0, len(items), MAX_METRIC_BATCH):
            self.client.log_batch(run.run_id, metrics=items[i : i + MAX_METRIC_BATCH])

    def log_table(self, run: RunHandle, name: str, frame: pd.DataFrame) -> None:
        """Record ``frame`` as the artifact ``<name>.csv`` at the run's artifact root."""
        if not name or "/" in name:
            raise ConfigError(f"table name {name!r} must be non-empty and contain no '/'")
        with tempfile.TemporaryDirectory(prefix="hitsong-table-") as tmp:
            path = Path(tmp) / f"{name}.csv"
            frame.to_csv(path, index=False)
            self.client.log_artifact(run.run_id, str(path))

    def log_bundle(self, run: RunHandle, bundle_dir: Path) -> None:
        """Record the bundle as the run's MLflow pyfunc model ``model`` (see ``registry.pyfunc``)."""
        from registry.pyfunc import log_bundle_model

        log_bundle_model(bundle_dir, run_id=run.run_id, tracking_uri=self.tracking_uri)

    def end_run(self, run: RunHandle, status: RunStatus = "FINISHED") -> None:
        """Close the run with ``status``; idempotent for a run already closed."""
        if run.run_id not in self._open:
            return
        self.client.set_terminated(run.run_id, status=status)
        del self._open[run.run_id]
        if not self._open:
            self._restore_sigterm()

    # --- SIGTERM: end open runs KILLED --------------------------------------------------------
    def _install_sigterm(self) -> None:
        if self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._sigterm_installed = True

    def _restore_sigterm(self) -> None:
        if not self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        self._previous_sigterm = None
        self._sigterm_installed = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.error("SIGTERM: ending %d open run(s) as KILLED", len(self._open))
        self.kill_open_runs(reason="SIGTERM")
        raise KeyboardInterrupt("SIGTERM")

    def kill_open_runs(self, *, reason: str) -> None:
        """End every run this logger still has open as KILLED, children first."""
        for handle in sorted(self._open.values(), key=lambda h: h.parent_id is None):
            try:
                self.client.set_tag(handle.run_id, TAG_END_REASON, reason)
                self.client.set_terminated(handle.run_id, status="KILLED")
            except Exception as exc:
                log.warning("could not mark run %s KILLED: %s", handle.run_id, exc)
        self._open.clear()
        self._restore_sigterm()
