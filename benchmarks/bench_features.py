"""Feature-extraction benchmark: ours vs the naive librosa path vs the decode-only floor.

On generated 4-minute 44.1 kHz stereo MP3 files (written in blocks), per song, one process:

(a) naive: ``librosa.load(path, sr=22050)`` of the whole file, cut the middle 60 s,
    ``librosa.feature.melspectrogram``, log compression;
(b) ours: ``hitsong.features.compute_song_features(path, AudioConfig(), "none")`` (decode the
    middle only, soxr_hq resample, numpy STFT + mel);
(c) floor: seek + decode the middle 60 s with soundfile, nothing else.

Each method runs over all files in a block (as a worker does), the block order rotated per
round so that the busy shared machine slows all alike; per-song times are medians. (a) and (b)
must agree within ``PATH_ATOL``. Then ours with a process pool of 1 and 2 workers (warmed up) gives the scaling.

Command: ``.venv/bin/python -m benchmarks.bench_features [--songs 4 --rounds 3 --pool-songs 16]``
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf

from hitsong.audio import AudioConfig, log_compress
from hitsong.features import compute_song_features

log = logging.getLogger("benchmarks.bench_features")

#: The stated agreement of ours with the naive path (log10 units; the tests use the same).
PATH_ATOL = 1e-3
SR = 44100
SECONDS = 240.0
BLOCK = 65536
SECTION = "## Features"


def synth_song(seed: int) -> np.ndarray:
    """4 minutes of stereo music-like audio: harmonic notes on a beat, a bass line, noise."""
    rng = np.random.default_rng(seed)
    n = int(SECONDS * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(80, 140)
    for k in range(int(SECONDS / beat)):
        lo, hi = int(k * beat * SR), min(n, int((k + 2) * beat * SR))
        tt = t[lo:hi] - t[lo]
        f0 = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        env = np.exp(-2.5 * tt)
        for h in range(1, 6):
            y[lo:hi] += env * np.sin(2 * np.pi * f0 * h * tt) / h
        y[lo:hi] += 0.8 * env * np.sin(2 * np.pi * (f0 / 4) * tt)
    y = 0.25 * y / np.abs(y).max() + 0.01 * rng.standard_normal(n)
    return np.stack([y, np.roll(y, 211)], axis=1).astype(np.float32)


def make_files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"song{i}.mp3"
        if not path.exists():
            data = synth_song(i)
            tmp = path.with_suffix(".part.mp3")
            with sf.SoundFile(str(tmp), "w", SR, 2, format="MP3") as f:
                for j in range(0, data.shape[0], BLOCK):
                    f.write(data[j : j + BLOCK])
            tmp.rename(path)
        paths.append(path)
    return paths


def naive(path: Path, cfg: AudioConfig) -> np.ndarray:
    import librosa

    y, _ = librosa.load(str(path), sr=cfg.sr)
    start = (len(y) - cfg.n_samples) // 2
    y = y[start : start + cfg.n_samples]
    mel = librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    return log_compress(mel)


def ours(path: Path, cfg: AudioConfig) -> np.ndarray:
    return compute_song_features(path, cfg, "none").mel


def floor(path: Path, cfg: AudioConfig) -> np.ndarray:
    with sf.SoundFile(str(path)) as f:
        need = int(cfg.seconds * f.samplerate)
        f.seek((f.frames - need) // 2)
        return f.read(need, dtype="float32")


def _timed(fn, path: Path, cfg: AudioConfig) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn(path, cfg)
    return time.perf_counter() - t0, out


def _pool_rate(paths: list[Path], cfg: AudioConfig, workers: int, n_songs: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        list(pool.map(compute_song_features, paths[:workers] * 2, [cfg] * 2 * workers, ["none"] * 2 * workers))
        jobs = [paths[i % len(paths)] for i in range(n_songs)]
        t0 = time.perf_counter()
        list(pool.map(compute_song_features, jobs, [cfg] * n_songs, ["none"] * n_songs))
        return n_songs / (time.perf_counter() - t0)


def run(n_songs: int, rounds: int, pool_songs: int, workdir: Path) -> str:
    cfg = AudioConfig()
    log.info("writing %d 4-minute 44.1 kHz stereo MP3 files to %s", n_songs, workdir)
    paths = make_files(workdir, n_songs)
    methods = {"naive": naive, "ours": ours, "floor": floor}
    for fn in methods.values():  # warm-up: librosa's first call JIT-compiles
        fn(paths[0], cfg)
    times: dict[str, list[float]] = {m: [] for m in methods}
    outs: dict[str, dict[Path, np.ndarray]] = {m: {} for m in methods}
    order = list(methods)
    for r in range(rounds):
        # each method over all files in a block (as a worker runs: song after song), the block
        # order rotated per round so that drifts in machine load hit every method alike
        for name in order[r % len(order) :] + order[: r % len(order)]:
            for path in paths:
                dt, outs[name][path] = _timed(methods[name], path, cfg)
                times[name].append(dt)
        log.info("round %d/%d done", r + 1, rounds)
    max_diff = max(float(np.abs(outs["naive"][p] - outs["ours"][p]).max()) for p in paths)
    med = {m: statistics.median(v) for m, v in times.items()}
    rate = {m: 1.0 / v for m, v in med.items()}
    log.info("per-song medians: %s", {m: round(v, 4) for m, v in med.items()})
    pool1 = _pool_rate(paths, cfg, 1, pool_songs)
    pool2 = _pool_rate(paths, cfg, 2, pool_songs)
    load = os.getloadavg()[0]
    ok = "yes" if max_diff <= PATH_ATOL else "NO"
    return "\n".join(
        [
            SECTION,
            "",
            "Feature extraction per song on generated 4-minute 44.1 kHz stereo MP3 files (LAME via",
            "libsndfile), paper config (middle 60 s, 22,050 Hz, 128 x 646 log-mel), tagger off.",
            "(a) naive: `librosa.load(path, sr=22050)` whole file, cut the middle 60 s,",
            "`librosa.feature.melspectrogram`; (b) ours: `compute_song_features` (seek + decode the",
            "middle only, soxr_hq resample, numpy STFT + mel); (c) floor: seek + decode the middle 60 s.",
            "Each method runs over all files in a block, block order rotated per round; per-song medians.",
            "",
            f"Command: `.venv/bin/python -m benchmarks.bench_features --songs {n_songs} --rounds {rounds} "
            f"--pool-songs {pool_songs}`",
            "",
            f"Run {date.today().isoformat()}, {os.cpu_count()}-core {platform.machine()} shared with other jobs "
            f"(load average {load:.1f} at the end), one process, {n_songs} files x {rounds} rounds:",
            "",
            "| path | s/song | songs/s | vs naive | vs floor |",
            "|---|---|---|---|---|",
            *(
                f"| {label} | {med[m]:.3f} | {rate[m]:.2f} | {rate[m] / rate['naive']:.1f}x | "
                f"{med[m] / med['floor']:.2f}x the floor's time |"
                for m, label in (
                    ("naive", "(a) naive librosa"),
                    ("ours", "(b) ours"),
                    ("floor", "(c) decode-only floor"),
                )
            ),
            "",
            f"Agreement (a) vs (b): max |difference| {max_diff:.2e} (log10 units) over all files; "
            f"stated tolerance {PATH_ATOL:g}: {ok}.",
            "",
            f"Scaling, ours in a spawn process pool (warmed up), {pool_songs} songs: 1 worker "
            f"{pool1:.2f} songs/s, 2 workers {pool2:.2f} songs/s ({pool2 / pool1:.2f}x).",
            "",
            "Targets: ours >= 5x naive per core; ours within 1.5x of the floor; near-linear scaling.",
            "",
        ]
    )


def write_section(text: str, path: Path) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others alone."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-songs", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hitsong-bench-features")
    parser.add_argument("--no-write", action="store_true", help="print only, do not edit BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = run(args.songs, args.rounds, args.pool_songs, args.workdir)
    log.info("\n%s", text)
    if not args.no_write:
        write_section(text, Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
