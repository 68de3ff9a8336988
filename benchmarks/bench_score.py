"""Catalog scoring throughput: ``hitsong score`` with 1 and 2 workers against ``hitsong predict``.

What it measures, in one run, on the same generated songs (4-minute 44.1 kHz stereo MP3s, the
paper's 60-s segment, MTT_musicnn hearing all of it) and the same registered version (an m6
bundle at the paper's sizes, random weights: time does not depend on the values, logged as the
pyfunc on a real ``mlflow server``, registered and promoted):

1. baseline, one command line per song: ``hitsong predict SONG`` as its own process for each of
   ``--predict-songs`` songs (imports, scorer load and warm-up paid per song);
2. baseline, one process: ``hitsong predict SONG1 ... SONGN`` (one scorer, songs one after another);
3. ``hitsong score FOLDER --workers 1`` and ``--workers 2`` into fresh DuckDB files.

Songs per second are wall-clock over the whole command (process start included), so every row
is what a user waits for; for ``hitsong score`` the rate inside the run (after start-up, from its
JSON report) is given too.

Run: ``.venv/bin/python -m benchmarks.bench_score [--songs 12 --predict-songs 3]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_predict import make_bundle, write_mp3

log = logging.getLogger("bench_score")

ROOT = Path(__file__).resolve().parents[1]
SONG_SECONDS = 240.0


def _register(bundle: Path, uri: str) -> str:
    """Log ``bundle`` as training does, register it and make it champion; the version."""
    from hitsong.tracking import run_scope
    from hitsong.training import runlayout
    from registry.models import promote, register
    from registry.tracking import MlflowRunLogger

    logger = MlflowRunLogger.for_subset("bench", "bench", tracking_uri=uri)
    tags = {runlayout.TAG_KIND: runlayout.REPETITION, runlayout.TAG_METHOD: "m6", runlayout.TAG_REPETITION: "0"}
    with run_scope(logger, "m6", tags={runlayout.TAG_KIND: runlayout.METHOD, runlayout.TAG_METHOD: "m6"}) as parent:
        with run_scope(logger, "m6 rep 0", parent=parent, tags=tags) as child:
            logger.log_metrics(child, {"val_spearman_rho": 0.3, "test_spearman_rho": 0.3})
            logger.log_bundle(child, bundle)
    done = register("bench", tracking_uri=uri)
    promote(done["model"], done["version"], "benchmark", tracking_uri=uri)
    return str(done["version"])


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=12, help="songs scored by each whole-folder row")
    parser.add_argument("--predict-songs", type=int, default=3, help="songs of the one-process-per-song baseline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from registry.server import ServerConfig, free_port, start_server, stop_server

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "songs"
        folder.mkdir()
        t0 = time.perf_counter()
        songs = [write_mp3(folder / f"song{i:02d}.mp3", seconds=SONG_SECONDS, seed=i) for i in range(args.songs)]
        log.info("wrote %d songs of %.0f s in %.0f s", len(songs), SONG_SECONDS, time.perf_counter() - t0)
        config = ServerConfig(mlflow_dir=tmp_path / "mlflow", port=free_port())
        info = start_server(config, reuse=False)
        try:
            version = _register(make_bundle(tmp_path, "m6"), info.uri)
            env = {**os.environ, "HITSONG_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": info.uri}
            hitsong = [sys.executable, "-m", "hitsong"]
            model = ["--model", f"models:/hitsong-bench/{version}", "--tracking-uri", info.uri]
            load = [os.getloadavg()[0]]

            seconds = 0.0
            for song in songs[: args.predict_songs]:
                seconds += _timed([*hitsong, "predict", str(song), *model, "--device", "cpu"], env)[0]
            rows.append({"mode": "`hitsong predict SONG`, one process per song", "songs": args.predict_songs,
                         "seconds": seconds})  # fmt: skip
            seconds, _ = _timed([*hitsong, "predict", *map(str, songs), *model, "--device", "cpu"], env)
            rows.append({"mode": "`hitsong predict SONG...`, one process", "songs": len(songs), "seconds": seconds})
            for workers in (1, 2):
                db = tmp_path / f"scores-{workers}.duckdb"
                cmd = [*hitsong, "score", str(folder), *model, "--db", str(db), "--workers", str(workers)]
                seconds, out = _timed(cmd, env)
                report = json.loads(out.strip().splitlines()[-1])
                if report["scored"] != len(songs):
                    raise RuntimeError(f"hitsong score scored {report['scored']} of {len(songs)} songs: {report}")
                rows.append({"mode": f"`hitsong score FOLDER --workers {workers}`", "songs": len(songs),
                             "seconds": seconds, "inside": report["songs_per_second"]})  # fmt: skip
            load.append(os.getloadavg()[0])
        finally:
            stop_server(config.mlflow_dir)
    base = rows[0]["songs"] / rows[0]["seconds"]  # type: ignore[operator]
    print(f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end; {os.cpu_count()} cores\n")
    print("| mode | songs | wall s | songs/s | vs one process per song | songs/s after start-up |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rate = r["songs"] / r["seconds"]  # type: ignore[operator]
        inside = f"{r['inside']:.2f}" if "inside" in r else "–"
        print(f"| {r['mode']} | {r['songs']} | {r['seconds']:.1f} | {rate:.2f} | {rate / base:.1f}x | {inside} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
