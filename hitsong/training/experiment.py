"""Training m1..m6 (and the metadata baseline m0) with repetitions on one subset, evaluated as in the paper.

Everything a run produces goes through a :class:`hitsong.tracking.RunLogger`, in the layout of
:mod:`hitsong.training.runlayout`: a summary run per subset (Table 1), a parent run per method
and a child run per repetition.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from hitsong.audio import AudioConfig
from hitsong.baselines import is_baseline
from hitsong.bundle import save_bundle
from hitsong.errors import ConfigError
from hitsong.metrics import METRIC_NAMES, evaluate
from hitsong.models import ALL_METHODS, METHODS, build_model, check_method, get_method, method_label, resolve_device
from hitsong.models.config import ModelConfig
from hitsong.models.joint import JointModel
from hitsong.results import ResultsConfig, table1
from hitsong.tracking import RunHandle, RunLogger, flatten_params, run_scope
from hitsong.training import baseline, runlayout
from hitsong.training.config import TrainConfig
from hitsong.training.data import SubsetData, scan_subset
from hitsong.training.loop import FitResult, fit, predict_standardised, seed_everything
from hitsong.training.parallel import processes_for, run_repetitions
from hitsong.training.provenance import code_version
from hitsong.training.records import RepResult, RunContext, SubsetResult

log = logging.getLogger(__name__)


def _params(
    method: str, model_config: ModelConfig, train_config: TrainConfig, data: SubsetData, ctx: RunContext
) -> dict[str, str]:
    return flatten_params(
        {
            "method": method,
            "model": {} if is_baseline(method) else model_config.to_dict(),
            "train": asdict(train_config),
            "audio": ctx.audio_config.to_dict(),
            "data": {
                "subset": data.subset,
                "n_train": len(data.train),
                "n_val": len(data.val),
                "n_test": len(data.test),
                "shuffled_targets": ctx.shuffle_targets,
                "tagger": ctx.tagger,
                "target_mean": data.target_mean,
                "target_std": data.target_std,
                **ctx.data_notes,
            },
            "training_device": str(ctx.device),  # not "device": the logged pyfunc's model_config owns that param
        }
    )


def train_method(
    method: str,
    data: SubsetData,
    *,
    repetition: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    ctx: RunContext,
    logger: RunLogger,
    parent: RunHandle | None = None,
    keep_model: bool = False,
) -> RepResult:
    """Train and evaluate one repetition of ``method`` in its own (child) run.

    With ``ctx.shuffle_targets`` the train and validation hit scores are permuted with the
    repetition's seed (a negative control; each repetition draws its own permutation, so the
    mean over repetitions averages independent null results).

    Logs params, tags, per-epoch :data:`~runlayout.STEP_METRICS`, the validation and test
    metrics (``val_<metric>``, ``test_<metric>``), the :data:`~runlayout.VAL_PREDICTIONS` and
    :data:`~runlayout.PREDICTIONS` tables (song_id, true, predicted) and the model bundle.
    """
    info = get_method(method)
    seed = train_config.seed + repetition
    if ctx.shuffle_targets:
        data = data.with_shuffled_targets(seed=seed)
    tags = {
        **_run_tags(data.subset, ctx, train_config),
        runlayout.TAG_KIND: runlayout.REPETITION,
        runlayout.TAG_METHOD: method,
        runlayout.TAG_REPETITION: str(repetition),
    }
    label = f"{data.subset} {method} rep {repetition + 1}/{train_config.repeats}"
    with run_scope(logger, runlayout.repetition_run_name(method, repetition), parent=parent, tags=tags) as run:
        logger.log_params(run, {**_params(method, model_config, train_config, data, ctx), "seed": str(seed)})
        start = time.monotonic()
        seed_everything(seed)
        model = build_model(method, model_config)
        model.fit_input_stats(data.train.stats, data.train.tags)
        model.to(ctx.device)
        result = fit(
            model,
            data,
            train_config,
            seed=seed,
            device=ctx.device,
            label=label,
            on_epoch=lambda epoch, m: logger.log_metrics(run, m, step=epoch),
        )
        amp = train_config.amp and ctx.device.type == "cuda"
        predicted, val_predicted = (
            predict_standardised(model, split, device=ctx.device, batch_size=train_config.eval_batch_size, amp=amp)
            * data.target_std
            + data.target_mean
            for split in (data.test, data.val)
        )
        metrics = evaluate(data.test.targets, predicted)
        val_metrics = evaluate(data.val.targets, val_predicted)
        seconds = time.monotonic() - start
        w = float(model.w.detach().cpu()) if isinstance(model, JointModel) else None
        final = {runlayout.split_metric(runlayout.TEST, k): v for k, v in metrics.items()}
        final.update({runlayout.split_metric(runlayout.VAL, k): v for k, v in val_metrics.items()})
        final.update(best_epoch=result.best_epoch, best_val_loss=result.best_val_loss, train_seconds=seconds)
        if w is not None:
            final["joint_w"] = w
        logger.log_metrics(run, final)
        for name, split, values in (
            (runlayout.PREDICTIONS, data.test, predicted),
            (runlayout.VAL_PREDICTIONS, data.val, val_predicted),
        ):
            logger.log_table(
                run, name, pd.DataFrame({"song_id": list(split.song_ids), "true": split.targets, "predicted": values})
            )
        with tempfile.TemporaryDirectory(prefix="hitsong-bundle-") as tmp:
            bundle_dir = save_bundle(
                Path(tmp) / "model",
                model.cpu(),
                method=method,
                model_config=model_config,
                target_mean=data.target_mean,
                target_std=data.target_std,
                catalog=data.train.targets,
                subset=data.subset,
                audio_config=ctx.audio_config,
                tagger=ctx.tagger if info.uses_tags else None,
                data_version=ctx.data_version,
                metrics={k: v for k, v in final.items() if runlayout.parse_split_metric(k)},
                extra={"run_id": run.run_id, "repetition": str(repetition), "seed": str(seed)},
            )
            logger.log_bundle(run, bundle_dir)
        log.info(
            "%s: val %s | test %s (best epoch %d, %.1f s)",
            label,
            " ".join(f"{k}={v:.3f}" for k, v in val_metrics.items()),
            " ".join(f"{k}={v:.3f}" for k, v in metrics.items()),
            result.best_epoch,
            seconds,
        )
        return RepResult(
            method, repetition, seed, metrics, predicted, result, seconds, w, model if keep_model else None, val_metrics
        )


def _check_methods(methods: Sequence[str]) -> list[str]:
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError(f"no methods given; choose from {', '.join(ALL_METHODS)}")
    for m in methods:
        check_method(m)
    return methods


def _check_dims(data: SubsetData, config: ModelConfig) -> None:
    n_stats, n_tags = data.train.stats.shape[1], data.train.tags.shape[1]
    if n_stats != 2 * config.n_mels or n_tags != config.n_tags:
        raise ConfigError(
            f"subset {data.subset!r}: features have {n_stats // 2} mel bands and {n_tags} tags but the model "
            f"config expects n_mels={config.n_mels}, n_tags={config.n_tags}"
        )


def train_subset(
    data: SubsetData | Mapping[str, Dataset],
    *,
    subset: str,
    logger: RunLogger,
    methods: Sequence[str] = tuple(METHODS),
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    results_config: ResultsConfig | None = None,
    device: str | torch.device = "auto",
    audio_config: AudioConfig | None = None,
    tagger: str | None = None,
    shuffle_targets: bool = False,
    out_dir: Path | None = None,
    keep_models: bool = False,
    data_notes: Mapping[str, Any] | None = None,
) -> SubsetResult:
    """Train every method ``train_config.repeats`` times on one subset and build Table 1.

    Parameters
    ----------
    data : SubsetData or mapping of split name -> Dataset
        Already scanned data, or the ``train``/``val``/``test`` datasets (scanned here).
    subset : str
    logger : RunLogger
        Receives a summary run, a parent run per method and a child run per repetition.
    methods : sequence of str
        Method names (``m1`` .. ``m6``, and the metadata baseline ``m0``, which needs the items'
        ``artist`` and ``release_days``: see :mod:`hitsong.training.baseline`).
    model_config, train_config, results_config
        Defaults: paper sizes, the ``paper`` profile, 1,000 bootstrap replicates vs m0 and m1.
    device : str or torch.device
        ``auto``, ``cpu`` or ``cuda``.
    audio_config : AudioConfig or None
        Feature configuration of the store (recorded and written into bundles; default the paper's).
    tagger : str or None
        Name of the tagger that produced the tags.
    shuffle_targets : bool
        Negative control: permute train/val hit scores, a new permutation per repetition
        (see :meth:`SubsetData.with_shuffled_targets`).
    out_dir : Path or None
        Where ``table1.csv``/``.json``, ``repetitions.csv`` and ``predictions.csv`` go (None: not written).
    keep_models : bool
        Keep the trained models in the returned ``RepResult`` objects (tests, notebooks).
    data_notes : mapping or None
        Facts about the data recorded as ``data.<key>`` params (e.g. songs left out);
        ``split_by`` (the split method) is also a run tag and part of the data version.
    """
    methods = _check_methods(methods)
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    results_config = results_config or ResultsConfig()
    dev = resolve_device(device)
    if not isinstance(data, SubsetData):
        data = scan_subset(data, subset=subset)
    _check_dims(data, model_config)
    if any(is_baseline(m) for m in methods):
        baseline.require_metadata(data)
    audio = audio_config or AudioConfig()
    notes = dict(data_notes or {})
    ctx = RunContext(
        subset=subset,
        data_version=data.data_version(
            audio_config=audio.to_dict(),
            tagger=tagger,
            shuffled_targets=shuffle_targets,
            split_by=None if notes.get("split_by") is None else str(notes["split_by"]),
        ),
        code_version=code_version(),
        audio_config=audio,
        tagger=tagger,
        device=dev,
        shuffle_targets=shuffle_targets,
        data_notes=notes,
    )
    log.info(
        "subset %s: %d/%d/%d songs, methods %s x %d repetitions on %s (data_version %s)",
        subset,
        len(data.train),
        len(data.val),
        len(data.test),
        ",".join(methods),
        train_config.repeats,
        dev,
        ctx.data_version,
    )
    with _cpu_threads(dev, train_config.cpu_threads):
        return _train_all(data, methods, model_config, train_config, results_config, ctx, logger, out_dir, keep_models)


@contextlib.contextmanager
def _cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Use ``threads`` torch threads while training on CPU, then restore the previous number."""
    if device.type != "cpu" or threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_all(
    data: SubsetData,
    methods: list[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    results_config: ResultsConfig,
    ctx: RunContext,
    logger: RunLogger,
    out_dir: Path | None,
    keep_models: bool,
) -> SubsetResult:
    subset = data.subset
    reps: list[RepResult] = []
    base_tags = _run_tags(subset, ctx, train_config)
    with run_scope(
        logger, runlayout.summary_run_name(subset), tags={**base_tags, runlayout.TAG_KIND: runlayout.SUMMARY}
    ) as summary:
        logger.log_params(summary, {**_params("+".join(methods), model_config, train_config, data, ctx)})
        with contextlib.ExitStack() as method_runs:
            parents = {}
            for method in methods:
                label = method_label(method)
                tags = {
                    **base_tags,
                    runlayout.TAG_KIND: runlayout.METHOD,
                    runlayout.TAG_METHOD: method,
                    runlayout.TAG_LABEL: label,
                }
                parents[method] = method_runs.enter_context(
                    run_scope(logger, runlayout.method_run_name(method, label), tags=tags)
                )
                logger.log_params(parents[method], _params(method, model_config, train_config, data, ctx))
            by_method: dict[str, list[RepResult]] = {}
            for method in filter(is_baseline, methods):  # closed form: in this process, before the networks
                by_method[method] = _baseline_reps(method, data, model_config, train_config, ctx, logger,
                                                   parents[method])  # fmt: skip
                logger.log_metrics(parents[method], _method_metrics(by_method[method]))
            jobs = [(m, r) for m in methods if not is_baseline(m) for r in range(train_config.repeats)]
            fixed = {"data": data, "model_config": model_config, "train_config": train_config, "ctx": ctx,
                     "logger": logger, "parents": parents, "keep_model": keep_models}  # fmt: skip
            processes = processes_for(train_config.processes) if ctx.device.type == "cpu" else 1
            done: dict[tuple[str, int], RepResult] = {}
            for job, rep in run_repetitions(jobs, _train_job, fixed, processes=processes,
                                            threads=train_config.cpu_threads or 1):  # fmt: skip
                done[job] = rep
                method = job[0]
                if all((method, r) in done for r in range(train_config.repeats)):
                    by_method[method] = [done[(method, r)] for r in range(train_config.repeats)]
                    logger.log_metrics(parents[method], _method_metrics(by_method[method]))
            reps = [rep for method in methods for rep in by_method[method]]
        result = _tabulate(data, methods, reps, results_config, ctx)
        logger.log_table(summary, runlayout.TABLE1, result.table.frame)
        logger.log_table(summary, runlayout.TABLE1_WIDE, result.table.wide().reset_index(names="method"))
        logger.log_table(summary, runlayout.REPETITIONS, _repetition_frame(reps))
        logger.log_metrics(summary, baseline.summary_metrics(result.table))
        if out_dir is not None:
            result.outputs = _write_outputs(result, out_dir)
    log.info("subset %s: Table 1 done (%d repetitions)", subset, len(reps))
    log.debug("\n%s", result.table.to_text())
    return result


def _train_job(
    method: str,
    repetition: int,
    *,
    data: SubsetData,
    model_config: ModelConfig,
    train_config: TrainConfig,
    ctx: RunContext,
    logger: RunLogger,
    parents: dict[str, RunHandle],
    keep_model: bool,
) -> RepResult:
    """One (method, repetition) job of :func:`hitsong.training.parallel.run_repetitions`."""
    return train_method(
        method, data, repetition=repetition, model_config=model_config, train_config=train_config, ctx=ctx,
        logger=logger, parent=parents[method], keep_model=keep_model,
    )  # fmt: skip


def _baseline_reps(
    method: str,
    data: SubsetData,
    model_config: ModelConfig,
    train_config: TrainConfig,
    ctx: RunContext,
    logger: RunLogger,
    parent: RunHandle,
) -> list[RepResult]:
    """The repetitions of a metadata baseline (:func:`baseline.log_repetitions`), in the audio methods' layout."""
    fits = baseline.log_repetitions(
        data,
        method=method,
        repeats=train_config.repeats,
        base_seed=train_config.seed,
        shuffle_targets=ctx.shuffle_targets,
        params=lambda d: _params(method, model_config, train_config, d, ctx),
        tags=_run_tags(data.subset, ctx, train_config),
        logger=logger,
        parent=parent,
    )
    return [
        RepResult(method, r, seed, f.metrics, f.predictions, FitResult(best_val_loss=f.val_loss), f.seconds,
                  val_metrics=f.val_metrics)
        for r, seed, f in fits
    ]  # fmt: skip


def _run_tags(subset: str, ctx: RunContext, train_config: TrainConfig) -> dict[str, str]:
    """The tags every run of this training carries (:data:`runlayout.RUN_TAGS`)."""
    return {
        runlayout.TAG_SUBSET: subset,
        runlayout.TAG_DATA_VERSION: ctx.data_version,
        runlayout.TAG_CODE_VERSION: ctx.code_version,
        runlayout.TAG_PROFILE: train_config.profile,
        runlayout.TAG_SHUFFLED: str(ctx.shuffle_targets).lower(),
        runlayout.TAG_SPLIT_BY: str(ctx.data_notes.get("split_by", runlayout.DEFAULT_SPLIT_BY)),
    }


def _method_metrics(reps: Sequence[RepResult]) -> dict[str, float]:
    """A method run's statistics over its repetitions: test mean and std, validation mean."""
    out: dict[str, float] = {}
    for name in METRIC_NAMES:
        test = np.array([r.metrics[name] for r in reps])
        out[runlayout.method_metric(runlayout.TEST, name, "mean")] = float(test.mean())
        out[runlayout.method_metric(runlayout.TEST, name, "std")] = float(test.std(ddof=1)) if len(reps) > 1 else 0.0
        out[runlayout.method_metric(runlayout.VAL, name, "mean")] = float(np.mean([r.val_metrics[name] for r in reps]))
    return out


def _repetition_frame(reps: Sequence[RepResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": r.method,
                "repetition": r.repetition,
                "seed": r.seed,
                **r.metrics,
                **{runlayout.split_metric(runlayout.VAL, k): v for k, v in r.val_metrics.items()},
                "best_epoch": r.fit.best_epoch,
                "epochs": len(r.fit.history),
                "best_val_loss": r.fit.best_val_loss,
                "seconds": r.seconds,
                "joint_w": r.w,
            }
            for r in reps
        ]
    )


def _tabulate(
    data: SubsetData, methods: Sequence[str], reps: list[RepResult], config: ResultsConfig, ctx: RunContext
) -> SubsetResult:
    preds = {m: np.stack([r.predictions for r in reps if r.method == m]) for m in methods}
    table = table1(
        data.test.targets, preds, subset=data.subset, labels={m: method_label(m) for m in methods}, config=config
    )
    return SubsetResult(data.subset, table, reps, data.test.song_ids, data.test.targets, ctx.data_version)


def _write_outputs(result: SubsetResult, out_dir: Path) -> dict[str, Path]:
    paths = result.table.write(out_dir)
    paths["repetitions"] = out_dir / "repetitions.csv"
    _repetition_frame(result.reps).to_csv(paths["repetitions"], index=False)
    rows = [
        {"song_id": sid, "true": t, "method": r.method, "repetition": r.repetition, "predicted": p}
        for r in result.reps
        for sid, t, p in zip(result.song_ids, result.y_true, r.predictions, strict=True)
    ]
    paths["predictions"] = out_dir / "predictions.csv"
    pd.DataFrame(rows).to_csv(paths["predictions"], index=False)
    return paths
