"""The arrangement of a demo song: song structure, MIDI notes per part, the sung line.

:func:`arrange` turns a :class:`~hitsong.demo.plan.SongPlan` into an :class:`Arrangement`:
sections (intro, verse, chorus, bridge, outro), General MIDI notes for drums, bass,
accompaniment, pad, lead and an arpeggiated figure, and the notes of the formant-synthesised
voice. Times are in seconds; one bar is 16 sixteenth-note steps in 4/4.

Where the drums' accent falls is the song's temporal signature (the listener model's part
(b), see :mod:`hitsong.demo.listeners`). Every bar of a drum pattern has the same accent hits
(snare, clap or open conga: :data:`ACCENTS`); in some bars they fall on the beat, together
with the kick, in the others off it, between the kicks. The plan's ``on_beat`` share sets how
many bars are of the first kind (:func:`on_beat_bars`). Moving a hit in time changes neither
which frames of a band it sounds in nor how loud, so every mel band's mean and standard
deviation over the song stay (nearly) the same, while a convolution over a few frames sees
whether the accent and the kick sound together.

That last clause holds only where the two differ in spectrum and the rest of the arrangement
leaves the accent's bands some room: a frame is 93 ms of a 186-ms window (the log-mel's
defaults), so "together" and "apart" are told by which bands light up at once, not by timing
alone. Every drum pattern therefore has a low stroke on the beat (a kick, or the tabla's bass
stroke) and an accent whose energy sits above it. Measured with the CNN m2 on the rhythm label
of each archetype alone (12-s clips, 60 songs, three folds, mean of seeds 29-31), before these
choices the tabla, whose beat stroke was a low bongo at ~340 Hz, as high as its open-conga
accent, reached 0.29 (0.53 with a bass stroke, 0.73 with its light strokes also moved off the
accent's steps), and rock, whose standard-kit snare sounds mostly below 150 Hz under the bass
and guitar eighths, 0.08 (0.31 with the power kit's electric snare, centred near 490 Hz),
against pop 0.71 and techno 0.97 (seeds 29-30). Part (b) is what the listener model says it
is only if it is heard in every archetype; ``tests/hitsong/demo/test_signals.py`` checks it
per archetype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitsong.demo.archetypes import ARCHETYPES
from hitsong.demo.plan import SongPlan

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
STEPS_PER_BAR = 16
#: The figure: eighths (2 sixteenth steps) over the bar's chord tones, up and down again.
FIGURE_STEP = 2
FIGURE_ORDER = (0, 1, 2, 3, 4, 3, 2, 1)
FIGURE_VELOCITY = 88
#: Golden-ratio increment: bar ``i`` has its accent on the beat when
#: ``frac(phase + i * GOLDEN) < on_beat``, which spreads those bars evenly, so any stretch of
#: the song (the models' 60-s window) has about the song's share of them.
GOLDEN = 0.6180339887498949

# MIDI channels of the parts (9 is General MIDI's drum channel).
CH_COMP, CH_BASS, CH_PAD, CH_LEAD, CH_FIGURE, CH_DRUMS = 0, 1, 2, 3, 4, 9

# General MIDI drum keys.
KICK, SNARE, CLAP, E_SNARE, HAT, LOW_TOM = 36, 38, 39, 40, 42, 45
HI_BONGO, OPEN_CONGA, LOW_CONGA = 60, 63, 64

#: Drum patterns: drum key -> ((step, velocity), ...) over one bar of 16 steps.
DRUM_PATTERNS: dict[str, dict[int, tuple[tuple[int, int], ...]]] = {
    "pop": {
        KICK: ((0, 124), (8, 120)),
        HAT: tuple((s, 50 if s % 4 else 60) for s in range(0, 16, 2)),
    },
    "rock": {
        KICK: ((0, 127), (8, 124)),
        HAT: tuple((s, 60 if s % 4 else 70) for s in range(0, 16, 2)),
    },
    "four": {
        KICK: tuple((s, 124) for s in range(0, 16, 4)),
        HAT: tuple((s, 40) for s in range(1, 16, 2)),
    },
    # the tabla's bass stroke (a low tom, ~120 Hz) on every beat; its light strokes (high bongo)
    # on steps the accent never takes, so on- and off-beat bars differ in what sounds together
    "tabla": {
        LOW_TOM: tuple((s, 120) for s in range(0, 16, 4)),
        HI_BONGO: ((3, 50), (7, 55), (11, 50), (15, 55)),
        LOW_CONGA: ((0, 80), (8, 70)),
    },
    "none": {},
}

#: The accent of each drum pattern, the rhythm whose place in the bar is the song's temporal
#: signature: ``(drum keys struck together, velocity, steps on the beat, steps off the beat)``.
#: "On" steps fall with the kick (or the tabla's low stroke); "off" steps between them. A bar
#: has the same hits either way, only their place differs. Techno and the tabla have a low
#: stroke on every beat, so four accents a bar; pop and rock keep their kick on beats 1 and 3
#: (a kick on every beat makes the tagger hear them as electronic music), so two. Each accent
#: sounds above its beat stroke: rock's is the electric snare of its power kit (most energy at
#: 150-1500 Hz), as the standard kit's snare (most below 150 Hz) is lost under rock's eighths of
#: bass and low guitar; the module docstring has the measurements.
ACCENTS: dict[str, tuple[tuple[int, ...], int, tuple[int, ...], tuple[int, ...]]] = {
    "pop": ((SNARE, CLAP), 124, (0, 8), (4, 12)),
    "rock": ((E_SNARE, CLAP), 127, (0, 8), (4, 12)),
    "four": ((CLAP, SNARE), 120, (0, 4, 8, 12), (2, 6, 10, 14)),
    "tabla": ((OPEN_CONGA, HI_BONGO), 124, (0, 4, 8, 12), (2, 6, 10, 14)),
}

#: Bass-line styles: ((step, length in steps, semitones above the chord root), ...) per bar.
BASS_PATTERNS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "root_8ths": tuple((s, 2, 0) for s in range(0, 16, 2)),
    "root_fifth": ((0, 6, 0), (6, 2, 0), (8, 4, 7), (12, 4, 0)),
    "offbeat": tuple((s, 2, 0 if s != 14 else 12) for s in range(2, 16, 4)),
    "whole": ((0, 16, 0),),
    "none": (),
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
    on_beat : tuple of bool
        Per bar, whether its drum accent falls on the beat (length ``n_bars``; all False
        without drums).
    """

    sections: tuple[Section, ...]
    notes: tuple[Note, ...]
    voice: tuple[VoiceNote, ...]
    programs: dict[int, tuple[int, int, bool]]
    bar_seconds: float
    n_bars: int
    on_beat: tuple[bool, ...]

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


