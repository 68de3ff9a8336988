"""Cost of ``hitsong demo init`` at its defaults: CPU seconds per song, projected to the catalogue.

``python -m benchmarks.bench_demo [--sample 24] [--full]``

On a shared machine wall time says little, so this measures CPU time (``time.process_time``)
of rendering and of encoding a random sample of the default catalogue's songs, in this one
process, and projects the whole catalogue from the sampled cost per second of audio. The
baseline in the same run is writing the same samples as 16-bit WAV (the cheapest encoder).
The projected wall time on N idle cores is total CPU / N. ``--full`` also runs the real
``init_demo`` with the defaults and reports its wall time and the CPU time of its workers.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from hitsong.demo import init_demo
from hitsong.demo.synth import render_song, write_audio
from hitsong.demo.writer import DemoConfig, build_catalogue

log = logging.getLogger("benchmarks.bench_demo")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=24, help="songs of the default catalogue to time")
    ap.add_argument("--full", action="store_true", help="also run init_demo with the defaults")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config = DemoConfig()
    _songs, plans = build_catalogue(config)
    total_audio = sum(p.duration_s for p in plans)
    rng = np.random.default_rng(0)
    picked = rng.choice(len(plans), size=min(args.sample, len(plans)), replace=False)
    render_cpu = encode_cpu = wav_cpu = audio = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in picked:
            plan = plans[int(i)]
            t0 = time.process_time()
            y = render_song(plan)
            t1 = time.process_time()
            write_audio(
                y,
                Path(tmp) / f"s.{plan.audio_format}",
                sr=plan.sample_rate,
                audio_format=plan.audio_format,
                subtype=plan.subtype,
            )
            t2 = time.process_time()
            write_audio(y, Path(tmp) / "s.wav", sr=plan.sample_rate, audio_format="wav", subtype="PCM_16")
            t3 = time.process_time()
            render_cpu += t1 - t0
            encode_cpu += t2 - t1
            wav_cpu += t3 - t2
            audio += y.shape[0] / plan.sample_rate
    per_s = (render_cpu + encode_cpu) / audio
    projected = per_s * total_audio
    print(
        f"defaults: {len(plans)} songs, {total_audio / 60:.0f} min of audio "
        f"(mean {total_audio / len(plans):.0f} s), {config.users} users per market"
    )
    print(f"sample: {len(picked)} songs, {audio / 60:.1f} min of audio")
    print(f"| render | {audio / render_cpu:.0f}x real time per core |")
    print(
        f"| encode (format mix) | {audio / encode_cpu:.0f}x real time per core "
        f"({encode_cpu / wav_cpu:.1f}x the cost of WAV) |"
    )
    print(f"| render + encode | {audio / (render_cpu + encode_cpu):.0f}x real time per core |")
    print(f"| projected CPU for the defaults | {projected:.0f} s -> {projected / 2:.0f} s wall on 2 idle cores |")
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.process_time()
            summary = init_demo(Path(tmp) / "demo")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) + time.process_time() - t0
            print(f"| full init_demo | {summary.elapsed_seconds:.0f} s wall, {cpu:.0f} s CPU |")


if __name__ == "__main__":
    main()
