"""The audio front end: decode the middle of a song, resample, and compute its log-mel.

Implements the input representation of Yang et al. (ICASSP 2017), section 3.1: the middle
60 s of each song, mono, 22,050 Hz; an STFT with a 4,096-sample Hann window and hop 2,048
(librosa's centred frames, zero padding as librosa >= 0.10 does); 128 Slaney mel bands with
Slaney normalisation (librosa's defaults); power 2; then one log compression,
:func:`log_compress`, ``log10(1 + 10000 * mel_power)``, used everywhere (numpy and torch,
this front end and the tagger's). 60 s give ``1 + 1,323,000 // 2,048 = 646`` frames.

Decoding reads only the middle of the file where the format can seek (WAV, FLAC, OGG, MP3
through libsndfile). An MP3 is entered :data:`MP3_PREROLL_SECONDS` early, so the frames that
decode wrongly after a seek (bit reservoir, filter-bank state) are dropped: the samples equal a
full decode (tested); libmpg123's complaints about those frames are kept off the terminal. M4A/AAC and other containers libsndfile cannot open go through an ``ffmpeg``
subprocess when ``ffmpeg`` is on ``PATH``.

What odd input does (each case is a test in ``tests/test_audio_bad_input.py``):

- missing, empty, unreadable, corrupt or non-audio file: :class:`AudioError` naming the
  file and the reason;
- shorter than the segment: zero-padded around the centre, :class:`HitsongWarning`;
- a header that promises more audio than the file holds (truncated file): the audio that
  can be decoded is used, with a :class:`HitsongWarning`;
- silence (peak below :data:`SILENCE_PEAK`): valid (all-zero) features, :class:`HitsongWarning`;
- NaN or infinite samples: replaced by 0 with a :class:`HitsongWarning`; a segment with no
  finite sample at all is an :class:`AudioError`;
- any number of channels: averaged to mono (as ``librosa.to_mono``);
- any sample rate: resampled with soxr ``soxr_hq`` (librosa.load's default quality).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import soundfile as sf
import soxr

from hitsong.errors import AudioError, ConfigError, HitsongWarning

log = logging.getLogger(__name__)

#: The scale inside the log compression ``log10(1 + LOG_SCALE * mel_power)``.
LOG_SCALE = 10000.0
#: A segment whose absolute peak is below this (about -120 dBFS) counts as silent.
SILENCE_PEAK = 1e-6
#: Resampling quality, the same as ``librosa.load``'s default ``res_type``.
RESAMPLE_QUALITY = "soxr_hq"
#: Extra audio decoded on each side of the segment so the resampler's filter sees real
#: context at the segment edges (0.1 s is a whole number of samples at every common rate).
CONTEXT_SECONDS = 0.1
#: The tagger's sample rate (musicnn's front end); the second output of :func:`decode_for_features`.
TAGGER_SR = 16000
#: Values of ``AudioConfig.tagger_precision`` (meaning: :mod:`hitsong.tagger.precision`).
TAGGER_PRECISIONS: tuple[str, ...] = ("auto", "exact", "fast")
#: Containers that libsndfile cannot read and ``ffmpeg`` can.
FFMPEG_SUFFIXES = frozenset({".m4a", ".aac", ".mp4", ".m4b", ".wma", ".webm", ".mka"})

_LN10 = math.log(10.0)


@dataclass(frozen=True)
class AudioConfig:
    """Settings of the CNN input representation (paper section 3.1).

    Parameters
    ----------
    sr : int
        Sample rate in Hz of the analysed waveform.
    n_fft : int
        STFT window (Hann) and FFT length in samples.
    hop_length : int
        STFT hop in samples.
    n_mels : int
        Number of mel bands.
    seconds : float
        Length of the middle segment in seconds.
    fmin : float
        Lowest mel filter edge in Hz.
    fmax : float or None
        Highest mel filter edge in Hz; ``None`` means ``sr / 2``.
    power : float
        Exponent of the STFT magnitude (2 = power).
    tagger_seconds : float
        How much of the middle of the segment the auto-tagger sees (its 16 kHz waveform).
        The MTT tagger costs ~1.4 G multiply-adds per 3-s patch, ~30x the CNNs' whole
        60-s input, so it looks at the middle 15 s (5 patches) by default; the tag vector is
        the mean over those patches (the whole segment when ``seconds`` is shorter). Same value at training and at scoring (it is part of the
        feature config and of every model bundle).
    tagger_precision : {"auto", "exact", "fast"}
        The tagger's arithmetic (:mod:`hitsong.tagger.precision`): ``exact`` (float32, the
        original's outputs within 1e-4), ``fast`` (bfloat16 timbral convolutions, within a
        tested bound of ``exact``; where the CPU lacks native bfloat16 it runs ``exact``), or
        ``auto`` (``fast`` where supported). Resolved to ``exact``/``fast`` before it is hashed
        into the feature store or written into a bundle, so both record what actually ran.
    """

    sr: int = 22050
    n_fft: int = 4096
    hop_length: int = 2048
    n_mels: int = 128
    seconds: float = 60.0
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 2.0
    tagger_seconds: float = 15.0
    tagger_precision: str = "auto"

    def __post_init__(self) -> None:
        for name in ("sr", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"AudioConfig.{name} must be a positive integer, got {value!r}")
        if not self.seconds > 0:
            raise ConfigError(f"AudioConfig.seconds must be > 0, got {self.seconds!r}")
        if not 0 <= self.fmin < self.fmax_hz <= self.sr / 2:
            raise ConfigError(
                f"AudioConfig needs 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, "
                f"fmax={self.fmax_hz}, sr={self.sr}"
            )
        if not self.power > 0:
            raise ConfigError(f"AudioConfig.power must be > 0, got {self.power!r}")
        if not self.tagger_seconds > 0:
            raise ConfigError(f"AudioConfig.tagger_seconds must be > 0, got {self.tagger_seconds!r}")
        if self.tagger_precision not in TAGGER_PRECISIONS:
            raise ConfigError(
                f"AudioConfig.tagger_precision must be one of {', '.join(TAGGER_PRECISIONS)}, "
                f"got {self.tagger_precision!r}"
            )

    @property
    def fmax_hz(self) -> float:
        """The upper mel edge in Hz (``fmax`` or ``sr / 2``)."""
        return float(self.sr) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_samples(self) -> int:
        """Samples in one segment: ``round(seconds * sr)`` (1,323,000 for the paper)."""
        return int(round(self.seconds * self.sr))

    @property
    def n_frames(self) -> int:
        """Centred STFT frames of one segment: ``1 + n_samples // hop_length`` (646)."""
        return 1 + self.n_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the fixed choices (log compression, filterbank, padding)."""
        return {
            **asdict(self),
            "log_compression": f"log10(1 + {LOG_SCALE:g} * mel_power)",
            "mel_scale": "slaney",
            "mel_norm": "slaney",
            "window": "hann",
            "center": True,
            "pad_mode": "constant",
            "resample": RESAMPLE_QUALITY,
        }

    def config_hash(self) -> str:
        """A short, stable hash of :meth:`to_dict`; changes whenever the features would."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
        dtype = mel_power.dtype if mel_power.dtype.kind == "f" else np.float32
        out = np.log1p(mel_power.astype(dtype, copy=False) * dtype.type(LOG_SCALE))
        out /= dtype.type(_LN10)
        return out
    import torch  # torch is imported only when a tensor comes in

    if isinstance(mel_power, torch.Tensor):
        return torch.log1p(mel_power * LOG_SCALE) / _LN10
    raise TypeError(f"log_compress needs a numpy array or a torch tensor, got {type(mel_power).__name__}")


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodeInfo:
    """What :func:`decode_middle` found and did.

    Attributes
    ----------
    path : str
        The file.
    native_sr : int
        Its sample rate in Hz.
    channels : int
        Channels before the downmix.
    duration : float
        Seconds of audio that could be decoded (the whole file, not just the segment).
    lead : int
        Native samples of context before the segment in the returned waveform.
    segment : int
        Native samples of the segment proper (fewer than asked when the file is short).
    trail : int
        Native samples of context after the segment.
    short : bool
        The file is shorter than the requested segment (it will be padded).
    truncated : bool
        The header promised more audio than could be decoded.
    nonfinite : int
        NaN or infinite samples that were replaced by 0.
    """

    path: str
    native_sr: int
    channels: int
    duration: float
    lead: int
    segment: int
    trail: int
    short: bool = False
    truncated: bool = False
    nonfinite: int = 0


