"""Where the converted tagger weights live, and what to tell a user whose file is missing."""

from __future__ import annotations

from pathlib import Path

#: The committed safetensors files (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Pretrained models with committed weights, in the order they are converted.
MODEL_NAMES: tuple[str, ...] = ("MTT_musicnn", "MTT_vgg")

REGENERATE_HINT = "regenerate it with `python -m tools.convert_musicnn`"


def weights_path(name: str) -> Path:
    """The committed weights file of model ``name``."""
    return WEIGHTS_DIR / f"{name}.safetensors"
