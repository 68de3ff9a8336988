"""Latency of ``predict`` for one 4-minute MP3 and cold-load time of the champion model.

What it measures (CPU, one process):

1. A 4-minute 44.1 kHz stereo MP3 is generated (tones, chords and noise, written in blocks).
2. Warm latency: ``SongScorer.score([mp3])`` (what the pyfunc's ``predict`` runs) for an m6
   bundle at the paper's sizes, median of ``--repeats`` calls, split into decode (+ resampling),
   features (log-mel), tagger and network; m1 is measured in the same run as the baseline
   (same decode and tagger, a trivial network), and the pyfunc's ``predict`` once through
   MLflow's wrapper.
3. Cold load: a real ``mlflow server`` in a temporary folder; the m6 bundle is logged as the
   pyfunc, registered and promoted; then a fresh Python process times
   ``load_model("models:/hitsong-bench@champion", device="cpu")`` (download, build, tagger,
   warm-up) and, separately, its imports.

Run: ``.venv/bin/python -m benchmarks.bench_predict [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import logging
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


def make_bundle(directory: Path, method: str) -> Path:
    """A bundle of ``method`` at the paper's sizes (random weights: latency does not depend on them)."""
    import torch

    from hitsong.audio import AudioConfig
    from hitsong.bundle import save_bundle
    from hitsong.models import build_model
    from hitsong.models.config import ModelConfig

    torch.manual_seed(0)
    config = ModelConfig()
    return save_bundle(
        directory / method, build_model(method, config), method=method, model_config=config,
        target_mean=10.0, target_std=3.0, catalog=np.linspace(0, 20, 8000), subset="bench",
        audio_config=AudioConfig(), tagger="MTT_musicnn",
    )  # fmt: skip


def warm_latency(bundle: Path, mp3: Path, repeats: int) -> dict[str, float]:
    """Median seconds per stage and in total over ``repeats`` warm calls."""
    from hitsong.scoring import SongScorer

    t0 = time.perf_counter()
    scorer = SongScorer.from_bundle(bundle, device="cpu")
    load = time.perf_counter() - t0
    totals, stages = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = scorer.score([mp3])[0]
        totals.append(time.perf_counter() - start)
        if result["error"]:
            raise RuntimeError(result["error"])
        stages.append(result["timings"])
    out = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    out["total"] = statistics.median(totals)
    out["load_in_process"] = load
    return out


_COLD = """
import sys, time, json
t0 = time.perf_counter()
import mlflow, torch, hitsong.scoring, registry.pyfunc
t1 = time.perf_counter()
from registry.pyfunc import load_model
model = load_model(sys.argv[1], device="cpu", tracking_uri=sys.argv[2])
t2 = time.perf_counter()
out = model.predict(__import__("pandas").DataFrame({"path": [sys.argv[3]]}))
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first_predict": t3 - t2, "score": float(out["score"].iloc[0])}))
"""


def cold_load(bundle: Path, mp3: Path, workdir: Path) -> dict[str, float]:
    """Register the bundle on a temporary server, then time a fresh process loading the champion."""
    from hitsong.tracking import run_scope
    from registry.models import promote, register
    from registry.server import ServerConfig, free_port, start_server, stop_server
    from registry.tracking import MlflowRunLogger

    config = ServerConfig(mlflow_dir=workdir / "mlflow", port=free_port())
    info = start_server(config, reuse=False)
    try:
        logger = MlflowRunLogger.for_subset("bench", "bench", tracking_uri=info.uri)
        with run_scope(logger, "m6", tags={"method": "m6"}) as parent:
            with run_scope(logger, "m6 rep 0", parent=parent, tags={"method": "m6"}) as child:
                logger.log_metrics(child, {"test_ndcg_at_k": 0.3})
                t0 = time.perf_counter()
                logger.log_bundle(child, bundle)
                log_seconds = time.perf_counter() - t0
        reg = register("bench", tracking_uri=info.uri)
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
    parser.add_argument("--repeats", type=int, default=5, help="warm calls per method (median)")
    parser.add_argument("--skip-cold", action="store_true", help="skip the registry cold-load part")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        mp3 = write_mp3(tmp / "song.mp3")
        log.info("wrote %s (%.1f MB) in %.1f s", mp3, mp3.stat().st_size / 1e6, time.perf_counter() - t0)
        results = {"torch_threads": torch.get_num_threads()}
        for method in ("m1", "m6"):
            results[method] = warm_latency(make_bundle(tmp, method), mp3, args.repeats)
            log.info("%s warm: %s", method, {k: round(v, 3) for k, v in results[method].items()})
        if not args.skip_cold:
            results["cold"] = cold_load(tmp / "m6", mp3, tmp)
            log.info("cold: %s", {k: round(v, 3) for k, v in results["cold"].items()})
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
