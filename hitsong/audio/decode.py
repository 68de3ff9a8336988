"""Decode the middle of a song: seek where the format allows, downmix, resample, flag odd input.

Decoding reads only the middle of the file where the format can seek (WAV, FLAC, OGG, MP3
through libsndfile; an MP3 is entered a second early so the samples equal a full decode,
:mod:`hitsong.audio.mpg123`). A compressed segment is decoded as parts on
:func:`decode_threads` threads, each part through its own handle and pre-roll (a song alone
decodes ~1.6x faster on two cores; worker processes that run one song per core use one).
M4A/AAC and other containers libsndfile cannot open go through an ``ffmpeg`` subprocess when
``ffmpeg`` is on ``PATH``.

What odd input does (each case is a test in ``tests/audio/test_bad_input.py``):

- missing, empty, unreadable, corrupt or non-audio file: :class:`AudioError` naming the
  file and the reason;
- shorter than the segment: zero-padded around the centre, :class:`HitsongWarning`;
- a header that promises more audio than the file holds (truncated file): the audio that
  can be decoded is used, with a :class:`HitsongWarning`;
- a header that does not match the stream at all (a crafted file claiming hours, or seconds,
  of audio): decoding from the start stops after :data:`MAX_FALLBACK_SEGMENTS` times the
  segment, with a :class:`HitsongWarning`, so memory stays bounded whatever the header says;
- silence (peak below :data:`SILENCE_PEAK`): valid (all-zero) features, :class:`HitsongWarning`;
- NaN or infinite samples: replaced by 0 with a :class:`HitsongWarning`; a segment with no
  finite sample at all is an :class:`AudioError`;
- any number of channels: averaged to mono (as ``librosa.to_mono``);
- any sample rate: resampled with soxr ``soxr_hq`` (librosa.load's default quality).
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hitsong.audio.config import RESAMPLE_QUALITY, TAGGER_SR, AudioConfig
from hitsong.audio.ffmpeg import FFMPEG_SUFFIXES, decode_ffmpeg
from hitsong.audio.info import DecodeInfo, FeatureFlags
from hitsong.audio.mpg123 import MP3_PREROLL_SECONDS, quiet_decoder_stderr
from hitsong.errors import AudioError, ConfigError, HitsongWarning

log = logging.getLogger(__name__)


#: A segment whose absolute peak is below this (about -120 dBFS) counts as silent.
SILENCE_PEAK = 1e-6


#: Extra audio decoded on each side of the segment so the resampler's filter sees real
#: context at the segment edges (0.1 s is a whole number of samples at every common rate).
CONTEXT_SECONDS = 0.1

#: When the header's length cannot be trusted, the file is decoded from its start: at most
#: this many times the segment (with its context), and the middle of what was read is used.
#: Bounds memory at ~4 x 60 s x channels x 4 bytes (85 MB for 44.1 kHz stereo), not the file's length.
MAX_FALLBACK_SEGMENTS = 4


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
            f"{path}: decoding failed near {start / f.samplerate:.1f} s ({exc}); the file is corrupt or truncated"
        ) from exc


#: Compressed formats whose seeks land on exact samples once a pre-roll (MP3) is decoded first,
#: so a segment may be decoded as parts by several threads, each with its own handle (tested:
#: the parts join into the samples of one read).
_PARALLEL_FORMATS = ("MP3", "FLAC", "OGG")

#: Each thread decodes at least this many seconds (shorter parts do not repay a second handle).
_PARALLEL_MIN_SECONDS = 8.0

#: This process's setting (``None``: the default); set by :func:`set_decode_threads`.
_threads_setting: dict[str, int | None] = {"threads": None}


def decode_threads() -> int:
    """Threads that decode one segment: the cores this process may use, unless set.

    Worker processes that already run one song per core set 1 (:func:`set_decode_threads`);
    one song decoded alone (an upload, a benchmark) uses the free cores.
    """
    if _threads_setting["threads"] is not None:
        return _threads_setting["threads"]
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def set_decode_threads(n: int | None) -> None:
    """Decode each segment with ``n`` threads (``None``: the default, see :func:`decode_threads`)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"decode threads must be a whole number >= 1, got {n!r}")
    _threads_setting["threads"] = n


def _read_part(path: Path, start: int, n: int, pre: int, out: np.ndarray) -> int:
    """Decode frames ``[start, start + n)`` into ``out`` through a handle of its own, entering
    ``pre`` frames early; returns how many of the ``n`` frames the stream held."""
    with sf.SoundFile(str(path)) as f:
        got = _read(f, start - pre, n + pre, path)
    kept = max(0, got.shape[0] - pre)
    out[:kept] = got[pre : pre + kept]
    return kept


