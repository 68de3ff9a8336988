"""Exact per-song counts for a file that fits in memory at once (a daily append), on one thread.

The same result as :func:`hitsong.store.pairs.count_pairs` by other means (see
:func:`count_pairs_small`), and :func:`load_append_loops`, which loads an append's compiled loops
ahead of its first use.
"""

from __future__ import annotations

import numpy as np

from hitsong.store.jit import compiled
from hitsong.store.keyruns import absent_sorted, merge_sorted
from hitsong.store.pairs import PairTotals, unknown_totals


@compiled
def _count_by_song(
    users,
    songs,
    counts,
    lut,
    song_lo,
    user_lo,
    subset_of,
    n_users,
    plays,
    events,
    listeners,
    subset_seen,
    song_of,
    starts,
    grouped,
    pairs,
    unknown,
):  # pragma: no cover - compiled
    """:func:`count_pairs_small`'s loops: per-song sums, then the rows with plays grouped by song
    (a counting sort), each song's users sorted and deduplicated into sorted pair keys.

    ``starts`` (``n_songs + 1``) must be all zero. Returns ``(distinct pairs, rows of unknown
    songs)``; ``pairs[:n]`` receives the former, ``unknown`` the latter's positions.
    """
    n_lut = lut.shape[0]
    n_songs = plays.shape[0]
    n_unknown = 0
    for i in range(users.shape[0]):
        k = np.int64(songs[i]) - song_lo
        si = lut[k] if 0 <= k < n_lut else -1
        song_of[i] = si
        if si < 0:
            unknown[n_unknown] = i
            n_unknown += 1
            continue
        c = np.int64(counts[i])
        events[si] += 1
        plays[si] += c
        if c > 0:
            starts[si + 1] += 1
    for s in range(n_songs):
        starts[s + 1] += starts[s]
    fill = starts[:-1].copy()
    for i in range(users.shape[0]):
        si = song_of[i]
        if si >= 0 and counts[i] > 0:
            grouped[fill[si]] = np.int64(users[i]) - user_lo
            fill[si] += 1
    n_pairs = 0
    for s in range(n_songs):
        lo = starts[s]
        hi = starts[s + 1]
        if hi == lo:
            continue
        if hi - lo <= 32:  # most songs have a few rows: an insertion sort (a sort call costs ~3x more)
            for a in range(lo + 1, hi):
                v = grouped[a]
                b = a - 1
                while b >= lo and grouped[b] > v:
                    grouped[b + 1] = grouped[b]
                    b -= 1
                grouped[b + 1] = v
        else:
            grouped[lo:hi].sort()
        song = np.int64(s) << 32
        row = subset_of[s] * n_users
        previous = -1
        for j in range(lo, hi):
            u = grouped[j]
            if u != previous:
                pairs[n_pairs] = song | (user_lo + u)
                n_pairs += 1
                listeners[s] += 1
                subset_seen[row + u] = True
                previous = u
    return n_pairs, n_unknown


def count_pairs_small(
    users: np.ndarray,
    songs: np.ndarray,
    counts: np.ndarray,
    *,
    song_lut: np.ndarray,
    song_lo: int,
    subset_of: np.ndarray,
    n_subsets: int,
    user_lo: int,
    user_hi: int,
) -> PairTotals:
    """:func:`count_pairs` for rows that fit in memory at once (a daily append), on one thread.

    The same exact result by other means: instead of bitmaps of ``2**23`` bits per bucket of
    songs, which pay off from millions of rows on, the rows with plays are grouped by song (a
    counting sort) and each song's users sorted and deduplicated. Time and memory grow with the
    rows and the number of songs, not with the user range (except ``subset_users``).

    Parameters
    ----------
    users, songs, counts : np.ndarray [shape=(n,), integer]
        The rows; counts >= 0, users in ``[user_lo, user_hi]``.
    song_lut, song_lo, subset_of, n_subsets, user_lo, user_hi
        As for :func:`count_pairs`.

    Returns
    -------
    PairTotals
    """
    n_songs = int(subset_of.shape[0])
    n_users = int(user_hi) - int(user_lo) + 1
    if user_lo < 0 or user_hi >= 1 << 32:
        raise ValueError(f"user ids must lie in 0..2**32-1 to form pair keys, got {user_lo}..{user_hi}")
    n = int(users.shape[0])
    plays = np.zeros(n_songs, np.int64)
    events = np.zeros(n_songs, np.int64)
    listeners = np.zeros(n_songs, np.int64)
    seen = np.zeros(n_subsets * n_users, np.bool_)
    pairs = np.empty(n, np.int64)
    unknown = np.empty(n, np.int64)
    n_pairs, n_unknown = _count_by_song(
        users,
        songs,
        counts,
        song_lut,
        int(song_lo),
        int(user_lo),
        subset_of.astype(np.int64),
        n_users,
        plays,
        events,
        listeners,
        seen,
        np.empty(n, np.int32),
        np.zeros(n_songs + 1, np.int64),
        np.empty(n, np.int64),
        pairs,
        unknown,
    )
    idx = unknown[:n_unknown]
    ids, unknown_rows, unknown_plays = unknown_totals(
        [np.asarray(songs[idx], dtype=np.int64)], [np.asarray(counts[idx], dtype=np.int64)]
    )
    return PairTotals(
        plays=plays,
        events=events,
        listeners=listeners,
        subset_users=seen.reshape(-1, n_users),
        unknown_ids=ids,
        unknown_rows=unknown_rows,
        unknown_plays=unknown_plays,
        pair_keys=pairs[:n_pairs],
    )


def load_append_loops() -> None:
    """Load the compiled loops an append uses (numba's on-disk cache, or a compile on the first
    run), for the usual column types (32- and 64-bit ids), with tiny inputs.

    Numba loads each compiled loop at its first call in a process, ~5-10 ms each: an ingest that
    imports this module in the background calls this there too, so that the process's first
    append does not wait for them.
    """
    run = np.zeros(1, np.int64)
    run.flags.writeable = False  # runs are read-only memory maps
    absent_sorted(np.zeros(1, np.int64), run, np.ones(1, np.bool_))
    merge_sorted(run, np.ones(1, np.int64), np.empty(2, np.int64))
    lut, subset_of = np.zeros(1, np.int32), np.zeros(1, np.int64)
    for dtype in (np.int32, np.int64):
        column = np.zeros(1, dtype)
        count_pairs_small(
            column, column, column, song_lut=lut, song_lo=0, subset_of=subset_of, n_subsets=1, user_lo=0, user_hi=0
        )
