"""Training m1..m6 with repetitions and evaluating them as in the paper (sections 3-4).

The loop is model-agnostic: it minimises the MSE between a model's output and the
*standardised* hit score (training mean/std), keeps the weights of the best validation epoch,
decays the learning rate on a validation plateau and stops early. Each repetition seeds
Python, NumPy and torch once, and shuffles with its own generator, so it is reproducible
(bit for bit on CPU; on CUDA, cuDNN kernel choices can change the last bits).

Data comes as one torch ``Dataset`` per split whose items are dicts
``{"mel": (n_mels, T) float32, "tags": (n_tags,) float32, "target": float hit score,
"song_id": str}`` (``hitsong.features.MelDataset`` or any in-memory equivalent).
:func:`scan_subset` reads each split once to collect ids, targets, m1's mel statistics and the
tags; the linear models train on those vectors, the CNNs re-read batches of spectrograms from
the dataset every epoch (the store is never loaded whole).

Everything a run produces goes through a :class:`hitsong.tracking.RunLogger`:
a summary run per subset (Table 1), a parent run per method and a child run per repetition.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import math
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from hitsong import __version__
from hitsong.bundle import save_bundle
from hitsong.errors import ConfigError, InputError, ModelError
from hitsong.metrics import METRIC_NAMES, evaluate
from hitsong.models import METHODS, build_model, get_method, mel_stats, resolve_device
from hitsong.models.config import ModelConfig
from hitsong.progress import Progress
from hitsong.results import ResultsConfig, Table1, table1
from hitsong.tracking import RunHandle, RunLogger, flatten_params, run_scope

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: A target standard deviation below this is treated as 1.
TARGET_STD_FLOOR = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """How one repetition trains (DESIGN.md section 4).

    Parameters
    ----------
    profile : str
        Name of the preset this config came from (``paper``, ``demo``, ``tiny``), for the record.
    optimizer : str
        ``adagrad`` (the lab's default) or ``adam``.
    lr : float
        Initial learning rate.
    lr_decay : float
        Factor applied to the learning rate when validation loss has not improved for
        ``lr_patience`` epochs (0: every epoch without improvement).
    lr_patience : int
    batch_size : int
        Training batch size (songs).
    eval_batch_size : int
        Batch size for validation and test predictions.
    max_epochs : int
    early_stop_patience : int
        Stop after this many epochs without a validation improvement larger than ``min_delta``.
    min_delta : float
    repeats : int
        Repetitions per method (different seeds; the paper averages 10).
    seed : int
        Base seed; repetition ``r`` uses ``seed + r``.
    num_workers : int
        DataLoader worker processes for spectrogram batches (0 = in process).
    amp : bool
        Mixed precision (float16 autocast + gradient scaling); only ever used on CUDA.
    cpu_threads : int or None
        torch intra-op threads while training on CPU (None: torch's default, one per core).
        On a shared machine one thread can be many times faster than two competing ones
        (BENCHMARKS.md, "Training").
    """

    profile: str = "paper"
    optimizer: str = "adagrad"
    lr: float = 5e-3
    lr_decay: float = 0.9
    lr_patience: int = 0
    batch_size: int = 10
    eval_batch_size: int = 50
    max_epochs: int = 150
    early_stop_patience: int = 20
    min_delta: float = 0.0
    repeats: int = 10
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("adagrad", "adam"):
            raise ConfigError(f"TrainConfig.optimizer must be 'adagrad' or 'adam', got {self.optimizer!r}")
        for name in ("batch_size", "eval_batch_size", "max_epochs", "early_stop_patience", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ConfigError(f"TrainConfig needs lr > 0 and 0 < lr_decay <= 1, got {self.lr}, {self.lr_decay}")
        if self.lr_patience < 0 or self.num_workers < 0 or self.min_delta < 0:
            raise ConfigError("TrainConfig.lr_patience, num_workers and min_delta must be >= 0")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"TrainConfig.cpu_threads must be >= 1 or None, got {self.cpu_threads!r}")

    @classmethod
    def for_profile(cls, name: str, **overrides: Any) -> TrainConfig:
        """The preset ``name`` (see :data:`PROFILES`) with ``overrides`` applied."""
        if name not in PROFILES:
            raise ConfigError(f"unknown training profile {name!r}; valid: {', '.join(PROFILES)}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"unknown TrainConfig fields {bad}")
        return cls(profile=name, **{**PROFILES[name], **overrides})


#: Presets. ``paper``: the lab's defaults. ``demo``: sized so that six methods x 3 repetitions x
#: 2 subsets of ~150/20/20 songs train in about 5-6 minutes on a 2-core CPU (BENCHMARKS.md,
#: "Training"). ``tiny``: unit tests.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "demo": {"max_epochs": 8, "early_stop_patience": 4, "repeats": 3, "lr": 2e-2, "cpu_threads": 1},
    "tiny": {"max_epochs": 4, "early_stop_patience": 2, "repeats": 1, "batch_size": 4, "eval_batch_size": 16},
}


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SplitData:
    """One split, scanned once.

    Attributes
    ----------
    dataset : Dataset
        The item source (spectrograms are re-read from it for CNN batches).
    song_ids : tuple of str [length N]
    targets : np.ndarray [shape=(N,)]
        Hit scores (float64).
    stats : Tensor [shape=(N, 2 * n_mels)]
        Per-band mel mean and std over time (m1's input), float32.
    tags : Tensor [shape=(N, n_tags)]
        Tag activations, float32.
    """

    dataset: Dataset
    song_ids: tuple[str, ...]
    targets: np.ndarray
    stats: Tensor
    tags: Tensor

    def __len__(self) -> int:
        return len(self.song_ids)


def scan_split(dataset: Dataset, *, name: str, batch_size: int = 32) -> SplitData:
    """Read every item of ``dataset`` once: ids, targets, mel statistics and tags."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise InputError(f"split {name!r} has no songs; build the sample and features first")
    ids: list[str] = []
    targets, stats, tags = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        ids.extend(str(s) for s in batch["song_id"])
        targets.append(torch.as_tensor(batch["target"], dtype=torch.float64))
        stats.append(mel_stats(torch.as_tensor(batch["mel"])))
        tags.append(torch.as_tensor(batch["tags"], dtype=torch.float32))
    y = torch.cat(targets).numpy()
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise InputError(f"split {name!r}: song {ids[bad[0]]!r} has a non-finite hit score {y[bad[0]]}")
    return SplitData(dataset, tuple(ids), y, torch.cat(stats), torch.cat(tags))


@dataclass(frozen=True)
class SubsetData:
    """The three splits of one subset plus the target standardisation from ``train``."""

    subset: str
    train: SplitData
    val: SplitData
    test: SplitData
    shuffled_targets: bool = False

    @property
    def target_mean(self) -> float:
        return float(self.train.targets.mean())

    @property
    def target_std(self) -> float:
        std = float(self.train.targets.std())
        return std if std > TARGET_STD_FLOOR else 1.0

    def z(self, split: SplitData) -> Tensor:
        """Standardised targets of ``split``: (N,) float32."""
        return torch.as_tensor((split.targets - self.target_mean) / self.target_std, dtype=torch.float32)

    def with_shuffled_targets(self, *, seed: int) -> SubsetData:
        """A negative control: train and validation hit scores permuted among their songs.

        The test split keeps its true scores, so a model trained on this learns nothing that
        the test metrics can reward.
        """
        rng = np.random.default_rng(seed)
        train = replace(self.train, targets=rng.permutation(self.train.targets))
        val = replace(self.val, targets=rng.permutation(self.val.targets))
        return replace(self, train=train, val=val, shuffled_targets=True)

    def data_version(
        self, *, audio_config: Mapping[str, Any], tagger: str | None, shuffled_targets: bool = False
    ) -> str:
        """Hash of the split membership, hit scores and feature config (16 hex digits)."""
        doc = {
            "subset": self.subset,
            "splits": {
                name: sorted(zip(s.song_ids, np.round(s.targets, 9).tolist(), strict=True))
                for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
            },
            "audio": dict(audio_config),
            "tagger": tagger,
            "shuffled_targets": shuffled_targets or self.shuffled_targets,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def scan_subset(datasets: Mapping[str, Dataset], *, subset: str) -> SubsetData:
    """Scan the ``train``, ``val`` and ``test`` datasets of one subset."""
    missing = [s for s in SPLITS if s not in datasets]
    if missing:
        raise InputError(f"subset {subset!r}: missing split(s) {missing}; expected {list(SPLITS)}")
    parts = {name: scan_split(datasets[name], name=f"{subset}/{name}") for name in SPLITS}
    if len(parts["train"]) < 2 or len(parts["test"]) < 2:
        raise InputError(f"subset {subset!r}: need at least 2 train and 2 test songs")
    return SubsetData(subset=subset, **parts)


class _Indexed(Dataset):
    """Items of ``dataset`` reduced to mel, tags and their index (targets come from SplitData)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        return {"mel": item["mel"], "tags": item["tags"], "index": i}


# ------------------------------------------------------------------------------------ helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) once for a repetition."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<git sha>`` when run from a git checkout, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__


def _batches(
    model: nn.Module,
    split: SplitData,
    z: Tensor,
    *,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator | None,
    num_workers: int = 0,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield ``(x, tags, z)`` on ``device``; x is the (B, 2*n_mels) statistics for vector models,
    else the (B, n_mels, T) spectrograms. Shuffled when ``generator`` is given."""
    n = len(split)
    if getattr(model, "vector_input", False):
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for idx in order.split(batch_size):
            yield split.stats[idx].to(device), split.tags[idx].to(device), z[idx].to(device)
        return
    loader = DataLoader(
        _Indexed(split.dataset),
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        idx = batch["index"]
        mel = torch.as_tensor(batch["mel"]).to(device, torch.float32, non_blocking=True)
        tags = torch.as_tensor(batch["tags"]).to(device, torch.float32, non_blocking=True)
        yield mel, tags, z[idx].to(device)


def _forward(model: nn.Module, x: Tensor, tags: Tensor) -> Tensor:
    if getattr(model, "vector_input", False):
        return model.forward_vectors(x, tags)
    return model(x, tags)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type="cuda", dtype=torch.float16) if enabled else contextlib.nullcontext()


@torch.no_grad()
def predict_standardised(
    model: nn.Module, split: SplitData, *, device: torch.device, batch_size: int = 50, amp: bool = False
) -> np.ndarray:
    """Model outputs (standardised scale) for every song of ``split``, in split order: (N,)."""
    model.eval()
    out = []
    dummy = torch.zeros(len(split))
    for x, tags, _ in _batches(model, split, dummy, batch_size=batch_size, device=device, generator=None):
        with _autocast(device, amp):
            out.append(_forward(model, x, tags).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


@dataclass
class FitResult:
    """What one training run did: per-epoch history and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


def fit(
    model: nn.Module,
    data: SubsetData,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    label: str = "training",
    on_epoch: Callable[[int, Mapping[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``data.train``; restore the best validation weights.

    Parameters
    ----------
    model : nn.Module
        A method from :data:`hitsong.models.METHODS`, input statistics already fitted, on ``device``.
    data : SubsetData
    config : TrainConfig
    seed : int
        Seeds the shuffling generator (the caller seeds the global RNGs).
    device : torch.device
    label : str
        Progress label.
    on_epoch : callable or None
        Called as ``on_epoch(epoch, {"train_loss", "val_loss", "lr"})`` after every epoch.
    """
    amp = config.amp and device.type == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adagrad":
        opt: torch.optim.Optimizer = torch.optim.Adagrad(params, lr=config.lr)
    else:
        opt = torch.optim.Adam(params, lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=config.lr_decay, patience=config.lr_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = torch.Generator().manual_seed(seed)
    z_train, z_val = data.z(data.train), data.z(data.val)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0
    bar = Progress(label, config.max_epochs, unit="epochs")
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, tags, z in _batches(
            model, data.train, z_train, batch_size=config.batch_size, device=device, generator=gen,
            num_workers=config.num_workers,
        ):
            opt.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                out = _forward(model, x, tags)
            loss = F.mse_loss(out.float(), z)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(z)
            count += len(z)
        train_loss = total / count
        val_pred = predict_standardised(model, data.val, device=device, batch_size=config.eval_batch_size, amp=amp)
        val_loss = float(np.mean((val_pred - z_val.numpy()) ** 2))
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise ModelError(
                f"{label}: loss became non-finite at epoch {epoch} (train {train_loss}, val {val_loss}); "
                f"lower the learning rate (now {opt.param_groups[0]['lr']:.2e})"
            )
        sched.step(val_loss)
        lr = float(opt.param_groups[0]["lr"])
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr}
        result.history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": train_loss, "val_loss": val_loss, "lr": lr})
        if val_loss < result.best_val_loss - config.min_delta:
            result.best_val_loss, result.best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        bar.update(extra=f"epoch {epoch} train {train_loss:.4f} val {val_loss:.4f} lr {lr:.2e}")
        if bad_epochs >= config.early_stop_patience:
            result.stopped_early = True
            log.info("%s: early stop at epoch %d (best epoch %d)", label, epoch, result.best_epoch)
            break
    model.load_state_dict(best_state)
    return result


# ---------------------------------------------------------------------------------- one method


@dataclass(frozen=True)
class RunContext:
    """Facts shared by every run of one ``train_subset`` call (recorded as params and tags)."""

    subset: str
    data_version: str
    code_version: str
    audio_config: Mapping[str, Any]
    tagger: str | None
    device: torch.device
    shuffle_targets: bool = False


@dataclass
class RepResult:
    """One repetition of one method."""

    method: str
    repetition: int
    seed: int
    metrics: dict[str, float]
    predictions: np.ndarray  # (n_test,) predicted hit scores
    fit: FitResult
    seconds: float
    w: float | None = None
    model: nn.Module | None = None


def _params(method: str, model_config: ModelConfig, train_config: TrainConfig, data: SubsetData,
            ctx: RunContext) -> dict[str, str]:
    return flatten_params(
        {
            "method": method,
            "model": model_config.to_dict(),
            "train": asdict(train_config),
            "audio": dict(ctx.audio_config),
            "data": {
                "subset": data.subset,
                "n_train": len(data.train),
                "n_val": len(data.val),
                "n_test": len(data.test),
                "shuffled_targets": ctx.shuffle_targets,
                "tagger": ctx.tagger,
                "target_mean": data.target_mean,
                "target_std": data.target_std,
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

    Logs params, tags, per-epoch ``train_loss``/``val_loss``/``lr``, the test metrics
    (``test_<metric>``), a ``predictions`` table (song_id, true, predicted) and the model bundle.
    """
    info = get_method(method)
    seed = train_config.seed + repetition
    if ctx.shuffle_targets:
        data = data.with_shuffled_targets(seed=seed)
    tags = {
        "hitsong.kind": "repetition",
        "method": method,
        "repetition": str(repetition),
        "subset": data.subset,
        "data_version": ctx.data_version,
        "code_version": ctx.code_version,
        "profile": train_config.profile,
    }
    label = f"{data.subset} {method} rep {repetition + 1}/{train_config.repeats}"
    with run_scope(logger, f"{method} rep {repetition}", parent=parent, tags=tags) as run:
        logger.log_params(run, {**_params(method, model_config, train_config, data, ctx), "seed": str(seed)})
        start = time.monotonic()
        seed_everything(seed)
        model = build_model(method, model_config)
        model.fit_input_stats(data.train.stats, data.train.tags)
        model.to(ctx.device)
        result = fit(
            model, data, train_config, seed=seed, device=ctx.device, label=label,
            on_epoch=lambda epoch, m: logger.log_metrics(run, m, step=epoch),
        )
        amp = train_config.amp and ctx.device.type == "cuda"
        z_test = predict_standardised(model, data.test, device=ctx.device, batch_size=train_config.eval_batch_size, amp=amp)
        predicted = z_test * data.target_std + data.target_mean
        metrics = evaluate(data.test.targets, predicted)
        seconds = time.monotonic() - start
        w = float(model.w.detach().cpu()) if hasattr(model, "w") else None
        final = {f"test_{k}": v for k, v in metrics.items()}
        final.update(best_epoch=result.best_epoch, best_val_loss=result.best_val_loss, train_seconds=seconds)
        if w is not None:
            final["joint_w"] = w
        logger.log_metrics(run, final)
        logger.log_table(
            run,
            "predictions",
            pd.DataFrame({"song_id": list(data.test.song_ids), "true": data.test.targets, "predicted": predicted}),
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
                tagger=ctx.tagger if info.name in ("m4", "m5", "m6") else None,
                data_version=ctx.data_version,
                metrics=metrics,
                extra={"run_id": run.run_id, "repetition": str(repetition), "seed": str(seed)},
            )
            logger.log_bundle(run, bundle_dir)
        log.info(
            "%s: %s (best epoch %d, %.1f s)", label,
            " ".join(f"{k}={v:.3f}" for k, v in metrics.items()), result.best_epoch, seconds,
        )
        return RepResult(method, repetition, seed, metrics, predicted, result, seconds, w,
                         model if keep_model else None)


# ---------------------------------------------------------------------------------- one subset


@dataclass
class SubsetResult:
    """Everything one ``train_subset`` call produced."""

    subset: str
    table: Table1
    reps: list[RepResult]
    song_ids: tuple[str, ...]
    y_true: np.ndarray
    data_version: str
    outputs: dict[str, Path] = field(default_factory=dict)

    def predictions(self, method: str) -> np.ndarray:
        """Predicted hit scores of ``method``: (R, n_test)."""
        return np.stack([r.predictions for r in self.reps if r.method == method])

    def metric(self, method: str, name: str) -> np.ndarray:
        """One metric of ``method`` over its repetitions: (R,)."""
        return np.array([r.metrics[name] for r in self.reps if r.method == method])


def _check_methods(methods: Sequence[str]) -> list[str]:
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError(f"no methods given; choose from {', '.join(METHODS)}")
    for m in methods:
        get_method(m)
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
    audio_config: Mapping[str, Any] | None = None,
    tagger: str | None = None,
    shuffle_targets: bool = False,
    out_dir: Path | None = None,
    keep_models: bool = False,
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
        Method names (``m1`` .. ``m6``).
    model_config, train_config, results_config
        Defaults: paper sizes, the ``paper`` profile, 1,000 bootstrap replicates vs m1.
    device : str or torch.device
        ``auto``, ``cpu`` or ``cuda``.
    audio_config : mapping or None
        Feature configuration of the store (recorded and written into bundles).
    tagger : str or None
        Name of the tagger that produced the tags.
    shuffle_targets : bool
        Negative control: permute train/val hit scores, a new permutation per repetition
        (see :meth:`SubsetData.with_shuffled_targets`).
    out_dir : Path or None
        Where ``table1.csv``/``.json``, ``repetitions.csv`` and ``predictions.csv`` go (None: not written).
    keep_models : bool
        Keep the trained models in the returned ``RepResult`` objects (tests, notebooks).
    """
    methods = _check_methods(methods)
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    results_config = results_config or ResultsConfig()
    dev = resolve_device(device)
    if not isinstance(data, SubsetData):
        data = scan_subset(data, subset=subset)
    _check_dims(data, model_config)
    audio = dict(audio_config or {})
    ctx = RunContext(
        subset=subset,
        data_version=data.data_version(audio_config=audio, tagger=tagger, shuffled_targets=shuffle_targets),
        code_version=code_version(),
        audio_config=audio,
        tagger=tagger,
        device=dev,
        shuffle_targets=shuffle_targets,
    )
    base_tags = {
        "subset": subset,
        "data_version": ctx.data_version,
        "code_version": ctx.code_version,
        "profile": train_config.profile,
        "shuffled_targets": str(shuffle_targets).lower(),
    }
    log.info(
        "subset %s: %d/%d/%d songs, methods %s x %d repetitions on %s (data_version %s)",
        subset, len(data.train), len(data.val), len(data.test), ",".join(methods), train_config.repeats,
        dev, ctx.data_version,
    )
    with _cpu_threads(dev, train_config.cpu_threads):
        return _train_all(data, methods, model_config, train_config, results_config, ctx, logger, base_tags,
                          out_dir, keep_models)


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
    base_tags: dict[str, str],
    out_dir: Path | None,
    keep_models: bool,
) -> SubsetResult:
    subset = data.subset
    reps: list[RepResult] = []
    with run_scope(logger, f"{subset} summary", tags={**base_tags, "hitsong.kind": "summary"}) as summary:
        logger.log_params(summary, {**_params("+".join(methods), model_config, train_config, data, ctx)})
        for method in methods:
            info = get_method(method)
            tags = {**base_tags, "hitsong.kind": "method", "method": method, "label": info.label}
            with run_scope(logger, f"{method} {info.label}", tags=tags) as parent:
                logger.log_params(parent, _params(method, model_config, train_config, data, ctx))
                mine = [
                    train_method(
                        method, data, repetition=r, model_config=model_config, train_config=train_config,
                        ctx=ctx, logger=logger, parent=parent, keep_model=keep_models,
                    )
                    for r in range(train_config.repeats)
                ]
                reps.extend(mine)
                values = np.array([[r.metrics[m] for m in METRIC_NAMES] for r in mine])
                summary_metrics = {}
                for j, name in enumerate(METRIC_NAMES):
                    summary_metrics[f"test_{name}_mean"] = float(values[:, j].mean())
                    summary_metrics[f"test_{name}_std"] = float(values[:, j].std(ddof=1)) if len(mine) > 1 else 0.0
                logger.log_metrics(parent, summary_metrics)
        result = _tabulate(data, methods, reps, results_config, ctx)
        logger.log_table(summary, "table1", result.table.frame)
        logger.log_table(summary, "table1_wide", result.table.wide().reset_index(names="method"))
        logger.log_table(summary, "repetitions", _repetition_frame(reps))
        logger.log_metrics(
            summary,
            {f"{r.method}.{r.metric}_mean": r.mean for r in result.table.frame.itertuples()},
        )
        if out_dir is not None:
            result.outputs = _write_outputs(result, out_dir)
    log.info("subset %s: Table 1 done (%d repetitions)", subset, len(reps))
    log.debug("\n%s", result.table.to_text())
    return result


def _repetition_frame(reps: Sequence[RepResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": r.method,
                "repetition": r.repetition,
                "seed": r.seed,
                **r.metrics,
                "best_epoch": r.fit.best_epoch,
                "epochs": len(r.fit.history),
                "best_val_loss": r.fit.best_val_loss,
                "seconds": r.seconds,
                "joint_w": r.w,
            }
            for r in reps
        ]
    )


def _tabulate(data: SubsetData, methods: Sequence[str], reps: list[RepResult], config: ResultsConfig,
              ctx: RunContext) -> SubsetResult:
    preds = {m: np.stack([r.predictions for r in reps if r.method == m]) for m in methods}
    table = table1(
        data.test.targets, preds, subset=data.subset, labels={m: METHODS[m].label for m in methods}, config=config
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
