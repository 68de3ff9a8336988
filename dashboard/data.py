"""Data loading for the dashboard: plain functions plus thin Streamlit-cached wrappers.

The plain functions (``list_experiments``, ``experiment_runs``, ``quarter_frame``, ...) take the
tracking URI or the DuckDB path and return pandas frames; tests call them without Streamlit.
The ``cached_*`` wrappers add ``st.cache_data`` keyed by a *version* that changes when new data
arrives: the newest run's start/end time for MLflow (``runs_version``) and the file's
modification time for DuckDB (``db_version``). A missing server or database raises a
``HitsongError`` whose message names the command that fixes it; pages show that message.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.figures import METRIC_LABELS, summarise_repetitions
from hitsong.errors import RegistryError, StoreError
from hitsong.models import METHODS
from hitsong.scoring import DEFAULT_TAGGER
from hitsong.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Seconds the dashboard waits for the tracking server before saying it is down.
SERVER_TIMEOUT = 3.0
SERVER_HINT = "Start it with `hitsong server` (or point MLFLOW_TRACKING_URI at a running server)."
DB_HINT = "Create it with `hitsong demo run`, or `hitsong ingest --events FILE --songs FILE` then `hitsong sample`."
MODEL_PREFIX = "hitsong-"
METHOD_NAMES = frozenset(METHODS)
TAG_SUBSET = "hitsong.subset"  # set on each experiment by registry.tracking.MlflowRunLogger.for_subset

# A dashboard must answer quickly: no minutes of MLflow's default retry back-off.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def settings() -> Settings:
    """The home and the tracking URI (``HITSONG_HOME``, ``MLFLOW_TRACKING_URI``)."""
    return get_settings()


def is_demo(s: Settings) -> bool:
    """True when the home holds the synthetic demo label (``hitsong demo init`` output)."""
    return s.demo_dir.exists()


# --------------------------------------------------------------------------- MLflow
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def check_server(uri: str, *, timeout: float = SERVER_TIMEOUT) -> None:
    """Raise ``RegistryError`` unless a tracking server answers ``/health`` at ``uri``."""
    from registry.server import health_ok

    if uri.startswith(("http://", "https://")) and not health_ok(uri, timeout=timeout):
        raise RegistryError(f"no MLflow server answers at {uri}. {SERVER_HINT}")


def _mlflow_call(uri: str, what: str, fn, *args, **kwargs):
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        raise RegistryError(f"the MLflow server at {uri} refused to {what}: {exc.message}") from exc


def runs_version(uri: str) -> tuple[int, int, int]:
    """A cheap key that changes when a run starts or ends anywhere on the server.

    Returns ``(number of experiments, newest start time, newest end time)`` in ms.
    """
    check_server(uri)
    client = _client(uri)
    exps = _mlflow_call(uri, "list experiments", client.search_experiments)
    ids = [e.experiment_id for e in exps]
    if not ids:
        return (0, 0, 0)
    newest = _mlflow_call(uri, "search runs", client.search_runs, ids, max_results=1,
                          order_by=["attributes.start_time DESC"])
    ended = _mlflow_call(uri, "search runs", client.search_runs, ids, max_results=1,
                         order_by=["attributes.end_time DESC"])
    start = newest[0].info.start_time if newest else 0
    end = (ended[0].info.end_time or 0) if ended else 0
    return (len(ids), int(start or 0), int(end))


def list_experiments(uri: str) -> pd.DataFrame:
    """Experiments: ``experiment_id, name, subset`` sorted by name (Default excluded)."""
    check_server(uri)
    exps = _mlflow_call(uri, "list experiments", _client(uri).search_experiments)
    rows = [(e.experiment_id, e.name, e.tags.get(TAG_SUBSET)) for e in exps if e.name != "Default"]
    return pd.DataFrame(rows, columns=["experiment_id", "name", "subset"]).sort_values("name", ignore_index=True)


def _method_of(run, by_id: dict[str, Any]) -> str | None:
    """The method (``m1``..``m6``) of a run: a ``method`` tag or param, else the parent's name."""
    for source in (run.data.tags, run.data.params):
        for key in ("hitsong.method", "method", "model.method"):
            if source.get(key):
                return source[key]
    parent = by_id.get(run.data.tags.get("mlflow.parentRunId", ""))
    if parent is not None:
        return _method_of(parent, {})
    return run.info.run_name if run.info.run_name in METHOD_NAMES else None


