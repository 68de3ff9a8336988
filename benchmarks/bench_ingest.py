"""Ingest benchmark: ``hitsong.store.ingest.ingest`` vs plain pandas, and an append vs the first ingest.

Generates (once, cached by size and seed) aggregated listening events at the paper's scale,
50 million ``(user_id, song_id, play_count)`` rows over 30,000 users and 125,000 songs, with
heavy tails on every axis a streaming service shows:

- song popularity: Zipf-like weights ``(rank + 10) ** -1.1`` (80 %) mixed with a uniform long
  tail (20 %), over a shuffled catalogue;
- user activity: log-normal (sigma 1.3) number of distinct songs per user, capped at 10 % of
  the catalogue;
- plays per (user, song): ``1 + floor(lognormal(0, 1.2))``.

and a second file 1 % of its size (``--append-share``) from the same population (same users'
activity and songs' popularity, other draws): a day's log appended to the year's store.

Then it times, each in a fresh subprocess (peak memory = that process's ``ru_maxrss``):

- ``ours``: ``ingest`` into a new DuckDB file (validation, content hashes, per-song totals
  (``song_stats`` with hit scores and release quarters is a view of them), per-subset distinct
  listeners, the key sets kept for incremental ingest, the log);
- ``append``: ``ingest`` of the small file into the database ``ours`` just wrote (read only the
  new file, check its pairs against the stored key sets, update the songs it touched);
- ``pandas``: ``read_parquet``, ``groupby(song_id)`` with ``sum`` of plays and ``nunique``
  users, and the hit score,

checks that ours and pandas give the same playcount and listeners for every song, and that the
appended store equals a fresh ingest of both files (and pandas on both), and prints the ratios.
The machine may be shared, so the contenders alternate ``--repeat`` times and each one's best
time counts (peak memory: the largest of its runs); the append ratio is taken within each
repetition (append / first ingest of the same repetition), the best of them reported with all.

Run::

    .venv/bin/python -m benchmarks.bench_ingest [--events 50000000] [--append-share 0.01] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("benchmarks.bench_ingest")


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and seed of the synthetic data.

    Parameters
    ----------
    n_events : int
        Rows of the aggregated events file (distinct user-song pairs).
    n_users, n_songs : int
        Catalogue sizes (paper: 30,000 users, 125,000 songs).
    seed : int
        Seed of every random draw.
    users_per_chunk : int
        Users generated per chunk (written as row groups of at most 1M rows).
    draw_seed : int or None
        Seed of the (user, song) draws, when they should differ from ``seed`` while the songs'
        popularity and the users' activity stay those of ``seed`` (an append to the same data).
    """

    n_events: int = 50_000_000
    n_users: int = 30_000
    n_songs: int = 125_000
    seed: int = 2017
    users_per_chunk: int = 1_000
    draw_seed: int | None = None


