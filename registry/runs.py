"""Read training's runs back from the tracking server as plain Python and pandas data.

The layout is training's (:mod:`hitsong.training.runlayout`, written through
``registry.tracking.MlflowRunLogger``): one experiment per dataset and subset, a summary run
with the Table-1 tables, a method run per method and a repetition run per repetition (a child
of its method run) with stepped losses, ``val_<metric>``/``test_<metric>`` and prediction
tables. Every name comes from that module; nothing here guesses. The dashboard reads everything
it shows about runs through this module.

Every function checks the server first (``registry.tracking.client_for``): when it is down the
``RegistryError`` names the URI and ``hitsong server``; a request the server refuses becomes a
``RegistryError`` naming the URI and what was asked.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hitsong.errors import RegistryError
from hitsong.training import runlayout
from registry.tracking import PARENT_TAG, client_for

log = logging.getLogger(__name__)

#: Seconds an anonymous probe request (``requires_auth``) may take.
REQUEST_TIMEOUT = 3.0
#: Columns of ``experiment_runs`` before the metric columns.
RUN_COLUMNS = ("run_id", "run_name", "parent_id", "kind", "method", "repetition", "status", "start_time", "end_time")


def fail_fast() -> None:
    """Let MLflow's HTTP client give up at once on a dead server instead of minutes of retries.

    Sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT=20`` (seconds)
    unless the environment already sets them; for interactive readers such as the dashboard.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def check_server(uri: str) -> None:
    """Raise ``RegistryError`` (naming ``uri`` and ``hitsong server``) unless the server answers."""
    client_for(uri)