def experiment_runs(uri: str, experiment_id: str) -> pd.DataFrame:
    """Every run of one experiment, one row each.

    Returns
    -------
    pd.DataFrame
        ``run_id, run_name, parent_id, kind, method, repetition, status, start_time, end_time``
        plus one column per final metric. ``kind`` is ``child`` (a repetition), ``parent`` (a
        method) or ``other`` (e.g. the summary run).
    """
    check_server(uri)
    client = _client(uri)
    runs, token = [], None
    while True:
        page = _mlflow_call(uri, "search runs", client.search_runs, [experiment_id],
                            max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    by_id = {r.info.run_id: r for r in runs}
    has_children = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    rows = []
    for r in runs:
        parent_id = r.data.tags.get("mlflow.parentRunId")
        kind = "child" if parent_id else ("parent" if r.info.run_id in has_children else "other")
        rep = r.data.tags.get("repetition", r.data.params.get("repetition"))
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "parent_id": parent_id,
            "kind": kind,
            "method": _method_of(r, by_id),
            "repetition": int(rep) if rep is not None and str(rep).isdigit() else None,
            "status": r.info.status,
            "start_time": pd.to_datetime(r.info.start_time, unit="ms") if r.info.start_time else pd.NaT,
            "end_time": pd.to_datetime(r.info.end_time, unit="ms") if r.info.end_time else pd.NaT,
        }
        row.update(r.data.metrics)
        for metric in METRIC_LABELS:  # training logs the final metrics as ``test_<metric>``
            if metric not in row and f"test_{metric}" in r.data.metrics:
                row[metric] = r.data.metrics[f"test_{metric}"]
        rows.append(row)
    base = ["run_id", "run_name", "parent_id", "kind", "method", "repetition", "status", "start_time", "end_time"]
    return pd.DataFrame(rows, columns=base + sorted({k for r in rows for k in r} - set(base)))


