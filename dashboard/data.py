"""Data loading for the dashboard: plain functions plus thin Streamlit-cached wrappers.

Everything about runs comes from ``registry.runs`` (the only place that talks to the tracking
server about runs; ``list_experiments``, ``experiment_runs``, ``metric_history``, ``run_details``,
``run_url`` and ``runs_version`` are re-exported here for the pages); this module adds the
frame-level choices the pages need (``repetitions``, ``table1``, ``test_predictions``), the
DuckDB reads (``quarter_frame``, ...) and the model-registry actions (``registry.models``).
Tests call the plain functions without Streamlit. The ``cached_*`` wrappers add
``st.cache_data`` keyed by a *version* that changes when new data arrives: the newest run's
start/end time for MLflow (``runs_version``) and the file's modification time for DuckDB
(``db_version``). A missing server or database raises a ``HitsongError`` whose message names
the command that fixes it; pages show that message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from hitsong.errors import StoreError
from hitsong.metrics import METRIC_NAMES
from hitsong.scoring import SongScorer
from hitsong.settings import DEFAULT_TAGGER, Settings, get_settings
from hitsong.store.read import hit_score_frame, quarter_playcounts, stats
from hitsong.training import runlayout
from registry import runs as registry_runs
from registry.runs import (  # noqa: F401 - re-exported for the pages and tests
    check_server,
    experiment_runs,
    list_experiments,
    metric_history,
    run_details,
    run_url,
    runs_version,
)

log = logging.getLogger(__name__)

DB_HINT = "Create it with `hitsong demo run`, or `hitsong ingest --events FILE --songs FILE` then `hitsong sample`."
#: Metrics of a registered version shown in its row: the validation figures that chose it, then
#: its held-out test figures.
VERSION_METRICS = tuple(
    runlayout.split_metric(split, m) for split in (runlayout.VAL, runlayout.TEST) for m in METRIC_NAMES
)

# A dashboard must answer quickly: no minutes of MLflow's default retry back-off.
registry_runs.fail_fast()


def settings() -> Settings:
    """The home and the tracking URI (``HITSONG_HOME``, ``MLFLOW_TRACKING_URI``)."""
    return get_settings()


def is_demo(s: Settings) -> bool:
    """True when the home holds the synthetic demo label (``hitsong demo init`` output)."""
    return s.demo_dir.exists()


# --------------------------------------------------------------------------- runs
def repetitions(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished repetition runs with their method and final metrics.

    Returns ``run_id, run_name, method, repetition``, then each test metric under its plain name
    (``spearman_rho``: what Table 1 reports) and each validation metric as ``val_<name>``.
    """
    keep = runs[(runs["kind"] == runlayout.REPETITION) & (runs["status"] == "FINISHED")]
    out = keep[["run_id", "run_name", "method", "repetition"]].reset_index(drop=True)
    for name in METRIC_NAMES:
        for split, column in ((runlayout.TEST, name), (runlayout.VAL, runlayout.split_metric(runlayout.VAL, name))):
            key = runlayout.split_metric(split, name)
            out[column] = keep[key].to_numpy() if key in keep else float("nan")
    return out


def run_choices(runs: pd.DataFrame) -> dict[str, str]:
    """Unique display labels (the run name, plus an id prefix when names repeat) -> run id."""
    counts = runs["run_name"].value_counts()
    return {
        name if counts[name] == 1 else f"{name} ({run_id[:8]})": run_id
        for name, run_id in zip(runs["run_name"], runs["run_id"])
    }


@dataclass(frozen=True)
class Table1:
    """Table-1 summary of one experiment and where it came from."""

    summary: pd.DataFrame  # long form (hitsong.results.Table1.frame): method, metric, mean, std, ci_low, ...
    source: str  # "summary run <name>", or why there is none yet


def table1(uri: str, runs: pd.DataFrame) -> Table1:
    """The newest finished summary run's Table-1 artifact (computed once, by training)."""
    summaries = runs[(runs["kind"] == runlayout.SUMMARY) & (runs["status"] == "FINISHED")]
    for _, run in summaries.sort_values("start_time", ascending=False).iterrows():
        table = registry_runs.summary_table(uri, run["run_id"])
        if table is not None and not table.empty:
            return Table1(table, f"summary run “{run['run_name']}”")
    n = len(repetitions(runs))
    return Table1(
        pd.DataFrame(columns=["method", "metric", "mean", "std"]),
        f"no finished training summary yet ({n} repetitions finished); Table 1 appears when training ends",
    )


