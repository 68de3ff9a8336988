"""Which code produced a run: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from hitsong import __version__


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<git sha>`` when run from a git checkout, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__