def repetitions(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished child runs (one per repetition) with their method and final metrics."""
    keep = runs[(runs["kind"] == "child") & (runs["status"] == "FINISHED") & runs["method"].notna()]
    metrics = [m for m in METRIC_LABELS if m in keep.columns]
    return keep[["run_id", "run_name", "method", "repetition", *metrics]].reset_index(drop=True)


def run_choices(runs: pd.DataFrame) -> dict[str, str]:
    """Unique display labels (the run name, plus an id prefix when names repeat) -> run id."""
    counts = runs["run_name"].value_counts()
    return {
        name if counts[name] == 1 else f"{name} ({run_id[:8]})": run_id
        for name, run_id in zip(runs["run_name"], runs["run_id"])
    }


def _load_table_artifact(uri: str, run_id: str, names: Sequence[str]) -> pd.DataFrame | None:
    client = _client(uri)
    listing = {a.path: a for a in _mlflow_call(uri, "list artifacts", client.list_artifacts, run_id)}
    for name in names:
        for ext in (".csv", ".parquet", ".json"):
            path = name + ext
            if path not in listing:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(_mlflow_call(uri, "download an artifact", client.download_artifacts, run_id, path, tmp))
                if ext == ".csv":
                    return pd.read_csv(local)
                if ext == ".parquet":
                    return pd.read_parquet(local)
                return pd.DataFrame(json.loads(local.read_text()))
    return None


def _long_summary(table: pd.DataFrame) -> pd.DataFrame | None:
    """Accept a Table-1 artifact in long form or in wide ``<metric>_mean``/``_std`` form."""
    if {"method", "metric", "mean", "std"} <= set(table.columns):
        return table
    if "method" not in table.columns:
        return None
    rows = []
    for _, r in table.iterrows():
        for metric in METRIC_LABELS:
            if f"{metric}_mean" in table.columns:
                rows.append({
                    "method": r["method"], "metric": metric, "mean": r[f"{metric}_mean"],
                    "std": r.get(f"{metric}_std"), "ci_low": r.get(f"{metric}_ci_low"),
                    "ci_high": r.get(f"{metric}_ci_high"),
                })
    return pd.DataFrame(rows) if rows else None


@dataclass(frozen=True)
class Table1:
    """Table-1 summary of one experiment and where it came from."""

    summary: pd.DataFrame  # long form: method, metric, mean, std[, ci_low, ci_high]
    source: str  # "summary run <name>" or "computed from N repetitions"


def table1(uri: str, runs: pd.DataFrame) -> Table1:
    """The Table-1 summary: the newest summary run's artifact, else computed from repetitions."""
    others = runs[(runs["kind"] == "other") & (runs["status"] == "FINISHED")].sort_values("start_time", ascending=False)
    for _, run in others.iterrows():
        table = _load_table_artifact(uri, run["run_id"], ["table1", "results", "table_1"])
        long = _long_summary(table) if table is not None else None
        if long is not None and not long.empty:
            return Table1(long, f"summary run “{run['run_name']}”")
    reps = repetitions(runs)
    return Table1(summarise_repetitions(reps), f"computed here from {len(reps)} finished repetitions (mean ± std, normal 95 % interval)")


def metric_history(uri: str, run_id: str, keys: Sequence[str] = ("train_loss", "val_loss")) -> pd.DataFrame:
    """Stepped metrics of a run, long form ``key, step, value``."""
    client = _client(uri)
    rows = [
        (key, m.step, m.value)
        for key in keys
        for m in _mlflow_call(uri, "read metric history", client.get_metric_history, run_id, key)
    ]
    return pd.DataFrame(rows, columns=["key", "step", "value"])


def run_details(uri: str, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Name, params and final metrics (without the ``test_`` prefix) of each run, for comparison."""
    client = _client(uri)
    out = []
    for run_id in run_ids:
        r = _mlflow_call(uri, "read a run", client.get_run, run_id)
        metrics = {k.removeprefix("test_"): v for k, v in r.data.metrics.items()}
        out.append({"name": r.info.run_name, "run_id": run_id, "params": dict(r.data.params), "metrics": metrics})
    return out


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI."""
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def test_predictions(uri: str, runs: pd.DataFrame, *, choose_by: str = "ndcg_at_k") -> pd.DataFrame:
    """Test predictions of each method's best repetition (highest ``choose_by``).

    Returns ``method, run_name, song_id, true, predicted``.
    """
    reps = repetitions(runs)
    if reps.empty or choose_by not in reps:
        return pd.DataFrame(columns=["method", "run_name", "song_id", "true", "predicted"])
    best = reps.sort_values(choose_by, ascending=False).drop_duplicates("method")
    parts = []
    for _, rep in best.iterrows():
        table = _load_table_artifact(uri, rep["run_id"], ["predictions"])
        if table is None:
            continue
        table = table[["song_id", "true", "predicted"]].copy()
        table.insert(0, "run_name", rep["run_name"])
        table.insert(0, "method", rep["method"])
        parts.append(table)
    if not parts:
        return pd.DataFrame(columns=["method", "run_name", "song_id", "true", "predicted"])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- DuckDB
def check_db(db_path: Path) -> None:
    """Raise ``StoreError`` naming the fixing command when the DuckDB file is missing."""
    if not Path(db_path).exists():
        raise StoreError(f"no database at {db_path}. {DB_HINT}")


def db_version(db_path: Path) -> float:
    """The file's modification time: a cache key that changes when a writer commits."""
    check_db(db_path)
    return Path(db_path).stat().st_mtime


# --------------------------------------------------------------------------- cached wrappers
@st.cache_data(show_spinner=False, ttl=600)
def cached_experiments(uri: str, version: tuple) -> pd.DataFrame:
    """``list_experiments`` cached per ``runs_version``."""
    return list_experiments(uri)


@st.cache_data(show_spinner=False, ttl=600)
def cached_runs(uri: str, experiment_id: str, version: tuple) -> pd.DataFrame:
    """``experiment_runs`` cached per ``runs_version``."""
    return experiment_runs(uri, experiment_id)


@st.cache_data(show_spinner=False, ttl=600)
def cached_table1(uri: str, experiment_id: str, version: tuple) -> Table1:
    """``table1`` cached per ``runs_version``."""
    return table1(uri, experiment_runs(uri, experiment_id))


@st.cache_data(show_spinner=False, ttl=600)
def cached_history(uri: str, run_id: str, version: tuple) -> pd.DataFrame:
    """``metric_history`` cached per ``runs_version``."""
    return metric_history(uri, run_id)


@st.cache_data(show_spinner=False, ttl=600)
def cached_predictions(uri: str, experiment_id: str, version: tuple) -> pd.DataFrame:
    """``test_predictions`` cached per ``runs_version``."""
    return test_predictions(uri, experiment_runs(uri, experiment_id))


def quarter_frame(db_path: Path) -> pd.DataFrame:
    """Paper Fig. 1 data: ``subset, release_quarter, quarter_index, scope, mean_playcount, songs``.

    ``scope`` is ``whole`` (every song of the subset) or ``sampled`` (the experiment sample).
    """
    from hitsong.store import listening

    check_db(db_path)
    frame = listening.quarter_playcounts(db_path).rename(columns={"group": "scope"})
    frame["scope"] = frame["scope"].replace({"all": "whole"})
    return frame


def hit_scores(db_path: Path) -> pd.DataFrame:
    """Paper Fig. 2 data: ``subset, scope, hit_score``; each song once as ``whole``, test songs
    again as ``test``."""
    from hitsong.store import listening

    check_db(db_path)
    frame = listening.hit_score_frame(db_path)
    whole = frame.assign(scope="whole")
    test = frame[frame["split"] == "test"].assign(scope="test")
    return pd.concat([whole, test], ignore_index=True)[["subset", "scope", "hit_score"]]


def subset_counts(db_path: Path) -> pd.DataFrame:
    """Per-subset counts: songs, listeners, events, plays, hit-score quantiles, split sizes."""
    from hitsong.store import listening

    check_db(db_path)
    return listening.stats(db_path)


def song_genres(db_path: Path, subset: str, *, tagger: str = DEFAULT_TAGGER) -> pd.DataFrame:
    """The tagger's predominant genre per song of ``subset``: ``song_id, genre``."""
    from hitsong.store import connect, featureindex

    check_db(db_path)
    with connect(db_path, read_only=True) as con:
        frame = featureindex.tags_frame(con, subset, tagger)
    if frame.empty:
        raise StoreError(
            f"no tag vectors for subset {subset!r} in {db_path}. Compute them with "
            f"`hitsong features --subset {subset}` (or `hitsong demo run`)."
        )
    return frame[["song_id", "genre"]]


@st.cache_data(show_spinner=False)
def cached_quarters(db_path: Path, version: float) -> pd.DataFrame:
    """``quarter_frame`` cached per ``db_version``."""
    return quarter_frame(db_path)


@st.cache_data(show_spinner=False)
def cached_hit_scores(db_path: Path, version: float) -> pd.DataFrame:
    """``hit_scores`` cached per ``db_version``."""
    return hit_scores(db_path)


@st.cache_data(show_spinner=False)
def cached_counts(db_path: Path, version: float) -> pd.DataFrame:
    """``subset_counts`` cached per ``db_version``."""
    return subset_counts(db_path)


@st.cache_data(show_spinner=False)
def cached_genres(db_path: Path, subset: str, version: float) -> pd.DataFrame:
    """``song_genres`` cached per ``db_version``."""
    return song_genres(db_path, subset)


# --------------------------------------------------------------------------- registry
def server_requires_auth(uri: str) -> bool:
    """Whether the tracking server refuses an anonymous request (MLflow's basic-auth app)."""
    import requests

    check_server(uri)
    try:
        resp = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
                            params={"max_results": 1}, timeout=SERVER_TIMEOUT)
    except requests.RequestException as exc:
        raise RegistryError(f"no MLflow server answers at {uri}. {SERVER_HINT}") from exc
    return resp.status_code == 401


def signed_in_as(username: str | None, password: str | None) -> str:
    """The name the server will record for these credentials (see ``registry.models.Credentials``)."""
    from registry.models import Credentials

    return Credentials.resolve(username or None, password or None).who


def versions(uri: str, *, username: str | None = None, password: str | None = None) -> pd.DataFrame:
    """Every version of every ``hitsong-*`` model, newest first per model.

    Returns
    -------
    pd.DataFrame
        ``model, subset, version, aliases (text), method``, the four metrics, ``run_id, created,
        promoted_by, promoted_at, promotion_reason``.
    """
    from registry.models import TAG_PREFIX, list_versions

    check_server(uri)
    rows = []
    for v in list_versions(tracking_uri=uri, username=username or None, password=password or None):
        row = {
            "model": v["model"], "subset": v["model"].removeprefix(MODEL_PREFIX), "version": v["version"],
            "aliases": ", ".join(v["aliases"]), "method": v["method"],
        }
        row.update({m: v["metrics"].get(m) for m in METRIC_LABELS})
        row.update({
            "run_id": v["run_id"], "created": v["created"],
            **{k: v["tags"].get(f"{TAG_PREFIX}{k}", "") for k in ("promoted_by", "promoted_at", "promotion_reason")},
        })
        rows.append(row)
    columns = ["model", "subset", "version", "aliases", "method", *METRIC_LABELS, "run_id", "created",
               "promoted_by", "promoted_at", "promotion_reason"]
    return pd.DataFrame(rows, columns=columns)


@st.cache_data(show_spinner=False, ttl=30)
def cached_versions(uri: str, username: str, password: str, nonce: int = 0) -> pd.DataFrame:
    """``versions`` cached for 30 s per user; a new ``nonce`` (after a promotion) reloads."""
    return versions(uri, username=username, password=password)


@st.cache_data(show_spinner=False, ttl=60)
def cached_requires_auth(uri: str) -> bool:
    """``server_requires_auth`` cached for a minute."""
    return server_requires_auth(uri)


def champions(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``versions`` that hold the ``champion`` alias, one per model."""
    from registry.models import CHAMPION

    return table[table["aliases"].str.split(", ").map(lambda a: CHAMPION in a)].reset_index(drop=True)


def promote(uri: str, model: str, version: str, reason: str, *, username: str | None, password: str | None) -> dict:
    """Promote ``model`` ``version`` to champion as this user (``registry.models.promote``)."""
    from registry.models import promote as registry_promote

    return registry_promote(model, version, reason, tracking_uri=uri, username=username or None, password=password or None)


def load_scorer(uri: str, model: str, version: str, device: str):
    """The warm ``hitsong.scoring.SongScorer`` behind registered ``model`` ``version`` on ``device``."""
    from registry.pyfunc import load_model

    check_server(uri)
    return load_model(f"models:/{model}/{version}", device=device, tracking_uri=uri).unwrap_python_model().scorer


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_scorer(uri: str, model: str, version: str, device: str):
    """``load_scorer``, loaded once per (server, model version, device)."""
    return load_scorer(uri, model, version, device)


def max_upload_mb() -> int:
    """The per-file upload limit of the Predict page, MB (set by ``hitsong dashboard``)."""
    from dashboard.commands import DEFAULT_MAX_UPLOAD_MB, UPLOAD_ENV

    return int(os.environ.get(UPLOAD_ENV) or DEFAULT_MAX_UPLOAD_MB)


@st.cache_resource(show_spinner=False)
def cuda_available() -> bool:
    """``torch.cuda.is_available()`` on the dashboard's machine."""
    import torch

    return bool(torch.cuda.is_available())