def on_beat_bars(n_bars: int, *, on_beat: float, phase: float) -> tuple[bool, ...]:
    """Which bars have their accent on the beat: bar ``i`` when ``frac(phase + i * GOLDEN) < on_beat``.

    Parameters
    ----------
    n_bars : int
        Bars in the song.
    on_beat : float
        Share of bars with the accent on the beat, in [0, 1].
    phase : float
        Phase in [0, 1) (drawn per song).

    Returns
    -------
    tuple of bool [length n_bars]
        The chosen bars are spread evenly: over any ``n`` consecutive bars their count is
        within about 2 of ``n * on_beat`` (a low-discrepancy sequence).
    """
    return tuple(bool((phase + i * GOLDEN) % 1.0 < on_beat) for i in range(n_bars))


class _Grid:
    """Converts (bar, step) to seconds at the song's tempo."""

    def __init__(self, tempo_bpm: float) -> None:
        self.step = 60.0 / tempo_bpm / 4.0

    def t(self, bar: int, step: float) -> float:
        return (bar * STEPS_PER_BAR + step) * self.step


def _scale(plan: SongPlan) -> tuple[int, ...]:
    return MAJOR if plan.major else MINOR


def _degree_pitch(scale: tuple[int, ...], tonic: int, degree: int) -> int:
    octave, idx = divmod(degree, 7)
    return tonic + 12 * octave + scale[idx]


