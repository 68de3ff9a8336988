"""The methods that see no audio, by name: compared against, never served.

m0, the metadata baseline (``hitsong.models.metadata``), predicts a hit score from the song's
artist and release date alone; every audio method (m1..m6) is reported beside its gap to it.
This table has no heavy imports, so the registry and the dashboard can ask "is this a baseline?"
without loading torch.
"""

from __future__ import annotations

#: The metadata baseline's name.
M0 = "m0"
#: Methods that see no audio (name -> Table 1's label).
BASELINES: dict[str, str] = {M0: "metadata (artist+recency)"}


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a method that sees no audio (m0)."""
    return name in BASELINES
