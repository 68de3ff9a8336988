"""What decoding found: ``DecodeInfo`` (per decode) and ``FeatureFlags`` (stored beside a song's features)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
