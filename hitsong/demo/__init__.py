"""The embedded demo label: synthetic songs and listeners with a signal that is in the audio.

``init_demo(out_dir, songs_per_subset=..., users=..., seed=...)`` writes what a real user brings
(``songs.csv``, ``events.parquet``, ``audio/``) plus the generative ground truth
(``truth.parquet``) and a ``README.md`` that says the data is synthetic and how it was made.
Modules: :mod:`~hitsong.demo.archetypes` (genre table), :mod:`~hitsong.demo.plan` (a song's
parameters), :mod:`~hitsong.demo.arrange` (structure and notes), :mod:`~hitsong.demo.voice`
(formant-synthesised vocals), :mod:`~hitsong.demo.synth` (rendering), :mod:`~hitsong.demo.listeners`
(markets and plays), :mod:`~hitsong.demo.writer` (files).

This package imports numpy/pandas lazily so that ``hitsong --help`` stays fast: the defaults
below are plain constants, the rest is loaded on first attribute access.
"""

from __future__ import annotations

from typing import Any

#: Defaults of ``hitsong demo init`` (sized for the 15-minute demo on a 2-core machine).
DEFAULT_SONGS_PER_SUBSET = 160
DEFAULT_USERS = 400
DEFAULT_SEED = 2017

_FROM_WRITER = ("DemoConfig", "DemoSummary", "demo_exists", "init_demo")
_FROM_LISTENERS = ("WINDOW_START", "WINDOW_END")


def __getattr__(name: str) -> Any:
    if name in _FROM_WRITER:
        from hitsong.demo import writer

        return getattr(writer, name)
    if name in _FROM_LISTENERS:
        from hitsong.demo import listeners

        return getattr(listeners, name)
    raise AttributeError(f"module 'hitsong.demo' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 - grouped as above: constants, writer, listeners
    "DEFAULT_SEED", "DEFAULT_SONGS_PER_SUBSET", "DEFAULT_USERS",
    "DemoConfig", "DemoSummary", "demo_exists", "init_demo",
    "WINDOW_START", "WINDOW_END",
]  # fmt: skip
