"""The tagger at the paper's window: one 60-s clip (20 patches) on CPU, ours vs the original.

``python -m benchmarks.bench_tagger [--repeats 7] [--threads 2] [--candidates] [--compile] [--json PATH]``

Equal work on every side: from a 60-s 16 kHz WAV file (the real reference clips of
``tests/data/musicnn/audio`` tiled to 60 s) to the 20 x 50 taggram: decode, the musicnn front
end (log-mel, patches) and MTT_musicnn, warm (models loaded, one call before timing).

- **original**: musicnn 0.1.0 on TensorFlow 2.15, timed in the same run by
  ``benchmarks/musicnn_original.py`` under the interpreter named by ``HITSONG_MUSICNN_PYTHON``
  (a separate venv; see that script). Timed the original's way (one patch per
  ``session.run``, musicnn's ``BATCH_SIZE = 1``) and with all 20 patches in one run.
  Without ``HITSONG_MUSICNN_PYTHON`` the last measured figure (:data:`ORIGINAL_LAST`) is stated
  instead, with its date, beside our float32 port timed now.
- **port (before)**: ``Tagger`` running the readable port ``nets.MusiCNN`` (float32, all patches
  in one pass): the path before :mod:`hitsong.tagger.kernels`.
- **exact** / **fast**: ``Tagger(precision="exact" | "fast")`` (``fast`` only where the CPU has
  native bfloat16; elsewhere it is reported as not run).

The machine is shared: a busy machine shows in the median (torch's OpenMP threads wait at
barriers for descheduled threads), an idle moment in the best.

Modes are timed in interleaved rounds; the median and the best of ``--repeats`` are reported,
with the machine load (``os.getloadavg``) before and after. ``--candidates`` also times the
network alone on the 20 patches for the alternatives that were tried (autocast, channels-last,
TorchScript freezing, ONNX Runtime if installed, front-end chunk sizes, one thread;
``--compile`` adds ``torch.compile``, ~2 min to compile), each with its largest tag-probability
difference from ``exact``. Tables are logged as Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from hitsong.tagger import Tagger
from hitsong.tagger.frontend import FRONTEND, load_audio_16k, log_mel, patch
from hitsong.tagger.kernels import MusiCNNKernel
from hitsong.tagger.precision import native_bf16

log = logging.getLogger("benchmarks.bench_tagger")

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "musicnn" / "audio"
ORIGINAL_SCRIPT = Path(__file__).resolve().parent / "musicnn_original.py"
SEGMENT_SECONDS = 60.0
#: The original's last measured figure on this kind of machine (2 cores, AVX-512 BF16), stated
#: when TensorFlow is not available to time it in the same run: median seconds for one 60-s
#: clip, the original's way (one patch per session.run) and batched, and the load at the time.
ORIGINAL_LAST = {
    "date": "2026-11-30 07:26 UTC",
    "per_patch": 0.788,
    "batched": 0.649,
    "load": "3.7-4.6 on 2 cores",
}


def make_clip(path: Path) -> Path:
    """A 60-s 16 kHz float WAV tiled from the three reference clips (real music)."""
    clips = [load_audio_16k(p) for p in sorted(CLIPS.glob("*.wav"))]
    y = np.concatenate(clips)
    n = int(SEGMENT_SECONDS * FRONTEND.sr)
    y = np.tile(y, n // y.size + 1)[:n]
    sf.write(path, y, FRONTEND.sr, subtype="FLOAT")
    return path


def run_original(python: str, clip: Path, *, threads: int, repeats: int) -> dict[str, Any]:
    """Time musicnn on TensorFlow in its own interpreter; its JSON line as a dict."""
    proc = subprocess.run(
        [python, str(ORIGINAL_SCRIPT), str(clip), "--threads", str(threads), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the original musicnn run failed ({python}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def interleaved(modes: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each mode, the modes alternating within each round."""
    for fn in modes.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(repeats):
        for name, fn in modes.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def port_tagger(exact: Tagger) -> Tagger:
    """A Tagger that runs the readable port (the path before the kernels)."""
    tagger = Tagger(exact.net, exact.name, exact.device, precision="exact")
    tagger.runner = exact.net
    return tagger


