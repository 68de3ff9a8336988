"""The six methods of Yang et al. (ICASSP 2017) section 3, built by name from one table.

Every model has one contract: ``forward(mel (B, n_mels, T), tags (B, n_tags)) -> (B,)``, a
standardised hit score; each uses the inputs it needs (``uses_mel``, ``uses_tags``). Models
with ``vector_input`` (m1, m4) also offer ``forward_vectors(stats (B, 2*n_mels), tags)`` so that
training can precompute their small inputs once. CNN models (m2, m3, m5, m6) offer
``frame_scores(mel, tags) -> (B, T')``. Every model has ``fit_input_stats(stats, tags)``,
called by training on the training songs before the first epoch.

Beside them, ``BASELINES`` lists the methods that see no audio: m0, the metadata baseline
(``hitsong.models.metadata``), which every audio method is compared against and which never
scores audio. ``ALL_METHODS`` is every trainable method in Table 1's order; :func:`check_method`
accepts any of them, :func:`get_method` only the audio methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hitsong.baselines import BASELINES, is_baseline
from hitsong.errors import ConfigError
from hitsong.models.base import HitModel
from hitsong.models.cnn import AudioCNN, InceptionCNN
from hitsong.models.config import ModelConfig
from hitsong.models.joint import JointModel, joint_cnn_tag, joint_inception_tag
from hitsong.models.linear import AudioLR, TagLR, mel_stats


@dataclass(frozen=True)
class Method:
    """One row of the methods table: short name, the paper's label, the model class and its builder."""

    name: str
    label: str
    model: type[HitModel]
    build: Callable[[ModelConfig], HitModel]

    @property
    def uses_tags(self) -> bool:
        """Whether the method's model reads the tag vector (its class says so)."""
        return bool(self.model.uses_tags)

    @property
    def uses_mel(self) -> bool:
        """Whether the method's model reads the log-mel."""
        return bool(self.model.uses_mel)


#: The six methods, in the paper's order (Table 1).
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("m1", "audio+LR", AudioLR, AudioLR),
        Method("m2", "audio+CNN", AudioCNN, AudioCNN),
        Method("m3", "audio+inception CNN", InceptionCNN, InceptionCNN),
        Method("m4", "tag+LR", TagLR, TagLR),
        Method("m5", "(m2)+(m4)", JointModel, joint_cnn_tag),
        Method("m6", "(m3)+(m4)", JointModel, joint_inception_tag),
    )
}


#: Every trainable method, in Table 1's order (the baselines of ``hitsong.baselines`` first).
ALL_METHODS: tuple[str, ...] = (*BASELINES, *METHODS)


def get_method(name: str) -> Method:
    """The table row for ``name``; ``ConfigError`` listing the valid names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        hint = f" ({name} is a baseline that sees no audio)" if name in BASELINES else ""
        raise ConfigError(f"unknown audio method {name!r}{hint}; valid methods: {', '.join(METHODS)}") from None


def check_method(name: str) -> str:
    """``name`` when it is a trainable method (m0..m6); ``ConfigError`` listing them otherwise."""
    if name not in BASELINES and name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(ALL_METHODS)}")
    return name


def method_label(name: str) -> str:
    """Table 1's label of any method, e.g. ``audio+CNN`` for m2."""
    return BASELINES[name] if name in BASELINES else get_method(name).label


def build_model(name: str, config: ModelConfig | None = None) -> HitModel:
    """Build method ``name`` (``m1`` .. ``m6``) with ``config`` (default: the paper's sizes)."""
    return get_method(name).build(config or ModelConfig())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is a ``ConfigError``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return torch.device(device)


__all__ = [
    "ALL_METHODS",
    "BASELINES",
    "METHODS",
    "AudioCNN",
    "AudioLR",
    "HitModel",
    "InceptionCNN",
    "JointModel",
    "Method",
    "ModelConfig",
    "TagLR",
    "build_model",
    "check_method",
    "get_method",
    "is_baseline",
    "mel_stats",
    "method_label",
    "resolve_device",
]