def split_tables(uri: str, experiment: pd.Series, experiments: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table 1 of ``experiment`` and of its siblings: the same dataset and subset under other splits.

    Returns
    -------
    dict
        Split method (``random``, ``artist``, ``release_date``) -> Table-1 long frame (empty
        while that experiment has no finished summary). ``experiment`` alone (under its own
        split) when it carries no dataset tag.
    """
    same = experiments
    if pd.notna(experiment.get("dataset")) and pd.notna(experiment.get("subset")):
        same = experiments[
            (experiments["dataset"] == experiment["dataset"]) & (experiments["subset"] == experiment["subset"])
        ]
    else:
        same = experiments[experiments["experiment_id"] == experiment["experiment_id"]]
    out = {}
    for row in same.itertuples(index=False):
        split = row.split_by or runlayout.DEFAULT_SPLIT_BY
        out[str(split)] = table1(uri, experiment_runs(uri, str(row.experiment_id))).summary
    return out


def chosen_repetitions(runs: pd.DataFrame, *, metric: str = "spearman_rho") -> pd.DataFrame:
    """Each method's repetition chosen on validation: the highest ``val_<metric>`` (never a test figure)."""
    reps = repetitions(runs)
    key = runlayout.split_metric(runlayout.VAL, metric)
    return reps.dropna(subset=[key]).sort_values([key, "run_id"], ascending=[False, True]).drop_duplicates("method")


def test_predictions(uri: str, runs: pd.DataFrame, *, metric: str = "spearman_rho") -> pd.DataFrame:
    """Test predictions of each method's repetition chosen on validation (:func:`chosen_repetitions`).

    Returns ``method, run_name, song_id, true, predicted``.
    """
    parts = []
    for _, rep in chosen_repetitions(runs, metric=metric).iterrows():
        table = registry_runs.predictions(uri, rep["run_id"])
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
def cached_split_tables(
    uri: str, experiment: pd.Series, experiments: pd.DataFrame, version: tuple
) -> dict[str, pd.DataFrame]:
    """``split_tables`` cached per ``runs_version``."""
    return split_tables(uri, experiment, experiments)


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
    check_db(db_path)
    frame = quarter_playcounts(db_path).rename(columns={"group": "scope"})
    frame["scope"] = frame["scope"].replace({"all": "whole"})
    return frame


def hit_scores(db_path: Path) -> pd.DataFrame:
    """Paper Fig. 2 data: ``subset, scope, hit_score``; each song once as ``whole``, test songs
    again as ``test``."""
    check_db(db_path)
    frame = hit_score_frame(db_path)
    whole = frame.assign(scope="whole")
    test = frame[frame["split"] == "test"].assign(scope="test")
    return pd.concat([whole, test], ignore_index=True)[["subset", "scope", "hit_score"]]


def subset_counts(db_path: Path) -> pd.DataFrame:
    """Per-subset counts: songs, listeners, events, plays, hit-score quantiles, split sizes."""
    check_db(db_path)
    return stats(db_path)


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
    """Whether the tracking server refuses an anonymous request (``registry.runs.requires_auth``)."""
    return registry_runs.requires_auth(uri)


def signed_in_as(username: str | None) -> str:
    """The name a promotion by this visitor is recorded as: their user, else the server's OS user.

    Never the dashboard's own service credentials (``MLFLOW_TRACKING_USERNAME``).
    """
    import getpass

    return username or getpass.getuser()


def versions(uri: str, *, username: str | None = None, password: str | None = None) -> pd.DataFrame:
    """Every version of every ``hitsong-*`` model, newest first per model.

    Returns
    -------
    pd.DataFrame
        ``model, subset, version, aliases (text), method``, the four metrics, ``run_id, created,
        promoted_by, promoted_at, promotion_reason``.
    """
    from registry.models import MODEL_PREFIX, TAG_PREFIX, list_versions

    check_server(uri)
    rows = []
    for v in list_versions(tracking_uri=uri, username=username or None, password=password or None):
        row = {
            "model": v["model"],
            "subset": v["model"].removeprefix(MODEL_PREFIX),
            "version": v["version"],
            "aliases": ", ".join(v["aliases"]),
            "method": v["method"],
        }
        row.update({k: v["metrics"].get(k) for k in VERSION_METRICS})
        row.update(
            {
                "run_id": v["run_id"],
                "created": v["created"],
                **{
                    k: v["tags"].get(f"{TAG_PREFIX}{k}", "") for k in ("promoted_by", "promoted_at", "promotion_reason")
                },
            }
        )
        rows.append(row)
    columns = [
        "model",
        "subset",
        "version",
        "aliases",
        "method",
        *VERSION_METRICS,
        "run_id",
        "created",
        "promoted_by",
        "promoted_at",
        "promotion_reason",
    ]
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


def promote(
    uri: str, model: str, version: str, reason: str, *, username: str | None, password: str | None, auth: bool
) -> dict:
    """Promote ``model`` ``version`` to champion as the visitor (``registry.models.promote``).

    Only the visitor's own credentials are used, never the dashboard's service credentials
    from the environment: empty strings (not ``None``) are passed when there are none.

    Raises
    ------
    ConfigError
        ``auth`` and the visitor has not given a user and password.
    RegistryError
        MLflow refused (wrong password, no EDIT on the model, ...).
    """
    from hitsong.errors import ConfigError
    from registry.models import promote as registry_promote

    if auth and not (username and password):
        raise ConfigError(
            "sign in with your own MLflow user and password to promote; the dashboard never promotes "
            "with credentials of its own"
        )
    return registry_promote(model, version, reason, tracking_uri=uri, username=username or "", password=password or "")


def load_scorer(uri: str, model: str, version: str, device: str) -> SongScorer:
    """The warm scorer of registered ``model`` ``version`` on ``device``, built from its data files only.

    Never the version's pyfunc code (``registry.bundles``): a version anyone registered cannot
    run code in the dashboard.
    """
    from registry.bundles import load_scorer as load_bundle_scorer

    check_server(uri)
    return load_bundle_scorer(model, version, tracking_uri=uri, device=device)


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_scorer(uri: str, model: str, version: str, device: str) -> SongScorer:
    """``load_scorer``, loaded once per (server, model version, device)."""
    return load_scorer(uri, model, version, device)


def max_upload_mb() -> int:
    """The per-file upload limit of the Predict page, MB: Streamlit's ``server.maxUploadSize``."""
    return int(st.get_option("server.maxUploadSize"))


@st.cache_resource(show_spinner=False)
def cuda_available() -> bool:
    """``torch.cuda.is_available()`` on the dashboard's machine."""
    import torch

    return bool(torch.cuda.is_available())
