"""The CNN input representation's settings (paper section 3.1) and the constants every front end shares.

``AudioConfig`` is the feature config: it is hashed into the feature store, written into every
run's params and every model bundle, and read back with the strict :meth:`AudioConfig.from_dict`
(an unknown key, or a fixed choice this code does not implement, is a ``ConfigError``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from hitsong.errors import ConfigError

#: The scale inside the log compression ``log10(1 + LOG_SCALE * mel_power)``.
LOG_SCALE = 10000.0
#: Resampling quality, the same as ``librosa.load``'s default ``res_type``.
RESAMPLE_QUALITY = "soxr_hq"
#: The tagger's sample rate (musicnn's front end); the second output of ``decode_for_features``.
TAGGER_SR = 16000
#: Values of ``AudioConfig.tagger_precision`` (meaning: :mod:`hitsong.tagger.precision`).
TAGGER_PRECISIONS: tuple[str, ...] = ("auto", "exact", "fast")
#: Choices this code implements and records beside the fields (``to_dict``); not settable.
FIXED_CHOICES: dict[str, Any] = {
    "log_compression": f"log10(1 + {LOG_SCALE:g} * mel_power)",
    "mel_scale": "slaney",
    "mel_norm": "slaney",
    "window": "hann",
    "center": True,
    "pad_mode": "constant",
    "resample": RESAMPLE_QUALITY,
}


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
        How much of the middle of the segment the auto-tagger hears (its 16 kHz waveform);
        the tag vector is the mean over its 3-s patches. Default 60: the whole segment, as the
        paper's tagger hears the song (20 patches). A shorter window (e.g. 15 s, 5 patches)
        is a recorded departure for latency-bound deployments (docs/PAPER.md). The same value
        is used at training and at scoring: it is part of the feature config hash and of
        every model bundle.
    tagger_precision : {"auto", "exact", "fast"}
        The tagger's arithmetic (:mod:`hitsong.tagger.precision`): ``exact`` (float32, the
        original's outputs within 1e-4), ``fast`` (int8 and bfloat16 front-end convolutions,
        within a tested bound of ``exact``; where the CPU lacks native int8 and bfloat16 dot
        products it runs ``exact``), or
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
    tagger_seconds: float = 60.0
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
                f"AudioConfig needs 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={self.fmax_hz}, sr={self.sr}"
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

    @property
    def tagger_span(self) -> float:
        """Seconds the tagger hears: ``min(tagger_seconds, seconds)``, centred in the segment."""
        return min(float(self.tagger_seconds), float(self.seconds))

    @property
    def tagger_offset(self) -> float:
        """Where the tagger's window starts, in seconds into the analysed segment."""
        return (float(self.seconds) - self.tagger_span) / 2

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the fixed choices (log compression, filterbank, padding)."""
        return {**asdict(self), **FIXED_CHOICES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "audio config") -> AudioConfig:
        """The config of a :meth:`to_dict` document, strictly.

        Raises
        ------
        ConfigError
            A key this code does not know, or a fixed choice (``FIXED_CHOICES``) that differs
            from what this code computes; the message names ``source``.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - set(FIXED_CHOICES))
        if unknown:
            raise ConfigError(f"{source}: unknown audio config key(s) {unknown}; it was written by another hitsong")
        for key, value in FIXED_CHOICES.items():
            if key in data and data[key] != value:
                raise ConfigError(
                    f"{source}: audio config {key}={data[key]!r}, but this hitsong computes {key}={value!r}"
                )
        return cls(**{k: v for k, v in data.items() if k in names})

    def config_hash(self) -> str:
        """A short, stable hash of :meth:`to_dict`; changes whenever the features would."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
