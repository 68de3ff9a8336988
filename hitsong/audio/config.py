"""The CNN input representation's settings (paper section 3.1) and the constants every front end shares.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from hitsong.errors import ConfigError

#: The scale inside the log compression ``log10(1 + LOG_SCALE * mel_power)``.
LOG_SCALE = 10000.0


#: Resampling quality, the same as ``librosa.load``'s default ``res_type``.
RESAMPLE_QUALITY = "soxr_hq"


#: The tagger's sample rate (musicnn's front end); the second output of :func:`decode_for_features`.
TAGGER_SR = 16000


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
