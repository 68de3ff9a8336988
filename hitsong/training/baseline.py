"""Training and logging the metadata baseline m0 in the run layout of m1..m6.

m0 (:mod:`hitsong.models.metadata`) needs each song's artist and release date, which the
audio methods' inputs do not carry: :class:`hitsong.training.data.SplitData` holds them when
the dataset's items do (``hitsong.features.MelDataset`` always does). Its repetition run gets
the same params, tags, validation and test metrics and prediction tables as an audio method's,
so Table 1, the registry's ranking and the dashboard treat it like m1..m6; instead of a model
bundle it logs its fitted numbers (the :data:`~runlayout.BASELINE_TABLES` and params) — it
cannot score audio.

m0 is closed form and deterministic, so it is fitted once (one repetition); with shuffled
targets each repetition draws its own permutation, as for the audio methods.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hitsong.errors import InputError
from hitsong.metrics import evaluate
from hitsong.models.metadata import MetadataBaseline, MetadataConfig, fit_metadata_baseline
from hitsong.results import Table1, gap_columns
from hitsong.tracking import RunHandle, RunLogger, run_scope
from hitsong.training import runlayout
from hitsong.training.data import SplitData, SubsetData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineFit:
    """One fitted repetition of m0: hit-score predictions, metrics and the model."""

    model: MetadataBaseline
    predictions: np.ndarray  # (n_test,) hit scores
    val_predictions: np.ndarray  # (n_val,) hit scores
    metrics: dict[str, float]  # test
    val_metrics: dict[str, float]
    val_loss: float  # validation MSE in standardised units at the chosen shrinkage
    seconds: float


def require_metadata(data: SubsetData) -> None:
    """Refuse m0 when a split carries no artist and release date (an in-memory dataset without them)."""
    splits = (("train", data.train), ("val", data.val), ("test", data.test))
    lacking = [name for name, split in splits if not split.has_metadata]
    if lacking:
        raise InputError(
            f"subset {data.subset!r}: m0 (the metadata baseline) needs each song's artist and release date, "
            f"but the items of the {', '.join(lacking)} split(s) carry no 'artist'/'release_days'; train from "
            "the store (hitsong.features.MelDataset items have them) or leave m0 out of the methods"
        )


def _metadata(split: SplitData) -> tuple[tuple[str, ...], np.ndarray]:
    if split.artists is None or split.release_days is None:
        raise InputError("m0 needs artists and release days (see require_metadata)")
    return split.artists, split.release_days


def fit_baseline(data: SubsetData, *, config: MetadataConfig | None = None) -> BaselineFit:
    """Fit m0 on ``data.train`` (shrinkage chosen on ``data.val``) and predict val and test hit scores."""
    require_metadata(data)
    start = time.monotonic()
    (train_a, train_d), (val_a, val_d), (test_a, test_d) = (_metadata(s) for s in (data.train, data.val, data.test))
    model = fit_metadata_baseline(
        data.z(data.train).numpy(),
        train_a,
        train_d,
        data.z(data.val).numpy(),
        val_a,
        val_d,
        config=config or MetadataConfig(),
    )
    predicted = model.predict(test_a, test_d) * data.target_std + data.target_mean
    val_predicted = model.predict(val_a, val_d) * data.target_std + data.target_mean
    return BaselineFit(
        model=model,
        predictions=predicted,
        val_predictions=val_predicted,
        metrics=evaluate(data.test.targets, predicted),
        val_metrics=evaluate(data.val.targets, val_predicted),
        val_loss=model.val_losses[model.shrinkage],
        seconds=time.monotonic() - start,
    )


def log_baseline(
    data: SubsetData,
    *,
    repetition: int,
    seed: int,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    logger: RunLogger,
    parent: RunHandle | None,
    config: MetadataConfig | None = None,
) -> BaselineFit:
    """Fit one repetition of m0 in its own (child) run, logged in the audio methods' layout.

    Logs ``params`` plus ``m0.*`` (the fitted numbers), the tags, ``val_<metric>`` and
    ``test_<metric>``, ``best_val_loss`` (validation MSE), ``train_seconds``, the
    :data:`~runlayout.BASELINE_METRICS`, the :data:`~runlayout.PREDICTIONS` and
    :data:`~runlayout.VAL_PREDICTIONS` tables and the :data:`~runlayout.BASELINE_TABLES`. No bundle.
    """
    name = runlayout.repetition_run_name("m0", repetition)
    with run_scope(logger, name, parent=parent, tags=tags) as run:
        result = fit_baseline(data, config=config)
        model = result.model
        logger.log_params(
            run,
            {
                **params,
                "seed": str(seed),
                **{f"m0.{k}": v for k, v in model.params().items()},
                "m0.shrinkage_grid": str(list((config or MetadataConfig()).shrinkage_grid)),
            },
        )
        final = {runlayout.split_metric(runlayout.TEST, k): v for k, v in result.metrics.items()}
        final.update({runlayout.split_metric(runlayout.VAL, k): v for k, v in result.val_metrics.items()})
        final.update(
            best_epoch=0,
            best_val_loss=result.val_loss,
            train_seconds=result.seconds,
            val_artists_seen=model.seen_share(data.val.artists or ()),
            test_artists_seen=model.seen_share(data.test.artists or ()),
        )
        if math.isfinite(model.shrinkage):
            final["m0_shrinkage"] = model.shrinkage
        logger.log_metrics(run, final)
        for table, split, values in (
            (runlayout.PREDICTIONS, data.test, result.predictions),
            (runlayout.VAL_PREDICTIONS, data.val, result.val_predictions),
        ):
            logger.log_table(
                run, table, pd.DataFrame({"song_id": list(split.song_ids), "true": split.targets, "predicted": values})
            )
        logger.log_table(run, runlayout.BASELINE_EFFECTS, model.effects_frame())
        logger.log_table(
            run,
            runlayout.BASELINE_SEARCH,
            pd.DataFrame({"shrinkage": list(model.val_losses), "val_loss": list(model.val_losses.values())}),
        )
        log.info(
            "%s m0 rep %d: shrinkage %s (validation), %d artists, val artists seen %.0f %% | test %s",
            data.subset,
            repetition,
            model.shrinkage,
            len(model.artists),
            100 * final["val_artists_seen"],
            " ".join(f"{k}={v:.3f}" for k, v in result.metrics.items()),
        )
    return result


def log_repetitions(
    data: SubsetData,
    *,
    method: str,
    repeats: int,
    base_seed: int,
    shuffle_targets: bool,
    params: Callable[[SubsetData], Mapping[str, str]],
    tags: Mapping[str, str],
    logger: RunLogger,
    parent: RunHandle | None,
    config: MetadataConfig | None = None,
) -> list[tuple[int, int, BaselineFit]]:
    """Every repetition of m0 as ``(repetition, seed, fit)``: one, or ``repeats`` under shuffled targets.

    m0 is deterministic, so one fit says all; a shuffled-target control draws a new permutation
    per repetition (seed ``base_seed + r``), as the audio methods do. ``params`` gives the run
    params of the (possibly shuffled) data, ``tags`` the tags every run of this training carries.
    """
    out = []
    for r in range(repeats if shuffle_targets else 1):
        seed = base_seed + r
        rep_data = data.with_shuffled_targets(seed=seed) if shuffle_targets else data
        rep_tags = {
            **tags,
            runlayout.TAG_KIND: runlayout.REPETITION,
            runlayout.TAG_METHOD: method,
            runlayout.TAG_REPETITION: str(r),
        }
        fit = log_baseline(
            rep_data,
            repetition=r,
            seed=seed,
            params=params(rep_data),
            tags=rep_tags,
            logger=logger,
            parent=parent,
            config=config,
        )
        out.append((r, seed, fit))
    return out


def summary_metrics(table: Table1) -> dict[str, float]:
    """The summary run's metrics: Table 1's means and every method's gap to each baseline, with its interval."""
    frame = table.frame
    out = {runlayout.summary_metric(r.method, r.metric): float(r.mean) for r in frame.itertuples()}
    for base in table.config.baselines:
        cols = gap_columns(base)
        bounds: tuple[tuple[runlayout.GapBound, str], ...] = (
            ("diff", cols.diff),
            ("low", cols.low),
            ("high", cols.high),
        )
        for bound, column in bounds:
            for method, metric, value in zip(frame["method"], frame["metric"], frame[column], strict=True):
                if method != base and np.isfinite(value):
                    out[runlayout.summary_gap_metric(method, metric, base, bound)] = float(value)
    return out
