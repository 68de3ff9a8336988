"""Sub-commands over the listening store: ``ingest``, ``sample``, ``stats``.

Placeholder registration: filled in by the listening-store work.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Register the data sub-commands."""
