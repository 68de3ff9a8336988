"""Feature-extraction benchmark: ours vs two librosa paths vs the decode-only floor, then songs/s.

On 4-minute 44.1 kHz stereo MP3 files, real music and generated: the three reference clips of
``tests/data/musicnn/audio`` (16 kHz recordings) tiled to 4 minutes, and ``--songs`` generated
songs (notes on a beat, bass, noise); per song, one process:

(a) whole file: ``librosa.load(path, sr=22050)`` of the whole file, cut the middle 60 s,
    ``librosa.feature.melspectrogram``, log compression;
(b) offset/duration: ``librosa.load(path, sr=22050, offset=middle, duration=60)`` (librosa
    seeks too), the same mel;
(c) ours: ``hitsong.features.compute_song_features(path, AudioConfig(), "none")`` (seek with a
    1-s MP3 pre-roll, decode the middle only, soxr_hq resample, numpy STFT + mel);
(d) floor: seek + decode the middle 60 s with soundfile, nothing else.

Each method runs over all files in a block (as a worker does), the block order rotated per
round so that the busy shared machine slows all alike; per-song times are medians, CPU seconds
beside them. (a), (b) and (c) must agree within ``PATH_ATOL``. Then ``compute_song_features``
with the tagger at the full window (mel + 50 tags, 20 patches, the precision ``auto`` resolves
to here) in a process pool of 1 and 2 workers (one torch thread each, as ``hitsong features``),
warmed up: songs per second and the scaling.

Command: ``.venv/bin/python -m benchmarks.bench_features [--songs 3 --rounds 3 --pool-songs 12]``
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
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hitsong.audio import AudioConfig, log_compress
from hitsong.features import compute_song_features
from hitsong.features.compute import tagger_audio_config
from hitsong.settings import DEFAULT_TAGGER
from hitsong.workers import init_worker

log = logging.getLogger("benchmarks.bench_features")

#: The stated agreement of ours with the naive path (log10 units; the tests use the same).
PATH_ATOL = 1e-3
SR = 44100
SECONDS = 240.0
BLOCK = 65536
SECTION = "## Features"
CLIPS = Path(__file__).resolve().parent.parent / "tests" / "data" / "musicnn" / "audio"


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


def _write_mp3(path: Path, data: np.ndarray) -> Path:
    """``data`` (n, 2) float32 at :data:`SR` as an MP3 (LAME via libsndfile), block by block."""
    tmp = path.with_suffix(".part.mp3")
    with sf.SoundFile(str(tmp), "w", SR, 2, format="MP3") as f:
        for j in range(0, data.shape[0], BLOCK):
            f.write(data[j : j + BLOCK])
    return tmp.rename(path)


def reference_song(clip: Path) -> np.ndarray:
    """A reference clip tiled to 4 minutes, at 44.1 kHz stereo (the right channel 5 ms late)."""
    y, sr = sf.read(str(clip), dtype="float32")
    y = soxr.resample(y, sr, SR, quality="HQ").astype(np.float32)
    n = int(SECONDS * SR)
    y = np.tile(y, n // y.size + 1)[:n]
    return np.stack([y, np.roll(y, 221)], axis=1)


def make_files(folder: Path, n: int) -> list[Path]:
    """The tiled reference clips (real music) and ``n`` generated songs, as 4-minute MP3s (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip in sorted(CLIPS.glob("*.wav")):
        path = folder / f"ref-{clip.stem}.mp3"
        paths.append(path if path.exists() else _write_mp3(path, reference_song(clip)))
    for i in range(n):
        path = folder / f"song{i}.mp3"
        paths.append(path if path.exists() else _write_mp3(path, synth_song(i)))
    return paths


def _librosa_mel(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    return log_compress(mel)


def whole_file(path: Path, cfg: AudioConfig) -> np.ndarray:
    import librosa

    y, _ = librosa.load(str(path), sr=cfg.sr)
    start = (len(y) - cfg.n_samples) // 2
    return _librosa_mel(y[start : start + cfg.n_samples], cfg)


def offset_duration(path: Path, cfg: AudioConfig) -> np.ndarray:
    import librosa

    offset = max(0.0, (sf.info(str(path)).duration - cfg.seconds) / 2)
    y, _ = librosa.load(str(path), sr=cfg.sr, offset=offset, duration=cfg.seconds)
    return _librosa_mel(y, cfg)


def ours(path: Path, cfg: AudioConfig) -> np.ndarray:
    return compute_song_features(path, cfg, "none").mel


def floor(path: Path, cfg: AudioConfig) -> np.ndarray:
    with sf.SoundFile(str(path)) as f:
        need = int(cfg.seconds * f.samplerate)
        f.seek((f.frames - need) // 2)
        return f.read(need, dtype="float32")


METHODS = {"whole": whole_file, "offset": offset_duration, "ours": ours, "floor": floor}
LABELS = {
    "whole": "(a) librosa, whole file",
    "offset": "(b) librosa, offset/duration",
    "ours": "(c) ours",
    "floor": "(d) decode the middle 60 s only",
}


def _timed(fn, path: Path, cfg: AudioConfig) -> tuple[float, float, np.ndarray]:
    t0, c0 = time.perf_counter(), time.process_time()
    with redirect_fd2():
        out = fn(path, cfg)
    return time.perf_counter() - t0, time.process_time() - c0, out


@contextmanager
def redirect_fd2() -> Iterator[None]:
    """librosa's reads print libmpg123's seek messages; keep them off the benchmark's log."""
    from hitsong.audio.mpg123 import quiet_decoder_stderr

    with quiet_decoder_stderr(Path("benchmark")):
        yield


def _pool_rate(paths: list[Path], cfg: AudioConfig, workers: int, n_songs: int, tagger: str) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker) as pool:
        warm = paths[:workers] * 2
        list(pool.map(compute_song_features, warm, [cfg] * len(warm), [tagger] * len(warm)))
        jobs = [paths[i % len(paths)] for i in range(n_songs)]
        t0 = time.perf_counter()
        list(pool.map(compute_song_features, jobs, [cfg] * n_songs, [tagger] * n_songs))
        return n_songs / (time.perf_counter() - t0)


def run(n_songs: int, rounds: int, pool_songs: int, workdir: Path) -> str:
    cfg = AudioConfig()
    paths = make_files(workdir, n_songs)
    log.info("%d 4-minute 44.1 kHz stereo MP3 files in %s", len(paths), workdir)
    load_before = os.getloadavg()
    for fn in METHODS.values():  # warm-up: librosa's first call JIT-compiles
        _timed(fn, paths[0], cfg)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    cpus: dict[str, list[float]] = {m: [] for m in METHODS}
    outs: dict[str, dict[Path, np.ndarray]] = {m: {} for m in METHODS}
    order = list(METHODS)
    for r in range(rounds):
        # each method over all files in a block (as a worker runs: song after song), the block
        # order rotated per round so that drifts in machine load hit every method alike
        for name in order[r % len(order) :] + order[: r % len(order)]:
            for path in paths:
                dt, cpu, outs[name][path] = _timed(METHODS[name], path, cfg)
                times[name].append(dt)
                cpus[name].append(cpu)
        log.info("round %d/%d done", r + 1, rounds)
    diffs = {m: max(float(np.abs(outs[m][p] - outs["ours"][p]).max()) for p in paths) for m in ("whole", "offset")}
    # (b) resamples a segment cut without context: its first frame differs (edge of the resampler)
    diffs["offset_after_first"] = max(
        float(np.abs(outs["offset"][p][:, 1:] - outs["ours"][p][:, 1:]).max()) for p in paths
    )
    med = {m: statistics.median(v) for m, v in times.items()}
    cpu = {m: statistics.median(v) for m, v in cpus.items()}
    log.info("per-song medians: %s", {m: round(v, 4) for m, v in med.items()})
    tagged = tagger_audio_config(cfg, DEFAULT_TAGGER)
    rates = {w: _pool_rate(paths, tagged, w, pool_songs, DEFAULT_TAGGER) for w in (1, 2)}
    load_after = os.getloadavg()
    ok = "yes" if max(diffs["whole"], diffs["offset_after_first"]) <= PATH_ATOL else "NO"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            SECTION,
            "",
            "Feature extraction per song, paper config (middle 60 s, 22,050 Hz, 128 x 646 log-mel), on 4-minute",
            "44.1 kHz stereo MP3 files (LAME via libsndfile): the three reference clips of `tests/data/musicnn/audio`",
            f"tiled to 4 minutes (real music) and {n_songs} generated songs. (a) `librosa.load(path, sr=22050)` of the",
            "whole file, cut the middle 60 s, `librosa.feature.melspectrogram`; (b) `librosa.load(path, sr=22050,",
            "offset=middle, duration=60)` (librosa seeks too), the same mel; (c) ours, `compute_song_features` (seek",
            "with a 1-s MP3 pre-roll, decode the middle only, soxr_hq resample, numpy STFT + mel); (d) the floor: seek",
            "+ decode the middle 60 s. Each method runs over all files in a block, block order rotated per round;",
            "per-song medians of wall and CPU seconds.",
            "",
            f"Command: `.venv/bin/python -m benchmarks.bench_features --songs {n_songs} --rounds {rounds} "
            f"--pool-songs {pool_songs}`",
            "",
            f"Run {when}, {os.cpu_count()}-core {platform.machine()} shared with other jobs (load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after), one process, {len(paths)} files x "
            f"{rounds} rounds:",
            "",
            "| path | s/song | CPU s/song | ours is faster by | ours vs this path's time |",
            "|---|---|---|---|---|",
            *(
                f"| {LABELS[m]} | {med[m]:.3f} | {cpu[m]:.3f} | {med[m] / med['ours']:.2f}x |"
                f" {med['ours'] / med[m]:.2f}x |"
                for m in METHODS
            ),
            "",
            f"Agreement with ours: max |difference| (log10 units) (a) {diffs['whole']:.2e}, (b) {diffs['offset']:.2e}"
            f" in its first frame (a segment resampled without context), {diffs['offset_after_first']:.2e} after it;"
            f" stated tolerance {PATH_ATOL:g} for (a) and (b) after its first frame: {ok}.",
            "",
            f"Mel + tags at the full tagger window ({tagged.tagger_span:g} s, 20 patches, {DEFAULT_TAGGER}, precision"
            f" {tagged.tagger_precision}), `compute_song_features` in a spawn process pool (one torch thread per"
            f" worker, warmed up), {pool_songs} songs: 1 worker {rates[1]:.2f} songs/s, 2 workers {rates[2]:.2f}"
            f" songs/s ({rates[2] / rates[1]:.2f}x).",
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
    parser.add_argument("--songs", type=int, default=3, help="generated songs beside the 3 reference songs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-songs", type=int, default=12, help="songs per pool measurement (mel + tags)")
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
