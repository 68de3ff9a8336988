"""The arrangement of a demo song: song structure, MIDI notes per part, the sung line.

:func:`arrange` turns a :class:`~hitsong.demo.plan.SongPlan` into an :class:`Arrangement`:
sections (intro, verse, chorus, bridge, outro), General MIDI notes for drums, bass,
accompaniment, pad and lead, and the notes of the formant-synthesised voice. Times are in
seconds; one bar is 16 sixteenth-note steps in 4/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitsong.demo.archetypes import ARCHETYPES
from hitsong.demo.plan import SongPlan

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
STEPS_PER_BAR = 16

# MIDI channels of the parts (9 is General MIDI's drum channel).
CH_COMP, CH_BASS, CH_PAD, CH_LEAD, CH_DRUMS = 0, 1, 2, 3, 9

# General MIDI drum keys.
KICK, SNARE, STICK, CLAP, HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 37, 39, 42, 44, 46, 49, 51

#: Drum patterns: drum key -> ((step, velocity), ...) over one bar of 16 steps.
DRUM_PATTERNS: dict[str, dict[int, tuple[tuple[int, int], ...]]] = {
    "pop": {
        KICK: ((0, 105), (6, 80), (8, 100)),
        SNARE: ((4, 100), (12, 100)),
        HAT: tuple((s, 70 if s % 4 else 85) for s in range(0, 16, 2)),
    },
    "rock": {
        KICK: ((0, 115), (8, 110), (10, 95)),
        SNARE: ((4, 120), (12, 120)),
        HAT: tuple((s, 90 if s % 4 else 105) for s in range(0, 16, 2)),
    },
    "four": {
        KICK: tuple((s, 120) for s in range(0, 16, 4)),
        CLAP: ((4, 100), (12, 100)),
        OPEN_HAT: tuple((s, 85) for s in range(2, 16, 4)),
        HAT: tuple((s, 55) for s in range(1, 16, 2)),
    },
    "boombap": {
        KICK: ((0, 120), (3, 90), (10, 110)),
        SNARE: ((4, 115), (12, 115)),
        HAT: tuple((s, 80 if s % 2 == 0 else 55) for s in range(16)),
    },
    "ballad": {
        KICK: ((0, 80), (8, 70)),
        STICK: ((4, 75), (12, 75)),
        HAT: tuple((s, 50) for s in range(0, 16, 4)),
    },
    "jazz": {
        RIDE: ((0, 85), (4, 90), (6, 70), (8, 85), (12, 90), (14, 70)),
        PEDAL_HAT: ((4, 70), (12, 70)),
        KICK: ((0, 45),),
    },
    "metal": {
        KICK: tuple((s, 115) for s in range(16)),
        SNARE: ((4, 125), (12, 125)),
        CRASH: ((0, 110), (8, 100)),
    },
    "none": {},
}


@dataclass(frozen=True)
class Section:
    """One song section: ``kind`` in intro/verse/chorus/bridge/outro, a bar range."""

    kind: str
    start_bar: int
    n_bars: int


@dataclass(frozen=True)
class Note:
    """One MIDI note: times in seconds, ``channel`` 0-15, ``key`` and ``velocity`` 0-127."""

    start: float
    end: float
    channel: int
    key: int
    velocity: int


@dataclass(frozen=True)
class VoiceNote:
    """One sung syllable: times in seconds, ``midi`` pitch, ``vowel`` index into the vowel table."""

    start: float
    end: float
    midi: float
    vowel: int
    velocity: float


@dataclass(frozen=True)
class Arrangement:
    """A song's structure and notes.

    Parameters
    ----------
    sections : tuple of Section
        In time order, covering ``n_bars``.
    notes : tuple of Note
        All instrument notes (drums on channel 9).
    voice : tuple of VoiceNote
        The sung line (empty when the plan has no vocal).
    programs : dict
        Channel -> (bank, program, is_drums).
    bar_seconds : float
        Length of one bar.
    n_bars : int
        Number of bars.
    """

    sections: tuple[Section, ...]
    notes: tuple[Note, ...]
    voice: tuple[VoiceNote, ...]
    programs: dict[int, tuple[int, int, bool]]
    bar_seconds: float
    n_bars: int

    @property
    def seconds(self) -> float:
        """Length of the music, without the release tail."""
        return self.n_bars * self.bar_seconds


def song_sections(n_bars: int) -> tuple[Section, ...]:
    """Lay out intro, verse/chorus cycles with a bridge, and outro over ``n_bars`` bars.

    The cycle is verse 8, chorus 8, verse 8, chorus 8, bridge 4, chorus 8, so any 60-s window
    of a song at a typical tempo holds at least one chorus.
    """
    edge = 4 if n_bars >= 24 else 2
    out = [Section("intro", 0, edge)]
    cycle = (("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8), ("bridge", 4), ("chorus", 8))
    bar, i = edge, 0
    end = n_bars - edge
    while bar < end:
        kind, length = cycle[i % len(cycle)]
        length = min(length, end - bar)
        out.append(Section(kind, bar, length))
        bar += length
        i += 1
    out.append(Section("outro", bar, n_bars - bar))
    return tuple(s for s in out if s.n_bars > 0)


class _Grid:
    """Converts (bar, step) to seconds, applying the archetype's swing."""

    def __init__(self, tempo_bpm: float, swing: float, swing_steps: int) -> None:
        self.step = 60.0 / tempo_bpm / 4.0
        self.swing = swing
        self.swing_steps = swing_steps

    def t(self, bar: int, step: float) -> float:
        base = (bar * STEPS_PER_BAR + step) * self.step
        unit = self.swing_steps
        if self.swing and float(step).is_integer() and (int(step) // unit) % 2 == 1 and int(step) % unit == 0:
            base += self.swing * unit * self.step
        return base


def _scale(plan: SongPlan) -> tuple[int, ...]:
    return MAJOR if plan.major else MINOR


def _degree_pitch(scale: tuple[int, ...], tonic: int, degree: int) -> int:
    octave, idx = divmod(degree, 7)
    return tonic + 12 * octave + scale[idx]


def _chord(scale: tuple[int, ...], tonic: int, degree: int, *, sevenths: bool, power: bool) -> list[int]:
    if power:
        root = _degree_pitch(scale, tonic, degree)
        return [root, root + 7, root + 12]
    n = 4 if sevenths else 3
    return [_degree_pitch(scale, tonic, degree + 2 * k) for k in range(n)]


def _bar_chords(plan: SongPlan, sections: tuple[Section, ...]) -> list[int]:
    """Scale degree of the chord in every bar."""
    degrees: list[int] = []
    for sec in sections:
        prog = plan.chorus_progression if sec.kind == "chorus" else plan.verse_progression
        if sec.kind == "bridge":
            prog = prog[2:] + prog[:2]
        degrees.extend(prog[b % len(prog)] for b in range(sec.n_bars))
    return degrees


def _motif(
    rng: np.random.Generator,
    chords: list[int],
    *,
    density: float,
    rap: bool,
    low: int,
    high: int,
) -> list[tuple[int, int, int]]:
    """A two-bar melody: ``(step, length_steps, scale_degree)`` with steps in [0, 32)."""
    grid = 1 if rap else 2
    onsets = [s for s in range(0, 32, grid) if s == 0 or rng.random() < density]
    notes = []
    degree = int(rng.integers(low + 2, high - 2))
    for i, step in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < len(onsets) else 32
        length = min(nxt - step, 1 if rap else 6)
        if rap:
            degree = int(np.clip(low + 3 + rng.integers(-1, 2), low, high))
        else:
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), low, high))
            if step % 8 == 0:  # strong beats land on a chord tone
                root = chords[min(step // 16, len(chords) - 1)]
                tones = [root + 2 * k + 7 * o for k in range(3) for o in (-1, 0, 1)]
                degree = min(tones, key=lambda t: (abs(t - degree), t))
        notes.append((step, length, degree))
    return notes


def _drum_notes(plan: SongPlan, grid: _Grid, sections: tuple[Section, ...], rng: np.random.Generator) -> list[Note]:
    pattern = DRUM_PATTERNS[plan.drum_pattern]
    notes: list[Note] = []
    if not pattern:
        return notes
    hit = grid.step * 0.9
    for sec in sections:
        for b in range(sec.n_bars):
            bar = sec.start_bar + b
            if sec.kind == "intro" and b < sec.n_bars // 2:
                continue
            if sec.kind == "verse" and plan.drum_pattern == "ballad":
                continue
            scale = {"verse": 0.8, "chorus": 1.0, "bridge": 0.7, "intro": 0.7, "outro": 0.8}[sec.kind]
            for key, hits in pattern.items():
                if sec.kind == "bridge" and key not in (KICK, HAT, RIDE):
                    continue
                if key == CRASH and sec.kind != "chorus":
                    continue
                for step, vel in hits:
                    v = int(np.clip(vel * scale + rng.integers(-6, 7), 1, 127))
                    notes.append(Note(grid.t(bar, step), grid.t(bar, step) + hit, CH_DRUMS, key, v))
            if b == 0 and sec.kind == "chorus" and plan.drum_pattern not in ("jazz", "ballad"):
                notes.append(Note(grid.t(bar, 0), grid.t(bar, 0) + hit, CH_DRUMS, CRASH, 105))
            if (
                b == sec.n_bars - 1
                and sec.kind in ("verse", "chorus")
                and plan.drum_pattern in ("pop", "rock", "metal")
            ):
                for step in range(12, 16):
                    notes.append(
                        Note(grid.t(bar, step), grid.t(bar, step) + hit, CH_DRUMS, SNARE, 90 + 5 * (step - 12))
                    )
    return notes


def _bass_notes(plan: SongPlan, grid: _Grid, degrees: list[int], tonic: int) -> list[Note]:
    scale = _scale(plan)
    style = plan.bass_style
    # style -> ((step, length in steps, semitones above the root), ...) per bar
    patterns = {
        "root_8ths": [(s, 2, 0) for s in range(0, 16, 2)],
        "root_16ths": [(s, 1, 0) for s in range(16)],
        "root_fifth": [(0, 6, 0), (6, 2, 0), (8, 4, 7), (12, 4, 0)],
        "offbeat": [(s, 2, 0 if s != 14 else 12) for s in range(2, 16, 4)],
        "sub": [(0, 10, 0), (10, 6, 0)],
        "whole": [(0, 16, 0)],
    }
    notes: list[Note] = []
    bass_tonic = tonic - 12
    for bar, degree in enumerate(degrees):
        root = _degree_pitch(scale, bass_tonic, degree)
        if style == "walking":
            nxt = _degree_pitch(scale, bass_tonic, degrees[(bar + 1) % len(degrees)])
            walk = [
                root,
                _degree_pitch(scale, bass_tonic, degree + 2),
                _degree_pitch(scale, bass_tonic, degree + 4),
                nxt + (1 if nxt < root else -1),
            ]
            for q, key in enumerate(walk):
                notes.append(Note(grid.t(bar, 4 * q), grid.t(bar, 4 * q + 3.6), CH_BASS, key, 95))
            continue
        for step, length, semis in patterns[style]:
            key = root + semis  # semitones above the chord root: 0 root, 7 fifth, 12 octave
            notes.append(Note(grid.t(bar, step), grid.t(bar, step) + length * grid.step * 0.92, CH_BASS, key, 100))
    return notes


def _comp_notes(
    plan: SongPlan, grid: _Grid, sections: tuple[Section, ...], degrees: list[int], tonic: int, rng: np.random.Generator
) -> list[Note]:
    a = ARCHETYPES[plan.archetype]
    scale = _scale(plan)
    notes: list[Note] = []
    for sec in sections:
        vel_scale = {"intro": 0.75, "verse": 0.8, "chorus": 1.0, "bridge": 0.85, "outro": 0.8}[sec.kind]
        for b in range(sec.n_bars):
            bar = sec.start_bar + b
            chord = _chord(scale, tonic, degrees[bar], sevenths=a.sevenths, power=a.power_chords)
            style = plan.comp_style

            def add(
                step: float, length: float, keys: list[int], vel: int, bar: int = bar, vel_scale: float = vel_scale
            ) -> None:
                v = int(np.clip(vel * vel_scale, 1, 127))
                for k in keys:
                    notes.append(Note(grid.t(bar, step), grid.t(bar, step) + length * grid.step, CH_COMP, k, v))

            if style == "block":
                add(0, 15.8, chord, 80)
            elif style == "strum":
                mute = sec.kind == "verse"
                for s in range(0, 16, 2):
                    add(s, 1.0 if mute else 1.9, chord, 105 if s % 4 == 0 else 90)
            elif style == "stabs":
                for s in (2, 6, 10, 14):
                    add(s, 1.2, chord, 90)
            elif style == "arpeggio":
                tones = chord + [c + 12 for c in chord]
                order = [0, 1, 2, 3, 4, 3, 2, 1]
                for i, s in enumerate(range(0, 16, 2)):
                    add(s, 3.5, [tones[order[i] % len(tones)]], 75 if i else 88)
            elif style == "jazz":
                add(0, 3, chord, 70)
                add(int(rng.choice([6, 10, 11])), 2, chord, 62)
    return notes


def _pad_notes(
    plan: SongPlan, grid: _Grid, sections: tuple[Section, ...], degrees: list[int], tonic: int
) -> list[Note]:
    if plan.pad_program < 0:
        return []
    scale = _scale(plan)
    notes: list[Note] = []
    for sec in sections:
        if sec.kind not in ("chorus", "bridge", "intro"):
            continue
        for b in range(sec.n_bars):
            bar = sec.start_bar + b
            for k in _chord(scale, tonic + 12, degrees[bar], sevenths=False, power=False):
                notes.append(Note(grid.t(bar, 0), grid.t(bar, 15.9), CH_PAD, k, 70))
    return notes


def _melodies(
    plan: SongPlan, sections: tuple[Section, ...], degrees: list[int], rng: np.random.Generator
) -> list[tuple[str, int, list[tuple[int, int, int]]]]:
    """Per two-bar block: ``(section kind, first bar, motif)``; the chorus repeats its hook."""
    a = ARCHETYPES[plan.archetype]
    hook = _motif(rng, [0, 4], density=a.note_density, rap=plan.rap, low=2, high=11)
    blocks = []
    for sec in sections:
        for b in range(0, sec.n_bars - 1, 2):
            bar = sec.start_bar + b
            chords = degrees[bar : bar + 2]
            if sec.kind == "chorus":
                motif = (
                    hook
                    if rng.random() < plan.catchiness
                    else _motif(rng, chords, density=a.note_density, rap=plan.rap, low=2, high=11)
                )
            else:
                motif = _motif(rng, chords, density=a.note_density * 0.85, rap=plan.rap, low=-2, high=7)
            blocks.append((sec.kind, bar, motif))
    return blocks


VOICE_TONIC_OFFSET = {"male": 0, "female": 7}


def arrange(plan: SongPlan) -> Arrangement:
    """Build the song's structure and notes from its plan (deterministic for ``plan.seed``)."""
    a = ARCHETYPES[plan.archetype]
    rng = np.random.default_rng(plan.seed)
    grid = _Grid(plan.tempo_bpm, a.swing, a.swing_steps)
    bar_s = STEPS_PER_BAR * grid.step
    n_bars = max(8, int(round(plan.duration_s / bar_s)))
    sections = song_sections(n_bars)
    degrees = _bar_chords(plan, sections)
    tonic = 48 + plan.key if plan.key <= 5 else 36 + plan.key
    scale = _scale(plan)

    notes = _drum_notes(plan, grid, sections, rng)
    notes += _bass_notes(plan, grid, degrees, tonic)
    notes += _comp_notes(plan, grid, sections, degrees, tonic, rng)
    notes += _pad_notes(plan, grid, sections, degrees, tonic)

    voice: list[VoiceNote] = []
    sung = plan.vocal != "none"
    lead_tonic = tonic + 12
    voice_tonic = tonic + VOICE_TONIC_OFFSET.get(plan.vocal, 0)
    for kind, bar, motif in _melodies(plan, sections, degrees, rng):
        by_voice = sung and kind in ("verse", "chorus")
        by_lead = (not sung and kind in ("verse", "chorus", "bridge")) or kind in ("intro", "bridge")
        for step, length, degree in motif:
            start = grid.t(bar, step)
            end = start + length * grid.step * 0.95
            if by_voice:
                midi = _degree_pitch(scale, voice_tonic, degree)
                vowel = int(rng.integers(5))
                voice.append(VoiceNote(start, end, float(midi), vowel, 0.8 if kind == "verse" else 1.0))
            elif by_lead and kind != "outro":
                vel = 95 if kind == "chorus" else 82
                notes.append(Note(start, end, CH_LEAD, _degree_pitch(scale, lead_tonic, degree), vel))

    programs = {
        CH_COMP: (0, plan.comp_program, False),
        CH_BASS: (0, plan.bass_program, False),
        CH_LEAD: (0, plan.lead_program, False),
        CH_DRUMS: (128, plan.drum_kit, True),
    }
    if plan.pad_program >= 0:
        programs[CH_PAD] = (0, plan.pad_program, False)
    notes = [n for n in notes if 0 <= n.key <= 127]
    notes.sort(key=lambda n: (n.start, n.channel, n.key))
    return Arrangement(
        sections=sections,
        notes=tuple(notes),
        voice=tuple(voice),
        programs=programs,
        bar_seconds=bar_s,
        n_bars=n_bars,
    )
