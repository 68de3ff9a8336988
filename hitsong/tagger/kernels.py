"""MTT_musicnn inference in fewer, larger steps: the same network, restructured for CPUs.

:class:`~hitsong.tagger.nets.MusiCNN` is the readable port, checked layer by layer against the
original. This module computes the same function faster, with two rearrangements that hold
exactly in real arithmetic (measured, BENCHMARKS.md "Tagger"):

1. **Pool before the activation.** Each front-end block is ``max over mel of
   BN(ReLU(conv + bias))`` and batch norm at inference is ``s * x + t`` per channel. ReLU and
   ``s * x + t`` with ``s >= 0`` are non-decreasing, so the maximum can be taken first, on the
   raw convolution; for a channel with ``s < 0`` the maximum of the activation is at the
   *minimum* of the convolution, which is the maximum of the convolution with negated weights.
   So the filters of negative-``s`` channels are stored negated, the block takes one maximum
   over mel of the bias-free convolution, and bias, ReLU and batch norm run on a tensor 30-60x
   smaller (``(B, C, T)`` instead of ``(B, C, T, mel)``). Because rounding is monotone too, this
   changes nothing beyond float32 summation order.
2. **One patch at a time through the front end, patches in parallel.** The front end's
   intermediate maps are ~9 MB per patch in float32; a 20-patch batch spills out of the caches
   and runs ~2x slower than the same patches one by one (measured), so the front end takes
   :data:`FRONT_CHUNK` patches at a time. With ``torch.get_num_threads() = n > 1`` on a CPU,
   ``n`` worker threads (one torch thread each) take the chunks from a shared queue instead of
   every operation being split over ``n`` OpenMP threads: the same speed on an idle machine,
   and on a busy one a descheduled thread no longer stalls every operation at an OpenMP barrier
   (measured 5x faster at load 10 on 2 cores). The mid and back end (small) then run on the
   workers too, one slice of the batch each. The caller's thread runs no torch operation at
   all: a parallel one there left its OpenMP team spinning beside the workers (measured +40 %
   CPU time). Results depend on the thread count only through float32 rounding (~1e-6).

Precision ``exact`` computes the convolutions in float32 with oneDNN (as the port).
Precision ``fast`` computes the two timbral convolutions (80 % of the 1.4 G multiply-adds per
patch) as int8 matrix products and the three temporal ones as bfloat16 band products
(:mod:`hitsong.tagger.fastblocks`), where the CPU has native int8 and bfloat16 dot products;
everything after the maximum (bias, ReLU, batch norms, mid end, back end) stays float32. Which
one runs is decided by :mod:`hitsong.tagger.precision`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from hitsong.errors import ModelError
from hitsong.tagger.fastblocks import TOEPLITZ_FRAMES, TemporalToeplitz, TimbralInt8, quantize_patch
from hitsong.tagger.nets import ConvReluBN, FrozenBatchNorm, MusiCNN

T = TypeVar("T")

#: Patches per front-end step (cache-sized; see the module docstring).
FRONT_CHUNK = 1


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _one_torch_thread() -> None:
    torch.set_num_threads(1)  # this worker thread's own OpenMP team; the caller's is unchanged


def patch_pool(n: int) -> ThreadPoolExecutor:
    """The process's pool of ``n`` front-end worker threads (one torch thread each), made once.

    A forked child does not inherit the threads; it must run torch with one thread anyway
    (torch's OpenMP hangs in a forked child otherwise, measured), and then the pool is not used.
    """
    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:
            pool = ThreadPoolExecutor(n, thread_name_prefix="hitsong-tagger", initializer=_one_torch_thread)
            _pools[n] = pool
        return pool


def on_one_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` under ``torch.inference_mode`` on a worker thread with one torch thread.

    For small CPU steps beside the tagger (a log-mel, a hit-song network): two OpenMP threads
    gain nothing on them idle, and on a busy machine a descheduled OpenMP thread stalls the
    step at its barrier and keeps spinning after it (measured: m6's network 4 ms idle, 0.5 s at
    load 8 on 2 cores). Runs in the caller's thread when torch already has one thread.
    """

    def run() -> T:
        with torch.inference_mode():
            return fn(*args)

    threads = torch.get_num_threads()
    return run() if threads < 2 else patch_pool(threads).submit(run).result()


def bn_affine(bn: FrozenBatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference batch norm as ``scale * x + shift``: ``(scale, shift)``, each ``(C,)`` float32."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class _PooledBlock(nn.Module):
    """One front-end block ``max_mel BN(ReLU(conv + b))`` as ``act(max_mel(conv'))``.

    ``conv'`` is the bias-free convolution with the filters of negative-scale channels negated;
    ``act`` is ``relu(sign * peak + b) * s + t`` per channel, in float32.

    Parameters
    ----------
    block : ConvReluBN
        The port's block (its conv must have one input channel).
    time_offset : int
        Where this block's window starts in the shared, time-padded input.
    fast : bool
        Also build the low-precision form (:mod:`hitsong.tagger.fastblocks`) in :attr:`low`.
    """

    weight: torch.Tensor
    sign: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, block: ConvReluBN, *, time_offset: int, fast: bool) -> None:
        super().__init__()
        weight = block.conv.weight.detach()  # (C, 1, kt, kf)
        if weight.shape[1] != 1:
            raise ModelError(f"a pooled front-end block needs one input channel, got {weight.shape[1]}")
        conv_bias = block.conv.bias
        if conv_bias is None:
            raise ModelError("a pooled front-end block needs a convolution with a bias")
        scale, shift = bn_affine(block.bn)
        sign = torch.where(scale < 0, -1.0, 1.0)
        signed = (weight * sign[:, None, None, None]).contiguous()
        self.kt, self.kf, self.time_offset = signed.shape[2], signed.shape[3], time_offset
        self.register_buffer("weight", signed)
        self.register_buffer("sign", sign[:, None])  # (C, 1): broadcast over time
        self.register_buffer("bias", conv_bias.detach()[:, None].clone())
        self.register_buffer("scale", scale[:, None])
        self.register_buffer("shift", shift[:, None])
        self.temporal = self.kf == 1
        self.low: TimbralInt8 | TemporalToeplitz | None = None
        if fast:
            kind = TemporalToeplitz if self.temporal else TimbralInt8
            self.low = kind(signed, time_offset=time_offset)

    def exact_peak(self, padded: torch.Tensor, frames: int) -> torch.Tensor:
        """``(b, T_pad, M)`` float32 padded input -> ``(b, C, frames)`` maxima over mel (oneDNN ``conv2d``)."""
        lo = self.time_offset
        return F.conv2d(padded[:, None, lo : lo + frames + self.kt - 1], self.weight).amax(dim=3)

    def activate(self, peak: torch.Tensor) -> torch.Tensor:
        """Bias, ReLU and batch norm on the maxima ``(..., C, frames)``, float32."""
        return torch.relu(peak * self.sign + self.bias) * self.scale + self.shift


class MusiCNNKernel(nn.Module):
    """MTT_musicnn for inference, restructured (see the module docstring); logits like the port.

    Parameters
    ----------
    net : MusiCNN
        The port, with its weights loaded (shared, not copied, for the mid and back end).
    precision : {"exact", "fast"}
        Resolved precision (:func:`hitsong.tagger.precision.resolve_precision`).
    front_chunk : int
        Patches per front-end step.
    """

    def __init__(self, net: MusiCNN, *, precision: str, front_chunk: int = FRONT_CHUNK) -> None:
        super().__init__()
        if precision not in ("exact", "fast"):
            raise ModelError(f"MusiCNNKernel needs a resolved precision 'exact' or 'fast', got {precision!r}")
        if front_chunk < 1:
            raise ModelError(f"front_chunk must be >= 1, got {front_chunk}")
        self.precision = precision
        self.front_chunk = front_chunk
        self.in_scale, self.in_shift = (float(v) for v in bn_affine(net.input_bn))
        blocks = [*net.timbral, *net.temporal]
        self.pad_before = max(b.pad[2] for b in blocks)
        self.pad_after = max(b.pad[3] for b in blocks)
        self.low_precision = precision == "fast"
        self.blocks = nn.ModuleList(
            _PooledBlock(b, time_offset=self.pad_before - b.pad[2], fast=self.low_precision) for b in blocks
        )
        self.net = net

    @property
    def pooled(self) -> list[_PooledBlock]:
        """The five front-end blocks (timbral, then temporal)."""
        return [cast(_PooledBlock, b) for b in self.blocks]

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """Front end of a few patches: ``(b, T, M)`` input-normalised -> ``(b, 561, T)``."""
        frames = x.shape[1]
        if not self.low_precision:
            padded = F.pad(x, (0, 0, self.pad_before, self.pad_after))  # (b, T + 127, M)
            return torch.cat([blk.activate(blk.exact_peak(padded, frames)) for blk in self.pooled], dim=1)
        # the temporal band products read up to a whole row of TOEPLITZ_FRAMES past the end
        extra = -frames % TOEPLITZ_FRAMES
        out = []
        for patch in x:
            padded = F.pad(patch, (0, 0, self.pad_before, self.pad_after + extra))  # (T_pad, M)
            levels, centre, step = quantize_patch(padded)  # for the int8 timbral blocks
            padded_t = padded.t().to(torch.bfloat16).contiguous()  # (M, T_pad) for the temporal blocks
            peaks = []
            for blk in self.pooled:
                low = blk.low
                if isinstance(low, TemporalToeplitz):
                    peaks.append(blk.activate(low(padded_t, frames)))
                elif isinstance(low, TimbralInt8):
                    peaks.append(blk.activate(low(levels, centre, step, frames)))
                else:
                    raise ModelError("a fast kernel block without its low-precision form")
            out.append(torch.cat(peaks))
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tag logits.

        Parameters
        ----------
        x : Tensor [shape=(B, T, 96), dtype=float32]
            Log-mel patches.

        Returns
        -------
        Tensor [shape=(B, 50), dtype=float32]
        """
        chunks = list(torch.split(x, self.front_chunk))
        threads = torch.get_num_threads()
        if x.device.type != "cpu" or threads < 2 or len(chunks) < 2:
            return self.net.head(torch.cat([self._front(c) for c in chunks]))
        # Every step on the workers (one torch thread each), none in the caller's thread: a
        # parallel operation there would leave its OpenMP team spinning beside the workers.
        pool = patch_pool(threads)
        fronts = list(pool.map(self._front, chunks))  # each (b, 561, T)
        per_worker = -(-len(fronts) // threads)
        groups = [fronts[i : i + per_worker] for i in range(0, len(fronts), per_worker)]
        return torch.cat(list(pool.map(self._head, groups)))

    def _front(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread; the kernel is inference only
            return self.front(x * self.in_scale + self.in_shift)

    def _head(self, fronts: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self.net.head(torch.cat(fronts))


__all__ = ["FRONT_CHUNK", "MusiCNNKernel", "bn_affine", "on_one_thread", "patch_pool"]