def _call(uri: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with MLflow's refusals turned into ``RegistryError``."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        raise RegistryError(f"the MLflow server at {uri} refused to {what}: {exc.message}") from exc


def runs_version(uri: str) -> tuple[int, int, int]:
    """A cheap key that changes when a run starts or ends anywhere on the server.

    Returns
    -------
    tuple of int
        ``(number of experiments, newest start time, newest end time)``, times in ms since the
        epoch (0 when there is no run).
    """
    client = client_for(uri)
    ids = [e.experiment_id for e in _call(uri, "list experiments", client.search_experiments)]
    if not ids:
        return (0, 0, 0)
    newest = _call(uri, "search runs", client.search_runs, ids, max_results=1, order_by=["attributes.start_time DESC"])
    ended = _call(uri, "search runs", client.search_runs, ids, max_results=1, order_by=["attributes.end_time DESC"])
    start = newest[0].info.start_time if newest else 0
    end = (ended[0].info.end_time or 0) if ended else 0
    return (len(ids), int(start or 0), int(end))


def list_experiments(uri: str) -> pd.DataFrame:
    """Experiments: ``experiment_id, name, subset, dataset, split_by`` sorted by name (MLflow's Default excluded).

    ``dataset``, ``subset`` and ``split_by`` are the experiment's tags (``runlayout``); an
    experiment training made before splits were tagged has ``split_by`` ``random``, one training
    did not make has ``None`` in all three.
    """
    client = client_for(uri)
    exps = _call(uri, "list experiments", client.search_experiments)
    rows = []
    for e in exps:
        if e.name == "Default":
            continue
        subset = e.tags.get(runlayout.EXPERIMENT_TAG_SUBSET)
        split = e.tags.get(runlayout.EXPERIMENT_TAG_SPLIT_BY, runlayout.DEFAULT_SPLIT_BY if subset else None)
        rows.append((e.experiment_id, e.name, subset, e.tags.get(runlayout.EXPERIMENT_TAG_DATASET), split))
    columns = ["experiment_id", "name", "subset", "dataset", "split_by"]
    return pd.DataFrame(rows, columns=columns).sort_values("name", ignore_index=True)


def _search_all(uri: str, client: Any, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = _call(uri, "search runs", client.search_runs, [experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def experiment_runs(uri: str, experiment_id: str) -> pd.DataFrame:
    """Every run of one experiment, one row each, in training's layout.

    Returns
    -------
    pd.DataFrame
        ``run_id, run_name, parent_id, kind, method, repetition, status, start_time, end_time``
        (times as naive UTC timestamps, ``NaT`` while unset) plus one column per final metric
        under its logged name (``test_spearman_rho``, ``val_ndcg_at_k``, ...). ``kind`` is the
        run's ``runlayout.TAG_KIND`` (``summary``, ``method``, ``repetition``; ``None`` for a run
        training did not write), ``method`` and ``repetition`` its tags.
    """
    client = client_for(uri)
    runs = _search_all(uri, client, experiment_id)
    rows = []
    for r in runs:
        tags = r.data.tags
        rep = tags.get(runlayout.TAG_REPETITION)
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "parent_id": tags.get(PARENT_TAG),
            "kind": tags.get(runlayout.TAG_KIND),
            "method": tags.get(runlayout.TAG_METHOD),
            "repetition": int(rep) if rep is not None and rep.isdigit() else None,
            "status": r.info.status,
            "start_time": pd.to_datetime(r.info.start_time, unit="ms") if r.info.start_time else pd.NaT,
            "end_time": pd.to_datetime(r.info.end_time, unit="ms") if r.info.end_time else pd.NaT,
        }
        row.update(r.data.metrics)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, *sorted({k for r in rows for k in r} - set(RUN_COLUMNS))])


def run_table(uri: str, run_id: str, name: str) -> pd.DataFrame | None:
    """The table artifact ``<name>.csv`` at the run's artifact root (``RunLogger.log_table``), or ``None``."""
    client = client_for(uri)
    path = f"{name}.csv"
    listing = {a.path for a in _call(uri, f"list the artifacts of run {run_id}", client.list_artifacts, run_id)}
    if path not in listing:
        return None
    with tempfile.TemporaryDirectory(prefix="hitsong-artifact-") as tmp:
        local = Path(_call(uri, f"download {path} of run {run_id}", client.download_artifacts, run_id, path, tmp))
        return pd.read_csv(local)


def summary_table(uri: str, run_id: str) -> pd.DataFrame | None:
    """The Table-1 artifact of a summary run (``hitsong.results.Table1.frame``), or ``None``."""
    return run_table(uri, run_id, runlayout.TABLE1)


def predictions(uri: str, run_id: str, *, split: runlayout.Split = runlayout.TEST) -> pd.DataFrame | None:
    """A repetition run's predictions on ``split`` (``song_id, true, predicted``), or ``None``."""
    return run_table(uri, run_id, runlayout.PREDICTIONS if split == runlayout.TEST else runlayout.VAL_PREDICTIONS)


def metric_history(uri: str, run_id: str, keys: Sequence[str] = ("train_loss", "val_loss")) -> pd.DataFrame:
    """Stepped metrics of a run, long form ``key, step, value`` (a missing key gives no rows)."""
    client = client_for(uri)
    rows = [
        (key, m.step, m.value)
        for key in keys
        for m in _call(uri, f"read the {key} history of run {run_id}", client.get_metric_history, run_id, key)
    ]
    return pd.DataFrame(rows, columns=["key", "step", "value"])


def run_details(uri: str, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per run: ``name, run_id, params`` (dict str -> str) and final ``metrics`` (logged names)."""
    client = client_for(uri)
    out = []
    for run_id in run_ids:
        r = _call(uri, f"read run {run_id}", client.get_run, run_id)
        out.append(
            {"name": r.info.run_name, "run_id": run_id, "params": dict(r.data.params), "metrics": dict(r.data.metrics)}
        )
    return out


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI."""
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def requires_auth(uri: str) -> bool:
    """Whether the server refuses an anonymous request (MLflow's ``basic-auth`` app)."""
    import requests

    check_server(uri)
    try:
        resp = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
                            params={"max_results": 1}, timeout=REQUEST_TIMEOUT)  # fmt: skip
    except requests.RequestException as exc:
        raise RegistryError(
            f"the MLflow tracking server at {uri} does not answer ({exc.__class__.__name__}); "
            "start it with `hitsong server` (or set MLFLOW_TRACKING_URI to a running server)"
        ) from exc
    return resp.status_code == 401
