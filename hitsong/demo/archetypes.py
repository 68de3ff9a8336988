"""Genre archetypes of the synthetic demo label: the table every demo song is drawn from.

Each archetype fixes the *ranges* a song's synthesis parameters are drawn from (tempo, mode,
drum kit and pattern, bass and accompaniment styles, General MIDI programs, chance of a sung
line, loudness and brightness). One table, read by :mod:`hitsong.demo.synth` (rendering) and
:mod:`hitsong.demo.listeners` (taste); nothing else hard-codes a genre.

General MIDI program numbers are 0-based (0 = Acoustic Grand Piano); drum kits are bank-128
presets of the soundfont (0 Standard, 8 Room, 16 Power, 25 TR-808, 32 Jazz, 40 Brush).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archetype:
    """The parameter ranges of one genre archetype.

    Parameters
    ----------
    name : str
        Archetype name, e.g. ``"rock"``.
    tempo_bpm : tuple of float
        Uniform range of the tempo in beats per minute.
    major_prob : float
        Probability of a major key (else natural minor).
    drum_patterns : tuple of str
        Drum patterns (keys of :data:`hitsong.demo.arrange.DRUM_PATTERNS`), ``"none"`` for no drums.
    drum_kits : tuple of int
        Soundfont drum-kit presets (bank 128).
    bass_styles : tuple of str
        Bass-line styles (see :func:`hitsong.demo.arrange.bass_part`).
    bass_programs : tuple of int
        GM programs of the bass.
    comp_styles : tuple of str
        Accompaniment styles (see :func:`hitsong.demo.arrange.comp_part`).
    comp_programs : tuple of int
        GM programs of the chord accompaniment.
    pad_programs : tuple of int
        GM programs of the sustained pad (empty: no pad).
    lead_programs : tuple of int
        GM programs of the instrumental lead melody.
    progressions : tuple of tuple of int
        Chord progressions as 0-based scale degrees, one chord per bar.
    vocal_prob : float
        Probability that the song has a sung (formant-synthesised) line.
    female_prob : float
        Probability that a sung line is in the female range.
    rap_prob : float
        Probability that a sung line is rhythmic, speech-like (rap) rather than melodic.
    loudness_dbfs : tuple of float
        Uniform range of the mix's RMS level in dBFS.
    brightness : tuple of float
        Uniform range of the high-shelf tilt in [0, 1] (0 dark, 1 bright).
    swing : float
        Delay of off-beat subdivisions as a fraction of one subdivision (0 straight).
    swing_steps : int
        Length of the swung subdivision in sixteenths (1: sixteenths, 2: eighths).
    sevenths : bool
        Whether chords carry a seventh.
    power_chords : bool
        Whether the accompaniment plays root-fifth-octave power chords.
    note_density : float
        Probability that a melody slot carries a note.
    """

    name: str
    tempo_bpm: tuple[float, float]
    major_prob: float
    drum_patterns: tuple[str, ...]
    drum_kits: tuple[int, ...]
    bass_styles: tuple[str, ...]
    bass_programs: tuple[int, ...]
    comp_styles: tuple[str, ...]
    comp_programs: tuple[int, ...]
    pad_programs: tuple[int, ...]
    lead_programs: tuple[int, ...]
    progressions: tuple[tuple[int, ...], ...]
    vocal_prob: float
    female_prob: float
    rap_prob: float
    loudness_dbfs: tuple[float, float]
    brightness: tuple[float, float]
    swing: float = 0.0
    swing_steps: int = 1
    sevenths: bool = False
    power_chords: bool = False
    note_density: float = 0.6


_POP_PROGS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3))
_MINOR_PROGS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6))

#: The archetypes, in a fixed order (indices are stored in truth.parquet).
ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in (
        Archetype(
            name="pop",
            tempo_bpm=(92.0, 124.0),
            major_prob=0.8,
            drum_patterns=("pop",),
            drum_kits=(0, 8),
            bass_styles=("root_fifth", "root_8ths"),
            bass_programs=(33, 38),
            comp_styles=("stabs", "block"),
            comp_programs=(4, 0, 90),
            pad_programs=(89, 88),
            lead_programs=(80, 11, 4),
            progressions=_POP_PROGS,
            vocal_prob=0.9,
            female_prob=0.55,
            rap_prob=0.0,
            loudness_dbfs=(-16.0, -11.0),
            brightness=(0.5, 0.85),
            note_density=0.65,
        ),
        Archetype(
            name="rock",
            tempo_bpm=(108.0, 150.0),
            major_prob=0.6,
            drum_patterns=("rock",),
            drum_kits=(8, 16),
            bass_styles=("root_8ths",),
            bass_programs=(34, 33),
            comp_styles=("strum",),
            comp_programs=(29, 27, 16),
            pad_programs=(16,),
            lead_programs=(29, 30, 16),
            progressions=_POP_PROGS[2:] + _MINOR_PROGS[2:],
            vocal_prob=0.6,
            female_prob=0.3,
            rap_prob=0.0,
            loudness_dbfs=(-14.0, -10.0),
            brightness=(0.55, 0.85),
            power_chords=True,
            note_density=0.55,
        ),
        Archetype(
            name="electronic",
            tempo_bpm=(120.0, 132.0),
            major_prob=0.4,
            drum_patterns=("four",),
            drum_kits=(25,),
            bass_styles=("offbeat",),
            bass_programs=(38, 39),
            comp_styles=("stabs",),
            comp_programs=(90, 81),
            pad_programs=(88, 89, 95),
            lead_programs=(81, 80),
            progressions=_MINOR_PROGS + ((0, 0, 5, 3),),
            vocal_prob=0.3,
            female_prob=0.8,
            rap_prob=0.0,
            loudness_dbfs=(-12.0, -9.0),
            brightness=(0.6, 0.95),
            note_density=0.7,
        ),
        Archetype(
            name="hiphop",
            tempo_bpm=(82.0, 98.0),
            major_prob=0.3,
            drum_patterns=("boombap",),
            drum_kits=(25, 0),
            bass_styles=("sub",),
            bass_programs=(38, 87),
            comp_styles=("stabs",),
            comp_programs=(4, 45, 11),
            pad_programs=(89,),
            lead_programs=(4, 11),
            progressions=_MINOR_PROGS + ((0, 0, 3, 3),),
            vocal_prob=0.85,
            female_prob=0.2,
            rap_prob=0.85,
            loudness_dbfs=(-13.0, -10.0),
            brightness=(0.3, 0.6),
            swing=0.25,
            note_density=0.8,
        ),
        Archetype(
            name="ballad",
            tempo_bpm=(60.0, 80.0),
            major_prob=0.75,
            drum_patterns=("ballad", "none"),
            drum_kits=(40, 0),
            bass_styles=("whole",),
            bass_programs=(32, 33),
            comp_styles=("arpeggio",),
            comp_programs=(0,),
            pad_programs=(49, 48),
            lead_programs=(0, 40, 73),
            progressions=_POP_PROGS,
            vocal_prob=0.85,
            female_prob=0.65,
            rap_prob=0.0,
            loudness_dbfs=(-22.0, -15.0),
            brightness=(0.3, 0.6),
            note_density=0.5,
        ),
        Archetype(
            name="classical",
            tempo_bpm=(60.0, 96.0),
            major_prob=0.55,
            drum_patterns=("none",),
            drum_kits=(0,),
            bass_styles=("whole",),
            bass_programs=(42, 43),
            comp_styles=("block", "arpeggio"),
            comp_programs=(48, 49, 46),
            pad_programs=(),
            lead_programs=(40, 73, 68, 71),
            progressions=((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 2)),
            vocal_prob=0.0,
            female_prob=0.5,
            rap_prob=0.0,
            loudness_dbfs=(-26.0, -18.0),
            brightness=(0.2, 0.5),
            note_density=0.6,
        ),
        Archetype(
            name="jazz",
            tempo_bpm=(100.0, 168.0),
            major_prob=0.7,
            drum_patterns=("jazz",),
            drum_kits=(32, 40),
            bass_styles=("walking",),
            bass_programs=(32,),
            comp_styles=("jazz",),
            comp_programs=(0, 4, 11),
            pad_programs=(),
            lead_programs=(65, 66, 56, 11),
            progressions=((1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4)),
            vocal_prob=0.25,
            female_prob=0.7,
            rap_prob=0.0,
            loudness_dbfs=(-22.0, -16.0),
            brightness=(0.35, 0.65),
            swing=0.33,
            swing_steps=2,
            sevenths=True,
            note_density=0.7,
        ),
        Archetype(
            name="metal",
            tempo_bpm=(140.0, 190.0),
            major_prob=0.1,
            drum_patterns=("metal",),
            drum_kits=(16,),
            bass_styles=("root_16ths",),
            bass_programs=(34,),
            comp_styles=("strum",),
            comp_programs=(30,),
            pad_programs=(),
            lead_programs=(30, 29),
            progressions=_MINOR_PROGS,
            vocal_prob=0.5,
            female_prob=0.1,
            rap_prob=0.0,
            loudness_dbfs=(-11.0, -8.5),
            brightness=(0.7, 1.0),
            power_chords=True,
            note_density=0.6,
        ),
    )
}

#: Archetype names in table order.
ARCHETYPE_NAMES: tuple[str, ...] = tuple(ARCHETYPES)
