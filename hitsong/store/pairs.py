"""Exact per-song listening counts for integer ids, in compiled loops (no SQL here).

The exact listener count of a song is the number of distinct users with plays of it, so every
(song, user) pair must be deduplicated: aggregated rows may repeat a pair, and a repeated pair is
one listener. A general hash aggregation over all pairs (DuckDB ``GROUP BY song, user`` or
``count(DISTINCT user)``) costs ~10 s per 50M rows on two busy cores, because each row probes a
table of ~50M entries far larger than the caches. With integer ids in known ranges the same
exact answer comes from a bitmap with one bit per (song, user), and this module keeps that
bitmap inside the cache:

1. Per batch of rows (two threads: one reads the next batch while the other folds one in): map
   song ids to dense indices through a lookup table (unknown songs are set aside), add rows and
   plays per song, and radix-partition the rows with plays > 0 into buckets of ``2**shift``
   consecutive songs, each row kept as a 32-bit key ``(song_in_bucket << user_bits) | user``.
2. Per bucket (two threads, alternate buckets): set each key's bit in a 1 MiB bitmap; a bit
   not yet set is a new listener of its song, and its user is marked in the song's subset.
   Then the touched bits are cleared for the next bucket.

Everything is exact; duplicates are summed exactly like ``GROUP BY (song, user)`` (plays add
up, the pair counts once as a listener, every row counts as an event). The distinct pairs come out
sorted, as the keys of :mod:`hitsong.store.keysets` (:mod:`hitsong.store.keyruns` searches and
merges those sorted key runs; :mod:`hitsong.store.smallpairs` counts a small file). Memory: 4 bytes per
event row (the partitioned keys) plus one byte per (subset, user) and 4 bytes per song id in
range; see :func:`memory_bytes`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from hitsong.store.jit import compiled

BITMAP_BITS = 23  # bits of one bucket's bitmap: 1 MiB, about one core's L2 cache here
MAX_USER_BITS = 31  # keys are 32-bit; a user range beyond 2**31 ids goes to the SQL path


@compiled
def _partition(
    users, songs, counts, lut, song_lo, user_lo, user_bits, shift, plays, events, bucket_sizes, keys, out, unknown
):  # pragma: no cover - compiled
    """One batch: per-song sums, and the keys of rows with plays grouped by bucket into ``out``.

    Returns ``(rows with plays > 0, rows of unknown songs)``; ``unknown`` receives the latter's
    positions in the batch.
    """
    n_lut = lut.shape[0]
    n_pos = 0
    n_unknown = 0
    for i in range(users.shape[0]):
        k = np.int64(songs[i]) - song_lo
        si = lut[k] if 0 <= k < n_lut else -1
        if si < 0:
            unknown[n_unknown] = i
            n_unknown += 1
            continue
        c = np.int64(counts[i])
        events[si] += 1
        plays[si] += c
        if c > 0:
            u = np.int64(users[i]) - user_lo
            bucket_sizes[si >> shift] += 1
            keys[n_pos] = (np.int64(si) << user_bits) | u
            n_pos += 1
    # counting sort of the keys by bucket (stable, one pass)
    n_buckets = bucket_sizes.shape[0]
    pos = np.empty(n_buckets, np.int64)
    acc = 0
    for b in range(n_buckets):
        pos[b] = acc
        acc += bucket_sizes[b]
    low = (np.int64(1) << (shift + user_bits)) - 1
    for i in range(n_pos):
        key = keys[i]
        b = key >> (shift + user_bits)
        out[pos[b]] = np.uint32(key & low)
        pos[b] += 1
    return n_pos, n_unknown


_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)  # a de Bruijn sequence: (2**k * it) >> 58 differs for every k
_DEBRUIJN_INDEX = np.zeros(64, np.int64)
_DEBRUIJN_INDEX[((np.uint64(1) << np.arange(64, dtype=np.uint64)) * _DEBRUIJN) >> np.uint64(58)] = np.arange(64)


@compiled
def _count_buckets(
    store,
    starts,
    offsets,
    first,
    step,
    shift,
    user_bits,
    bitmap,
    words,
    listeners,
    subset_of,
    n_users,
    subset_seen,
    user_lo,
    out,
    out_base,
    out_count,
):  # pragma: no cover - compiled
    """Listeners of the songs in buckets ``first, first + step, ...`` (exact, via ``bitmap``), each
    new (song, user) pair's user marked in ``subset_seen`` under the song's subset, and the
    bucket's distinct pairs written, sorted, as ``song << 32 | (user_lo + user)`` to
    ``out[out_base[b]:out_base[b] + out_count[b]]``.

    ``store[starts[t] + offsets[t, b] : starts[t] + offsets[t, b + 1]]`` are bucket ``b``'s keys
    from batch ``t``. ``bitmap`` (``words`` is the same memory as uint64) must be all zero; it is
    left all zero. A bucket with few pairs sorts them; a dense one reads them off the bitmap in
    order.
    """
    n_batches = starts.shape[0]
    n_buckets = offsets.shape[1] - 1
    user_mask = (np.int64(1) << user_bits) - 1
    n_words = words.shape[0]
    for b in range(first, n_buckets, step):
        base_song = np.int64(b) << shift
        fresh = 0
        for t in range(n_batches):
            for j in range(starts[t] + offsets[t, b], starts[t] + offsets[t, b + 1]):
                key = store[j]
                byte = key >> 3
                bit = np.uint8(1 << (key & 7))
                old = bitmap[byte]
                if not (old & bit):
                    bitmap[byte] = old | bit
                    song = base_song + (key >> user_bits)
                    listeners[song] += 1
                    subset_seen[subset_of[song] * n_users + (key & user_mask)] = True
                    fresh += 1
        pos = out_base[b]
        if fresh * 64 < n_words:  # sparse: emit in row order, clearing bits, then sort
            for t in range(n_batches):
                for j in range(starts[t] + offsets[t, b], starts[t] + offsets[t, b + 1]):
                    key = store[j]
                    byte = key >> 3
                    bit = np.uint8(1 << (key & 7))
                    if bitmap[byte] & bit:
                        bitmap[byte] &= ~bit
                        song = base_song + (key >> user_bits)
                        out[pos] = (song << 32) | (user_lo + (key & user_mask))
                        pos += 1
            out[out_base[b] : pos] = np.sort(out[out_base[b] : pos])
        else:  # dense: read the set bits in order, lowest bit first (de Bruijn bit index)
            for w in range(n_words):
                word = words[w]
                if word:
                    words[w] = 0
                    base = np.int64(w) * 64
                    while word:
                        low = word & (~word + np.uint64(1))
                        key = base + _DEBRUIJN_INDEX[(low * _DEBRUIJN) >> np.uint64(58)]
                        song = base_song + (key >> user_bits)
                        out[pos] = (song << 32) | (user_lo + (key & user_mask))
                        pos += 1
                        word ^= low
        out_count[b] = pos - out_base[b]


@compiled
def _compact(out, out_base, out_count):  # pragma: no cover - compiled
    """Move each bucket's pairs next to the previous bucket's; returns the number of pairs."""
    n = 0
    for b in range(out_base.shape[0]):
        src = out_base[b]
        for i in range(out_count[b]):
            out[n + i] = out[src + i]
        n += out_count[b]
    return n


@dataclass(frozen=True)
class PairTotals:
    """What :func:`count_pairs` found, by dense song index ``0..n_songs-1``.

    Attributes
    ----------
    plays, events, listeners : np.ndarray [shape=(n_songs,), int64]
        Summed play counts, event rows, distinct users with plays > 0.
    subset_users : np.ndarray [shape=(n_subsets, n_users), bool]
        Whether user ``user_lo + j`` played a song of subset ``i``.
    unknown_ids, unknown_rows, unknown_plays : np.ndarray [shape=(n_unknown,), int64]
        Song ids not in the lookup table (sorted), with their event rows and summed plays.
    pair_keys : np.ndarray [shape=(n_pairs,), int64]
        The distinct (song, user) pairs with plays > 0, sorted, as ``song << 32 | user`` (the
        dense song index and the user id): the keys of :mod:`hitsong.store.keysets`.
    """

    plays: np.ndarray
    events: np.ndarray
    listeners: np.ndarray
    subset_users: np.ndarray
    unknown_ids: np.ndarray
    unknown_rows: np.ndarray
    unknown_plays: np.ndarray
    pair_keys: np.ndarray


def memory_bytes(
    *, rows: int, batch_rows: int, song_range: int, user_range: int, n_subsets: int, n_songs: int, threads: int = 2
) -> int:
    """Bytes :func:`count_pairs` holds for ``rows`` event rows read ``batch_rows`` at a time (the
    dominant terms: stored keys, the distinct pairs, per-thread batches and buffers, bitmaps, tables)."""
    bitmap = (1 << max(BITMAP_BITS, int(user_range - 1).bit_length())) >> 3
    per_thread = 40 * batch_rows + bitmap + n_subsets * user_range + 16 * n_songs
    return 12 * rows + 4 * song_range + threads * per_thread


def count_pairs(
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    song_lut: np.ndarray,
    song_lo: int,
    subset_of: np.ndarray,
    n_subsets: int,
    user_lo: int,
    user_hi: int,
    capacity: int,
    threads: int = 2,
) -> PairTotals:
    """Exact per-song plays, events and listeners of aggregated rows with integer ids.

    Parameters
    ----------
    batches : iterable of (users, songs, counts)
        Integer arrays of equal length ``(n,)`` per batch; counts >= 0, users in
        ``[user_lo, user_hi]``. Read by ``threads`` threads in turn (one decodes the next batch
        while another folds its own in), so the iterator may do the file reading.
    song_lut : np.ndarray [shape=(song_range,), int32]
        Dense song index of song id ``song_lo + k`` at ``k``, -1 where no song has that id.
    song_lo : int
        The song id at ``song_lut[0]``.
    subset_of : np.ndarray [shape=(n_songs,), int]
        Subset index (``0..n_subsets-1``) of each dense song.
    n_subsets : int
        Number of subsets.
    user_lo, user_hi : int
        Smallest and largest user id of all rows (inclusive); ``0 <= user_lo``, ``user_hi < 2**32``.
    capacity : int
        Upper bound on the number of rows in all batches.
    threads : int
        Worker threads (the machine has two cores).

    Returns
    -------
    PairTotals
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    n_songs = int(subset_of.shape[0])
    n_users = int(user_hi) - int(user_lo) + 1
    user_bits = max(1, (n_users - 1).bit_length())
    if user_bits > MAX_USER_BITS:
        raise ValueError(f"user ids span {n_users} values; at most 2**{MAX_USER_BITS} fit")
    if user_lo < 0 or user_hi >= 1 << 32:
        raise ValueError(f"user ids must lie in 0..2**32-1 to form pair keys, got {user_lo}..{user_hi}")
    shift = max(0, BITMAP_BITS - user_bits)
    n_buckets = max(1, (n_songs + (1 << shift) - 1) >> shift)
    subset_of = subset_of.astype(np.int64)
    store = np.empty(int(capacity), np.uint32)
    lock = threading.Lock()
    rows = iter(batches)
    shared = {"filled": 0}
    starts: list[int] = []
    offsets: list[np.ndarray] = []
    unknown_songs: list[np.ndarray] = []
    unknown_counts: list[np.ndarray] = []
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    errors: list[BaseException] = []

    def work() -> None:
        plays = np.zeros(n_songs, np.int64)
        events = np.zeros(n_songs, np.int64)
        parts.append((plays, events))
        keys = np.empty(0, np.int64)
        unknown = np.empty(0, np.int64)
        try:
            while not errors:
                with lock:
                    batch = next(rows, None)
                    if batch is None:
                        return
                    users, songs, counts = batch
                    n = int(users.shape[0])
                    base = shared["filled"]
                    if base + n > store.shape[0]:
                        raise ValueError(f"more rows than the capacity {store.shape[0]} given")
                    shared["filled"] = base + n
                if keys.shape[0] < n:
                    keys, unknown = np.empty(n, np.int64), np.empty(n, np.int64)
                sizes = np.zeros(n_buckets, np.int64)
                _, n_unknown = _partition(
                    users,
                    songs,
                    counts,
                    song_lut,
                    int(song_lo),
                    int(user_lo),
                    user_bits,
                    shift,
                    plays,
                    events,
                    sizes,
                    keys,
                    store[base : base + n],
                    unknown,
                )
                with lock:
                    starts.append(base)
                    offsets.append(np.concatenate([[0], np.cumsum(sizes)]))
                    if n_unknown:
                        idx = unknown[:n_unknown]
                        unknown_songs.append(np.asarray(songs[idx], dtype=np.int64))
                        unknown_counts.append(np.asarray(counts[idx], dtype=np.int64))
        except BaseException as exc:  # re-raised by the caller's thread
            errors.append(exc)

    _run_threads(work, threads)
    if errors:
        raise errors[0]
    plays: np.ndarray = np.sum([p[0] for p in parts], axis=0)
    events: np.ndarray = np.sum([p[1] for p in parts], axis=0)
    listeners = np.zeros(n_songs, np.int64)
    seen_parts: list[np.ndarray] = []
    pair_keys = np.zeros(0, np.int64)
    if starts:
        start_arr = np.asarray(starts, np.int64)
        offset_arr = np.stack(offsets)
        raw = (offset_arr[:, 1:] - offset_arr[:, :-1]).sum(axis=0)
        out_base = np.concatenate([[0], np.cumsum(raw)[:-1]]).astype(np.int64)
        out_count = np.zeros(n_buckets, np.int64)
        out = np.empty(int(raw.sum()), np.int64)
        bitmap_bytes = max(8, (1 << (shift + user_bits)) >> 3)
        turn = iter(range(threads))

        def count() -> None:
            seen = np.zeros(n_subsets * n_users, np.bool_)
            with lock:
                first = next(turn)
                seen_parts.append(seen)
            bitmap = np.zeros(bitmap_bytes, np.uint8)
            _count_buckets(
                store,
                start_arr,
                offset_arr,
                first,
                threads,
                shift,
                user_bits,
                bitmap,
                bitmap.view(np.uint64),
                listeners,
                subset_of,
                n_users,
                seen,
                int(user_lo),
                out,
                out_base,
                out_count,
            )

        _run_threads(count, threads)
        pair_keys = out[: _compact(out, out_base, out_count)]
    ids, unknown_rows, unknown_plays = unknown_totals(unknown_songs, unknown_counts)
    seen = np.logical_or.reduce(seen_parts) if seen_parts else np.zeros(n_subsets * n_users, np.bool_)
    return PairTotals(
        plays=plays,
        events=events,
        listeners=listeners,
        subset_users=seen.reshape(-1, n_users),
        unknown_ids=ids,
        unknown_rows=unknown_rows,
        unknown_plays=unknown_plays,
        pair_keys=pair_keys,
    )


def unknown_totals(songs: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct unknown song ids (sorted) with their event rows and summed plays."""
    if not songs or not sum(s.size for s in songs):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    ids, inverse = np.unique(np.concatenate(songs), return_inverse=True)
    rows = np.bincount(inverse, minlength=ids.size).astype(np.int64)
    plays = np.zeros(ids.size, np.int64)
    np.add.at(plays, inverse, np.concatenate(counts))
    return ids, rows, plays


def _run_threads(fn: Callable[[], None], threads: int) -> None:
    """Run ``fn`` in ``threads`` threads (one of them the caller's) and wait for all."""
    workers = [threading.Thread(target=fn) for _ in range(threads - 1)]
    for w in workers:
        w.start()
    fn()
    for w in workers:
        w.join()
