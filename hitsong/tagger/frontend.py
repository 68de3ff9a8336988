"""The tagger's own front end: 16 kHz log-mel patches exactly as musicnn 0.1.0 computes them.

musicnn's ``extractor.batch_data``: ``librosa.load(sr=16000)`` (mono, soxr_hq resampling);
``librosa.feature.melspectrogram(n_fft=512, hop_length=256, n_mels=96)`` with librosa's
defaults (power 2, periodic Hann, centred frames zero-padded, Slaney mel scale and norm,
0-8000 Hz), so ``T = 1 + n_samples // 256`` frames; the mel is rounded to float16 and back, then
``log10(10000 x + 1)`` is taken in float32 (float16 arithmetic overflows under numpy 2) with
the project's one :func:`hitsong.audio.log_compress` (as ``log1p``: within 1e-6 of it); patches
of 187 frames (3 s), non-overlapping, trailing frames dropped.

Differences from the original, by design: a clip shorter than one patch (the original
crashes) is zero-padded in the log-mel domain (silence) to one patch, with a
:class:`~hitsong.errors.HitsongWarning`; empty or non-finite audio is an
:class:`~hitsong.errors.AudioError`.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import ThreadpoolController

from hitsong.audio import TAGGER_SR, log_compress
from hitsong.errors import AudioError, HitsongWarning


@dataclass(frozen=True)
class TaggerFrontend:
    """Front-end parameters of the musicnn MTT models (fixed by the pretrained weights).

    Attributes
    ----------
    sr : int
        Sample rate in Hz (16000).
    n_fft, hop : int
        STFT window and hop in samples (512, 256).
    n_mels : int
        Mel bands (96).
    patch_frames : int
        Frames per network input patch (187, i.e. 3 s); patches do not overlap.
    res_type : str
        Resampler for other rates, librosa.load's default (``"soxr_hq"``).
    """

    sr: int = TAGGER_SR
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 96
    patch_frames: int = 187
    res_type: str = "soxr_hq"

    @property
    def patch_seconds(self) -> float:
        """Seconds of audio in one patch (one taggram row): ``patch_frames * hop / sr`` (~3 s)."""
        return self.patch_frames * self.hop / self.sr


FRONTEND = TaggerFrontend()

#: Serialises the one-BLAS-thread sections (the thread count is a process-wide setting).
_BLAS_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _blas() -> Any:
    """The process's BLAS libraries, found once (threadpoolctl)."""
    return ThreadpoolController().select(user_api="blas")


def to_mono_16k(y: np.ndarray, sr: int, *, frontend: TaggerFrontend = FRONTEND, source: str = "waveform") -> np.ndarray:
    """Mono float32 waveform at the tagger's rate, resampled as ``librosa.load`` does.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        Audio samples; several channels are averaged (librosa's ``to_mono``).
    sr : int
        Sample rate of ``y`` in Hz.
    source : str
        Name used in error messages (a file path, ``"waveform 3"``).

    Returns
    -------
    np.ndarray [shape=(m,), dtype=float32]
    """
    y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise AudioError(f"{source}: expected a waveform of shape (n,) or (channels, n), got {y.shape}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise AudioError(f"{source}: sample rate must be a positive integer, got {sr!r}")
    y = y.astype(np.float32, copy=False)
    if y.ndim == 2:
        y = y.mean(axis=0)
    if y.size == 0:
        raise AudioError(f"{source}: the waveform is empty")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{source}: the waveform contains NaN or infinite samples")
    if sr != frontend.sr:
        y = librosa.resample(y, orig_sr=int(sr), target_sr=frontend.sr, res_type=frontend.res_type)
    return np.ascontiguousarray(y, dtype=np.float32)


def load_audio_16k(path: str | Path, *, frontend: TaggerFrontend = FRONTEND) -> np.ndarray:
    """Decode a whole audio file to the tagger's mono 16 kHz float32 waveform.

    The one place where the tagger reads files (soundfile: WAV, FLAC, OGG/Opus, MP3).

    Raises
    ------
    AudioError
        The file is missing, cannot be decoded, or is empty.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"cannot decode audio file {path}: {exc}") from exc
    return to_mono_16k(data.T, sr, frontend=frontend, source=str(path))


def log_mel(y: np.ndarray, *, frontend: TaggerFrontend = FRONTEND) -> np.ndarray:
    """musicnn's log-mel of a 16 kHz mono waveform.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        Mono waveform at ``frontend.sr``.

    Returns
    -------
    np.ndarray [shape=(1 + n // hop, n_mels), dtype=float32]
        Time first, as the original.
    """
    # The mel product is the only BLAS call; with BLAS's default threads its idle threads spin
    # after it and took more CPU than the whole log-mel (measured 0.049 vs 0.029 CPU s for 60 s).
    # One thread gives the same numbers (the same kernel computes every element).
    with _BLAS_LOCK, _blas().limit(limits=1):
        mel = librosa.feature.melspectrogram(
            y=y, sr=frontend.sr, n_fft=frontend.n_fft, hop_length=frontend.hop, n_mels=frontend.n_mels
        ).T
    return log_compress(mel.astype(np.float16).astype(np.float32))


def patch(mel: np.ndarray, *, frontend: TaggerFrontend = FRONTEND, source: str = "waveform") -> tuple[np.ndarray, bool]:
    """Cut a log-mel into the network's non-overlapping patches.

    Parameters
    ----------
    mel : np.ndarray [shape=(T, n_mels)]
    source : str
        Name used in the warning for short clips.

    Returns
    -------
    patches : np.ndarray [shape=(max(1, T // patch_frames), patch_frames, n_mels), dtype=float32]
        Trailing frames that do not fill a patch are dropped (as the original); a clip shorter
        than one patch is padded with zeros (silence in the log domain) to one patch.
    padded : bool
        True when the clip was shorter than one patch.
    """
    n = frontend.patch_frames
    T = mel.shape[0]
    if n > T:
        warnings.warn(
            f"{source}: {T} mel frames ({T * frontend.hop / frontend.sr:.2f} s) is shorter than one tagger "
            f"patch ({n} frames); zero-padded to one patch",
            HitsongWarning,
            stacklevel=3,
        )
        out = np.zeros((1, n, mel.shape[1]), dtype=np.float32)
        out[0, :T] = mel
        return out, True
    k = T // n
    return np.ascontiguousarray(mel[: k * n].reshape(k, n, mel.shape[1]), dtype=np.float32), False
