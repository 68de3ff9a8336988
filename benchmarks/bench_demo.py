"""The default demo as a benchmark: the cost of each step and what the methods learn from it.

``python -m benchmarks.bench_demo steps [--songs 16] [--tagger-seconds 60]``
    CPU seconds of each step of ``make demo`` measured on its own, in this one process (torch
    on one thread): rendering and encoding a random sample of the default catalogue's songs,
    features per song (decode + log-mel; the MTT tagger over ``--tagger-seconds``), and one
    training epoch of every audio method at the default demo's split sizes. Projects the
    ``make demo`` steps from them on 2 idle cores. Baselines in the same run: writing the same
    songs as 16-bit WAV, and m1's epoch.

``python -m benchmarks.bench_demo full --home DIR [--splits random,artist] [--reuse]``
    The default demo end to end, exactly as ``make demo`` runs it minus the dashboard:
    ``hitsong demo run --no-serve`` in a scratch ``HITSONG_HOME=DIR`` (its log in
    ``DIR/demo-run.log``; ``--reuse`` only reads an earlier run's log and outputs). Reports each
    step's wall time (from the log's step lines), the machine's load average before and after,
    Table 1 of every split and market with intervals, the CNN repetitions' best epochs, the
    paired intervals of m5 and m6 against m1, and the tagger's genre per archetype (confusion
    table); writes them to ``DIR/bench_demo.json``. Wall time on a shared machine moves with
    other people's load: the load averages say how much.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("benchmarks.bench_demo")

SUBSETS = ("mandarin", "western")
CNN_METHODS = ("m2", "m3", "m5", "m6")
AUDIO_METHODS = ("m1", "m2", "m3", "m4", "m5", "m6")
#: The step names of ``hitsong demo run``'s log (``== 4/8 features ...``) -> the table's names.
STEP_NAMES = {
    "1/8": "demo audio (init)",
    "2/8": "ingest",
    "3/8": "sample and split",
    "4/8": "features (log-mel + tags)",
    "5/8": "MLflow server",
    "6/8": "training",
    "7/8": "registry",
    "8/8": "catalog",
}


# --------------------------------------------------------------------------------------- steps


def _epoch_seconds(methods: tuple[str, ...], n_train: int, n_val: int) -> dict[str, float]:
    """CPU seconds of one training epoch (train pass + validation pass) per method, 1 thread."""
    import torch

    from benchmarks.bench_training import RandomSongs
    from hitsong.models import build_model
    from hitsong.training.config import TrainConfig
    from hitsong.training.data import scan_subset
    from hitsong.training.loop import fit

    torch.set_num_threads(1)
    data = scan_subset(
        {"train": RandomSongs(n_train, 1), "val": RandomSongs(n_val, 2), "test": RandomSongs(2, 3)}, subset="bench"
    )
    config = TrainConfig.for_profile("demo", max_epochs=1)
    out = {}
    for name in methods:
        times = []
        for _ in range(2):  # the first epoch of a process also warms torch up: time the second
            model = build_model(name)
            model.fit_input_stats(data.train.stats, data.train.tags)
            t0 = time.process_time()
            fit(model, data, config, seed=0, device=torch.device("cpu"), label=f"bench {name}")
            times.append(time.process_time() - t0)
        out[name] = times[-1]
    return out


def _warm_file(folder: Path) -> Path:
    """A 4-s WAV to load the tagger and warm librosa before timing."""
    import soundfile as sf

    path = folder / "warm.wav"
    t = np.arange(4 * 22050) / 22050
    sf.write(path, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    return path


def run_steps(args: argparse.Namespace) -> dict[str, Any]:
    """Per-step CPU costs and the projected ``make demo`` steps on 2 idle cores."""
    import torch

    from dashboard.pipeline import DEMO_SPLIT
    from hitsong.audio import AudioConfig
    from hitsong.demo.synth import render_song, write_audio
    from hitsong.demo.writer import DemoConfig, build_catalogue
    from hitsong.features import NO_TAGGER, compute_song_features
    from hitsong.store.sample import split_counts
    from hitsong.training.config import TrainConfig

    torch.set_num_threads(1)
    config = DemoConfig()
    _, plans = build_catalogue(config)
    picked = np.random.default_rng(0).choice(len(plans), size=min(args.songs, len(plans)), replace=False)
    audio_config = AudioConfig(tagger_seconds=args.tagger_seconds)
    cost = {"render": 0.0, "encode": 0.0, "wav": 0.0, "features_mel": 0.0, "features_tagger": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        compute_song_features(_warm_file(Path(tmp)), audio_config, "MTT_musicnn")  # load the tagger once
        for i in picked:
            plan = plans[int(i)]
            path = Path(tmp) / f"s.{plan.audio_format}"
            t0 = time.process_time()
            y = render_song(plan)
            t1 = time.process_time()
            write_audio(y, path, sr=plan.sample_rate, audio_format=plan.audio_format, subtype=plan.subtype)
            t2 = time.process_time()
            write_audio(y, Path(tmp) / "s.wav", sr=plan.sample_rate, audio_format="wav", subtype="PCM_16")
            t3 = time.process_time()
            compute_song_features(path, audio_config, NO_TAGGER)
            t4 = time.process_time()
            compute_song_features(path, audio_config, "MTT_musicnn")
            t5 = time.process_time()
            cost["render"] += t1 - t0
            cost["encode"] += t2 - t1
            cost["wav"] += t3 - t2
            cost["features_mel"] += t4 - t3
            cost["features_tagger"] += (t5 - t4) - (t4 - t3)
    per_song = {k: v / len(picked) for k, v in cost.items()}
    per_subset = round(0.9 * config.songs_per_subset)
    n_train, n_val, n_test = split_counts(per_subset, DEMO_SPLIT)
    epochs = _epoch_seconds(AUDIO_METHODS, n_train, n_val)
    demo = TrainConfig.for_profile("demo")
    mean_epochs = args.mean_epochs or float(demo.max_epochs)
    cores = 2
    projected = {
        "render + encode": (per_song["render"] + per_song["encode"]) * len(plans) / cores,
        "features": (per_song["features_mel"] + per_song["features_tagger"]) * 2 * per_subset / cores,
        "training, one split": 2 * demo.repeats * sum(epochs.values()) * mean_epochs / cores,
    }
    result = {
        "songs_timed": len(picked),
        "per_song_cpu": per_song,
        "epoch_cpu": epochs,
        "n_catalogue": len(plans),
        "split": [n_train, n_val, n_test],
        "mean_epochs": mean_epochs,
        "tagger_seconds": args.tagger_seconds,
        "projected_wall": projected,
        "load_average": os.getloadavg()[0],
    }
    p = per_song
    print(f"sample: {len(picked)} songs of the default catalogue; load average {result['load_average']:.1f}")
    print("| step | CPU s per song | note |\n|---|---|---|")
    print(f"| render (MIDI + voice + mix) | {p['render']:.3f} | |")
    print(f"| encode (format mix) | {p['encode']:.3f} | {p['encode'] / max(p['wav'], 1e-9):.1f}x writing WAV |")
    print(f"| features: decode + log-mel | {p['features_mel']:.3f} | |")
    print(f"| features: MTT tagger, {args.tagger_seconds:.0f}-s window | {p['features_tagger']:.3f} | |")
    print("\n| method | CPU s per epoch (train + val) | vs m1 |\n|---|---|---|")
    base = max(epochs["m1"], 1e-9)
    for m, s in epochs.items():
        print(f"| {m} | {s:.2f} | {s / base:.0f}x |")
    print(f"\nprojected on 2 idle cores ({len(plans)} songs, split {n_train}/{n_val}/{n_test} per market, ")
    print(f"{mean_epochs:.1f} epochs per repetition):\n| step | projected wall s |\n|---|---|")
    for k, v in projected.items():
        print(f"| {k} | {v:.0f} |")
    return result


# ---------------------------------------------------------------------------------------- full


def _stamped(log_text: str) -> Iterator[tuple[dt.datetime, str]]:
    """The log's lines that start with an ``HH:MM:SS`` time, with that time (a day later past midnight)."""
    last: dt.datetime | None = None
    for line in log_text.splitlines():
        m = re.match(r"(\d\d:\d\d:\d\d) ", line)
        if not m:
            continue
        at = dt.datetime.strptime(m.group(1), "%H:%M:%S")
        if last is not None and at < last:  # past midnight
            at += dt.timedelta(days=1)
        last = at
        yield at, line