def _chord(scale: tuple[int, ...], tonic: int, degree: int) -> list[int]:
    """The triad on scale ``degree``: root, third and fifth (MIDI keys)."""
    return [_degree_pitch(scale, tonic, degree + 2 * k) for k in range(3)]


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
    low: int,
    high: int,
) -> list[tuple[int, int, int]]:
    """A two-bar melody: ``(step, length_steps, scale_degree)`` with steps in [0, 32).

    Onsets on every eighth with probability ``density``; notes last until the next onset, at
    most 6 steps; the line moves by small steps between scale degrees ``low`` and ``high`` and
    lands on a chord tone on strong beats.
    """
    onsets = [s for s in range(0, 32, 2) if s == 0 or rng.random() < density]
    notes = []
    degree = int(rng.integers(low + 2, high - 2))
    for i, step in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < len(onsets) else 32
        length = min(nxt - step, 6)
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), low, high))
        if step % 8 == 0:  # strong beats land on a chord tone
            root = chords[min(step // 16, len(chords) - 1)]
            tones = [root + 2 * k + 7 * o for k in range(3) for o in (-1, 0, 1)]
            degree = min(tones, key=lambda t: (abs(t - degree), t))
        notes.append((step, length, degree))
    return notes


def _drum_notes(
    plan: SongPlan, grid: _Grid, sections: tuple[Section, ...], on_beat: tuple[bool, ...], rng: np.random.Generator
) -> list[Note]:
    pattern = DRUM_PATTERNS[plan.drum_pattern]
    notes: list[Note] = []
    if not pattern:
        return notes
    hit = grid.step * 0.9
    for sec in sections:
        for b in range(sec.n_bars):
            bar = sec.start_bar + b
            scale = {"verse": 0.8, "chorus": 1.0, "bridge": 0.7, "intro": 0.7, "outro": 0.8}[sec.kind]
            hits_by_key = list(pattern.items())
            if plan.drum_pattern in ACCENTS:
                keys, vel, on, off = ACCENTS[plan.drum_pattern]
                hits_by_key += [(key, tuple((s, vel) for s in (on if on_beat[bar] else off))) for key in keys]
            for key, hits in hits_by_key:
                for step, vel in hits:
                    v = int(np.clip(vel * scale + rng.integers(-6, 7), 1, 127))
                    notes.append(Note(grid.t(bar, step), grid.t(bar, step) + hit, CH_DRUMS, key, v))
    return notes


def _bass_notes(plan: SongPlan, grid: _Grid, degrees: list[int], tonic: int) -> list[Note]:
    scale = _scale(plan)
    notes: list[Note] = []
    bass_tonic = tonic - 12
    for bar, degree in enumerate(degrees):
        root = _degree_pitch(scale, bass_tonic, degree)
        for step, length, semis in BASS_PATTERNS[plan.bass_style]:
            notes.append(
                Note(grid.t(bar, step), grid.t(bar, step) + length * grid.step * 0.92, CH_BASS, root + semis, 100)
            )
    return notes


def _comp_notes(
    plan: SongPlan, grid: _Grid, sections: tuple[Section, ...], degrees: list[int], tonic: int
) -> list[Note]:
    """The chord accompaniment: held (``block``) or off-beat ``stabs`` (``none``: no chords)."""
    scale = _scale(plan)
    # style -> ((step, length in steps, velocity), ...) per bar
    hits = {"block": ((0, 15.8, 80),), "stabs": tuple((s, 1.2, 90) for s in (2, 6, 10, 14)), "none": ()}[
        plan.comp_style
    ]
    notes: list[Note] = []
    for sec in sections:
        vel_scale = {"intro": 0.75, "verse": 0.8, "chorus": 1.0, "bridge": 0.85, "outro": 0.8}[sec.kind]
        for b in range(sec.n_bars):
            bar = sec.start_bar + b
            chord = _chord(scale, tonic, degrees[bar])
            for step, length, vel in hits:
                start = grid.t(bar, step)
                end = start + length * grid.step
                v = int(np.clip(vel * vel_scale, 1, 127))
                notes.extend(Note(start, end, CH_COMP, k, v) for k in chord)
    return notes


def _pad_notes(
    plan: SongPlan, grid: _Grid, sections: tuple[Section, ...], degrees: list[int], tonic: int
) -> list[Note]:
    if plan.pad_program < 0:
        return []
    a = ARCHETYPES[plan.archetype]
    scale = _scale(plan)
    notes: list[Note] = []
    if a.pad_style == "drone":  # tonic and fifth, re-struck every two bars
        n_bars = sum(s.n_bars for s in sections)
        for bar in range(0, n_bars, 2):
            for k in (tonic - 12, tonic - 5, tonic):
                notes.append(Note(grid.t(bar, 0), grid.t(min(bar + 2, n_bars), 0) - 0.02, CH_PAD, k, 72))
        return notes
    for sec in sections:
        if sec.kind not in ("chorus", "bridge", "intro"):
            continue
        for b in range(sec.n_bars):
            bar = sec.start_bar + b
            for k in _chord(scale, tonic + 12, degrees[bar]):
                notes.append(Note(grid.t(bar, 0), grid.t(bar, 15.9), CH_PAD, k, 70))
    return notes


def figure_pitches(plan: SongPlan, degree: int, tonic: int) -> list[int]:
    """The figure's five pitches for a bar on chord ``degree``, lowest first.

    The bar's triad over about an octave and a half (root, third, fifth, root, third) from the
    archetype's figure octave; for a drone archetype (one chord throughout) five consecutive
    scale degrees from the root, a scale run.
    """
    a = ARCHETYPES[plan.archetype]
    scale = _scale(plan)
    base = tonic + 12 * a.figure_octave
    if a.pad_style == "drone":
        return [_degree_pitch(scale, base, degree + k) for k in range(5)]
    return [_degree_pitch(scale, base, degree + 7 * (k // 3) + (0, 2, 4)[k % 3]) for k in range(5)]


def _figure_notes(plan: SongPlan, grid: _Grid, degrees: list[int], tonic: int) -> list[Note]:
    """Eighths up and down the figure's pitches (:data:`FIGURE_ORDER`) in every bar."""
    notes: list[Note] = []
    length = FIGURE_STEP * grid.step * 0.9
    for bar, degree in enumerate(degrees):
        pitches = figure_pitches(plan, degree, tonic)
        for i, k in enumerate(FIGURE_ORDER):
            start = grid.t(bar, FIGURE_STEP * i)
            notes.append(Note(start, start + length, CH_FIGURE, pitches[k], FIGURE_VELOCITY))
    return notes


def _melodies(
    plan: SongPlan, sections: tuple[Section, ...], degrees: list[int], rng: np.random.Generator
) -> list[tuple[str, int, list[tuple[int, int, int]]]]:
    """Per two-bar block: ``(section kind, first bar, motif)``; the chorus repeats its hook."""
    a = ARCHETYPES[plan.archetype]
    hook = _motif(rng, [0, 4], density=a.note_density, low=2, high=11)
    blocks = []
    for sec in sections:
        for b in range(0, sec.n_bars - 1, 2):
            bar = sec.start_bar + b
            chords = degrees[bar : bar + 2]
            if sec.kind == "chorus":
                motif = (
                    hook
                    if rng.random() < plan.catchiness
                    else _motif(rng, chords, density=a.note_density, low=2, high=11)
                )
            else:
                motif = _motif(rng, chords, density=a.note_density * 0.85, low=-2, high=7)
            blocks.append((sec.kind, bar, motif))
    return blocks


VOICE_TONIC_OFFSET = {"male": 0, "female": 7}


def arrange(plan: SongPlan) -> Arrangement:
    """Build the song's structure and notes from its plan (deterministic for ``plan.seed``)."""
    rng = np.random.default_rng(plan.seed)
    grid = _Grid(plan.tempo_bpm)
    bar_s = STEPS_PER_BAR * grid.step
    n_bars = max(8, round(plan.duration_s / bar_s))
    sections = song_sections(n_bars)
    degrees = _bar_chords(plan, sections)
    tonic = 48 + plan.key if plan.key <= 5 else 36 + plan.key
    scale = _scale(plan)
    accents = on_beat_bars(n_bars, on_beat=plan.on_beat, phase=plan.accent_phase)
    if plan.drum_pattern not in ACCENTS:
        accents = (False,) * n_bars

    notes = _drum_notes(plan, grid, sections, accents, rng)
    notes += _bass_notes(plan, grid, degrees, tonic)
    notes += _comp_notes(plan, grid, sections, degrees, tonic)
    notes += _pad_notes(plan, grid, sections, degrees, tonic)
    notes += _figure_notes(plan, grid, degrees, tonic)

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
        CH_FIGURE: (0, plan.figure_program, False),
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
        on_beat=accents,
    )