@dataclass(frozen=True)
class FeatureFlags:
    """Flags of one decoded segment, stored beside its features.

    Attributes
    ----------
    padded : bool
        Shorter than the segment, zero-padded around the centre.
    silent : bool
        Peak below :data:`SILENCE_PEAK`.
    truncated : bool
        The file holds less audio than its header says.
    nonfinite : int
        NaN/inf samples replaced by 0.
    duration : float
        Seconds of decodable audio in the file.
    native_sr : int
        The file's sample rate.
    channels : int
        The file's channel count.
    warnings : tuple of str
        The warning messages that were issued.
    """

    padded: bool
    silent: bool
    truncated: bool
    nonfinite: int
    duration: float
    native_sr: int
    channels: int
    warnings: tuple[str, ...] = field(default=())


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if not path.is_file():
        raise AudioError(f"{path}: is not a file (a directory or device?)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")


def _middle(frames: int, need: int) -> int:
    """First frame of the middle ``need`` frames of ``frames`` (0 when the file is short)."""
    return max(0, (frames - need) // 2)


def _read(f: sf.SoundFile, start: int, n: int, path: Path) -> np.ndarray:
    try:
        f.seek(start)
        return f.read(n, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(
            f"{path}: decoding failed near {start / f.samplerate:.1f} s ({exc}); the file is "
            "corrupt or truncated"
        ) from exc


def _read_all(f: sf.SoundFile, path: Path, block: int) -> np.ndarray:
    """Decode from the start until the decoder stops (for files whose header lies)."""
    try:
        f.seek(0)
        parts = []
        while True:
            part = f.read(block, dtype="float32", always_2d=True)
            if part.shape[0] == 0:
                break
            parts.append(part)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: decoding failed ({exc}); the file is corrupt") from exc
    if not parts:
        return np.zeros((0, f.channels), dtype=np.float32)
    return np.concatenate(parts)


#: Seconds decoded and dropped before the first wanted sample of an MP3. A frame's main data
#: may start in earlier frames (the bit reservoir), and the decoder's filter bank carries state
#: from frame to frame, so the first frames after a seek decode wrongly (errors up to full
#: scale over up to ~0.25 s were measured); from 0.5 s of pre-roll on, the samples equal a
#: decode from the start of the file (tested). 1 s is that with a margin: +1.7 % decode work.
MP3_PREROLL_SECONDS = 1.0
#: What libmpg123 (inside libsndfile) prints on file descriptor 2 when a seek lands inside an
#: MP3 bit reservoir. Those frames fall in the pre-roll, which is dropped: the message is noise.
_MPG123_RESERVOIR = re.compile(rb"libmpg123.*part2_3_length \(\d+\) too large for available bit count")
_stderr_lock = threading.Lock()
_reservoir_explained = False


@contextmanager
def _decoder_stderr(path: Path) -> Iterator[None]:
    """Keep libmpg123's bit-reservoir messages off the terminal while libsndfile decodes ``path``.

    The C library writes straight to file descriptor 2, past Python's ``sys.stderr``, so fd 2
    is pointed at a temporary file for the duration. Afterwards the reservoir messages are
    dropped (explained by one INFO log line per process) and anything else is written to the
    real stderr, unchanged and in order; output of other threads during the decode is only
    delayed. Where fd 2 cannot be redirected (closed), decoding runs as it is.
    """
    global _reservoir_explained
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured = sink.read()
    if not captured:
        return
    lines = captured.splitlines(keepends=True)
    other = b"".join(line for line in lines if not _MPG123_RESERVOIR.search(line))
    dropped = len(lines) - len(other.splitlines())
    if other:
        os.write(2, other)
    if dropped:
        log.debug("%s: dropped %d libmpg123 bit-reservoir messages after seeking (samples exact)", path, dropped)
        if not _reservoir_explained:
            _reservoir_explained = True
            log.info(
                "libmpg123 reports 'part2_3_length ... too large' when a seek lands inside an MP3 bit "
                "reservoir; the decoded samples are exact, so these messages are not shown"
            )


def _decode_soundfile(path: Path, seconds: float, context: float) -> tuple[np.ndarray, DecodeInfo]:
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _not_readable(path, exc) from exc
    with f, _decoder_stderr(path):
        nsr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        need = int(round(seconds * nsr))
        ctx = int(round(context * nsr))
        truncated = False
        if frames > need:
            start = _middle(frames, need)
            lo, hi = max(0, start - ctx), min(frames, start + need + ctx)
            pre = min(lo, int(round(MP3_PREROLL_SECONDS * nsr))) if f.subtype.startswith("MPEG_LAYER") else 0
            data = _read(f, lo - pre, hi - lo + pre, path)[pre:]
            if data.shape[0] == hi - lo:
                info = DecodeInfo(str(path), nsr, channels, frames / nsr, start - lo, need, hi - start - need)
                return data, info
            truncated = True  # the header promised frames the stream does not hold
        data = _read_all(f, path, block=max(need, nsr))
    got = data.shape[0]
    if got == 0:
        raise AudioError(f"{path}: no audio could be decoded from the file (corrupt or not audio)")
    truncated = truncated or got < frames
    if truncated:
        warnings.warn(
            f"{path}: the header says {frames / nsr:.1f} s but only {got / nsr:.1f} s could be "
            "decoded (truncated file?); using what is there",
            HitsongWarning,
            stacklevel=3,
        )
    start = _middle(got, need)
    lo, hi = max(0, start - ctx), min(got, start + need + ctx)
    seg = min(need, got)
    info = DecodeInfo(str(path), nsr, channels, got / nsr, start - lo, seg, hi - start - seg, got < need, truncated)
    return data[lo:hi], info


def _not_readable(path: Path, exc: Exception) -> AudioError:
    suffix = path.suffix.lower()
    if suffix in FFMPEG_SUFFIXES:
        return AudioError(
            f"{path}: {suffix} files need ffmpeg, which is not installed; install ffmpeg "
            f"(apt-get install ffmpeg) to read {suffix}"
        )
    detail = "" if "does not exist or is not a regular file" in str(exc) else f"; libsndfile says: {exc}"
    return AudioError(f"{path}: not a readable audio file (format not recognised, or the file is corrupt{detail})")


def _ffprobe(path: Path) -> tuple[int, int, float]:
    cmd = [
        "ffprobe", "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels:format=duration", "-of", "json", str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    try:
        meta = json.loads(proc.stdout or b"{}")
        stream = meta["streams"][0]
        return int(stream["sample_rate"]), int(stream["channels"]), float(meta["format"]["duration"])
    except (KeyError, IndexError, ValueError) as exc:
        err = proc.stderr.decode(errors="replace").strip()
        raise AudioError(f"{path}: ffprobe finds no audio stream ({err or exc})") from exc


def _decode_ffmpeg(path: Path, seconds: float, context: float) -> tuple[np.ndarray, DecodeInfo]:
    """Decode the middle of a container libsndfile cannot read with an ffmpeg subprocess."""
    nsr, channels, duration = _ffprobe(path)
    t0 = max(0.0, (duration - seconds) / 2 - context) if duration > seconds else 0.0
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-ss", f"{t0:.6f}", "-t", f"{seconds + 2 * context:.6f}",
        "-i", str(path), "-map", "a:0", "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1",
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AudioError(f"{path}: ffmpeg cannot decode it: {proc.stderr.decode(errors='replace').strip()}")
    data = np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, channels)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: ffmpeg decoded no audio from the file")
    need = int(round(seconds * nsr))
    if duration > seconds:
        lead = int(round(((duration - seconds) / 2 - t0) * nsr))
        seg = min(need, max(0, data.shape[0] - lead))
        info = DecodeInfo(str(path), nsr, channels, duration, lead, seg, max(0, data.shape[0] - lead - seg))
    else:
        info = DecodeInfo(str(path), nsr, channels, data.shape[0] / nsr, 0, data.shape[0], 0, True)
    return data, info


def _downmix(data: np.ndarray) -> np.ndarray:
    """Average the channels of ``(n, channels)`` into a new ``(n,)`` float32 array.

    Summed column by column: ``data.mean(axis=1)`` reduces along the short axis and is ~40x
    slower on a 60-s stereo segment.
    """
    if data.shape[1] == 1:
        return data[:, 0].copy()
    mono = np.add(data[:, 0], data[:, 1])
    for c in range(2, data.shape[1]):
        mono += data[:, c]
    mono *= np.float32(1.0 / data.shape[1])
    return mono


def decode_middle(
    path: str | Path, *, seconds: float = 60.0, context_seconds: float = 0.0
) -> tuple[np.ndarray, int, DecodeInfo]:
    """Decode the middle ``seconds`` of an audio file at its own rate, downmixed to mono.

    Only the needed part is decoded where the format can seek. NaN/inf samples become 0
    (with a warning; all non-finite is an error). Shortness is reported in ``info`` but not
    padded here (see :func:`load_segment`).

    Parameters
    ----------
    path : str or Path
        WAV, FLAC, OGG, MP3 (libsndfile); M4A/AAC and friends through ffmpeg if installed.
    seconds : float
        Length of the middle segment in seconds.
    context_seconds : float
        Extra audio kept on each side (for resampling without edge effects);
        ``info.lead`` / ``info.trail`` say how much was available.

    Returns
    -------
    waveform : np.ndarray [shape=(info.lead + info.segment + info.trail,), dtype=float32]
        Mono at the native rate.
    native_sr : int
        The file's sample rate in Hz.
    info : DecodeInfo
        Duration, channels, segment position and what was repaired.

    Raises
    ------
    AudioError
        The file is missing, empty, not audio, corrupt, has no finite sample, or needs ffmpeg.
    """
    path = Path(path)
    if not seconds > 0 or not context_seconds >= 0:
        raise ConfigError(f"decode_middle needs seconds > 0 and context_seconds >= 0, got {seconds}, {context_seconds}")
    _check_file(path)
    try:
        data, info = _decode_soundfile(path, seconds, context_seconds)
    except AudioError:
        if path.suffix.lower() not in FFMPEG_SUFFIXES or shutil.which("ffmpeg") is None:
            raise
        data, info = _decode_ffmpeg(path, seconds, context_seconds)
    mono = _downmix(data)
    bad = ~np.isfinite(mono)
    n_bad = int(bad.sum())
    if n_bad:
        if n_bad == mono.size:
            raise AudioError(f"{path}: every decoded sample is NaN or infinite; the file holds no usable audio")
        mono[bad] = 0.0
        warnings.warn(
            f"{path}: replaced {n_bad} NaN/infinite samples ({100.0 * n_bad / mono.size:.2g} %) by 0",
            HitsongWarning,
            stacklevel=2,
        )
        info = DecodeInfo(**{**asdict(info), "nonfinite": n_bad})
    return mono, info.native_sr, info


# --------------------------------------------------------------------------- segments


def fit_center(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``y`` to ``n`` samples around its centre.

    Parameters
    ----------
    y : np.ndarray [shape=(m,)]
    n : int
        Target length.

    Returns
    -------
    np.ndarray [shape=(n,)]
        ``y`` itself when ``m == n``.
    """
    m = y.shape[0]
    if m == n:
        return y
    if m > n:
        start = (m - n) // 2
        return y[start : start + n]
    out = np.zeros(n, dtype=y.dtype)
    left = (n - m) // 2
    out[left : left + m] = y
    return out


def _resample(y: np.ndarray, native_sr: int, sr: int) -> np.ndarray:
    if native_sr == sr:
        return y
    return soxr.resample(y, native_sr, sr, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


def _segment_at(y: np.ndarray, info: DecodeInfo, sr: int) -> np.ndarray:
    """Resample a decoded chunk to ``sr`` and cut out the segment (without padding)."""
    z = _resample(y, info.native_sr, sr)
    start = int(round(info.lead * sr / info.native_sr))
    length = int(round(info.segment * sr / info.native_sr))
    return z[start : start + length]


def _flags(path: Path, y: np.ndarray, info: DecodeInfo, seconds: float, caught: list[str]) -> FeatureFlags:
    msgs = list(caught)
    if info.short:
        msg = (
            f"{path}: {info.duration:.2f} s of audio is shorter than the {seconds:g} s segment; "
            "zero-padded around the centre"
        )
        warnings.warn(msg, HitsongWarning, stacklevel=3)
        msgs.append(msg)
    silent = bool(np.max(np.abs(y), initial=0.0) < SILENCE_PEAK)
    if silent:
        msg = f"{path}: the analysed segment is silent (peak < {SILENCE_PEAK:g}); its features are all zero"
        warnings.warn(msg, HitsongWarning, stacklevel=3)
        msgs.append(msg)
    return FeatureFlags(
        padded=info.short,
        silent=silent,
        truncated=info.truncated,
        nonfinite=info.nonfinite,
        duration=info.duration,
        native_sr=info.native_sr,
        channels=info.channels,
        warnings=tuple(msgs),
    )


def _decode_collecting(path: Path, seconds: float) -> tuple[np.ndarray, DecodeInfo, list[str]]:
    """Decode with context, re-issuing the decoder's warnings and returning their texts."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HitsongWarning)
        y, _, info = decode_middle(path, seconds=seconds, context_seconds=CONTEXT_SECONDS)
    texts = []
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if issubclass(w.category, HitsongWarning):
            texts.append(str(w.message))
    return y, info, texts


def load_segment(path: str | Path, *, sr: int, seconds: float = 60.0) -> np.ndarray:
    """The middle ``seconds`` of a file, mono, at ``sr``; short files padded around the centre.

    Parameters
    ----------
    path : str or Path
        An audio file (see :func:`decode_middle`).
    sr : int
        Target sample rate in Hz (resampled with soxr ``soxr_hq``, librosa.load's default).
    seconds : float
        Segment length in seconds.

    Returns
    -------
    np.ndarray [shape=(round(seconds * sr),), dtype=float32]

    Warns
    -----
    HitsongWarning
        The file is shorter than ``seconds`` (padded), silent, truncated, or had NaN samples.

    Raises
    ------
    AudioError
        See :func:`decode_middle`.
    """
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise ConfigError(f"load_segment needs a positive integer sr, got {sr!r}")
    path = Path(path)
    y, info, caught = _decode_collecting(path, seconds)
    seg = fit_center(_segment_at(y, info, sr), int(round(seconds * sr)))
    _flags(path, seg, info, seconds, caught)
    return seg


def decode_for_features(
    path: str | Path, *, config: AudioConfig = AudioConfig(), tagger_sr: int | None = TAGGER_SR
) -> tuple[np.ndarray, np.ndarray | None, FeatureFlags]:
    """One decode feeding both front ends: the CNN's ``config.sr`` and the tagger's 16 kHz.

    Parameters
    ----------
    path : str or Path
        An audio file.
    config : AudioConfig
        The CNN front end's settings (rate and segment length).
    tagger_sr : int or None
        Rate of the second waveform; ``None`` skips it.

    Returns
    -------
    wave : np.ndarray [shape=(config.n_samples,), dtype=float32]
        The middle segment at ``config.sr``, centre-padded when short (as :func:`load_segment`).
    wave_tagger : np.ndarray [shape=(m,), dtype=float32] or None
        The middle ``config.tagger_seconds`` of the segment at ``tagger_sr``, *not* padded
        (the tagger sees only real audio; ``m <= tagger_seconds * tagger_sr``).
    flags : FeatureFlags
        Padding, silence, truncation, repaired samples, and the warning texts.
    """
    path = Path(path)
    y, info, caught = _decode_collecting(path, config.seconds)
    wave = fit_center(_segment_at(y, info, config.sr), config.n_samples)
    flags = _flags(path, wave, info, config.seconds, caught)
    wave_tagger = None
    if tagger_sr is not None:
        full = _segment_at(y, info, tagger_sr)
        keep = int(round(min(config.tagger_seconds, config.seconds) * tagger_sr))
        start = max(0, (len(full) - keep) // 2)
        wave_tagger = np.ascontiguousarray(full[start : start + keep])
    return wave, wave_tagger, flags


# --------------------------------------------------------------------------- log-mel


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
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
def _hann(n_fft: int) -> np.ndarray:
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
    spec = scipy.fft.rfft(frames * _hann(n_fft), axis=1)  # (T, F) complex64; 3x numpy.fft here
    mag2 = np.square(spec.real)
    mag2 += np.square(spec.imag)
    return mag2 if power == 2.0 else mag2 ** np.float32(power / 2.0)


def power_spectrogram(y: np.ndarray, *, n_fft: int, hop_length: int, power: float = 2.0) -> np.ndarray:
    """``|STFT|**power`` with centred frames and zero padding (librosa.stft's defaults).

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    n_fft, hop_length : int
        Window/FFT length and hop in samples.
    power : float
        Exponent of the magnitude.

    Returns
    -------
    np.ndarray [shape=(1 + n_fft // 2, 1 + n // hop_length), dtype=float32]
    """
    return np.ascontiguousarray(_frame_power(y, n_fft, hop_length, power).T)


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
        raise AudioError("log_mel got a waveform with NaN or infinite samples; clean it (or load the file with load_segment)")
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


# --------------------------------------------------------------------------- torch


def _make_torch_log_mel() -> type:
    """Build ``TorchLogMel`` on first use, so the numpy path never imports torch."""
    import torch
    from torch import nn

    class TorchLogMel(nn.Module):
        """Batched log-mel in torch, the same numbers as :func:`log_mel` (paper section 3.1).

        ``torch.stft`` (periodic Hann, centred, zero padding) then librosa's mel filterbank
        (a buffer) and :func:`log_compress`. Runs unchanged on CPU and CUDA: move the module
        with ``.to(device)``. Agreement with :func:`log_mel` is tested to a relative error
        below 1e-5 of the value (float32 on CPU; measured ~1e-7).

        Parameters
        ----------
        config : AudioConfig
        """

        def __init__(self, config: AudioConfig = AudioConfig()) -> None:
            super().__init__()
            self.config = config
            self.register_buffer("window", torch.from_numpy(_hann(config.n_fft).copy()), persistent=False)
            self.register_buffer("mel_fb", torch.from_numpy(mel_filterbank(config).copy()), persistent=False)

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            """Map ``(B, n_samples)`` (or ``(n_samples,)``) waveforms at ``config.sr`` to ``(B, n_mels, T)``."""
            squeeze = wave.dim() == 1
            x = wave[None] if squeeze else wave  # (B, n)
            spec = torch.stft(
                x.to(self.window.dtype), self.config.n_fft, self.config.hop_length,
                window=self.window, center=True, pad_mode="constant", return_complex=True,
            )  # (B, F, T)
            mag2 = spec.real**2 + spec.imag**2
            power = mag2 if self.config.power == 2.0 else mag2 ** (self.config.power / 2.0)
            out = log_compress(torch.matmul(self.mel_fb, power))  # (B, n_mels, T)
            return out[0] if squeeze else out

    TorchLogMel.__module__ = __name__
    return TorchLogMel


def __getattr__(name: str) -> Any:
    if name == "TorchLogMel":
        cls = _make_torch_log_mel()
        globals()["TorchLogMel"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
