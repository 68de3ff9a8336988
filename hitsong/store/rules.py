"""The two derived values of the listening store, each written once in SQL and once in Python.

- Hit score (paper section 2, "playcount in log scale times number of users in log scale"):
  ``hit_score = ln(1 + playcount) * ln(1 + listeners)``; log1p keeps songs without plays finite.
- Release quarter relative to the window start ``S``: whole months from ``S`` to the release
  date ``d`` (a month is complete once the day of month of ``S`` is reached); months 0-2 are
  ``Q1``, 3-5 ``Q2``, ...; months -1 to -3 are ``-Q1``, -4 to -6 ``-Q2``, ... The quarter index
  is ``k`` for ``Qk`` and ``-k`` for ``-Qk`` (paper Fig. 1).

The SQL forms are what ingest stores; the Python forms label single values (tests check that
both agree).
"""

from __future__ import annotations

from datetime import date

import numpy as np
from numpy.typing import ArrayLike


def hit_score_sql(playcount: str, listeners: str) -> str:
    """SQL of the hit score of the columns (or expressions) ``playcount`` and ``listeners``."""
    return f"ln(1 + {playcount}) * ln(1 + {listeners})"


def hit_score(playcount: ArrayLike, listeners: ArrayLike) -> np.ndarray:
    """The hit score ``ln(1 + playcount) * ln(1 + listeners)``, elementwise (float64)."""
    return np.log1p(np.asarray(playcount, dtype=np.float64)) * np.log1p(np.asarray(listeners, dtype=np.float64))


def months_sql(release: str, start: str) -> str:
    """SQL of the whole months from the date ``start`` to the date ``release`` (may be negative)."""
    return (
        f"(year({release}) - year({start})) * 12 + month({release}) - month({start})"
        f" - CASE WHEN day({release}) < day({start}) THEN 1 ELSE 0 END"
    )


def quarter_label_sql(months: str) -> str:
    """SQL of the quarter label (``Q1``, ``-Q1``, ...) of a month offset."""
    return f"CASE WHEN {months} >= 0 THEN 'Q' || ({months} // 3 + 1) ELSE '-Q' || ((-{months} - 1) // 3 + 1) END"


def quarter_index_sql(months: str) -> str:
    """SQL of the quarter index (``k`` for ``Qk``, ``-k`` for ``-Qk``) of a month offset."""
    return f"CASE WHEN {months} >= 0 THEN {months} // 3 + 1 ELSE -((-{months} - 1) // 3 + 1) END"


def release_quarter(release: date, start: date) -> tuple[str, int]:
    """The release quarter of ``release`` for a window starting at ``start``: ``(label, index)``."""
    months = (release.year - start.year) * 12 + release.month - start.month - (release.day < start.day)
    k = months // 3 + 1 if months >= 0 else -((-months - 1) // 3 + 1)
    return (f"Q{k}" if k > 0 else f"-Q{-k}"), k
