"""What one visitor may make the Predict page do: files per upload, audio per session, cached results.

Streamlit bounds the size of one uploaded file (``server.maxUploadSize``); these bound the rest,
so that one browser tab cannot hold the server's memory or CPU:

- at most :attr:`PredictLimits.max_files` files in one upload (more are refused together, with a
  message, before anything is scored);
- at most :attr:`PredictLimits.session_mb` MB of audio scored per session (a file counts once,
  however many champions score it); further files are refused one by one, named;
- at most :attr:`PredictLimits.cached_results` results kept per session, the least recently
  shown dropped first (they are recomputed if shown again).

Operators change the first two with ``HITSONG_PREDICT_MAX_FILES`` and ``HITSONG_PREDICT_SESSION_MB``
in the dashboard's environment. These are plain classes: tests use them without Streamlit.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hitsong.errors import ConfigError

MAX_FILES_ENV = "HITSONG_PREDICT_MAX_FILES"
SESSION_MB_ENV = "HITSONG_PREDICT_SESSION_MB"
MB = 1 << 20


@dataclass(frozen=True)
class PredictLimits:
    """Per-session bounds of the Predict page (see the module docstring)."""

    max_files: int = 20
    session_mb: int = 1000
    cached_results: int = 64

    def __post_init__(self) -> None:
        for name in ("max_files", "session_mb", "cached_results"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"Predict page limit {name}={getattr(self, name)} must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PredictLimits:
        """The defaults, with ``HITSONG_PREDICT_MAX_FILES`` / ``HITSONG_PREDICT_SESSION_MB`` applied."""
        values: dict[str, int] = {}
        for name, var in (("max_files", MAX_FILES_ENV), ("session_mb", SESSION_MB_ENV)):
            raw = env.get(var)
            if raw:
                try:
                    values[name] = int(raw)
                except ValueError as exc:
                    raise ConfigError(f"{var}={raw!r} is not a whole number") from exc
        return cls(**values)


@dataclass
class SessionBudget:
    """Bytes of audio a session has had scored, against its limit; each file counted once."""

    limit_bytes: int
    used_bytes: int = 0
    files: set[Hashable] = field(default_factory=set)

    def admit(self, file_id: Hashable, size: int) -> bool:
        """Count ``size`` bytes for ``file_id`` unless that would pass the limit; ``True`` if it may be scored."""
        if file_id in self.files:
            return True
        if self.used_bytes + size > self.limit_bytes:
            return False
        self.files.add(file_id)
        self.used_bytes += size
        return True


class ResultCache:
    """The last ``max_entries`` results of a session, least recently used dropped first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        """The result stored under ``key`` (now the most recently used), or ``None``."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``; drop the least recently used entries beyond ``max_entries``."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
