"""A catalogue-sized store: per-song statistics for 10 M songs, as a warehouse would send them.

Generates (with DuckDB, seeded, cached) a songs file and a song-stats file of ``--songs`` rows
(two markets, release dates over three years, heavy-tailed playcounts, listeners <= playcount),
then times, in this process:

- ``ingest(db, None, songs, song_stats=F, window_start=...)`` into a new database (validation,
  numbering, per-song totals; ``song_stats`` and ``subset_stats`` are views of them);
- the same call again (skipped: nothing new);
- ``hitsong.store.read.stats`` and ``hit_score_frame`` (what the dashboard's Data page reads);
- ``sample`` of the top 10,000 songs per market.

Baseline in the same run: DuckDB reading the song-stats file and computing the hit score
(``SELECT song_id, ln(1+playcount)*ln(1+listeners) ... ``) into a table, nothing else.

Command: ``.venv/bin/python -m benchmarks.bench_song_stats [--songs 10000000] [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

log = logging.getLogger("benchmarks.bench_song_stats")

WINDOW_START = date(2016, 1, 1)


def write_files(folder: Path, n: int, seed: float = 0.2017) -> tuple[Path, Path]:
    """The songs and song-stats Parquet files for ``n`` songs (cached by size)."""
    folder.mkdir(parents=True, exist_ok=True)
    songs, stats = folder / f"songs_{n}.parquet", folder / f"song_stats_{n}.parquet"
    if songs.exists() and stats.exists():
        return songs, stats
    con = duckdb.connect()
    con.execute("SELECT setseed(?)", [seed])
    con.execute(
        f"""COPY (SELECT 's' || i AS song_id, 'title ' || i AS title, 'artist ' || (i % 90000) AS artist,
                         CASE WHEN hash(i) % 5 < 3 THEN 'mandarin' ELSE 'western' END AS subset,
                         DATE '2014-01-01' + CAST(hash(i + 1) % 1095 AS INTEGER) AS release_date,
                         'audio/' || i || '.mp3' AS audio_path
                  FROM range({int(n)}) t(i)) TO '{songs}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT song_id, playcount, CAST(least(playcount, listeners) AS BIGINT) AS listeners,
                         CAST(least(playcount, listeners) AS BIGINT) AS events
                  FROM (SELECT 's' || i AS song_id,
                               CAST(floor(exp(random() * 12)) - 1 AS BIGINT) AS playcount,
                               CAST(floor(exp(random() * 10)) AS BIGINT) AS listeners
                        FROM range({int(n)}) t(i))
                  WHERE playcount > 0 OR random() < 0.5) TO '{stats}' (FORMAT parquet)"""
    )
    return songs, stats


def main(argv: list[str] | None = None) -> int:
    from hitsong.store.ingest import ingest
    from hitsong.store.read import hit_score_frame, stats
    from hitsong.store.sample import sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=10_000_000)
    parser.add_argument("--data-dir", type=Path, default=None, help="default $HITSONG_HOME/bench/song_stats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from hitsong.settings import get_settings

    folder = args.data_dir or (get_settings().home / "bench" / "song_stats")
    songs, stats_file = write_files(folder, args.songs)
    work = folder / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    db = work / "store.duckdb"
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    con = duckdb.connect(str(work / "baseline.duckdb"))
    con.execute(
        "CREATE TABLE s AS SELECT song_id, ln(1 + playcount) * ln(1 + listeners) AS hit FROM read_parquet(?)",
        [str(stats_file)],
    )
    con.close()
    timings["baseline_duckdb_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = ingest(db, None, songs, song_stats=stats_file, window_start=WINDOW_START, memory_limit_mb=8192)
    timings["ingest_s"] = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    again = ingest(db, None, songs, song_stats=stats_file, window_start=WINDOW_START)
    timings["reingest_skipped_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = stats(db)
    timings["stats_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = hit_score_frame(db)
    timings["hit_score_frame_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample(db, per_subset=10_000, seed=1)
    timings["sample_s"] = time.perf_counter() - t0
    result = {
        "songs": report.songs,
        "played": report.songs_played,
        "plays": report.plays,
        "skipped_again": again.skipped,
        "markets": len(summary),
        "hit_rows": len(frame),
        "peak_mb_after_ingest": round(peak),
        "db_mb": round(db.stat().st_size / 2**20),
        **{k: round(v, 2) for k, v in timings.items()},
        "ingest_over_baseline": round(timings["ingest_s"] / timings["baseline_duckdb_s"], 1),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
