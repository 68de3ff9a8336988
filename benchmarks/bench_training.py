"""Seconds per training epoch per method at demo size on this CPU, FLOPs per song, and projections.

Run: ``.venv/bin/python -m benchmarks.bench_training [--train 150 --val 20 --threads N]``

- Measures one epoch (training pass + validation pass) of each method with the ``demo``
  profile's batch size, on random log-mel-like data of the paper's shape (128 x 646), plus the
  one-off scan of a split (reading every song once for m1's statistics and the tags).
  Reports wall time and this process's CPU time: on a shared machine the wall time grows with
  other people's load, while CPU time / threads estimates the wall time on an idle machine.
- Counts FLOPs of one forward pass per song with ``torch.utils.flop_counter`` (a training
  step is taken as 3x the forward: forward + two backward products).
- Parallel processes (``--parallel``): the same jobs (``--jobs`` one-epoch trainings of m2 and m3
  on a float16 memory-mapped store like the feature store's) run in one process and in two
  single-threaded processes (``hitsong.training.parallel.run_repetitions``): the speed-up, and the
  share of each epoch a training step waits for its batch (memmap read + collation).
- Projects (a) the demo command (6 methods x repeats x 2 subsets with the demo profile's
  epoch cap) on this CPU, and (b) the paper-size run (8,000 train + 1,000 validation songs,
  10 repetitions, 6 methods, 2 subsets, 150 epochs) on one GPU at an assumed effective
  throughput, stated in the output.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from hitsong.models import METHODS, ModelConfig, build_model
from hitsong.training.config import TrainConfig
from hitsong.training.data import scan_subset
from hitsong.training.loop import fit

#: Assumed effective training throughput of one current data-centre GPU with AMP on these small
#: convolutions (batch 10): a deliberately modest 10 TFLOP/s, well below the ~300-1000 TFLOP/s
#: dense FP16 peak of an A100/H100, because batch-10 1-D convolutions keep a GPU mostly idle.
GPU_EFFECTIVE_TFLOPS = 10.0


class RandomSongs(Dataset):
    """``n`` songs of random (128, 646) float32 mels, 50 tags and targets."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.mel = rng.normal(2.0, 1.0, size=(n, 128, 646)).astype(np.float32)
        self.tags = rng.uniform(size=(n, 50)).astype(np.float32)
        self.target = rng.normal(20.0, 5.0, size=n).astype(np.float32)

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> dict:
        return {"mel": self.mel[i], "tags": self.tags[i], "target": self.target[i], "song_id": f"s{i}"}


def forward_flops(name: str) -> int:
    """FLOPs of one forward pass for one song of 128 x 646."""
    model = build_model(name, ModelConfig()).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 128, 646), torch.zeros(1, 50))
    return int(counter.get_total_flops())


class MemmapSongs(Dataset):
    """``n`` random songs stored like the feature store: a float16 memmap of (n, 128, 646), read per item."""

    def __init__(self, n: int, seed: int, folder: str) -> None:
        rng = np.random.default_rng(seed)
        self.path = os.path.join(folder, f"mel-{seed}.f16")
        mels = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float16, shape=(n, 128, 646))
        for i in range(n):
            mels[i] = rng.normal(2.0, 1.0, size=(128, 646))
        mels.flush()
        del mels
        self.tags = rng.uniform(size=(n, 50)).astype(np.float32)
        self.target = rng.normal(20.0, 5.0, size=n).astype(np.float32)
        self._mels: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mels": None}

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> dict:
        if self._mels is None:
            self._mels = np.load(self.path, mmap_mode="r")
        return {"mel": np.asarray(self._mels[i], dtype=np.float32), "tags": self.tags[i], "target": self.target[i],
                "song_id": f"s{i}"}  # fmt: skip


