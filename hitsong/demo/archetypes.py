"""Genre archetypes of the synthetic demo label: the table every demo song is drawn from.

Each archetype names the MagnaTagATune genre tag it is meant to sound like (``genre``, one of
:data:`hitsong.tagger.GENRE_TAGS`) and fixes the *ranges* a song's synthesis parameters are
drawn from: tempo, mode, drum kit and pattern, bass, accompaniment, pad, lead and figure
instruments, the sung line. One table, read by
:mod:`hitsong.demo.arrange`, :mod:`hitsong.demo.synth` and :mod:`hitsong.demo.listeners`;
nothing else hard-codes a genre.

General MIDI program numbers are 0-based (0 = Acoustic Grand Piano); drum kits are bank-128
presets of the soundfont (0 Standard, 8 Room, 16 Power, 24 Electronic, 25 TR-808, 32 Jazz,
40 Brush, 48 Orchestra).
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
    genre : str
        The MagnaTagATune genre tag (:data:`hitsong.tagger.GENRE_TAGS`) the pretrained tagger
        should give most songs of this archetype as their strongest genre.
    tempo_bpm : (float, float)
        Uniform range of the tempo in beats per minute.
    major_prob : float
        Probability of a major key (else natural minor).
    drum_patterns : tuple of str
        Drum patterns (keys of :data:`hitsong.demo.arrange.DRUM_PATTERNS`), ``"none"`` for no
        drums. Where a pattern's accent falls (on or off the beat) is the song's temporal
        signature (:data:`hitsong.demo.arrange.ACCENTS`).
    drum_kits : tuple of int
        Soundfont drum-kit presets (bank 128).
    bass_styles : tuple of str
        Bass-line styles (keys of :data:`hitsong.demo.arrange.BASS_PATTERNS`).
    bass_programs : tuple of int
        GM programs of the bass.
    comp_styles : tuple of str
        Accompaniment styles (``block``, ``strum``, ``stabs``, ``offbeat``, ``none``).
    comp_programs : tuple of int
        GM programs of the chord accompaniment.
    pad_programs : tuple of int
        GM programs of the sustained pad (empty: no pad).
    pad_style : str
        ``"chord"`` (the bar's chord, in choruses and bridges) or ``"drone"`` (tonic and fifth
        held through the whole song, as a tanpura).
    lead_programs : tuple of int
        GM programs of the instrumental lead melody.
    figure_programs : tuple of int
        GM programs of the arpeggiated figure that runs through the song.
    figure_octave : int
        Octave of the figure's lowest note relative to the accompaniment (0: same octave).
    progressions : tuple of tuple of int
        Chord progressions as 0-based scale degrees, one chord per bar.
    vocal_prob : float
        Probability that the song has a sung (formant-synthesised) line.
    female_prob : float
        Probability that a sung line is in the female range.
    note_density : float
        Probability that a melody slot carries a note.
    """

    name: str
    genre: str
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
    figure_programs: tuple[int, ...]
    progressions: tuple[tuple[int, ...], ...]
    vocal_prob: float
    female_prob: float
    pad_style: str = "chord"
    figure_octave: int = 1
    note_density: float = 0.6

    @property
    def has_drums(self) -> bool:
        """Whether songs of this archetype have a drum part (and so a drum accent to place)."""
        return any(p != "none" for p in self.drum_patterns)


_POP_PROGS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3))
_MINOR_PROGS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6))

#: The archetypes, in a fixed order (names are stored in truth.parquet).
ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in (
        Archetype(
            name="pop",
            genre="pop",
            tempo_bpm=(92.0, 120.0),
            major_prob=0.85,
            drum_patterns=("pop",),
            drum_kits=(0, 8),
            bass_styles=("root_fifth",),
            bass_programs=(33, 35),
            comp_styles=("block",),
            comp_programs=(0,),
            pad_programs=(89, 52),
            lead_programs=(4, 11),
            figure_programs=(0,),
            progressions=_POP_PROGS,
            vocal_prob=0.95,
            female_prob=0.9,
            note_density=0.65,
        ),
        Archetype(
            name="rock",
            genre="rock",
            tempo_bpm=(100.0, 124.0),
            major_prob=0.5,
            drum_patterns=("rock",),
            drum_kits=(16,),  # the power kit, for the electric snare of rock's accent (arrange.ACCENTS)
            bass_styles=("root_8ths",),
            bass_programs=(33,),
            comp_styles=("none",),
            comp_programs=(30,),
            pad_programs=(),
            lead_programs=(30,),
            figure_programs=(30, 29),
            figure_octave=-1,
            progressions=_POP_PROGS[2:] + _MINOR_PROGS[2:],
            vocal_prob=0.95,
            female_prob=0.0,
            note_density=0.55,
        ),
        Archetype(
            name="techno",
            genre="techno",
            tempo_bpm=(122.0, 134.0),
            major_prob=0.3,
            drum_patterns=("four",),
            drum_kits=(25, 24),
            bass_styles=("offbeat",),
            bass_programs=(38, 39),
            comp_styles=("stabs",),
            comp_programs=(90, 81),
            pad_programs=(88, 95),
            lead_programs=(81, 80),
            figure_programs=(81, 80, 87),
            progressions=_MINOR_PROGS + ((0, 0, 5, 3),),
            vocal_prob=0.1,
            female_prob=0.8,
            note_density=0.7,
        ),
        Archetype(
            name="classical",
            genre="classical",
            tempo_bpm=(60.0, 96.0),
            major_prob=0.55,
            drum_patterns=("none",),
            drum_kits=(0,),
            bass_styles=("whole",),
            bass_programs=(42, 43),
            comp_styles=("block",),
            comp_programs=(48, 49),
            pad_programs=(),
            lead_programs=(40, 73, 68, 71),
            figure_programs=(0, 6),
            progressions=((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 2)),
            vocal_prob=0.0,
            female_prob=0.5,
            note_density=0.6,
        ),
        Archetype(
            name="indian",
            genre="indian",
            tempo_bpm=(72.0, 108.0),
            major_prob=0.5,
            drum_patterns=("tabla",),
            drum_kits=(0,),
            bass_styles=("none",),
            bass_programs=(32,),
            comp_styles=("none",),
            comp_programs=(104,),
            pad_programs=(104, 111),
            pad_style="drone",
            lead_programs=(111, 104),
            figure_programs=(104,),
            progressions=((0, 0, 0, 0), (0, 0, 4, 0)),
            vocal_prob=0.4,
            female_prob=0.6,
            note_density=0.7,
        ),
        Archetype(
            name="ambient",
            genre="ambient",
            tempo_bpm=(60.0, 82.0),
            major_prob=0.6,
            drum_patterns=("none",),
            drum_kits=(0,),
            bass_styles=("whole",),
            bass_programs=(89,),
            comp_styles=("none",),
            comp_programs=(89,),
            pad_programs=(89, 91, 94),
            lead_programs=(91,),
            figure_programs=(46,),
            progressions=((0, 5, 3, 4), (0, 3, 0, 4), (0, 2, 5, 3)),
            vocal_prob=0.0,
            female_prob=0.5,
            note_density=0.4,
        ),
    )
}

#: Archetype names in table order.
ARCHETYPE_NAMES: tuple[str, ...] = tuple(ARCHETYPES)