def _read_segment(f: sf.SoundFile, path: Path, lo: int, hi: int, pre_seconds: float) -> np.ndarray:
    """Frames ``[lo, hi)``, entered ``pre_seconds`` early where possible; split over threads where it pays.

    A stream that ends early gives a shorter array (the caller treats the file as truncated),
    whichever part found the end.
    """
    nsr = int(f.samplerate)
    pre_frames = int(round(pre_seconds * nsr))
    parts = min(decode_threads(), max(1, int((hi - lo) / (_PARALLEL_MIN_SECONDS * nsr))))
    if parts < 2 or f.format not in _PARALLEL_FORMATS:
        pre = min(lo, pre_frames)
        return _read(f, lo - pre, hi - lo + pre, path)[pre:]
    out = np.empty((hi - lo, f.channels), dtype=np.float32)
    bounds = [int(x) - lo for x in np.linspace(lo, hi, parts + 1).round()]
    with ThreadPoolExecutor(parts - 1, thread_name_prefix="hitsong-decode") as pool:
        rest = [
            pool.submit(_read_part, path, lo + a, b - a, min(lo + a, pre_frames), out[a:b])
            for a, b in zip(bounds[1:-1], bounds[2:], strict=True)
        ]
        pre = min(lo, pre_frames)
        head = _read(f, lo - pre, bounds[1] + pre, path)[pre:]
        out[: head.shape[0]] = head
        got = [head.shape[0]] + [fut.result() for fut in rest]
    for a, b, g in zip(bounds[:-1], bounds[1:], got, strict=True):
        if g < b - a:  # the stream ended inside this part
            return out[: a + g]
    return out


def _read_all(f: sf.SoundFile, path: Path, block: int, limit: int) -> tuple[np.ndarray, bool]:
    """Decode from the start until the decoder stops or ``limit`` frames are read (for files whose header lies).

    Returns
    -------
    data : np.ndarray [shape=(n, channels), dtype=float32]
        ``n <= limit``; the buffer is filled block by block, never concatenated.
    cut : bool
        The stream holds more than ``limit`` frames.
    """
    out = np.empty((limit, f.channels), dtype=np.float32)  # pages are touched only as they fill
    got = 0
    try:
        f.seek(0)
        while got < limit:
            n = f.read(min(block, limit - got), dtype="float32", always_2d=True, out=out[got : got + block]).shape[0]
            if n == 0:
                break
            got += n
        cut = got == limit and f.read(1, dtype="float32", always_2d=True).shape[0] > 0
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: decoding failed ({exc}); the file is corrupt") from exc
    return out[:got], cut


def _decode_soundfile(path: Path, seconds: float, context: float) -> tuple[np.ndarray, DecodeInfo]:
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _not_readable(path, exc) from exc
    with f, quiet_decoder_stderr(path):
        nsr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        need = int(round(seconds * nsr))
        ctx = int(round(context * nsr))
        truncated = False
        if frames > need:
            start = _middle(frames, need)
            lo, hi = max(0, start - ctx), min(frames, start + need + ctx)
            data = _read_segment(f, path, lo, hi, MP3_PREROLL_SECONDS if f.subtype.startswith("MPEG_LAYER") else 0.0)
            if data.shape[0] == hi - lo:
                info = DecodeInfo(str(path), nsr, channels, frames / nsr, start - lo, need, hi - start - need)
                return data, info
            truncated = True  # the header promised frames the stream does not hold
        data, cut = _read_all(f, path, block=max(need, nsr), limit=MAX_FALLBACK_SEGMENTS * (need + 2 * ctx))
    got = data.shape[0]
    if got == 0:
        raise AudioError(f"{path}: no audio could be decoded from the file (corrupt or not audio)")
    if cut:
        truncated = True
        warnings.warn(
            f"{path}: the header says {frames / nsr:.1f} s, which the audio stream does not match; decoded only "
            f"the first {got / nsr:.1f} s (at most {MAX_FALLBACK_SEGMENTS} times the {seconds:g}-s segment) and "
            "analysed their middle",
            HitsongWarning,
            stacklevel=3,
        )
    elif truncated or got < frames:
        truncated = True
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
        data, info = decode_ffmpeg(path, seconds, context_seconds)
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
        keep = int(round(config.tagger_span * tagger_sr))
        start = max(0, (len(full) - keep) // 2)
        wave_tagger = np.ascontiguousarray(full[start : start + keep])
    return wave, wave_tagger, flags