def _epoch_job(method: str, repetition: int, *, data: object) -> float:
    """One training epoch of ``method`` (seeded by the repetition); its wall seconds."""
    torch.manual_seed(repetition)
    model = build_model(method, ModelConfig())
    model.fit_input_stats(data.train.stats, data.train.tags)  # type: ignore[attr-defined]
    start = time.perf_counter()
    fit(model, data, TrainConfig.for_profile("demo", max_epochs=1), seed=repetition, device=torch.device("cpu"),
        label=method)  # type: ignore[arg-type]  # fmt: skip
    return time.perf_counter() - start


def _empty_job(method: str, repetition: int, *, data: object) -> float:
    """A job that does nothing: what is left of a pool run is the pool's own start."""
    return 0.0


def _data_wait_share(method: str, data: object) -> tuple[float, float]:
    """(seconds per epoch, share of it spent waiting for batches) of one training pass of ``method``."""
    from hitsong.training.loop import batches, forward

    torch.manual_seed(0)
    model = build_model(method, ModelConfig())
    model.fit_input_stats(data.train.stats, data.train.tags)  # type: ignore[attr-defined]
    opt = torch.optim.Adagrad(model.parameters(), lr=1e-3)
    z = data.z(data.train)  # type: ignore[attr-defined]
    model.train()
    waiting, start = 0.0, time.perf_counter()
    gen = batches(model, data.train, z, batch_size=10, device=torch.device("cpu"),  # type: ignore[attr-defined]
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    while True:
        t = time.perf_counter()
        try:
            x, tags, target = next(gen)
        except StopIteration:
            break
        waiting += time.perf_counter() - t
        opt.zero_grad()
        torch.nn.functional.mse_loss(forward(model, x, tags), target).backward()
        opt.step()
    total = time.perf_counter() - start
    return total, waiting / total


def parallel_section(args: argparse.Namespace) -> None:
    import tempfile

    from hitsong.training.parallel import run_repetitions

    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        data = scan_subset(
            {"train": MemmapSongs(args.train, 1, folder), "val": MemmapSongs(args.val, 2, folder),
             "test": MemmapSongs(args.val, 3, folder)},
            subset="bench",
        )  # fmt: skip
        torch.set_num_threads(1)
        for method in ("m2", "m3"):
            seconds, share = _data_wait_share(method, data)
            print(f"{method}: {args.train / seconds:.1f} songs/s per training pass (1 thread), "
                  f"{100 * share:.1f} % of it waiting for batches (memmap read + collation)")  # fmt: skip
        jobs = [(m, r) for r in range(args.jobs // 2) for m in ("m2", "m3")]
        # the pool's fixed cost (spawn, imports, the data shipped to each worker), paid once per
        # subset in training: two empty jobs in a fresh 2-process pool
        start = time.perf_counter()
        list(run_repetitions([("m2", 0), ("m3", 0)], _empty_job, {"data": data}, processes=2, threads=1))
        pool_start = time.perf_counter() - start
        print(f"start of a 2-process pool (spawn, imports, data to each worker): {pool_start:.1f} s wall")
        walls = {}
        for processes in (1, 2):
            start = time.perf_counter()
            list(run_repetitions(jobs, _epoch_job, {"data": data}, processes=processes, threads=1))
            walls[processes] = time.perf_counter() - start
            print(f"{len(jobs)} one-epoch jobs in {processes} process(es): {walls[processes]:.1f} s wall")
        print(f"speed-up with 2 processes: {walls[1] / walls[2]:.2f}x including the pool's start, "
              f"{walls[1] / max(walls[2] - pool_start, 1e-9):.2f}x without it "
              f"(load average {os.getloadavg()[0]:.1f} at the end)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=150)
    p.add_argument("--val", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="demo repeats (default: the demo profile's)")
    p.add_argument("--parallel", action="store_true", help="measure data waiting and the 2-process speed-up only")
    p.add_argument("--jobs", type=int, default=4, help="one-epoch jobs for --parallel (even)")
    args = p.parse_args()
    if args.parallel:
        logging.basicConfig(level=logging.WARNING)
        print(f"load average {os.getloadavg()[0]:.1f} at start")
        parallel_section(args)
        return
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    demo = TrainConfig.for_profile("demo")
    repeats = args.repeats or demo.repeats
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} at start")

    start, cpu0 = time.perf_counter(), time.process_time()
    data = scan_subset(
        {"train": RandomSongs(args.train, 1), "val": RandomSongs(args.val, 2), "test": RandomSongs(args.val, 3)},
        subset="bench",
    )
    scan_s = time.perf_counter() - start
    scan_cpu = time.process_time() - cpu0
    threads = torch.get_num_threads()
    print(f"scan of {args.train}+{2 * args.val} songs: wall {scan_s:.2f} s, cpu {scan_cpu:.2f} s")

    one_epoch = TrainConfig.for_profile("demo", max_epochs=1)
    per_epoch: dict[str, float] = {}
    cpu_epoch: dict[str, float] = {}
    flops: dict[str, int] = {}
    # songs/s: training songs per second of epoch (training pass + validation), wall and idle estimate
    print(
        f"{'method':<6} {'wall s/epoch':>12} {'cpu s/epoch':>12} {'songs/s':>8} {'songs/s idle':>12}"
        f" {'fwd MFLOP/song':>15}"
    )
    for name in METHODS:
        torch.manual_seed(0)
        model = build_model(name, ModelConfig())
        model.fit_input_stats(data.train.stats, data.train.tags)
        fit(model, data, one_epoch, seed=0, device=torch.device("cpu"), label=name)  # warm-up
        t, c = time.perf_counter(), time.process_time()
        fit(model, data, one_epoch, seed=0, device=torch.device("cpu"), label=name)
        per_epoch[name] = time.perf_counter() - t
        cpu_epoch[name] = time.process_time() - c
        flops[name] = forward_flops(name)
        rate, idle_rate = args.train / per_epoch[name], args.train * threads / cpu_epoch[name]
        print(
            f"{name:<6} {per_epoch[name]:>12.2f} {cpu_epoch[name]:>12.2f} {rate:>8.1f} {idle_rate:>12.1f}"
            f" {flops[name] / 1e6:>15.1f}"
        )

    # (a) the demo command on this CPU: every repetition runs at most demo.max_epochs epochs
    for label, epoch_s, scan in (
        ("wall (as measured)", sum(per_epoch.values()), scan_s),
        (f"idle estimate (cpu / {threads} threads)", sum(cpu_epoch.values()) / threads, scan_cpu / threads),
    ):
        total = 2 * (scan + epoch_s * repeats * demo.max_epochs)
        print(
            f"demo projection, {label}: 2 subsets x 6 methods x {repeats} reps x <= {demo.max_epochs} epochs "
            f"= {total / 60:.1f} min (upper bound; early stopping shortens it)"
        )

    # (b) paper size on one GPU
    songs_per_epoch = 8000 * 3 + 1000  # training step = 3x forward; validation forward only
    epoch_flops = {m: f * songs_per_epoch for m, f in flops.items()}
    total_flops = sum(epoch_flops.values()) * 150 * 10 * 2
    gpu_s = total_flops / (GPU_EFFECTIVE_TFLOPS * 1e12)
    cpu_rate = sum(flops[m] * (3 * args.train + args.val) for m in METHODS) / (sum(cpu_epoch.values()) / threads)
    cpu_s = total_flops / cpu_rate
    print(f"CPU throughput, idle estimate: {cpu_rate / 1e9:.1f} GFLOP/s (all methods, training + validation)")
    print(
        f"paper-size run (8,000/1,000 songs, 10 reps, 6 methods, 2 subsets, 150 epochs): "
        f"{total_flops / 1e15:.1f} PFLOP -> {gpu_s / 3600:.1f} h on one GPU at an assumed "
        f"{GPU_EFFECTIVE_TFLOPS:g} TFLOP/s effective; {cpu_s / 3600 / 24:.0f} days on this CPU (idle estimate)"
    )


if __name__ == "__main__":
    main()
