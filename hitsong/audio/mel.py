"""The log-mel of a segment in numpy (paper section 3.1), and the one log compression.

An STFT with a 4,096-sample Hann window and hop 2,048 (librosa's centred frames, zero padding
as librosa >= 0.10 does); 128 Slaney mel bands with Slaney normalisation (librosa's defaults);
power 2; then :func:`log_compress`, ``log10(1 + 10000 * mel_power)``, used everywhere (numpy
and torch, this front end and the tagger's). 60 s give ``1 + 1,323,000 // 2,048 = 646`` frames.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

from hitsong.audio.config import LOG_SCALE, AudioConfig
from hitsong.audio.decode import load_segment
from hitsong.errors import AudioError, ConfigError

_LN10 = math.log(10.0)


def log_compress(mel_power: Any) -> Any:
    """``log10(1 + 10000 * mel_power)``: the one log compression of the project.

    Parameters
    ----------
    mel_power : np.ndarray or torch.Tensor [shape=(...)]
        Non-negative mel power.

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(...)]
        Same type and dtype. Computed as ``log1p(10000 x) / ln 10``, the same value with
        better accuracy near zero; silence maps to exactly 0.
    """
    if isinstance(mel_power, np.ndarray):
        dtype = mel_power.dtype if mel_power.dtype.kind == "f" else np.dtype(np.float32)
        out = np.log1p(mel_power.astype(dtype, copy=False) * dtype.type(LOG_SCALE))
        out /= dtype.type(_LN10)
        return out
    import torch  # torch is imported only when a tensor comes in

    if isinstance(mel_power, torch.Tensor):
        return torch.log1p(mel_power * LOG_SCALE) / _LN10
    raise TypeError(f"log_compress needs a numpy array or a torch tensor, got {type(mel_power).__name__}")


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3/200 mel per Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, f * 3.0 / 200.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)


@lru_cache(maxsize=8)
def mel_filterbank(config: AudioConfig = AudioConfig()) -> np.ndarray:
    """Slaney mel filterbank with Slaney area normalisation, as ``librosa.filters.mel``'s defaults.

    Triangles between ``n_mels + 2`` points equally spaced on Slaney's mel scale from ``fmin``
    to ``fmax``; triangle ``k`` is scaled by ``2 / (f[k+2] - f[k])`` (constant area). Written
    here in numpy (worker processes need not import librosa/scipy.signal); tested equal to
    librosa's matrix. Used by both :func:`log_mel` and ``TorchLogMel``.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
        Read-only (shared by every call).
    """
    fft_hz = np.linspace(0.0, config.sr / 2.0, 1 + config.n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax_hz), config.n_mels + 2))
    width = np.diff(edges)  # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, F)
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    fb = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    fb = fb.astype(np.float32)
    fb.setflags(write=False)
    return fb


@lru_cache(maxsize=8)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window('hann', n, fftbins=True)``), float32."""
    w = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    w.setflags(write=False)
    return w


def _frame_power(y: np.ndarray, n_fft: int, hop_length: int, power: float) -> np.ndarray:
    """``|STFT|**power`` frame-major, shape ``(1 + n // hop_length, 1 + n_fft // 2)`` float32."""
    pad = n_fft // 2
    yp = np.zeros(y.shape[0] + 2 * pad, dtype=np.float32)
    yp[pad : pad + y.shape[0]] = y
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop_length]  # (T, n_fft)
    spec = scipy.fft.rfft(frames * hann_window(n_fft), axis=1)  # (T, F) complex64; 3x numpy.fft here
    mag2 = np.square(spec.real)
    mag2 += np.square(spec.imag)
    return mag2 if power == 2.0 else mag2 ** np.float32(power / 2.0)


@lru_cache(maxsize=8)
def _mel_bands(config: AudioConfig) -> tuple[tuple[int, int, np.ndarray], ...]:
    """Per mel band, its non-zero FFT bins ``[lo, hi)`` and their weights (each bin is in <= 2 bands)."""
    fb = mel_filterbank(config)
    bands = []
    for row in fb:
        nz = np.flatnonzero(row)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        bands.append((lo, hi, np.ascontiguousarray(row[lo:hi])))
    return tuple(bands)


def _apply_mel(frame_power: np.ndarray, config: AudioConfig) -> np.ndarray:
    """Mel power ``(n_mels, T)`` from frame-major power ``(T, F)``, band by band.

    The filterbank is ~98 % zeros; multiplying only each band's bins is ~10x faster than the
    dense product and the same numbers up to float32 rounding.
    """
    out = np.zeros((config.n_mels, frame_power.shape[0]), dtype=np.float32)
    for k, (lo, hi, weights) in enumerate(_mel_bands(config)):
        if hi > lo:
            np.matmul(frame_power[:, lo:hi], weights, out=out[k])
    return out


def _waveform(path_or_waveform: str | Path | np.ndarray, config: AudioConfig) -> np.ndarray:
    if isinstance(path_or_waveform, (str, Path)):
        return load_segment(path_or_waveform, sr=config.sr, seconds=config.seconds)
    y = np.asarray(path_or_waveform)
    if y.ndim != 1 or y.dtype.kind != "f":
        raise AudioError(f"log_mel needs a 1-D float waveform at {config.sr} Hz, got shape {y.shape} dtype {y.dtype}")
    if y.shape[0] == 0:
        raise AudioError("log_mel got an empty waveform")
    if not np.isfinite(y).all():
        raise AudioError(
            "log_mel got a waveform with NaN or infinite samples; clean it (or load the file with load_segment)"
        )
    return y.astype(np.float32, copy=False)


def log_mel(path_or_waveform: str | Path | np.ndarray, *, config: AudioConfig = AudioConfig()) -> np.ndarray:
    """Log-compressed mel spectrogram, the CNNs' input (paper section 3.1).

    Parameters
    ----------
    path_or_waveform : str, Path or np.ndarray [shape=(n,)]
        A file (its middle ``config.seconds`` is loaded with :func:`load_segment`), or a mono
        waveform at ``config.sr`` used as given (no cutting or padding).
    config : AudioConfig

    Returns
    -------
    np.ndarray [shape=(config.n_mels, 1 + n // config.hop_length), dtype=float32]
        ``(128, 646)`` for a file with the default config.
    """
    y = _waveform(path_or_waveform, config)
    power = _frame_power(y, config.n_fft, config.hop_length, config.power)  # (T, F)
    return log_compress(_apply_mel(power, config))


def mel_stats(mel: np.ndarray) -> np.ndarray:
    """Method m1's input: per band the mean over time, then per band the standard deviation.

    Parameters
    ----------
    mel : np.ndarray [shape=(n_mels, T)]
        A log-mel spectrogram.

    Returns
    -------
    np.ndarray [shape=(2 * n_mels,), dtype=float32]
        ``[mean_0 .. mean_{n_mels-1}, std_0 .. std_{n_mels-1}]`` (population std).
    """
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[1] == 0:
        raise ConfigError(f"mel_stats needs a (n_mels, T) array with T >= 1, got shape {mel.shape}")
    m = mel.astype(np.float64, copy=False)
    return np.concatenate([m.mean(axis=1), m.std(axis=1)]).astype(np.float32)
