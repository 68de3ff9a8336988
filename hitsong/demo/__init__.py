"""The embedded demo label: a small synthetic benchmark whose Table 1 means something.

``init_demo(out_dir, songs_per_subset=..., users=..., seed=...)`` writes what a real user brings
(``songs.csv``, ``events.parquet``, ``audio/``) plus the generative ground truth
(``truth.parquet``) and a ``README.md`` that says the data is synthetic and how it was made.

**The songs.** Six genre archetypes (:mod:`~hitsong.demo.archetypes`: pop, rock, techno,
classical, indian, ambient), each arranged so that the pretrained MagnaTagATune tagger names
its intended genre for most of its songs (:mod:`~hitsong.demo.genres` measures it), rendered
from General MIDI parts through a soundfont plus a formant-synthesised voice
(:mod:`~hitsong.demo.plan`, :mod:`~hitsong.demo.arrange`, :mod:`~hitsong.demo.voice`,
:mod:`~hitsong.demo.synth`). Songs are 62-72 s: the models hear the middle 60 s.

**The listener model** (:mod:`~hitsong.demo.listeners`). A song's appeal in a market mixes three
parts of its sound, each meant for a different family of the paper's methods:

(a) *timbre*: loudness and brightness, drawn from the same ranges for every archetype. It moves
    every mel band's mean: visible to m1 (mel means and standard deviations + LR), and to the CNNs.
(b) *rhythm*: the share of bars whose drum accent falls on the beat with the kick rather than
    between kicks. Moving a hit in time leaves every band's mean and standard deviation as they
    were: invisible to m1; the CNNs' kernels over a few frames see whether accent and kick
    coincide (m2, m3, and the CNN halves of m5, m6). Archetypes without drums have none.
(c) *semantic*: the market's taste for the archetype (genre, instruments) and for a sung line,
    what the tagger's 50 tags name: visible to m4 (and the tag halves of m5, m6). The archetypes
    also differ in timbre, so m1 and the CNNs see it too.

The appeal, artist fame, exposure (release date) and noise set each user's expected plays
(negative-binomial); two markets, ``mandarin`` and ``western``, weigh the parts differently
(the rhythm part with opposite signs). ``tests/hitsong/demo/test_signals.py`` plants a label built from
one part alone and checks who recovers it; BENCHMARKS.md ("Demo end to end") and the README have the default demo's
Table 1. The numbers are about this model, not a reproduction of the paper's.

Modules: :mod:`~hitsong.demo.writer` writes the files, :mod:`~hitsong.demo.readme` the README.
This package imports numpy/pandas lazily so that ``hitsong --help`` stays fast: the defaults
below are plain constants, the rest is loaded on first attribute access.
"""

from __future__ import annotations

from typing import Any

#: Defaults of ``hitsong demo init`` (sized for the 15-minute demo on a 2-core machine).
DEFAULT_SONGS_PER_SUBSET = 340
DEFAULT_USERS = 400
DEFAULT_SEED = 2017

_WRITER = ("DemoConfig", "DemoSummary", "demo_exists", "init_demo")
_LISTENERS = ("WINDOW_START", "WINDOW_END")


def __getattr__(name: str) -> Any:
    if name in _WRITER:
        from hitsong.demo import writer

        return getattr(writer, name)
    if name in _LISTENERS:
        from hitsong.demo import listeners

        return getattr(listeners, name)
    raise AttributeError(f"module 'hitsong.demo' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SONGS_PER_SUBSET",
    "DEFAULT_USERS",
    "WINDOW_END",
    "WINDOW_START",
    "DemoConfig",
    "DemoSummary",
    "demo_exists",
    "init_demo",
]  # fmt: skip
