"""The tagger at the paper's window: one 60-s clip (20 patches) on CPU, ours vs the original, same rounds.

``python -m benchmarks.bench_tagger [--repeats 9] [--threads 2] [--candidates] [--json PATH]``

Equal work on every side: from a 60-s 16 kHz WAV file (the real reference clips of
``tests/data/musicnn/audio`` tiled to 60 s) to the 20 x 50 taggram: decode, the musicnn front
end (log-mel, patches) and MTT_musicnn, warm (models loaded, one call before timing).

- **original**: musicnn 0.1.0 on TensorFlow 2.15, served by ``benchmarks/musicnn_original.py``
  under the interpreter named by ``HITSONG_MUSICNN_PYTHON`` (a separate venv; see that script):
  the original's way (one patch per ``session.run``, musicnn's ``BATCH_SIZE = 1``) and with all
  20 patches in one run. Without ``HITSONG_MUSICNN_PYTHON`` the last measured ratio is stated
  instead (:data:`ORIGINAL_LAST`).
- **exact** / **fast**: ``Tagger(precision="exact" | "fast")`` (``fast`` only where the CPU has
  native bfloat16; elsewhere it is reported as not run).

The machine is shared, so every mode runs once per round, the order rotated from round to
round, and each of ours is compared with the original *in the same round*: the table gives the
median and the best of those per-round ratios, the medians and bests of the times, the CPU
seconds per call (this process's, and the original's process's: far less sensitive to the
load than the wall time), and the load average before and after. ``--candidates`` also times the
network alone on the 20 patches for the alternatives (the readable port, ``exact``, ``fast`` and
its variants, ONNX Runtime if installed), each with its largest tag-probability difference from
``exact``. Tables are logged as Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from hitsong.tagger import Tagger
from hitsong.tagger.frontend import FRONTEND, load_audio_16k, log_mel, patch
from hitsong.tagger.precision import native_bf16

log = logging.getLogger("benchmarks.bench_tagger")

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "musicnn" / "audio"
ORIGINAL_SCRIPT = Path(__file__).resolve().parent / "musicnn_original.py"
SEGMENT_SECONDS = 60.0
ORIGINAL = "original, one patch per run (as shipped)"
ORIGINAL_BATCHED = "original, 20 patches in one run"
#: The last same-run comparison with the original on this kind of machine (2 cores, AVX-512
#: BF16), stated when TensorFlow is not available: median seconds for one 60-s clip and the
#: load at the time. Update it with the figures of BENCHMARKS.md "Tagger".
ORIGINAL_LAST = {"date": "2026-11-30 10:01 UTC", "per_patch": 1.093, "batched": 0.929, "load": "2.5-3.6 on 2 cores"}

#: A timer runs one call and returns (wall seconds, CPU seconds).
Timer = Callable[[], tuple[float, float]]


def make_clip(path: Path) -> Path:
    """A 60-s 16 kHz float WAV tiled from the three reference clips (real music)."""
    clips = [load_audio_16k(p) for p in sorted(CLIPS.glob("*.wav"))]
    y = np.concatenate(clips)
    n = int(SEGMENT_SECONDS * FRONTEND.sr)
    y = np.tile(y, n // y.size + 1)[:n]
    sf.write(path, y, FRONTEND.sr, subtype="FLOAT")
    return path


class OriginalServer:
    """The original musicnn (TensorFlow) in its own interpreter, timing one call per request."""

    def __init__(self, python: str, clip: Path, *, threads: int) -> None:
        self.proc = subprocess.Popen(
            [python, str(ORIGINAL_SCRIPT), str(clip), "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.hello = self._reply()
        self.last: dict[str, Any] = {}

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"the original musicnn process stopped:\n{err[-2000:]}")
        return json.loads(line)

    def timer(self, mode: str) -> Timer:
        def run() -> tuple[float, float]:
            assert self.proc.stdin is not None
            self.proc.stdin.write(mode + "\n")
            self.proc.stdin.flush()
            self.last = self._reply()
            return float(self.last["seconds"]), float(self.last["cpu_seconds"])

        return run

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def timed(fn: Callable[[], object]) -> Timer:
    """A timer of ``fn`` in this process (CPU: this process, all threads)."""

    def run() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - start, time.process_time() - cpu

    return run


def interleaved(modes: dict[str, Timer], repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per call of each mode: one call of every mode per round, order rotated."""
    for run in modes.values():
        run()  # warm-up
    names = list(modes)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            w, c = modes[name]()
            wall[name].append(w)
            cpu[name].append(c)
    return wall, cpu


