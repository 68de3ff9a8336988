"""Songs tagged per second on CPU (60-s segments): batched vs one at a time, in the same run.

``python -m benchmarks.bench_tagger [--model MTT_musicnn] [--songs 8] [--repeats 2]``

The songs are the real music clips of ``tests/data/musicnn/audio`` (16 kHz), each tiled to 60 s
and shifted so that no two songs are identical. Baseline: ``Tagger.tag`` called once per song
(one forward pass over that song's 20 patches). Candidate: ``Tagger.tag_batch`` over all songs
(patches of every song share forward passes of ``--batch-patches``). For scale, the original's
way (one patch per forward pass, musicnn's ``BATCH_SIZE = 1``) is timed too. Both include the front end (log-mel);
the front end's share is timed on its own. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hitsong.tagger import Tagger
from hitsong.tagger.frontend import FRONTEND, load_audio_16k, log_mel, patch

log = logging.getLogger("benchmarks.bench_tagger")

CLIPS = Path(__file__).resolve().parent.parent / "tests" / "data" / "musicnn" / "audio"
SEGMENT_SECONDS = 60.0


def make_songs(n: int) -> list[np.ndarray]:
    """``n`` distinct 60-s 16 kHz waveforms tiled from the reference clips."""
    clips = [load_audio_16k(p) for p in sorted(CLIPS.glob("*.wav"))]
    length = int(SEGMENT_SECONDS * FRONTEND.sr)
    songs = []
    for i in range(n):
        clip = clips[i % len(clips)]
        tiled = np.tile(clip, length // clip.size + 2)
        start = (i // len(clips)) * FRONTEND.sr  # shift by 1 s per round
        songs.append(np.ascontiguousarray(tiled[start : start + length]))
    return songs


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_tagger", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="MTT_musicnn", choices=["MTT_musicnn", "MTT_vgg"])
    p.add_argument("--songs", type=int, default=4, help="60-s songs per timing (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="timings per mode; the best is kept (default 2)")
    p.add_argument("--batch-patches", type=int, default=64, help="patches per forward pass in tag_batch")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    songs = make_songs(args.songs)
    tagger = Tagger.from_pretrained(args.model, device="cpu", batch_patches=args.batch_patches)
    tagger.tag_batch(songs[:1])  # warm-up: librosa caches, torch kernels

    per_patch = Tagger(tagger.net, tagger.name, tagger.device, batch_patches=1)
    t_patch = best_of(lambda: [per_patch.tag(y) for y in songs], args.repeats)
    t_front = best_of(lambda: [patch(log_mel(y)) for y in songs], args.repeats)
    t_one = best_of(lambda: [tagger.tag(y) for y in songs], args.repeats)
    t_batch = best_of(lambda: tagger.tag_batch(songs, sr=FRONTEND.sr), args.repeats)
    one = [tagger.tag(y).song for y in songs]
    batch = [r.song for r in tagger.tag_batch(songs, sr=FRONTEND.sr)]
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(one, batch))

    n = args.songs
    n_patches = sum(patch(log_mel(y))[0].shape[0] for y in songs[:1])
    log.info(
        "%s on CPU (%s, torch %s, %d threads), %d songs x %.0f s (%d patches each), best of %d:",
        args.model, platform.processor() or platform.machine(), torch.__version__, torch.get_num_threads(),
        n, SEGMENT_SECONDS, n_patches, args.repeats,
    )  # fmt: skip
    log.info("| mode | seconds | songs/s | vs one at a time |")
    log.info("|---|---|---|---|")
    log.info("| front end only (log-mel + patches) | %.2f | %.2f | - |", t_front, n / t_front)
    log.info(
        "| `tag`, one patch per pass (the original's batch size 1) | %.2f | %.2f | %.2fx |",
        t_patch, n / t_patch, t_one / t_patch,
    )  # fmt: skip
    log.info("| `tag` one song at a time | %.2f | %.2f | 1.00x |", t_one, n / t_one)
    log.info(
        "| `tag_batch` all songs (%d patches/pass) | %.2f | %.2f | %.2fx |",
        args.batch_patches, t_batch, n / t_batch, t_one / t_batch,
    )  # fmt: skip
    log.info("max |song level one-at-a-time - batched| = %.2g", max_diff)


if __name__ == "__main__":
    main()