def _rows_per_user(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    cap = max(1, cfg.n_songs // 10)
    w = rng.lognormal(0.0, 1.3, size=cfg.n_users)
    rows = np.minimum(np.floor(w / w.sum() * cfg.n_events), cap).astype(np.int64)
    rows = np.maximum(rows, 1)
    # hand the rounding and cap remainder to the users below the cap, largest first
    deficit = cfg.n_events - int(rows.sum())
    order = np.argsort(-w)
    i = 0
    while deficit > 0:
        u = order[i % cfg.n_users]
        add = min(deficit, cap - int(rows[u]))
        if add > 0:
            rows[u] += add
            deficit -= add
        i += 1
        if i > 10 * cfg.n_users:
            raise ValueError(f"n_events={cfg.n_events} too large for {cfg.n_users} users x cap {cap}")
    return rows


def _chunk(
    users: np.ndarray, need: np.ndarray, cdf: np.ndarray, n_songs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct songs for each user in ``users`` (``need[i]`` of them), drawn by popularity.

    Draws with replacement, keeps the distinct (user, song) keys, trims each user to its
    quota in a random order, and draws again for the users still short.
    """
    lo = int(users[0])
    quota = need.astype(np.int64)
    keys = np.empty(0, dtype=np.int64)
    short_u, short_n = users, quota
    while short_u.size:
        draws = np.repeat(short_u.astype(np.int64), np.ceil(short_n * 1.25).astype(np.int64) + 4)
        songs = np.searchsorted(cdf, rng.random(draws.size), side="right").clip(0, n_songs - 1)
        keys = np.unique(np.concatenate([keys, draws * n_songs + songs]))
        ku = keys // n_songs
        order = np.lexsort((rng.random(keys.size), ku))
        keys, ku = keys[order], ku[order]
        rank = np.arange(keys.size) - np.searchsorted(ku, ku, side="left")
        keys = np.sort(keys[rank < quota[ku - lo]])
        have = np.bincount(keys // n_songs - lo, minlength=users.size)
        short = have < quota
        short_u, short_n = users[short], (quota - have)[short]
    return keys // n_songs, keys % n_songs


def write_events(path: Path, cfg: SynthConfig) -> int:
    """Write the aggregated events Parquet file; return the number of rows."""
    rng = np.random.default_rng(cfg.seed)
    weights = (np.arange(cfg.n_songs) + 10.0) ** -1.1
    weights = 0.8 * weights / weights.sum() + 0.2 / cfg.n_songs  # a long tail everyone reaches
    weights = weights[rng.permutation(cfg.n_songs)]
    cdf = np.cumsum(weights) / weights.sum()
    rows = _rows_per_user(cfg, rng)
    if cfg.draw_seed is not None:
        rng = np.random.default_rng(cfg.draw_seed)
    schema = pa.schema([("user_id", pa.int32()), ("song_id", pa.int32()), ("play_count", pa.int32())])
    total = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for lo in range(0, cfg.n_users, cfg.users_per_chunk):
            users = np.arange(lo, min(lo + cfg.users_per_chunk, cfg.n_users))
            u, s = _chunk(users, rows[users], cdf, cfg.n_songs, rng)
            plays = 1 + np.floor(rng.lognormal(0.0, 1.2, size=u.size)).astype(np.int64)
            perm = rng.permutation(u.size)
            table = pa.table(
                {
                    "user_id": pa.array(u[perm].astype(np.int32)),
                    "song_id": pa.array(s[perm].astype(np.int32)),
                    "play_count": pa.array(np.minimum(plays[perm], 100_000).astype(np.int32)),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=1_000_000)
            total += u.size
    return total


def write_songs(path: Path, cfg: SynthConfig) -> None:
    """Write the songs Parquet file: two subsets, release dates over three years."""
    rng = np.random.default_rng(cfg.seed + 1)
    ids = np.arange(cfg.n_songs, dtype=np.int32)
    days = rng.integers(0, 3 * 365, size=cfg.n_songs)
    release = np.datetime64("2014-01-01") + days.astype("timedelta64[D]")
    table = pa.table(
        {
            "song_id": pa.array(ids),
            "title": pa.array([f"song {i}" for i in ids]),
            "artist": pa.array([f"artist {i % 9000}" for i in ids]),
            "subset": pa.array(np.where(rng.random(cfg.n_songs) < 0.6, "mandarin", "western")),
            "release_date": pa.array(release.astype("datetime64[D]")),
            "audio_path": pa.array([f"audio/{i}.mp3" for i in ids]),
        }
    )
    pq.write_table(table, str(path))


# --------------------------------------------------------------------------------------------
# The two contenders, each run in its own process
# --------------------------------------------------------------------------------------------

WINDOW_START = date(2016, 1, 1)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_ours(steps: list[list[Path]], songs: Path, db: Path, out: Path, *, fresh: bool) -> dict:
    """Ingest ``steps`` one after another into ``db`` (a new one when ``fresh``), timing each call;
    write playcount/listeners per song to ``out`` (untimed)."""
    from hitsong.store import connect
    from hitsong.store.ingest import ingest
    from hitsong.store.keysets import keys_dir

    if fresh:
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
        shutil.rmtree(keys_dir(db), ignore_errors=True)
    seconds = []
    for events in steps:
        t0 = time.perf_counter()
        report = ingest(db, events, songs, window_start=WINDOW_START)
        seconds.append(time.perf_counter() - t0)
        if report.skipped or report.new_event_files != len(events):
            raise RuntimeError(f"expected {len(events)} new file(s): {report.message}")
    peak = _peak_mb()
    with connect(db, read_only=True) as con:
        con.execute(
            "COPY (SELECT song_id, playcount, listeners, hit_score FROM song_stats) TO $o (FORMAT parquet)",
            {"o": str(out)},
        )
    return {
        "seconds": seconds[0],
        "steps_s": seconds,
        "peak_mb": peak,
        "rows": report.event_rows,
        "plays": report.plays,
    }


def run_pandas(events: list[Path], out: Path) -> dict:
    """The same aggregation in plain pandas: read, group by song, sum and nunique, hit score."""
    import pandas as pd

    t0 = time.perf_counter()
    frame = pd.concat([pd.read_parquet(p) for p in events]) if len(events) > 1 else pd.read_parquet(events[0])
    per_song = frame.groupby("song_id").agg(playcount=("play_count", "sum"), listeners=("user_id", "nunique"))
    per_song["hit_score"] = np.log1p(per_song["playcount"]) * np.log1p(per_song["listeners"])
    seconds = time.perf_counter() - t0
    peak = _peak_mb()
    per_song.reset_index().to_parquet(out, index=False)
    return {"seconds": seconds, "peak_mb": peak, "rows": len(frame), "plays": int(per_song["playcount"].sum())}


def _child(args: argparse.Namespace) -> None:
    if args.child == "pandas":
        result = run_pandas(args.events_file, args.out)
    else:
        steps = [args.events_file] + ([args.append_file] if args.append_file else [])
        result = run_ours(steps, args.songs_file, args.db, args.out, fresh=args.child != "append")
    sys.stdout.write(json.dumps(result) + "\n")


def _spawn(kind: str, events: list[Path], songs: Path, db: Path, out: Path, *, then: list[Path] | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_ingest", "--child", kind]
    for e in events:
        cmd += ["--events-file", str(e)]
    for e in then or []:
        cmd += ["--append-file", str(e)]
    cmd += ["--songs-file", str(songs), "--db", str(db), "--out", str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def duckdb_anti_join(events: Path, small: Path, work: Path) -> float:
    """Seconds DuckDB takes to find the append's new (song, user) pairs by an anti-join with the
    first file's pairs, kept as a DuckDB table (the alternative the key sets replace; the table is
    built untimed)."""
    import duckdb

    con = duckdb.connect(str(work / "antijoin.duckdb"))
    try:
        key = "(CAST(song_id AS BIGINT) << 32) | user_id"
        con.execute(
            f"CREATE TABLE pairs AS SELECT DISTINCT {key} AS k FROM read_parquet(?) WHERE play_count > 0", [str(events)]
        )
        con.execute(
            f"CREATE TEMP TABLE new AS SELECT DISTINCT {key} AS k FROM read_parquet(?) WHERE play_count > 0",
            [str(small)],
        )
        t0 = time.perf_counter()
        con.execute("SELECT k >> 32 AS song, count(*) FROM new ANTI JOIN pairs USING (k) GROUP BY ALL").fetchall()
        return time.perf_counter() - t0
    finally:
        con.close()


def _same(a_path: Path, b_path: Path) -> bool:
    """Same playcount and listeners for every played song (song ids compared as integers)."""
    import pandas as pd

    a, b = pd.read_parquet(a_path), pd.read_parquet(b_path)
    for frame in (a, b):
        frame["song_id"] = frame["song_id"].astype("int64")
    a = a[a["playcount"] > 0]
    b = b[b["playcount"] > 0]
    merged = a.merge(b, on="song_id", suffixes=("_a", "_b"))
    return bool(
        len(merged) == len(a) == len(b)
        and (merged["playcount_a"] == merged["playcount_b"]).all()
        and (merged["listeners_a"] == merged["listeners_b"]).all()
    )


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _data_files(cfg: SynthConfig, folder: Path, append_share: float) -> tuple[Path, Path, Path]:
    """The events file, the append file (``append_share`` of its rows, other draws) and the songs file."""
    folder.mkdir(parents=True, exist_ok=True)
    small = replace(cfg, n_events=max(1, int(round(cfg.n_events * append_share))), draw_seed=cfg.seed + 1)
    files = []
    for c in (cfg, small):
        tag = f"_{c.draw_seed}" if c.draw_seed is not None else ""
        path = folder / f"events_{c.n_events}_{c.n_users}_{c.n_songs}_{c.seed}{tag}.parquet"
        if not path.exists():
            log.info("generating %d events (cached at %s)", c.n_events, path)
            tmp = path.with_suffix(".tmp")
            t0 = time.perf_counter()
            write_events(tmp, c)
            tmp.rename(path)
            log.info("generated in %.0f s", time.perf_counter() - t0)
        files.append(path)
    songs = folder / f"songs_{cfg.n_songs}_{cfg.seed}.parquet"
    if not songs.exists():
        write_songs(songs, cfg)
    return files[0], files[1], songs


def main(argv: list[str] | None = None) -> int:
    """Parse options; run the benchmark (or, with ``--child``, one contender)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000_000, help="aggregated event rows (default 50M)")
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--songs", type=int, default=125_000)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--append-share", type=float, default=0.01, help="size of the appended file (default 1 %%)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating; the best counts")
    parser.add_argument("--anti-join", action="store_true", help="also time the DuckDB anti-join the key sets replace")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the generated files and the database go (default $HITSONG_HOME/bench)",
    )
    parser.add_argument("--child", choices=["ours", "append", "warm", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--events-file", type=Path, action="append", help=argparse.SUPPRESS)
    parser.add_argument("--append-file", type=Path, action="append", help=argparse.SUPPRESS)
    parser.add_argument("--songs-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.child:
        logging.getLogger().setLevel(logging.WARNING)
        _child(args)
        return 0

    from hitsong.settings import get_settings

    cfg = SynthConfig(n_events=args.events, n_users=args.users, n_songs=args.songs, seed=args.seed)
    folder = args.data_dir or (get_settings().home / "bench")
    events, small, songs = _data_files(cfg, folder, args.append_share)
    work = folder / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    db = work / "bench.duckdb"
    # the machine is shared: alternate the contenders and keep each one's best run
    runs: dict[str, list[dict]] = {"pandas": [], "ours": [], "append": [], "warm": []}
    for i in range(args.repeat):
        for kind in ("pandas", "ours", "append", "warm"):
            log.info("run %d/%d: %s ...", i + 1, args.repeat, kind)
            if kind == "warm":  # the first ingest and the append in one process, into another database
                res = _spawn(kind, [events], songs, work / "warm.duckdb", work / "warm.parquet", then=[small])
            else:
                res = _spawn(kind, [small] if kind == "append" else [events], songs, db, work / f"{kind}.parquet")
            runs[kind].append(res)
            log.info(
                "  %s s, peak %.0f MB", [round(x, 3) for x in res.get("steps_s", [res["seconds"]])], res["peak_mb"]
            )
    log.info("checks: a fresh ingest of both files, and pandas on both ...")
    _spawn("ours", [events, small], songs, work / "both.duckdb", work / "both.parquet")
    _spawn("pandas", [events, small], songs, db, work / "pandas_both.parquet")
    pandas = min(runs["pandas"], key=lambda r: r["seconds"])
    ours = min(runs["ours"], key=lambda r: r["seconds"])
    append = min(runs["append"], key=lambda r: r["seconds"])
    cold = [a["seconds"] / o["seconds"] for a, o in zip(runs["append"], runs["ours"], strict=True)]
    warm = [w["steps_s"][1] / w["steps_s"][0] for w in runs["warm"]]
    same = _same(work / "ours.parquet", work / "pandas.parquet")
    same_append = all(
        _same(work / name, work / ref)
        for name in ("append.parquet", "warm.parquet")
        for ref in ("both.parquet", "pandas_both.parquet")
    )
    result = {
        "events": ours["rows"],
        "users": cfg.n_users,
        "songs": cfg.n_songs,
        "ours_s": round(ours["seconds"], 2),
        "pandas_s": round(pandas["seconds"], 2),
        "speedup": round(pandas["seconds"] / ours["seconds"], 2),
        "ours_peak_mb": round(max(r["peak_mb"] for r in runs["ours"])),
        "pandas_peak_mb": round(max(r["peak_mb"] for r in runs["pandas"])),
        "ours_all_s": [round(r["seconds"], 2) for r in runs["ours"]],
        "pandas_all_s": [round(r["seconds"], 2) for r in runs["pandas"]],
        "append_rows": append["rows"] - ours["rows"],
        "append_cold_s": [round(r["seconds"], 3) for r in runs["append"]],
        "append_cold_over_first": [round(r, 4) for r in cold],
        "append_cold_over_first_median": round(statistics.median(cold), 4),
        "append_peak_mb": round(max(r["peak_mb"] for r in runs["append"])),
        "warm_first_s": [round(w["steps_s"][0], 3) for w in runs["warm"]],
        "warm_append_s": [round(w["steps_s"][1], 3) for w in runs["warm"]],
        "append_warm_over_first": [round(r, 4) for r in warm],
        "append_warm_over_first_median": round(statistics.median(warm), 4),
        "same_results": same,
        "append_equals_both_at_once": same_append,
    }
    if args.anti_join:
        log.info("the same search as a DuckDB anti-join ...")
        result["duckdb_anti_join_s"] = round(duckdb_anti_join(events, small, work), 2)
    sys.stdout.write(json.dumps(result) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if same and same_append else 1


if __name__ == "__main__":
    raise SystemExit(main())