def candidates(
    exact: Tagger, fast: Tagger | None, patches: np.ndarray, *, repeats: int
) -> list[tuple[str, list[float], float]]:
    """Network-only timings on the clip's patches of the alternatives, with their distance from exact."""
    from hitsong.tagger import fastblocks

    net = exact.net
    x = torch.from_numpy(patches)
    with torch.inference_mode():
        want = torch.sigmoid(exact.runner(x))
    modes: dict[str, Callable[[], torch.Tensor]] = {
        "port fp32, 20 patches per pass (before the kernels)": lambda: net(x),
        "kernel exact = `exact`": lambda: exact.runner(x),
    }
    if fast is not None:
        kernel = fast.runner
        modes["kernel fast = `fast`"] = lambda: kernel(x)

        def chunked(n: int) -> Callable[[], torch.Tensor]:
            def run() -> torch.Tensor:
                saved, fastblocks.TIMBRAL_CHUNK = fastblocks.TIMBRAL_CHUNK, n
                try:
                    return kernel(x)
                finally:
                    fastblocks.TIMBRAL_CHUNK = saved

            return run

        for n in (16, 64, 187):
            modes[f"kernel fast, timbral GEMM over {n} frames at a time"] = chunked(n)
    try:
        import onnxruntime as ort

        path = Path(tempfile.mkdtemp(prefix="bench-tagger-")) / "port.onnx"
        threads = torch.get_num_threads()
        torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}}, dynamo=False)  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        modes["ONNX Runtime fp32, port graph"] = lambda: torch.from_numpy(session.run(None, {"x": patches})[0])
    except ImportError:
        log.info("onnxruntime is not installed: its candidate is skipped (pip install onnxruntime onnx)")
    with torch.inference_mode():
        diffs = {k: float((torch.sigmoid(fn().float()) - want).abs().max()) for k, fn in modes.items()}
        wall, _ = interleaved({k: timed(fn) for k, fn in modes.items()}, repeats)
    return [(k, wall[k], diffs[k]) for k in modes]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_tagger", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=9, help="rounds (default 9)")
    p.add_argument("--threads", type=int, default=2, help="torch and TensorFlow threads (default 2)")
    p.add_argument("--candidates", action="store_true", help="also time the alternatives (network only)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    result: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "native_bf16": native_bf16()}
    exact = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="exact")
    fast: Tagger | None = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="fast")
    if fast is not None and fast.precision != "fast":
        fast = None
    with tempfile.TemporaryDirectory(prefix="bench-tagger-") as tmp:
        clip = make_clip(Path(tmp) / "clip60.wav")
        modes: dict[str, Timer] = {}
        original = None
        python = os.environ.get("HITSONG_MUSICNN_PYTHON")
        if python:
            log.info("starting the original musicnn (TensorFlow) with %s ...", python)
            original = OriginalServer(python, clip, threads=args.threads)
            modes[ORIGINAL] = original.timer("per_patch")
            modes[ORIGINAL_BATCHED] = original.timer("batched")
        modes["exact"] = timed(lambda: exact.tag(clip))
        if fast is not None:
            modes["fast"] = timed(lambda: fast.tag(clip))
        modes["front end only (decode + log-mel + patches)"] = timed(lambda: patch(log_mel(load_audio_16k(clip))))
        try:
            wall, cpu = interleaved(modes, args.repeats)
            song_original = np.asarray(original.last["song_mean"]) if original is not None else None
        finally:
            if original is not None:
                original.close()
        patches = patch(log_mel(load_audio_16k(clip)))[0]
        song_exact = exact.tag(clip).song
        if fast is not None:
            result["fast_minus_exact_song_max"] = float(np.abs(fast.tag(clip).song - song_exact).max())
        if song_original is not None:
            result["exact_minus_original_song_max"] = float(np.abs(song_exact - song_original).max())
        result.update(
            wall=wall,
            cpu=cpu,
            load_before=load_before,
            load_after=os.getloadavg(),
            patches=len(patches),
            started=started,
        )
        if original is not None:
            result["original"] = original.hello
        report(result, wall, cpu, [], repeats=args.repeats, with_original=original is not None)
        if args.candidates:
            rows = candidates(exact, fast, patches, repeats=args.repeats)
            result["load_after_candidates"] = os.getloadavg()
            report(result, {}, {}, rows, repeats=args.repeats, with_original=original is not None)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def report(
    result: dict[str, Any],
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
    rows: list[tuple[str, list[float], float]],
    *,
    repeats: int,
    with_original: bool,
) -> None:
    """Log the figures as Markdown tables (the main table when ``wall`` is given, the candidates when ``rows`` are)."""
    if rows:
        first = statistics.median(rows[0][1])
        log.info(
            "Network only (the clip's %d patches), alternatives; median and best of %d interleaved rounds; "
            "load average %.2f after:", result["patches"], repeats, result["load_after_candidates"][0],
        )  # fmt: skip
        log.info("| candidate | median s | best s | vs port fp32 (medians) | largest tag-prob. diff vs exact |")
        log.info("|---|---|---|---|---|")
        for name, t, diff in rows:
            median = statistics.median(t)
            log.info("| %s | %.3f | %.3f | %.2fx | %.1e |", name, median, min(t), first / median, diff)
        result["candidates"] = {name: {"times": t, "max_diff_vs_exact": diff} for name, t, diff in rows}
    if not wall:
        return
    log.info(
        "%s: MTT_musicnn, one %.0f-s clip (%d patches), CPU %s, torch %s, %d threads, native bf16: %s; "
        "load average %.2f/%.2f/%.2f before, %.2f/%.2f/%.2f after; %d interleaved rounds",
        result["started"], SEGMENT_SECONDS, result["patches"], platform.machine(), result["torch"], result["threads"],
        result["native_bf16"], *result["load_before"], *result["load_after"], repeats,
    )  # fmt: skip
    log.info(
        "| mode | median s | best s | CPU s (median) | vs original as shipped: median of per-round ratios "
        "| best / best |"
    )
    log.info("|---|---|---|---|---|---|")
    base = wall.get(ORIGINAL)
    for name, times in wall.items():
        if base is not None:
            ratios = [b / t for b, t in zip(base, times)]
            vs = f"{statistics.median(ratios):.2f}x | {min(base) / min(times):.2f}x"
        else:
            last = ORIGINAL_LAST["per_patch"]
            vs = f"{last / statistics.median(times):.2f}x against the stated {last} s of {ORIGINAL_LAST['date']} | -"
        log.info(
            "| %s | %.3f | %.3f | %.3f | %s |",
            name,
            statistics.median(times),
            min(times),
            statistics.median(cpu[name]),
            vs,
        )
    if not with_original:
        log.info(
            "Original: not measured in this run (set HITSONG_MUSICNN_PYTHON); load then %s.", ORIGINAL_LAST["load"]
        )
    if "fast" not in wall:
        log.info("fast: not run, no native bfloat16 on this CPU (auto resolves to exact)")
    for key, what in (
        ("exact_minus_original_song_max", "exact vs the original"),
        ("fast_minus_exact_song_max", "fast vs exact"),
    ):
        if key in result:
            log.info("%s on this clip: largest song-level difference %.2g", what, result[key])


if __name__ == "__main__":
    main()