def candidates(
    exact: Tagger, patches: np.ndarray, *, repeats: int, compile_too: bool
) -> list[tuple[str, list[float], float]]:
    """Network-only timings on the clip's patches of every alternative that was tried."""
    net = exact.net
    x = torch.from_numpy(patches)
    with torch.inference_mode():
        want = torch.sigmoid(exact.runner(x))

    def autocast() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x).float()

    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x_cl = x.unsqueeze(1).to(memory_format=torch.channels_last).squeeze(1)
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x[:1]).eval()))
    fast_kernels = {c: MusiCNNKernel(net, precision="fast", front_chunk=c).eval() for c in (1, 2, 4)}

    def openmp_only(kernel: MusiCNNKernel) -> torch.Tensor:
        """The kernel without its worker threads: every operation split over OpenMP threads."""
        xb = x * kernel.in_scale + kernel.in_shift
        return kernel.net.head(torch.cat([kernel.front(c) for c in torch.split(xb, kernel.front_chunk)]))

    modes: dict[str, Callable[[], torch.Tensor]] = {
        "port fp32, 20 patches per pass (before)": lambda: net(x),
        "port fp32, one patch per pass": lambda: torch.cat([net(x[i : i + 1]) for i in range(len(x))]),
        "port + bf16 autocast": autocast,
        "port, channels-last": lambda: cl(x_cl),
        "port, TorchScript freeze + optimize_for_inference (oneDNN fusion)": lambda: frozen(x),
        "kernel exact (fp32, chunk 1) = `exact`": lambda: exact.runner(x),
        "kernel exact, chunk 4": lambda: MusiCNNKernel(net, precision="exact", front_chunk=4)(x),
        "kernel fast (bf16 GEMM, chunk 1) = `fast`": lambda: fast_kernels[1](x),
        "kernel fast, chunk 2": lambda: fast_kernels[2](x),
        "kernel fast, chunk 4": lambda: fast_kernels[4](x),
        "kernel exact, OpenMP threads instead of patch threads": lambda: openmp_only(exact.runner),
        "kernel fast, OpenMP threads instead of patch threads": lambda: openmp_only(fast_kernels[1]),
    }
    try:
        import onnxruntime as ort

        def ort_session(module: torch.nn.Module, name: str) -> Callable[[], Any]:
            path = Path(tempfile.mkdtemp(prefix="bench-tagger-")) / f"{name}.onnx"
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the tracer records this thread only: no patch worker threads
            try:
                torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "b"}}, dynamo=False)  # fmt: skip
            finally:
                torch.set_num_threads(threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return lambda: torch.from_numpy(session.run(None, {"x": patches})[0])

        modes["ONNX Runtime fp32, port graph"] = ort_session(net, "port")
        modes["ONNX Runtime fp32, kernel-exact graph"] = ort_session(exact.runner, "kernel")
    except ImportError:
        log.info("onnxruntime is not installed: its candidates are skipped (pip install onnxruntime onnx)")
    if compile_too:
        compiled = torch.compile(fast_kernels[1])
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
        log.info("torch.compile of the fast kernel took %.0f s", time.perf_counter() - start)
        modes["torch.compile(kernel fast)"] = lambda: compiled(x)
    with torch.inference_mode():
        diffs = {k: float((torch.sigmoid(fn().float()) - want).abs().max()) for k, fn in modes.items()}
        times = interleaved(modes, repeats)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        one = interleaved({"exact": lambda: exact.runner(x), "fast": lambda: fast_kernels[1](x)}, repeats)
        torch.set_num_threads(threads)
    rows = [(k, times[k], diffs[k]) for k in modes]
    rows += [(f"kernel {k}, 1 thread", v, diffs[f"kernel {k} (fp32, chunk 1) = `exact`" if k == "exact" else
              "kernel fast (bf16 GEMM, chunk 1) = `fast`"]) for k, v in one.items()]  # fmt: skip
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_tagger", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="timed calls per mode (default 7)")
    p.add_argument("--threads", type=int, default=2, help="torch and TensorFlow threads (default 2)")
    p.add_argument("--candidates", action="store_true", help="also time the alternatives (network only)")
    p.add_argument("--compile", action="store_true", help="with --candidates: add torch.compile (slow)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def _row(name: str, times: list[float], base: float, note: str = "") -> str:
    med = statistics.median(times)
    return f"| {name} | {med:.3f} | {min(times):.3f} | {base / med:.2f}x | {note} |"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "native_bf16": native_bf16()}
    with tempfile.TemporaryDirectory(prefix="bench-tagger-") as tmp:
        clip = make_clip(Path(tmp) / "clip60.wav")
        original = None
        python = os.environ.get("HITSONG_MUSICNN_PYTHON")
        if python:
            log.info("timing the original musicnn (TensorFlow) with %s ...", python)
            original = run_original(python, clip, threads=args.threads, repeats=args.repeats)
        exact = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="exact")
        modes: dict[str, Callable[[], object]] = {
            "port": lambda: port_tagger(exact).tag(clip),
            "exact": lambda: exact.tag(clip),
        }
        fast = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="fast")
        if fast.precision == "fast":
            modes["fast"] = lambda: fast.tag(clip)
        modes["front end only (decode + log-mel + patches)"] = lambda: patch(log_mel(load_audio_16k(clip)))
        times = interleaved(modes, args.repeats)
        patches = patch(log_mel(load_audio_16k(clip)))[0]
        song_exact = exact.tag(clip).song
        rows = candidates(exact, patches, repeats=args.repeats, compile_too=args.compile) if args.candidates else []
        if fast.precision == "fast":
            song_fast = fast.tag(clip).song
            result["fast_minus_exact_song_max"] = float(np.abs(song_fast - song_exact).max())
    load_after = os.getloadavg()
    result.update(times=times, load_before=load_before, load_after=load_after, original=original, patches=len(patches))

    if original is not None:
        base_per_patch = statistics.median(original["per_patch"])
        base_batched = statistics.median(original["batched"])
        result["exact_minus_original_song_max"] = float(np.abs(song_exact - np.asarray(original["song_mean"])).max())
        source = f"measured in this run (TensorFlow {original['tensorflow']}, {original['threads']} threads)"
    else:
        base_per_patch, base_batched = ORIGINAL_LAST["per_patch"], ORIGINAL_LAST["batched"]
        source = (
            f"not measured in this run: last measured figure of {ORIGINAL_LAST['date']} (load {ORIGINAL_LAST['load']})"
        )
    log.info(
        "MTT_musicnn, one %.0f-s clip (%d patches), CPU %s, torch %s, %d threads, native bf16: %s; "
        "load average %.2f/%.2f/%.2f before, %.2f/%.2f/%.2f after; median and best of %d",
        SEGMENT_SECONDS, len(patches), platform.machine(), torch.__version__, args.threads, native_bf16(),
        *load_before, *load_after, args.repeats,
    )  # fmt: skip
    log.info("Original: %s.", source)
    log.info("| mode | median s | best s | vs original (one patch per run) | note |")
    log.info("|---|---|---|---|---|")
    if original is not None:
        log.info(
            _row("original musicnn, TensorFlow, one patch per run (as shipped)", original["per_patch"], base_per_patch)
        )
        log.info(_row("original musicnn, TensorFlow, 20 patches in one run", original["batched"], base_per_patch))
    else:
        log.info(
            "| original musicnn, TensorFlow, one patch per run (%s) | %.3f | - | 1.00x | stated |",
            ORIGINAL_LAST["date"],
            base_per_patch,
        )
        log.info(
            "| original musicnn, TensorFlow, 20 patches in one run (%s) | %.3f | - | %.2fx | stated |",
            ORIGINAL_LAST["date"],
            base_batched,
            base_per_patch / base_batched,
        )
    log.info(_row("port fp32 (before)", times["port"], base_per_patch, "all patches in one pass"))
    log.info(
        _row(
            "**exact** (fp32 kernel)",
            times["exact"],
            base_per_patch,
            f"{base_batched / statistics.median(times['exact']):.2f}x the batched original",
        )
    )
    if "fast" in times:
        fast = statistics.median(times["fast"])
        note = f"{base_batched / fast:.2f}x the batched original; {statistics.median(times['exact']) / fast:.2f}x exact"
        log.info(_row("**fast** (bf16 timbral GEMMs)", times["fast"], base_per_patch, note))
    else:
        log.info("| fast | - | - | - | not run: no native bfloat16 on this CPU (auto resolves to exact) |")
    front = times["front end only (decode + log-mel + patches)"]
    log.info(
        "| front end only (decode + log-mel + patches) | %.3f | %.3f | - | in every row above |",
        statistics.median(front),
        min(front),
    )
    if original is not None:
        log.info(
            "exact vs the original on this clip: largest song-level difference %.2g",
            result["exact_minus_original_song_max"],
        )
    if "fast_minus_exact_song_max" in result:
        log.info("fast vs exact on this clip: largest song-level difference %.2g", result["fast_minus_exact_song_max"])
    if rows:
        base = statistics.median(rows[0][1])
        log.info(
            "Network only (the clip's %d patches), alternatives tried; median and best of %d:",
            len(patches),
            args.repeats,
        )
        log.info("| candidate | median s | best s | vs port fp32 | largest tag-prob. diff vs exact |")
        log.info("|---|---|---|---|---|")
        for name, t, diff in rows:
            log.info(
                "| %s | %.3f | %.3f | %.2fx | %.1e |",
                name,
                statistics.median(t),
                min(t),
                base / statistics.median(t),
                diff,
            )
        result["candidates"] = {name: {"times": t, "max_diff_vs_exact": diff} for name, t, diff in rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
