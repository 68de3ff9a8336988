"""A trained model as a self-describing folder: ``bundle.json`` + ``weights.safetensors``.

The bundle is what tracking stores as a run's model and what scoring loads (DESIGN.md 7):
no pickles, everything needed to rebuild the network and to turn its output back into a hit
score and a percentile within the subset's catalog.

``bundle.json`` fields: ``format_version``, ``method``, ``model_config`` (``ModelConfig.to_dict``),
``audio_config`` (the feature config the model was trained on, a dict), ``tagger`` (tagger
name or null), ``target_mean`` / ``target_std`` (the training hit scores' standardisation),
``catalog`` (sorted training hit scores of the subset), ``subset``, ``data_version``,
``metrics`` (test metrics) and ``extra`` (free-form strings, e.g. the run id).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hitsong.errors import ModelError
from hitsong.models import build_model, get_method, resolve_device
from hitsong.models.config import ModelConfig

FORMAT_VERSION = 1
META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class BundleMeta:
    """Everything in ``bundle.json``; see the module docstring for the fields."""

    method: str
    model_config: ModelConfig
    target_mean: float
    target_std: float
    catalog: tuple[float, ...]
    subset: str
    audio_config: Mapping[str, Any] = field(default_factory=dict)
    tagger: str | None = None
    data_version: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        """The JSON document written to ``bundle.json``."""
        return {
            "format_version": self.format_version,
            "method": self.method,
            "model_config": self.model_config.to_dict(),
            "audio_config": dict(self.audio_config),
            "tagger": self.tagger,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "catalog": list(self.catalog),
            "subset": self.subset,
            "data_version": self.data_version,
            "metrics": {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()},
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: Path) -> BundleMeta:
        """Parse ``bundle.json`` content; ``ModelError`` naming ``source`` when it is not valid."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{source}: bundle format_version {version!r} is not supported (this hitsong reads "
                f"{FORMAT_VERSION}); retrain or upgrade hitsong"
            )
        try:
            get_method(str(data["method"]))
            return cls(
                method=str(data["method"]),
                model_config=ModelConfig.from_dict(dict(data["model_config"])),
                target_mean=float(data["target_mean"]),
                target_std=float(data["target_std"]),
                catalog=tuple(float(x) for x in data["catalog"]),
                subset=str(data["subset"]),
                audio_config=dict(data.get("audio_config") or {}),
                tagger=data.get("tagger"),
                data_version=str(data.get("data_version", "")),
                metrics={k: float("nan") if v is None else float(v) for k, v in (data.get("metrics") or {}).items()},
                extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid bundle metadata ({exc!r}); the bundle is damaged") from exc


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the model (eval mode, on ``device``) and its metadata."""

    model: nn.Module
    meta: BundleMeta
    device: torch.device

    def to_hit_score(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Model outputs (standardised) -> hit scores: ``z * target_std + target_mean``."""
        z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, dtype=np.float64)
        return z * self.meta.target_std + self.meta.target_mean

    def percentile(self, hit_score: np.ndarray | float) -> np.ndarray:
        """Percentage (0..100) of catalog songs with a hit score at or below ``hit_score``."""
        catalog = np.asarray(self.meta.catalog)
        if catalog.size == 0:
            raise ModelError(f"bundle of {self.meta.method}/{self.meta.subset} has an empty catalog")
        return 100.0 * np.searchsorted(catalog, np.asarray(hit_score, dtype=np.float64), side="right") / catalog.size


def save_bundle(
    directory: Path | str,
    model: nn.Module,
    *,
    method: str,
    model_config: ModelConfig,
    target_mean: float,
    target_std: float,
    catalog: Sequence[float] | np.ndarray,
    subset: str,
    audio_config: Mapping[str, Any] | None = None,
    tagger: str | None = None,
    data_version: str = "",
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model`` and its metadata as a bundle folder; returns the folder.

    The state dict (including the input-standardisation buffers) is saved on CPU as
    safetensors; ``catalog`` is stored sorted.
    """
    from safetensors.torch import save_file

    get_method(method)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = BundleMeta(
        method=method,
        model_config=model_config,
        target_mean=float(target_mean),
        target_std=float(target_std),
        catalog=tuple(float(x) for x in np.sort(np.asarray(catalog, dtype=np.float64))),
        subset=subset,
        audio_config=dict(audio_config or {}),
        tagger=tagger,
        data_version=data_version,
        metrics={k: float(v) for k, v in (metrics or {}).items()},
        extra=dict(extra or {}),
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"method": method})
    (directory / META_FILE).write_text(json.dumps(meta.to_json(), indent=1))
    return directory


def read_meta(directory: Path | str) -> BundleMeta:
    """Read only ``bundle.json`` of a bundle folder."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ModelError(f"{path} not found: {Path(directory)} is not a model bundle")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from exc
    return BundleMeta.from_json(data, source=path)


def load_bundle(directory: Path | str, *, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild the model of a bundle folder, load its weights, put it in eval mode on ``device``.

    Raises
    ------
    ModelError
        ``bundle.json`` or ``weights.safetensors`` missing or damaged, or the weights do not fit
        the configured model (missing, unexpected or mis-shaped tensors are named).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_meta(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights} not found: the bundle has no weights")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights} cannot be read as safetensors ({exc}); the bundle is damaged") from exc
    model = build_model(meta.method, meta.model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ModelError(
            f"{weights} does not fit method {meta.method} with the bundle's model_config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    model.load_state_dict(state)
    dev = resolve_device(device)
    model.to(dev).eval()
    return Bundle(model=model, meta=meta, device=dev)
