"""Latency of ``predict`` for one 4-minute MP3 and cold-load time of the champion model.

What it measures (CPU, one process):

1. A 4-minute 44.1 kHz stereo MP3 is generated (tones, chords and noise, written in blocks).
2. Warm latency: ``SongScorer.score([mp3])`` (what the pyfunc's ``predict`` runs) for an m6
   bundle at the paper's sizes with the tagger hearing ``--tagger-seconds`` (default the
   paper's whole 60-s segment: 20 patches), median of ``--repeats`` calls, split into decode
   (+ resampling), features (log-mel), tagger and network. m6 is timed with the bundle's
   ``tagger_precision`` ``exact`` and (where the CPU has native bfloat16) ``fast``; m1 with
   the precision ``auto`` resolves to here is the baseline in the same run (same decode and
   tagger, a trivial network).
3. Cold load: a real ``mlflow server`` in a temporary folder; the m6 bundle is logged as the
   pyfunc, registered and promoted; then a fresh Python process does what our readers (the
   dashboard, ``hitsong predict``) do: its imports, then ``registry.bundles.load_scorer`` of
   ``models:/hitsong-bench@champion`` (alias resolved, the version's two data files downloaded,
   the network built, the tagger loaded, warm-up), then its first ``score`` of the MP3: the
   dashboard's first score after a start. The champion is the m6 bundle with the precision
   ``auto`` resolves to here (what training on this machine records).

Run: ``.venv/bin/python -m benchmarks.bench_predict [--repeats 7] [--tagger-seconds 60]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_predict")

SR = 44100
MINUTES = 4.0
BLOCK_SECONDS = 10


def write_mp3(path: Path, *, seconds: float = MINUTES * 60, sr: int = SR, seed: int = 0) -> Path:
    """A stereo MP3 of ``seconds`` (chord progression + noise), written block by block."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (164.8, 207.7, 246.9)]
    n_total = int(seconds * sr)
    block = BLOCK_SECONDS * sr
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, format="MP3") as f:
        for start in range(0, n_total, block):
            n = min(block, n_total - start)
            t = (start + np.arange(n)) / sr
            freqs = chords[(start // block) % len(chords)]
            y = sum(np.sin(2 * np.pi * fr * t) for fr in freqs) / (2 * len(freqs))
            left = y + 0.02 * rng.standard_normal(n)
            right = 0.8 * y + 0.02 * rng.standard_normal(n)
            f.write(np.stack([left, right], axis=1).astype(np.float32))
    return path


def make_bundle(directory: Path, method: str, *, tagger_seconds: float, precision: str) -> Path:
    """A bundle of ``method`` at the paper's sizes (random weights: latency does not depend on them).

    Its audio config is the default with ``tagger_seconds`` and the tagger precision resolved
    from ``precision`` as training on this machine would record it.
    """
    import torch

    from hitsong.audio import AudioConfig
    from hitsong.bundle import save_bundle
    from hitsong.models import build_model
    from hitsong.models.config import ModelConfig
    from hitsong.tagger.precision import resolve_audio_config

    torch.manual_seed(0)
    config = ModelConfig()
    audio = resolve_audio_config(
        AudioConfig(tagger_seconds=tagger_seconds, tagger_precision=precision), device="cpu", model="MTT_musicnn"
    )
    return save_bundle(
        directory / f"{method}-{audio.tagger_precision}", build_model(method, config), method=method,
        model_config=config, target_mean=10.0, target_std=3.0, catalog=np.linspace(0, 20, 8000), subset="bench",
        audio_config=audio, tagger="MTT_musicnn",
    )  # fmt: skip


def warm_latency(bundle: Path, mp3: Path, repeats: int) -> dict[str, float]:
    """Median seconds per stage and in total over ``repeats`` warm calls, the best total and the median CPU seconds."""
    from hitsong.scoring import SongScorer

    t0 = time.perf_counter()
    scorer = SongScorer.from_bundle(bundle, device="cpu")
    load = time.perf_counter() - t0
    totals, cpus, stages = [], [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = scorer.score([mp3])[0]
        totals.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        if result["error"]:
            raise RuntimeError(result["error"])
        stages.append(result["timings"])
    out = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    out["total"] = statistics.median(totals)
    out["best"] = min(totals)
    out["cpu"] = statistics.median(cpus)  # this process's CPU seconds per call (all threads)
    out["load_in_process"] = load
    return out


_COLD = """
import sys, time, json
t0 = time.perf_counter()
import torch, hitsong.scoring, registry.bundles, registry.models
t1 = time.perf_counter()
name, version = registry.models.resolve_model_uri(sys.argv[1], tracking_uri=sys.argv[2])
scorer = registry.bundles.load_scorer(name, version, tracking_uri=sys.argv[2], device="cpu")
t2 = time.perf_counter()
result = scorer.score([sys.argv[3]])[0]
t3 = time.perf_counter()
assert result["error"] is None, result["error"]
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first_score": t3 - t2, "score": result["score"]}))
"""


def cold_load(bundle: Path, mp3: Path, workdir: Path) -> dict[str, float]:
    """Register the bundle on a temporary server, then time a fresh process loading the champion."""
    import mlflow

    from hitsong.tracking import run_scope
    from hitsong.training import runlayout
    from registry.models import promote, register
    from registry.server import ServerConfig, free_port, start_server, stop_server
    from registry.tracking import MlflowRunLogger

    config = ServerConfig(mlflow_dir=workdir / "mlflow", port=free_port())
    info = start_server(config, reuse=False)
    try:
        logger = MlflowRunLogger.for_subset("bench", "bench", tracking_uri=info.uri)
        # the pyfunc goes into MLflow's active experiment, where register looks for it
        mlflow.set_tracking_uri(info.uri)
        mlflow.set_experiment(experiment_id=logger.experiment_id)
        method_tags = {runlayout.TAG_KIND: runlayout.METHOD, runlayout.TAG_METHOD: "m6"}
        rep_tags = {runlayout.TAG_KIND: runlayout.REPETITION, runlayout.TAG_METHOD: "m6", runlayout.TAG_REPETITION: "0"}
        with run_scope(logger, runlayout.method_run_name("m6", "m6"), tags=method_tags) as parent:
            with run_scope(logger, runlayout.repetition_run_name("m6", 0), parent=parent, tags=rep_tags) as child:
                logger.log_metrics(child, {"val_spearman_rho": 0.3, "test_spearman_rho": 0.3})
                t0 = time.perf_counter()
                logger.log_bundle(child, bundle)
                log_seconds = time.perf_counter() - t0
        reg = register("bench", experiment=logger.experiment, tracking_uri=info.uri)
        promote(reg["model"], reg["version"], "benchmark", tracking_uri=info.uri)
        proc = subprocess.run(
            [sys.executable, "-c", _COLD, f"models:/{reg['model']}@champion", info.uri, str(mp3)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["log_model"] = log_seconds
        return out
    finally:
        stop_server(config.mlflow_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="warm calls per method (median)")
    parser.add_argument(
        "--tagger-seconds", type=float, default=60.0, help="the tagger's window (default 60: 20 patches)"
    )
    parser.add_argument("--skip-cold", action="store_true", help="skip the registry cold-load part")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from hitsong.tagger.precision import native_bf16

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        mp3 = write_mp3(tmp / "song.mp3")
        log.info("wrote %s (%.1f MB) in %.1f s", mp3, mp3.stat().st_size / 1e6, time.perf_counter() - t0)
        results: dict[str, object] = {
            "torch_threads": torch.get_num_threads(), "tagger_seconds": args.tagger_seconds,
            "native_bf16": native_bf16(), "load_before": os.getloadavg(),
        }  # fmt: skip
        runs = [("m1", "auto"), ("m6", "exact")] + ([("m6", "fast")] if native_bf16() else [])
        bundles = {}
        for method, precision in runs:
            bundle = make_bundle(tmp, method, tagger_seconds=args.tagger_seconds, precision=precision)
            key = bundle.name
            bundles[key] = bundle
            results[key] = warm_latency(bundle, mp3, args.repeats)
            log.info("%s warm: %s", key, {k: round(v, 3) for k, v in results[key].items()})
        if not args.skip_cold:
            champion = bundles["m6-fast"] if "m6-fast" in bundles else bundles["m6-exact"]  # what auto resolves to
            results["cold_bundle"] = champion.name
            results["cold"] = cold_load(champion, mp3, tmp)
            log.info("cold (%s): %s", champion.name, {k: round(v, 3) for k, v in results["cold"].items()})
        results["load_after"] = os.getloadavg()
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
