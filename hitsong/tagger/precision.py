"""Which arithmetic the tagger runs in: ``exact`` (float32) or ``fast`` (int8 and bfloat16 GEMMs).

``exact`` reproduces the original TensorFlow musicnn within 1e-4 (``tests/hitsong/tagger/test_parity.py``).
``fast`` runs the timbral convolutions of MTT_musicnn (80 % of its multiply-adds) as int8 matrix
products and the temporal ones as bfloat16 products (:mod:`hitsong.tagger.fastblocks`); its
distance from ``exact`` is bounded and tested (``tests/hitsong/tagger/test_fast.py``, figures in
BENCHMARKS.md). It is used only where it was measured faster: a CPU with native int8 and
bfloat16 dot products (AVX-512 VNNI and BF16, or AMX) and the MTT_musicnn model.
Anywhere else a request for ``fast`` runs ``exact``, and the resolved value is what the feature
store and every model bundle record (``AudioConfig.tagger_precision``), so that the tags a model
was trained on and the tags it is scored on come from the same arithmetic.

``auto`` means ``fast`` where it is supported, else ``exact``; it is resolved before anything is
hashed or recorded (:func:`resolve_audio_config`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import torch

from hitsong.audio.config import TAGGER_PRECISIONS, AudioConfig
from hitsong.errors import ConfigError

log = logging.getLogger(__name__)

EXACT = "exact"
FAST = "fast"
AUTO = "auto"
#: Every accepted value of ``AudioConfig.tagger_precision`` / ``Tagger(precision=...)``.
PRECISIONS: tuple[str, ...] = TAGGER_PRECISIONS
#: Models with a fast kernel (:class:`hitsong.tagger.kernels.MusiCNNKernel`).
FAST_MODELS: frozenset[str] = frozenset({"MTT_musicnn"})
#: Stated accuracy of ``fast`` against ``exact`` (tested on the three reference clips; measured
#: 1.1e-3 and 4.8e-3 there): largest difference of a song-level tag probability...
FAST_SONG_TOLERANCE = 2e-3
#: ...and of a per-patch (3-s) tag probability.
FAST_PATCH_TOLERANCE = 1e-2
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 dot products.
BF16_CPU_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})
#: CPU flags of native int8 dot products (VNNI).
INT8_CPU_FLAGS: frozenset[str] = frozenset({"avx512_vnni", "amx_int8"})


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively and torch's oneDNN can use it.

    Without AVX-512 BF16 or AMX, bfloat16 matrix products are emulated and slower than float32,
    so ``fast`` would not be fast.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        if probe is not None and (probe() or (amx is not None and amx())):
            return True
    except RuntimeError:  # a torch build without cpuinfo: fall back to the kernel's flags
        pass
    return bool(_cpuinfo_flags() & BF16_CPU_FLAGS)


@lru_cache(maxsize=1)
def native_int8() -> bool:
    """True when this CPU has int8 dot products (AVX-512 VNNI or AMX) and torch has ``_int_mm``.

    Without them int8 matrix products are no faster than bfloat16 ones (measured 2x faster with).
    """
    if not hasattr(torch, "_int_mm"):
        return False
    return bool(_cpuinfo_flags() & INT8_CPU_FLAGS)


def check_precision(value: str, *, what: str = "tagger precision") -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError` listing them."""
    if value not in PRECISIONS:
        raise ConfigError(f"{what} must be one of {', '.join(PRECISIONS)}; got {value!r}")
    return value


def resolve_precision(requested: str, *, device: torch.device | str = "cpu", model: str | None = None) -> str:
    """The precision the tagger will actually run in: ``"exact"`` or ``"fast"``.

    Parameters
    ----------
    requested : {"auto", "exact", "fast"}
    device : torch.device or str
        Where the tagger runs. ``fast`` is CPU only: it was measured on CPUs; on a GPU the
        float32 network is not the bottleneck.
    model : str, optional
        The tagger model; ``None`` means the default (MTT_musicnn). Only
        :data:`FAST_MODELS` have a fast kernel.

    Returns
    -------
    str
        ``"fast"`` when requested (or ``auto``) and supported here, else ``"exact"``. A request
        for ``fast`` that cannot be honoured is logged once per reason.
    """
    check_precision(requested)
    if requested == EXACT:
        return EXACT
    dev = torch.device(device)
    reason = None
    if model is not None and model not in FAST_MODELS:
        reason = f"tagger {model} has no fast kernel (only {', '.join(sorted(FAST_MODELS))})"
    elif dev.type != "cpu":
        reason = f"the fast path is for CPUs, the tagger runs on {dev}"
    elif not native_bf16():
        reason = "this CPU has no native bfloat16 (AVX-512 BF16 or AMX), where bfloat16 is slower than float32"
    elif not native_int8():
        reason = "this CPU has no native int8 dot products (AVX-512 VNNI or AMX)"
    if reason is None:
        return FAST
    if requested == FAST:
        _log_fallback(reason)
    return EXACT


@lru_cache(maxsize=8)
def _log_fallback(reason: str) -> None:
    log.warning("tagger precision 'fast' falls back to 'exact': %s", reason)


def resolve_audio_config(
    config: AudioConfig, *, device: torch.device | str = "cpu", model: str | None = None
) -> AudioConfig:
    """``config`` with ``tagger_precision`` resolved to what runs here (see :func:`resolve_precision`).

    Call it before the config is hashed into a feature store or written into a bundle, so that
    what is recorded is the arithmetic actually used.
    """
    resolved = resolve_precision(config.tagger_precision, device=device, model=model)
    return config if resolved == config.tagger_precision else replace(config, tagger_precision=resolved)