def step_seconds(log_text: str) -> dict[str, float]:
    """Wall seconds of each ``hitsong demo run`` step, from the timestamps of its ``== i/8`` lines.

    A step lasts from its own line to the next step's (the last one to the log's last line).
    """
    stamps: list[tuple[str, dt.datetime]] = []
    last: dt.datetime | None = None
    for at, line in _stamped(log_text):
        last = at
        step = re.search(r"== (\d/8) ", line)
        if step:
            stamps.append((STEP_NAMES.get(step.group(1), step.group(1)), at))
    if last is None:
        return {}
    ends = [at for _, at in stamps[1:]] + [last]
    return {name: (end - start).total_seconds() for (name, start), end in zip(stamps, ends, strict=True)}


def split_seconds(log_text: str) -> dict[str, float]:
    """Wall seconds of the training of each split (both markets), from the per-subset result lines."""
    out: dict[str, float] = {}
    start: dt.datetime | None = None
    for at, line in _stamped(log_text):
        if "== 6/8" in line:
            start = at
        done = re.search(r"subset (\w+), (\w+) split:", line)
        if done and start is not None:
            out[done.group(2)] = out.get(done.group(2), 0.0) + (at - start).total_seconds()
            start = at
    return out


def _cell(row: pd.Series) -> str:
    return f"{row['mean']:.3f} ± {row['std']:.3f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _gap(row: pd.Series, baseline: str) -> str:
    from hitsong.results import gap_columns

    cols = gap_columns(baseline)
    if cols.diff not in row or pd.isna(row[cols.diff]):
        return ""
    return f"{row[cols.diff]:+.3f} [{row[cols.low]:+.2f}, {row[cols.high]:+.2f}]"


