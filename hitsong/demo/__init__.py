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

_LAZY = {
    "DemoConfig": "hitsong.demo.writer",
    "DemoSummary": "hitsong.demo.writer",
    "demo_exists": "hitsong.demo.writer",
    "init_demo": "hitsong.demo.writer",
    "WINDOW_START": "hitsong.demo.listeners",
    "WINDOW_END": "hitsong.demo.listeners",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hitsong.demo' has no attribute {name!r}")


__all__ = ["DEFAULT_SEED", "DEFAULT_SONGS_PER_SUBSET", "DEFAULT_USERS", *_LAZY]
