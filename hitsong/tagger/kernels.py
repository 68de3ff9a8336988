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
   whole batch. Results depend on the thread count only through float32 rounding (~1e-6).

Precision ``exact`` computes the convolutions in float32 with oneDNN (as the port).
Precision ``fast`` computes the two timbral convolutions (80 % of the 1.4 G multiply-adds per
patch) as bfloat16 matrix products over an im2col of the input, which runs at close to the
CPU's bfloat16 peak where it has native bfloat16 dot products; everything after the maximum
(bias, ReLU, batch norms, mid end, back end) stays float32. Which one runs is decided by
:mod:`hitsong.tagger.precision`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from hitsong.errors import ModelError
from hitsong.tagger.nets import ConvReluBN, FrozenBatchNorm, MusiCNN

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


def bn_affine(bn: FrozenBatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference batch norm as ``scale * x + shift``: ``(scale, shift)``, each ``(C,)`` float32."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class _PooledBlock(nn.Module):
    """One front-end block ``max_mel BN(ReLU(conv + b))`` as ``act(max_mel(conv'))``.

    ``conv'`` is the bias-free convolution with the filters of negative-scale channels negated.

    Parameters
    ----------
    block : ConvReluBN
        The port's block (its conv must have one input channel).
    time_offset : int
        Where this block's window starts in the shared, time-padded input.
    gemm_dtype : torch.dtype or None
        Compute the convolution as an im2col matrix product in this dtype (bfloat16 for
        ``fast``); ``None`` means float32 ``conv2d`` (oneDNN).
    """

    weight: torch.Tensor
    sign: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, block: ConvReluBN, *, time_offset: int, gemm_dtype: torch.dtype | None) -> None:
        super().__init__()
        weight = block.conv.weight.detach()  # (C, 1, kt, kf)
        if weight.shape[1] != 1:
            raise ModelError(f"a pooled front-end block needs one input channel, got {weight.shape[1]}")
        scale, shift = bn_affine(block.bn)
        sign = torch.where(scale < 0, -1.0, 1.0)
        signed = weight * sign[:, None, None, None]
        c, _, kt, kf = signed.shape
        self.kt, self.kf, self.time_offset, self.gemm_dtype = kt, kf, time_offset, gemm_dtype
        if gemm_dtype is not None:  # (kt * kf, C), rows in (time, mel) order like the im2col columns
            self.register_buffer("weight", signed.reshape(c, kt * kf).t().contiguous().to(gemm_dtype))
        else:
            self.register_buffer("weight", signed.contiguous())
        self.register_buffer("sign", sign[:, None])  # (C, 1): broadcast over time
        conv_bias = block.conv.bias
        if conv_bias is None:
            raise ModelError("a pooled front-end block needs a convolution with a bias")
        self.register_buffer("bias", conv_bias.detach()[:, None].clone())
        self.register_buffer("scale", scale[:, None])
        self.register_buffer("shift", shift[:, None])

    def forward(self, padded: torch.Tensor, padded_low: torch.Tensor | None, frames: int) -> torch.Tensor:
        """``(b, T_pad, M)`` shared padded input (and its bfloat16 copy) -> ``(b, C, frames)``."""
        lo, hi = self.time_offset, self.time_offset + frames + self.kt - 1
        if self.gemm_dtype is not None:
            source = padded if self.gemm_dtype == padded.dtype else padded_low
            if source is None:
                raise ModelError(f"a {self.gemm_dtype} block needs the input in {self.gemm_dtype}")
            x = source[:, lo:hi]  # (b, frames + kt - 1, M)
            b = x.shape[0]
            cols = x.unfold(1, self.kt, 1).unfold(2, self.kf, 1)  # (b, frames, M', kt, kf)
            n_mel = cols.shape[2]
            out = cols.reshape(b * frames * n_mel, self.kt * self.kf) @ self.weight  # (b*frames*M', C)
            peak = out.view(b, frames, n_mel, -1).amax(dim=2).transpose(1, 2).float()  # (b, C, frames)
        else:
            peak = F.conv2d(padded[:, None, lo:hi], self.weight).amax(dim=3)  # (b, C, frames)
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
        fast = precision == "fast"
        timbral_dtype = torch.bfloat16 if fast else None
        n_timbral = len(net.timbral)
        self.blocks = nn.ModuleList(
            _PooledBlock(b, time_offset=self.pad_before - b.pad[2], gemm_dtype=timbral_dtype if i < n_timbral else None)
            for i, b in enumerate(blocks)
        )
        self.uses_bf16 = fast
        self.net = net

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """Front end of a few patches: ``(b, T, M)`` input-normalised -> ``(b, 561, T)``."""
        frames = x.shape[1]
        padded = F.pad(x, (0, 0, self.pad_before, self.pad_after))  # (b, T + 127, M)
        padded_low = padded.to(torch.bfloat16) if self.uses_bf16 else None
        return torch.cat([blk(padded, padded_low, frames) for blk in self.blocks], dim=1)

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
        x = x * self.in_scale + self.in_shift
        chunks = list(torch.split(x, self.front_chunk))
        threads = torch.get_num_threads()
        if x.device.type == "cpu" and threads > 1 and len(chunks) > 1:
            parts = list(patch_pool(threads).map(self._front_no_grad, chunks))
        else:
            parts = [self.front(c) for c in chunks]
        return self.net.head(torch.cat(parts))  # (B, 561, T) -> (B, 50)

    def _front_no_grad(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread; the kernel is inference only
            return self.front(x)


__all__ = ["FRONT_CHUNK", "MusiCNNKernel", "bn_affine", "patch_pool"]
