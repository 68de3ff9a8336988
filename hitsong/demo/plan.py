"""A demo song's synthesis parameters (:class:`SongPlan`) and how they are drawn.

A plan is everything that decides how a song sounds; :func:`hitsong.demo.synth.render_song`
turns it into samples, and :mod:`hitsong.demo.listeners` computes the song's audio appeal from
it. Plans are kept whole in ``truth.parquet``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hitsong.demo.archetypes import ARCHETYPES
from hitsong.errors import ConfigError

#: (file format, soundfile subtype, sample rate in Hz, channels, probability).
#: MP3 at 44.1 kHz stereo is the common real case; the rest exercise the decoders. The shares
#: keep the slow encoders (MP3 44.1 kHz stereo ~40x real time here, Vorbis ~200x) a minority.
AUDIO_FORMATS: tuple[tuple[str, str, int, int, float], ...] = (
    ("wav", "PCM_16", 22050, 1, 0.32),
    ("wav", "PCM_16", 44100, 2, 0.06),
    ("flac", "PCM_16", 22050, 1, 0.18),
    ("flac", "PCM_16", 44100, 2, 0.08),
    ("ogg", "VORBIS", 22050, 1, 0.12),
    ("ogg", "VORBIS", 22050, 2, 0.06),
    ("mp3", "MPEG_LAYER_III", 22050, 1, 0.10),
    ("mp3", "MPEG_LAYER_III", 44100, 2, 0.08),
)


@dataclass(frozen=True)
class SongPlan:
    """Every synthesis parameter of one demo song.

    Parameters
    ----------
    seed : int
        Seed of the song's own random generator (melody, fills, voice jitter).
    archetype : str
        Key of :data:`hitsong.demo.archetypes.ARCHETYPES`.
    tempo_bpm : float
        Tempo in beats per minute (4/4 time).
    key : int
        Tonic pitch class, 0 = C.
    major : bool
        Major (True) or natural minor (False) key.
    verse_progression, chorus_progression : tuple of int
        Chords as 0-based scale degrees, one per bar, cycled.
    drum_pattern : str
        Drum pattern name, ``"none"`` for no drums.
    drum_kit : int
        Drum-kit preset (bank 128).
    bass_style, comp_style : str
        Bass-line and accompaniment styles.
    bass_program, comp_program, pad_program, lead_program : int
        General MIDI programs (0-based); ``pad_program`` -1 means no pad.
    vocal : str
        ``"none"``, ``"male"`` or ``"female"``: range of the formant-synthesised sung line.
    rap : bool
        Whether the sung line is rhythmic and speech-like.
    catchiness : float
        In [0, 1]: how often the chorus repeats its two-bar hook exactly.
    loudness_dbfs : float
        RMS level of the mix in dBFS (before the soft limiter).
    brightness : float
        In [0, 1]: high-frequency tilt of the mix (0 dark, 1 bright).
    duration_s : float
        Target duration in seconds (the rendered song ends on a whole bar plus a tail).
    sample_rate : int
        Sample rate of the written file in Hz.
    channels : int
        1 (mono) or 2 (stereo).
    audio_format : str
        ``"wav"``, ``"flac"``, ``"ogg"`` or ``"mp3"``.
    subtype : str
        soundfile subtype used to write the file.
    """

    seed: int
    archetype: str
    tempo_bpm: float
    key: int
    major: bool
    verse_progression: tuple[int, ...]
    chorus_progression: tuple[int, ...]
    drum_pattern: str
    drum_kit: int
    bass_style: str
    bass_program: int
    comp_style: str
    comp_program: int
    pad_program: int
    lead_program: int
    vocal: str
    rap: bool
    catchiness: float
    loudness_dbfs: float
    brightness: float
    duration_s: float
    sample_rate: int
    channels: int
    audio_format: str
    subtype: str

    def to_record(self) -> dict[str, object]:
        """The plan as a flat dict of plain values (progressions as strings like ``"0-4-5-3"``)."""
        rec = asdict(self)
        rec["verse_progression"] = "-".join(map(str, self.verse_progression))
        rec["chorus_progression"] = "-".join(map(str, self.chorus_progression))
        return rec


def draw_duration(
    rng: np.random.Generator,
    *,
    song_seconds: tuple[float, float],
    short_share: float,
    short_seconds: tuple[float, float] = (35.0, 58.0),
) -> float:
    """Draw a song duration in seconds.

    With probability ``short_share`` a short song (``short_seconds``, under the models' 60-s
    window, so it exercises padding); otherwise a log-uniform draw in ``song_seconds``
    (more short songs than long ones, as in a real catalogue).
    """
    if rng.random() < short_share:
        return float(rng.uniform(*short_seconds))
    lo, hi = song_seconds
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_plan(
    rng: np.random.Generator,
    archetype: str,
    *,
    seed: int,
    song_seconds: tuple[float, float],
    short_share: float,
) -> SongPlan:
    """Draw one song's plan within its archetype's ranges.

    Parameters
    ----------
    rng : np.random.Generator
        Source of every random choice (advance order is fixed, so a seed gives one plan).
    archetype : str
        Key of :data:`ARCHETYPES`.
    seed : int
        Stored in the plan; seeds the song's own generator at render time.
    song_seconds : (float, float)
        Range of regular song durations in seconds.
    short_share : float
        Share of songs shorter than 60 s.
    """
    if archetype not in ARCHETYPES:
        raise ConfigError(f"unknown archetype {archetype!r}; valid: {', '.join(ARCHETYPES)}")
    a = ARCHETYPES[archetype]

    def pick(options: tuple) -> Any:
        return options[int(rng.integers(len(options)))]

    vocal = "none"
    rap = False
    if rng.random() < a.vocal_prob:
        vocal = "female" if rng.random() < a.female_prob else "male"
        rap = bool(rng.random() < a.rap_prob)
    fmt_probs = np.array([f[4] for f in AUDIO_FORMATS])
    fmt = AUDIO_FORMATS[int(rng.choice(len(AUDIO_FORMATS), p=fmt_probs / fmt_probs.sum()))]
    verse = pick(a.progressions)
    chorus = pick(a.progressions)
    return SongPlan(
        seed=int(seed),
        archetype=archetype,
        tempo_bpm=round(float(rng.uniform(*a.tempo_bpm)), 1),
        key=int(rng.integers(12)),
        major=bool(rng.random() < a.major_prob),
        verse_progression=tuple(verse),
        chorus_progression=tuple(chorus),
        drum_pattern=str(pick(a.drum_patterns)),
        drum_kit=int(pick(a.drum_kits)),
        bass_style=str(pick(a.bass_styles)),
        bass_program=int(pick(a.bass_programs)),
        comp_style=str(pick(a.comp_styles)),
        comp_program=int(pick(a.comp_programs)),
        pad_program=int(pick(a.pad_programs)) if a.pad_programs else -1,
        lead_program=int(pick(a.lead_programs)),
        vocal=vocal,
        rap=rap,
        catchiness=round(float(rng.beta(2.0, 2.0)), 3),
        loudness_dbfs=round(float(rng.uniform(*a.loudness_dbfs)), 2),
        brightness=round(float(rng.uniform(*a.brightness)), 3),
        duration_s=round(draw_duration(rng, song_seconds=song_seconds, short_share=short_share), 2),
        sample_rate=fmt[2],
        channels=fmt[3],
        audio_format=fmt[0],
        subtype=fmt[1],
    )
