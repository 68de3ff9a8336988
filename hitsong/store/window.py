"""The observation window of a store: given by flags, kept by the store, or taken from the plays.

Rules (DESIGN.md section 2): without flags, the window of one-row-per-play data is its first to
last play date (``source = "data"``), and it grows as later files bring earlier or later plays;
aggregated data has no dates, so it needs ``--window-start``. A store keeps its window: flags
that differ from it are an error (the counted events were filtered with it; ``--replace``
recounts), and a store's window from flags never moves.
"""

from __future__ import annotations

from datetime import date

import duckdb

from hitsong.errors import ConfigError, InputError
from hitsong.store.events import CheckedFile
from hitsong.store.schema import NOT_CHANGED
from hitsong.store.state import State


def check_window(window_start: date | None, window_end: date | None) -> None:
    if window_start is not None and window_end is not None and window_end < window_start:
        raise ConfigError(f"--window-end {window_end} is before --window-start {window_start}.")


def same_window(state: State, ws: date | None, we: date | None) -> bool:
    if state.window is None:
        return ws is None and we is None
    return (ws is None or ws == state.window[0]) and (we is None or we == state.window[1])


def resolve_window(
    con: duckdb.DuckDBPyConnection,
    checked: list[CheckedFile],
    ws: date | None,
    we: date | None,
    state: State,
    fresh: bool,
) -> tuple[date, date | None, str]:
    """The observation window ``(start, end, source)``: the flags, the store's, or the plays' dates."""
    plays = [c for c in checked if c.file.shape == "plays"]
    lo_hi = [
        c.file.src.relation(con).aggregate(f"min({c.value_sql})::DATE, max({c.value_sql})::DATE").fetchall()[0]
        for c in plays
    ]
    if not fresh and state.window is not None:
        start, end, source = state.window
        if not same_window(state, ws, we):
            raise ConfigError(
                f"the window --window-start {ws} --window-end {we} differs from the store's ({start} to "
                f"{end or '?'}, from the {source}); the counted events were filtered with it. Ingest every events "
                f"file again with --replace to change it. {NOT_CHANGED}"
            )
        if source == "data" and lo_hi:  # a window taken from the data grows with it
            start = min([start, *(x[0] for x in lo_hi)])
            end = max([d for d in [end, *(x[1] for x in lo_hi)] if d is not None])
        return start, end, source
    source = "flags"
    if lo_hi and (ws is None or we is None):
        if ws is None:
            ws, source = min(x[0] for x in lo_hi), "data"
        if we is None:
            we = max(x[1] for x in lo_hi)
    if ws is None:
        where = checked[0].file.src.path if checked else "the events"
        raise InputError(
            f"events file {where} has play counts without dates, so the observation window is unknown: pass "
            f"--window-start YYYY-MM-DD (and --window-end). {NOT_CHANGED}"
        )
    check_window(ws, we)
    return ws, we, source
