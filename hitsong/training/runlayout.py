"""The run layout: how training's runs, tags, metrics and tables are named.

Training writes through these names (:mod:`hitsong.training.experiment`) and every reader
(``registry.runs``, ``registry.models``, the dashboard) reads through them; nothing else spells
them. Per subset, one training command makes:

- a **summary** run ``<subset> summary`` with the Table-1 tables (:data:`TABLE1`, long form as
  ``hitsong.results.Table1.frame``; :data:`TABLE1_WIDE`; :data:`REPETITIONS`) and the metrics
  ``<method>.<metric>_mean`` (:func:`summary_metric`);
- a **method** run per method, ``<method> <label>``, with ``test_<metric>_mean/_std`` and
  ``val_<metric>_mean`` (:func:`method_metric`);
- a **repetition** run per method and repetition, ``<method> rep <r>``, child of its method run,
  with stepped :data:`STEP_METRICS`, the final ``test_<metric>`` and ``val_<metric>``
  (:func:`split_metric`), :data:`FINAL_METRICS`, the :data:`PREDICTIONS` and
  :data:`VAL_PREDICTIONS` tables (``song_id, true, predicted``) and the model bundle.

The summary run also carries each method's gap to each baseline of the paired tests
(:func:`summary_gap_metric`, e.g. ``m2.spearman_rho_gap_m0`` with ``_low``/``_high``). The
metadata baseline m0 logs no model bundle (it cannot score audio); its repetition run holds the
:data:`BASELINE_TABLES` (its artist effects and the validation search of its shrinkage) and the
:data:`BASELINE_METRICS`.

Every run carries the tag :data:`TAG_KIND` (``summary``/``method``/``repetition``) and the
facts of :data:`RUN_TAGS`. An experiment holds one dataset, subset and split method
(:func:`experiment_name`), tagged :data:`EXPERIMENT_TAG_DATASET`, :data:`EXPERIMENT_TAG_SUBSET`
and :data:`EXPERIMENT_TAG_SPLIT_BY`, so that the same data under the random, artist-disjoint
and release-date splits gives three experiments that readers can put side by side.

Choices are made on the validation split (:data:`VAL`), the test split (:data:`TEST`) only
reports (DESIGN.md section 6).
"""

from __future__ import annotations

from typing import Literal

from hitsong.errors import ConfigError
from hitsong.metrics import METRIC_NAMES

RunKind = Literal["summary", "method", "repetition"]
SUMMARY: RunKind = "summary"
METHOD: RunKind = "method"
REPETITION: RunKind = "repetition"
KINDS: tuple[RunKind, ...] = (SUMMARY, METHOD, REPETITION)

#: Tag keys of every run.
TAG_KIND = "hitsong.kind"
TAG_METHOD = "method"
TAG_LABEL = "label"
TAG_REPETITION = "repetition"
TAG_SUBSET = "subset"
TAG_DATA_VERSION = "data_version"
TAG_CODE_VERSION = "code_version"
TAG_PROFILE = "profile"
TAG_SHUFFLED = "shuffled_targets"
TAG_SPLIT_BY = "split_by"
RUN_TAGS = (TAG_SUBSET, TAG_DATA_VERSION, TAG_CODE_VERSION, TAG_PROFILE, TAG_SHUFFLED, TAG_SPLIT_BY)

#: Experiment tags and the experiment name prefix.
EXPERIMENT_PREFIX = "hitsong"
EXPERIMENT_TAG_DATASET = "hitsong.dataset"
EXPERIMENT_TAG_SUBSET = "hitsong.subset"
EXPERIMENT_TAG_SPLIT_BY = "hitsong.split_by"
#: The split method of an experiment whose name carries none (``hitsong sample``'s default).
DEFAULT_SPLIT_BY = "random"

#: Evaluation splits as metric prefixes.
Split = Literal["val", "test"]
VAL: Split = "val"
TEST: Split = "test"

