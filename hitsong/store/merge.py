"""Merging one ingest's new files into the store: user numbers, totals that must fit, and key sets.

The new files' :class:`~hitsong.store.aggregate.Delta` meets the store here: users get numbers
(a dictionary for text ids), the sums are checked against the stored totals, and the keys are
added to the key sets (:mod:`hitsong.store.keysets`); the keys that were new are the new
listeners. What the commit writes is staged as registered arrays (``_delta``, ``_subset_listeners``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np

from hitsong.errors import InputError
from hitsong.store import keysets
from hitsong.store.aggregate import Delta
from hitsong.store.events import CheckedFile
from hitsong.store.schema import NOT_CHANGED
from hitsong.store.sources import MAX_COUNT
from hitsong.store.state import State, attach, detach

log = logging.getLogger(__name__)


def user_dictionary(con: duckdb.DuckDBPyConnection, checked: list[CheckedFile], db_path: Path, fresh: bool) -> None:
    """``_user_map(user_id, user_no)`` for the new files' users; ``_users_new``: the numbers to add."""
    parts = " UNION ".join(
        f"SELECT DISTINCT CAST({c.user_sql} AS VARCHAR) AS user_id FROM read_{c.file.src.kind}_{i}"
        for i, c in enumerate(checked)
    )
    for i, c in enumerate(checked):
        c.file.src.relation(con).create_view(f"read_{c.file.src.kind}_{i}", replace=True)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _file_users AS {parts}")
    con.execute("CREATE OR REPLACE TEMP TABLE _known_users (user_id VARCHAR, user_no BIGINT)")
    top = -1
    if not fresh and db_path.exists():
        attach(con, db_path, read_only=True)
        try:
            con.execute(
                """INSERT INTO _known_users SELECT u.user_id, u.user_no FROM store.user_numbers u
                   SEMI JOIN _file_users f USING (user_id)"""
            )
            top = con.execute("SELECT coalesce(max(user_no), -1) FROM store.user_numbers").fetchall()[0][0]
        finally:
            detach(con)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _users_new AS
           SELECT user_id, $top + row_number() OVER (ORDER BY user_id) AS user_no
           FROM _file_users ANTI JOIN _known_users USING (user_id)""",
        {"top": int(top)},
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _user_map AS SELECT * FROM _known_users UNION ALL SELECT * FROM _users_new"
    )
    if con.execute("SELECT coalesce(max(user_no), 0) FROM _user_map").fetchall()[0][0] >= 1 << 32:
        raise InputError(f"more than 2**32 distinct users: the store cannot number them. {NOT_CHANGED}")
    for i, c in enumerate(checked):
        con.execute(f"DROP VIEW read_{c.file.src.kind}_{i}")


def check_totals(con: duckdb.DuckDBPyConnection, db_path: Path, state: State, delta: Delta) -> None:
    """The stored totals plus the new sums must fit BIGINT (checked exactly only when they might not)."""
    if not delta.song_no.size:
        return
    if (
        state.max_plays + int(delta.plays.max()) <= MAX_COUNT
        and state.max_events + int(delta.events.max()) <= MAX_COUNT
    ):
        return
    stage(con, "_check", {"song_no": delta.song_no, "plays": delta.plays})
    attach(con, db_path, read_only=True)
    try:
        bad = con.execute(
            """SELECT n.song_id FROM _check c JOIN store.song_totals t USING (song_no)
               JOIN store.song_numbers n USING (song_no)
               WHERE CAST(t.plays AS HUGEINT) + c.plays > $m LIMIT 1""",
            {"m": MAX_COUNT},
        ).fetchall()
    finally:
        detach(con)
    if bad:
        raise InputError(
            f"the plays of song {bad[0][0]!r} in the new events, added to those already counted, exceed {MAX_COUNT}, "
            f"the largest play count the store holds. Check the play counts. {NOT_CHANGED}"
        )


def stage(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, np.ndarray]) -> None:
    """Numpy columns as the staging relation ``name``: registered with the connection, which
    scans the arrays in place whenever a query names it (no copy into a temp table)."""
    con.register(name, {k: np.ascontiguousarray(v) for k, v in columns.items()})


def add_keys(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    state: State,
    fresh: bool,
    catalogue: bool,
    delta: Delta,
    written: list[str],
) -> tuple[dict[str, list[keysets.Run]], int, list[str]]:
    """Add the delta's keys to the key sets; stage ``_delta`` and ``_subset_listeners``.

    Returns the new run lists, the distinct listeners overall, and the run files to delete
    after the commit.
    """
    folder = keysets.keys_dir(db_path)
    old = {k: ([] if fresh else list(state.runs.get(k, []))) for k in keysets.KEYSETS}
    pairs = keysets.add(folder, old["pairs"], delta.pair_keys, name="pairs")
    written += pairs.written
    runs = {"pairs": pairs.runs}
    dropped = list(pairs.dropped)
    if old["pairs"]:
        new_listeners = np.bincount(pairs.new_keys >> 32, minlength=int(delta.song_no.max(initial=-1)) + 1)
        listeners_delta = new_listeners[delta.song_no] if delta.song_no.size else delta.song_no
    else:  # an empty set: every pair of the new files is new
        listeners_delta = delta.listeners
    stage(
        con,
        "_delta",
        {
            "song_no": delta.song_no,
            "plays": delta.plays,
            "events": delta.events,
            "listeners": listeners_delta,
        },
    )
    moved = (
        catalogue
        and not fresh
        and con.execute(
            """SELECT count(*) FROM _played p LEFT JOIN _catalogue c USING (song_no)
           WHERE c.subset_no IS DISTINCT FROM p.subset_no"""
        ).fetchall()[0][0]
    )
    stored = dict(con.execute("SELECT subset_no, coalesce(listeners, 0) FROM _subsets").fetchall())
    if moved:
        log.info("played songs changed subset or left the catalogue: recounting each subset's listeners")
        subset_keys = _subset_keys_from_pairs(con, keysets.union(folder, pairs.runs))
        base: dict[str, list[keysets.Run]] = {"subset_users": [], "users": []}
        stored = {}
        dropped += [r.file for k in ("subset_users", "users") for r in old[k]]
    else:
        subset_keys = delta.subset_user_keys
        base = {k: old[k] for k in ("subset_users", "users")}
    su = keysets.add(folder, base["subset_users"], subset_keys, name="subset_users")
    users = keysets.add(folder, base["users"], keysets.distinct(subset_keys & 0xFFFFFFFF), name="users")
    for added in (su, users):
        written += added.written
        dropped += added.dropped
    runs["subset_users"], runs["users"] = su.runs, users.runs
    counts = np.bincount(su.new_keys >> 32)
    subsets = sorted(set(stored) | set(range(counts.size)) | _all_subset_numbers(con))
    stage(
        con,
        "_subset_listeners",
        {
            "subset_no": np.asarray(subsets, np.int64),
            "listeners": np.asarray(
                [stored.get(s, 0) + (int(counts[s]) if s < counts.size else 0) for s in subsets], np.int64
            ),
        },
    )
    listeners = (0 if fresh or moved else int(state.listeners or 0)) + int(users.new_keys.size)
    return runs, listeners, dropped


def _all_subset_numbers(con: duckdb.DuckDBPyConnection) -> set[int]:
    rows = con.execute("SELECT subset_no FROM _subsets UNION SELECT subset_no FROM _subsets_new").fetchall()
    return {int(r[0]) for r in rows}


def _subset_keys_from_pairs(con: duckdb.DuckDBPyConnection, pairs: np.ndarray) -> np.ndarray:
    """``subset_no << 32 | user`` of every stored pair whose song is in the current catalogue."""
    cat = con.execute("SELECT song_no, subset_no FROM _catalogue").fetchnumpy()
    song_no = np.asarray(cat["song_no"], np.int64)
    subset_of = np.full(int(max(song_no.max(initial=-1), (pairs >> 32).max(initial=-1))) + 1, -1, np.int64)
    subset_of[song_no] = np.asarray(cat["subset_no"], np.int64)
    sub = subset_of[pairs >> 32] if pairs.size else np.zeros(0, np.int64)
    keep = sub >= 0
    return keysets.distinct((sub[keep] << 32) | (pairs[keep] & 0xFFFFFFFF))


def empty_delta() -> Delta:
    empty = np.zeros(0, np.int64)
    return Delta(empty, empty, empty, empty, empty, empty)
