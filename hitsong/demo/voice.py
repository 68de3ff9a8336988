"""A vocal-like line: a glottal source shaped by vowel formants (source-filter synthesis).

Each sung note is a sawtooth-like glottal pulse train at the note's pitch, with vibrato and a
little aspiration noise, filtered by three parallel resonators at the formant frequencies of a
vowel (adult male values from Peterson & Barney 1952; female values scaled up by 17 %).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from hitsong.demo.arrange import VoiceNote

#: Formant centre frequencies (F1, F2, F3) in Hz of the vowels /a/, /e/, /i/, /o/, /u/ (male).
VOWEL_FORMANTS_HZ: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
)
FORMANT_BANDWIDTH_HZ = (90.0, 110.0, 170.0)
FORMANT_GAIN = (1.0, 0.55, 0.3)
FEMALE_FORMANT_SCALE = 1.17
ATTACK_S, RELEASE_S = 0.03, 0.08
#: Vibrato depth in semitones and rate in Hz (it sets in after 0.15 s).
VIBRATO_DEPTH, VIBRATO_HZ = 0.35, 5.5


def _resonators(sr: int, scale: float) -> list[list[tuple[np.ndarray, np.ndarray, float]]]:
    """Per vowel, the (b, a, gain) of each formant's peaking band-pass filter."""
    out = []
    nyq = sr / 2.0
    for formants in VOWEL_FORMANTS_HZ:
        filters = []
        for f, bw, g in zip(formants, FORMANT_BANDWIDTH_HZ, FORMANT_GAIN, strict=True):
            f = min(f * scale, 0.9 * nyq)
            b, a = signal.iirpeak(f, Q=f / bw, fs=sr)
            filters.append((b, a, g))
        out.append(filters)
    return out


def render_voice(
    notes: Sequence[VoiceNote],
    *,
    n_samples: int,
    sr: int,
    female: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Synthesise the sung line.

    Parameters
    ----------
    notes : sequence of VoiceNote
        Syllables with start/end in seconds and MIDI pitch.
    n_samples : int
        Length of the output.
    sr : int
        Sample rate in Hz.
    female : bool
        Female formants (else male).
    rng : np.random.Generator
        Source of vibrato phase and aspiration noise.

    Returns
    -------
    np.ndarray [shape=(n_samples,), dtype=float32]
        The voice, peak about 1.
    """
    out = np.zeros(n_samples, dtype=np.float64)
    filters = _resonators(sr, FEMALE_FORMANT_SCALE if female else 1.0)
    smooth_b, smooth_a = signal.butter(1, min(4000.0, 0.45 * sr), fs=sr)
    release = int(RELEASE_S * sr)
    attack = int(ATTACK_S * sr)
    for note in notes:
        start = int(note.start * sr)
        n = int((note.end - note.start) * sr) + release
        if start >= n_samples or n <= attack:
            continue
        n = min(n, n_samples - start)
        t = np.arange(n) / sr
        depth = VIBRATO_DEPTH * np.clip((t - 0.15) / 0.2, 0.0, 1.0)
        semis = depth * np.sin(2 * np.pi * VIBRATO_HZ * t + rng.uniform(0, 2 * np.pi))
        f0 = 440.0 * 2.0 ** ((note.midi + semis - 69.0) / 12.0)
        phase = np.cumsum(f0) / sr + rng.random()
        source = 2.0 * (phase % 1.0) - 1.0
        source = signal.lfilter(smooth_b, smooth_a, source)
        source += 0.06 * rng.standard_normal(n)
        voiced = sum(g * signal.lfilter(b, a, source) for b, a, g in filters[note.vowel])
        env = np.ones(n)
        env[:attack] = np.linspace(0.0, 1.0, attack)
        tail = min(release, n)
        env[-tail:] *= np.linspace(1.0, 0.0, tail)
        out[start : start + n] += note.velocity * env * voiced
    peak = float(np.max(np.abs(out))) if n_samples else 0.0
    if peak > 0:
        out /= peak
    return out.astype(np.float32)