#: Per-epoch metrics of a repetition run (``step`` = epoch).
STEP_METRICS = ("train_loss", "val_loss", "val_spearman", "lr")
#: Final metrics of a repetition run besides the split metrics.
FINAL_METRICS = ("best_epoch", "best_val_loss", "train_seconds", "joint_w")
#: Final metrics of a metadata-baseline (m0) repetition run: the chosen shrinkage (absent when
#: the artist term was dropped, i.e. infinite shrinkage) and the share of validation and test
#: songs whose artist has training songs (0 under an artist-disjoint split).
BASELINE_METRICS = ("m0_shrinkage", "val_artists_seen", "test_artists_seen")

#: Table artifacts.
TABLE1 = "table1"
TABLE1_WIDE = "table1_wide"
REPETITIONS = "repetitions"
PREDICTIONS = "predictions"
VAL_PREDICTIONS = "val_predictions"
PREDICTION_COLUMNS = ("song_id", "true", "predicted")
#: Tables of a metadata-baseline (m0) repetition run: ``artist, train_songs, effect`` and
#: ``shrinkage, val_loss``.
BASELINE_EFFECTS = "m0_artist_effects"
BASELINE_SEARCH = "m0_shrinkage_search"
BASELINE_TABLES = (BASELINE_EFFECTS, BASELINE_SEARCH)

GapBound = Literal["diff", "low", "high"]


def experiment_name(dataset: str, subset: str, split_by: str | None = None) -> str:
    """The experiment of one dataset, subset and split method.

    ``hitsong/demo/mandarin`` for the random split (or ``split_by=None``), else the method is
    appended: ``hitsong/demo/mandarin/artist``.
    """
    for label, value in (("dataset", dataset), ("subset", subset), ("split method", split_by or DEFAULT_SPLIT_BY)):
        if not value or "/" in value:
            raise ConfigError(f"{label} name {value!r} must be non-empty and contain no '/'")
    name = f"{EXPERIMENT_PREFIX}/{dataset}/{subset}"
    return name if split_by in (None, DEFAULT_SPLIT_BY) else f"{name}/{split_by}"


def summary_run_name(subset: str) -> str:
    """``<subset> summary``."""
    return f"{subset} summary"


def method_run_name(method: str, label: str) -> str:
    """``<method> <label>``, e.g. ``m2 audio+CNN``."""
    return f"{method} {label}"


def repetition_run_name(method: str, repetition: int) -> str:
    """``<method> rep <r>`` (r from 0)."""
    return f"{method} rep {repetition}"


def _check_metric(name: str) -> None:
    if name not in METRIC_NAMES:
        raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(METRIC_NAMES)}")


def split_metric(split: Split, name: str) -> str:
    """A repetition's metric on a split: ``test_spearman_rho``, ``val_ndcg_at_k``."""
    _check_metric(name)
    return f"{split}_{name}"


def method_metric(split: Split, name: str, stat: Literal["mean", "std"] = "mean") -> str:
    """A method run's statistic over its repetitions: ``test_ndcg_at_k_mean``."""
    return f"{split_metric(split, name)}_{stat}"


def summary_metric(method: str, name: str) -> str:
    """The summary run's Table-1 mean of one method: ``m2.ndcg_at_k_mean``."""
    _check_metric(name)
    return f"{method}.{name}_mean"


def summary_gap_metric(method: str, name: str, baseline: str, bound: GapBound = "diff") -> str:
    """The summary run's gap of ``method`` to ``baseline`` on one metric: ``m2.spearman_rho_gap_m0[_low|_high]``."""
    _check_metric(name)
    return f"{method}.{name}_gap_{baseline}" + ("" if bound == "diff" else f"_{bound}")


def parse_split_metric(key: str) -> tuple[Split, str] | None:
    """``("test", "ndcg_at_k")`` for ``test_ndcg_at_k``; ``None`` for any other key."""
    for split in (VAL, TEST):
        prefix = f"{split}_"
        if key.startswith(prefix) and key[len(prefix) :] in METRIC_NAMES:
            return split, key[len(prefix) :]
    return None