def table_markdown(frame: pd.DataFrame, labels: dict[str, str]) -> str:
    """Table 1 cells: mean ± std [95 % CI] of nDCG@k and Spearman, and the paired gaps in Spearman."""
    lines = [
        "| method | nDCG@k | Spearman ρ | ρ − m0 [95 % CI] | ρ − m1 [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for method, g in frame.groupby("method", sort=False):
        cells = g.set_index("metric")
        rho = cells.loc["spearman_rho"]
        lines.append(
            f"| ({method}) {labels.get(method, method)} | {_cell(cells.loc['ndcg_at_k'])} | {_cell(rho)} | "
            f"{_gap(rho, 'm0')} | {_gap(rho, 'm1')} |"
        )
    return "\n".join(lines)


def readme_tables(frames: dict[tuple[str, str], pd.DataFrame], metric: str) -> str:
    """README's Table 1 of one metric: methods x (market, split) cells ``mean [95 % CI] (gap to m0 [CI])``."""
    from hitsong.results import gap_columns

    keys = [(subset, split) for subset in SUBSETS for split in ("random", "artist") if (subset, split) in frames]
    names = {"random": "random", "artist": "artist-disjoint"}
    lines = [
        f"| {metric} | " + " | ".join(f"{subset}, {names[split]}" for subset, split in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    gap = gap_columns("m0")
    methods = list(dict.fromkeys(m for key in keys for m in frames[key]["method"]))
    for method in methods:
        cells = []
        for key in keys:
            rows = frames[key].query("method == @method and metric == @metric")
            if rows.empty:
                cells.append("")
                continue
            r = rows.iloc[0]
            cell = f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            if method != "m0" and gap.diff in r and not pd.isna(r[gap.diff]):
                cell += f" ({r[gap.diff]:+.2f} [{r[gap.low]:+.2f}, {r[gap.high]:+.2f}])"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(home: Path, log_text: str, splits: tuple[str, ...]) -> dict[str, Any]:
    """Step times, Table 1 per split and market, best epochs, paired gaps and the genre table."""
    from hitsong.demo.genres import confusion_markdown, demo_genres, genre_agreement

    runs = home / "runs"
    tables: dict[str, dict[str, Any]] = {}
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    reps = []
    for split in splits:
        for subset in SUBSETS:
            folder = runs / split / subset
            if not (folder / "table1.json").exists():
                continue
            blob = json.loads((folder / "table1.json").read_text())
            frame = pd.DataFrame(blob["cells"])
            frames[(subset, split)] = frame
            tables[f"{split}/{subset}"] = {
                "n_test": blob["n_test"],
                "k": blob["k"],
                "repeats": blob["repeats"],
                "markdown": table_markdown(frame, blob["labels"]),
                "rho_vs_m1": {
                    m: frame.query("method == @m and metric == 'spearman_rho'")
                    .iloc[0][["diff_m1", "diff_m1_low", "diff_m1_high"]]
                    .astype(float)
                    .to_dict()
                    for m in ("m5", "m6")
                },
            }
            r = pd.read_csv(folder / "repetitions.csv").assign(split=split, subset=subset)
            reps.append(r[["split", "subset", "method", "repetition", "best_epoch", "epochs", "seconds"]])
    rep_frame = pd.concat(reps, ignore_index=True) if reps else pd.DataFrame()
    cnn = rep_frame[rep_frame["method"].isin(CNN_METHODS)] if len(rep_frame) else rep_frame
    genres = demo_genres(home / "demo", home / "hitsong.duckdb")
    return {
        "steps": step_seconds(log_text),
        "training_per_split": split_seconds(log_text),
        "tables": tables,
        "cnn_best_epoch_past_2": float((cnn["best_epoch"] > 2).mean()) if len(cnn) else float("nan"),
        "best_epochs": {
            f"{s}/{sub} {m}": g["best_epoch"].tolist()
            for (s, sub, m), g in rep_frame.groupby(["split", "subset", "method"], sort=False)
        }
        if len(rep_frame)
        else {},
        "readme_tables": {m: readme_tables(frames, m) for m in ("spearman_rho", "ndcg_at_k")},
        "genre_confusion_markdown": confusion_markdown(genres["archetype"], genres["genre"]),
        "genre_agreement": genre_agreement(genres["archetype"], genres["genre"]).to_dict(),
    }


def _print_full(r: dict[str, Any]) -> None:
    print(f"load average before {r['load_before']}, after {r['load_after']}")
    print("| step | wall s |\n|---|---|")
    for step, s in r["steps"].items():
        print(f"| {step} | {s:.0f} |")
    print(f"| **whole run** | **{sum(r['steps'].values()):.0f}** |")
    for split, s in r["training_per_split"].items():
        print(f"training, {split} split (both markets): {s:.0f} s")
    for key, t in r["tables"].items():
        print(f"\n{key}: {t['n_test']} test songs, k = {t['k']}, repetitions {t['repeats']}\n{t['markdown']}")
    print(f"\nCNN repetitions with best epoch > 2: {r['cnn_best_epoch_past_2']:.0%}")
    for key, epochs in r["best_epochs"].items():
        print(f"  {key}: best epochs {epochs}")
    for text in r["readme_tables"].values():
        print("\n" + text)
    print("\n" + r["genre_confusion_markdown"])


def run_full(args: argparse.Namespace) -> dict[str, Any]:
    """``hitsong demo run --no-serve`` in ``args.home`` (unless ``--reuse``), then its summary."""
    home = Path(args.home).resolve()
    log_path = home / "demo-run.log"
    load_before = os.getloadavg()
    if not args.reuse:
        home.mkdir(parents=True, exist_ok=True)
        hitsong = Path(sys.executable).parent / "hitsong"
        cmd = [str(hitsong), "demo", "run", "--no-serve", "--mlflow-port", str(args.mlflow_port)]
        cmd += ["--splits", ",".join(args.splits)]
        env = {**os.environ, "HITSONG_HOME": str(home)}
        log.info("running %s with HITSONG_HOME=%s", " ".join(cmd), home)
        with log_path.open("w") as out:
            subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
        subprocess.run([str(hitsong), "server", "--stop"], env=env, check=False)
    report = summarise(home, log_path.read_text(), tuple(args.splits))
    report["load_before"] = [round(x, 2) for x in load_before]
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    (home / "bench_demo.json").write_text(json.dumps(report, indent=1, default=str))
    _print_full(report)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    steps = sub.add_parser("steps", help="per-step CPU costs and the projected make demo steps")
    steps.add_argument("--songs", type=int, default=16, help="songs of the default catalogue to time")
    steps.add_argument("--tagger-seconds", type=float, default=60.0, help="the tagger's window (the paper's: 60)")
    steps.add_argument(
        "--mean-epochs", type=float, default=None, help="epochs per repetition (default: the profile's maximum)"
    )
    full = sub.add_parser("full", help="hitsong demo run --no-serve in a scratch home, then its summary")
    full.add_argument("--home", required=True, help="scratch HITSONG_HOME (kept: the demo and features are reused)")
    full.add_argument("--splits", type=lambda s: tuple(s.split(",")), default=("random", "artist"))
    full.add_argument("--mlflow-port", type=int, default=5731)
    full.add_argument("--reuse", action="store_true", help="only summarise an earlier run in --home")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.mode == "steps":
        run_steps(args)
    else:
        run_full(args)


if __name__ == "__main__":
    main()
