"""A trained model as a self-describing folder: ``bundle.json`` + ``weights.safetensors``.

The bundle is what tracking stores as a run's model and what scoring loads (DESIGN.md 7):
no pickles, everything needed to rebuild the network and to turn its output back into a hit
score and a percentile within the subset's catalog.

``bundle.json`` fields: ``format_version``, ``method``, ``model_config`` (``ModelConfig.to_dict``),
``audio_config`` (the feature config the model was trained on, ``AudioConfig.to_dict``; it
includes the tagger's window), ``tagger`` (tagger name or null), ``target_mean`` / ``target_std``
(the training hit scores' standardisation), ``catalog`` (sorted training hit scores of the
subset), ``subset``, ``data_version``, ``metrics`` (the repetition's ``val_<metric>`` and
held-out ``test_<metric>``) and ``extra`` (free-form strings, e.g. the run id).

A bundle is data, never code: :func:`load_bundle` parses the JSON strictly and accepts only
float32 tensors whose names and shapes are exactly those of the method's network, so a bundle
from anywhere (an artifact store, an upload) cannot run anything.
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

from hitsong.audio.config import AudioConfig
from hitsong.errors import ConfigError, ModelError
from hitsong.models import build_model, get_method, resolve_device
from hitsong.models.base import HitModel
from hitsong.models.config import ModelConfig
from hitsong.tagger.files import MODEL_NAMES

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
    audio_config: AudioConfig = field(default_factory=AudioConfig)
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
            "audio_config": self.audio_config.to_dict(),
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
                # a bundle from before the tagger had a precision setting was trained on float32 tags
                audio_config=AudioConfig.from_dict(
                    {"tagger_precision": "exact", **dict(data["audio_config"])}, source=str(source)
                ),
                tagger=_tagger_name(data.get("tagger"), source),
                data_version=str(data.get("data_version", "")),
                metrics={k: float("nan") if v is None else float(v) for k, v in (data.get("metrics") or {}).items()},
                extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise ModelError(f"{source}: invalid bundle metadata ({exc}); the bundle is damaged") from exc


def _tagger_name(value: Any, source: Path) -> str | None:
    """The bundle's tagger: ``None`` or one of the packaged taggers (never a path)."""
    if value is None or value in MODEL_NAMES:
        return value
    raise ModelError(f"{source}: unknown tagger {value!r}; this hitsong has {', '.join(MODEL_NAMES)}")


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the model (eval mode, on ``device``) and its metadata."""

    model: HitModel
    meta: BundleMeta
    device: torch.device


def save_bundle(
    directory: Path | str,
    model: HitModel,
    *,
    method: str,
    model_config: ModelConfig,
    target_mean: float,
    target_std: float,
    catalog: Sequence[float] | np.ndarray,
    subset: str,
    audio_config: AudioConfig | None = None,
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
        audio_config=audio_config or AudioConfig(),
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
    common = set(expected) & set(state)
    wrong = sorted(k for k in common if expected[k].shape != state[k].shape)
    dtype = sorted(k for k in common if state[k].dtype != expected[k].dtype)
    if missing or unexpected or wrong or dtype:
        raise ModelError(
            f"{weights} does not fit method {meta.method} with the bundle's model_config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}, wrong dtype {dtype[:5]}"
        )
    model.load_state_dict(state)
    dev = resolve_device(device)
    model.to(dev).eval()
    return Bundle(model=model, meta=meta, device=dev)
