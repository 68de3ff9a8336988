"""The training loop: model-agnostic, MSE on the standardised hit score, best-validation weights.

It minimises the MSE between a model's output and the *standardised* hit score (training
mean/std), keeps the weights of the best validation epoch, decays the learning rate on a
validation plateau and stops early. Each repetition seeds Python, NumPy and torch once, and
shuffles with its own generator, so it is reproducible (bit for bit on CPU; on CUDA, cuDNN
kernel choices can change the last bits).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from hitsong.errors import ModelError
from hitsong.metrics import spearman_rho
from hitsong.models.base import HitModel
from hitsong.progress import Progress
from hitsong.training.config import TrainConfig
from hitsong.training.data import IndexedItems, SplitData, SubsetData

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) once for a repetition."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batches(
    model: HitModel,
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
    if model.vector_input:
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for idx in order.split(batch_size):
            yield split.stats[idx].to(device), split.tags[idx].to(device), z[idx].to(device)
        return
    loader = DataLoader(
        IndexedItems(split.dataset),
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


def forward(model: HitModel, x: Tensor, tags: Tensor) -> Tensor:
    if model.vector_input:
        return model.forward_vectors(x, tags)
    return model(x, tags)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type="cuda", dtype=torch.float16) if enabled else contextlib.nullcontext()


@torch.no_grad()
def predict_standardised(
    model: HitModel, split: SplitData, *, device: torch.device, batch_size: int = 50, amp: bool = False
) -> np.ndarray:
    """Model outputs (standardised scale) for every song of ``split``, in split order: (N,)."""
    model.eval()
    out = []
    dummy = torch.zeros(len(split))
    for x, tags, _ in batches(model, split, dummy, batch_size=batch_size, device=device, generator=None):
        with autocast(device, amp):
            out.append(forward(model, x, tags).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


@dataclass
class FitResult:
    """What one training run did: per-epoch history and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


def fit(
    model: HitModel,
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
    model : HitModel
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
    by_loss = config.select_by == "val_loss"
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min" if by_loss else "max", factor=config.lr_decay, patience=config.lr_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = torch.Generator().manual_seed(seed)
    z_train, z_val = data.z(data.train), data.z(data.val)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    best_score = math.inf if by_loss else -math.inf
    bad_epochs = 0
    bar = Progress(label, config.max_epochs, unit="epochs")
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, tags, z in batches(
            model,
            data.train,
            z_train,
            batch_size=config.batch_size,
            device=device,
            generator=gen,
            num_workers=config.num_workers,
        ):
            opt.zero_grad(set_to_none=True)
            with autocast(device, amp):
                out = forward(model, x, tags)
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
        val_rho = spearman_rho(z_val.numpy(), val_pred)
        score = val_loss if by_loss else val_rho
        sched.step(score)
        lr = float(opt.param_groups[0]["lr"])
        epoch_metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_spearman": val_rho, "lr": lr}
        result.history.append({"epoch": epoch, **epoch_metrics})
        if on_epoch is not None:
            on_epoch(epoch, epoch_metrics)
        improved = score < best_score - config.min_delta if by_loss else score > best_score + config.min_delta
        if improved:
            best_score, result.best_epoch, bad_epochs = score, epoch, 0
            result.best_val_loss = val_loss
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        bar.update(extra=f"epoch {epoch} train {train_loss:.4f} val {val_loss:.4f} rho {val_rho:.3f} lr {lr:.2e}")
        if bad_epochs >= config.early_stop_patience:
            result.stopped_early = True
            log.info("%s: early stop at epoch %d (best epoch %d)", label, epoch, result.best_epoch)
            break
    model.load_state_dict(best_state)
    return result
