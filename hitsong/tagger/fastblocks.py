"""The ``fast`` front-end blocks of :class:`~hitsong.tagger.kernels.MusiCNNKernel`: int8 and bfloat16 GEMMs.

Each MTT_musicnn front-end block is ``max over mel of BN(ReLU(conv + b))``; the kernel computes it
as ``act(max_mel(conv'))`` (see :mod:`hitsong.tagger.kernels`). Here ``conv'`` runs as a few
low-precision matrix products with exact (int32) or float32 accumulation, one patch at a time
(the maps of one patch fit the caches); everything after the maximum is float32:

- **timbral** blocks (7 frames x 38 or 67 mel bands, 204 filters; 80 % of the network's
  multiply-adds): int8 x int8 -> int32 products (``torch._int_mm``, AVX-512 VNNI: twice the
  bfloat16 rate, measured) over an im2col of the patch, :data:`TIMBRAL_CHUNK` output frames at
  a time. The patch is quantised once (:func:`quantize_patch`: centred on the middle of its
  range, 127 steps each side); the filters per channel (127 steps each side of zero).
- **temporal** blocks (128, 64, 32 frames x 1 band, 51 filters): bfloat16. Per mel band a banded
  (Toeplitz) product: :data:`TOEPLITZ_FRAMES` consecutive output frames come from one row of
  ``TOEPLITZ_FRAMES + k - 1`` consecutive input frames times a ``(TOEPLITZ_FRAMES + k - 1,
  TOEPLITZ_FRAMES * C)`` band matrix of the filters. That reads the input where it lies (no
  k-fold im2col) for ~15-70 % extra multiply-adds on zeros (measured faster than float32
  ``conv2d`` and than an im2col GEMM).

Both round the filters with **error diffusion** (:func:`diffuse_round`): walking a filter's taps
in order, each tap's rounding error is added to the next tap before it is rounded, so the errors
nearly cancel over any run of neighbouring taps and a slowly varying input (log-mel over time
and frequency) sees almost none of them. With round-to-nearest filters these precisions are 2-5x
further from ``exact`` (and int8 timbral blocks changed a top-3 tag of a reference clip); with
diffused filters they are within the stated bounds (:mod:`hitsong.tagger.precision`; figures
in BENCHMARKS.md "Tagger").
"""

from __future__ import annotations

import torch
from torch import nn

from hitsong.errors import ModelError

#: Output frames per timbral GEMM (keeps the column matrix in the L2 cache).
TIMBRAL_CHUNK = 32
#: Output frames per row of a temporal block's band matrix.
TOEPLITZ_FRAMES = 8
#: int8 levels on each side of zero.
INT8_STEPS = 127


def diffuse_round(
    values: torch.Tensor, *, dtype: torch.dtype = torch.bfloat16, step: torch.Tensor | None = None
) -> torch.Tensor:
    """Round the rows of ``values`` in order, each row's rounding error carried into the next row.

    Parameters
    ----------
    values : Tensor [shape=(K, C)]
        Filter taps along ``K`` in the order to walk, one filter per column.
    dtype : torch.dtype
        ``torch.bfloat16`` (round to the nearest bfloat16), or ``torch.int8`` with ``step``.
    step : Tensor [shape=(C,)], optional
        For ``int8``: the value of one level per column; levels are clamped to
        ``+-INT8_STEPS``.

    Returns
    -------
    Tensor [shape=(K, C), dtype=dtype]
        bfloat16 values, or int8 levels. Every partial sum over rows ``0..k`` is within half a
        level (or half a bfloat16 unit of that sum) of the exact one, instead of drifting like a
        random walk.
    """
    exact = values.detach().to(torch.float64)
    if dtype == torch.int8:
        if step is None:
            raise ModelError("int8 rounding needs the step of one level per column")
        exact = exact / step.detach().to(torch.float64)
    elif dtype != torch.bfloat16:
        raise ModelError(f"diffuse_round rounds to bfloat16 or int8, not {dtype}")
    out = torch.empty(exact.shape, dtype=dtype)
    carry = torch.zeros(exact.shape[1:], dtype=torch.float64)
    for k in range(exact.shape[0]):
        wanted = exact[k] + carry
        if dtype == torch.int8:
            level = torch.clamp(torch.round(wanted), -INT8_STEPS, INT8_STEPS)
            out[k] = level.to(torch.int8)
        else:
            out[k] = wanted.to(dtype)
            level = out[k].to(torch.float64)
        carry = wanted - level
    return out


def serpentine(rows: int, cols: int) -> torch.Tensor:
    """Indices of a ``(rows, cols)`` grid flattened row-major, walked column by column, alternating up and down.

    Consecutive indices are always neighbours on the grid, so error diffusion along this order
    carries each error to an adjacent tap.
    """
    grid = torch.arange(rows * cols).view(rows, cols)
    return torch.cat([grid[:, j] if j % 2 == 0 else grid[:, j].flip(0) for j in range(cols)])


def quantize_patch(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A padded float32 patch as int8 levels around the middle of its range.

    Parameters
    ----------
    padded : Tensor [shape=(T_pad, M), dtype=float32]

    Returns
    -------
    levels : Tensor [shape=(T_pad, M), dtype=int8]
        ``round((padded - centre) / step)``.
    centre, step : Tensor [shape=(), dtype=float32]
        ``padded ~= centre + step * levels``; a constant patch has ``levels = 0``.
    """
    lo, hi = torch.aminmax(padded)
    centre = (hi + lo) / 2
    step = torch.clamp((hi - lo) / (2 * INT8_STEPS), min=torch.finfo(torch.float32).tiny)
    return torch.round((padded - centre) / step).to(torch.int8), centre, step


class TimbralInt8(nn.Module):
    """``max over mel`` of a 2-D convolution over one patch, as int8 im2col GEMMs.

    Parameters
    ----------
    signed : Tensor [shape=(C, 1, kt, kf), dtype=float32]
        The bias-free filters (negated where the batch-norm scale is negative).
    time_offset : int
        Where this block's window starts in the shared, time-padded input.
    """

    levels: torch.Tensor
    step: torch.Tensor
    level_sum: torch.Tensor

    def __init__(self, signed: torch.Tensor, *, time_offset: int) -> None:
        super().__init__()
        c, _, kt, kf = signed.shape
        self.kt, self.kf, self.time_offset = kt, kf, time_offset
        taps = signed.reshape(c, kt * kf).t()  # (kt * kf, C), rows in (time, mel) order like the im2col columns
        step = torch.clamp(taps.abs().amax(dim=0) / INT8_STEPS, min=torch.finfo(torch.float32).tiny)
        order = serpentine(kt, kf)  # along time within a mel column, then the next mel column
        levels = torch.empty(taps.shape, dtype=torch.int8)
        levels[order] = diffuse_round(taps[order], dtype=torch.int8, step=step)
        self.register_buffer("levels", levels)
        self.register_buffer("step", step[:, None])  # (C, 1)
        # the filters' sum, for the patch's centre: conv(centre + s * q) = centre * sum(w) + s * conv(q)
        self.register_buffer("level_sum", (levels.double().sum(dim=0) * step.double()).float()[:, None])

    def forward(self, levels: torch.Tensor, centre: torch.Tensor, step: torch.Tensor, frames: int) -> torch.Tensor:
        """A quantised padded patch (:func:`quantize_patch`) -> ``(C, frames)`` float32 maxima over mel."""
        src = levels[self.time_offset : self.time_offset + frames + self.kt - 1]
        n_mel = src.shape[1] - self.kf + 1
        peaks = []
        for start in range(0, frames, TIMBRAL_CHUNK):
            n = min(TIMBRAL_CHUNK, frames - start)
            cols = src[start : start + n + self.kt - 1].unfold(0, self.kt, 1).unfold(1, self.kf, 1)  # (n, M', kt, kf)
            out = torch._int_mm(cols.reshape(n * n_mel, self.kt * self.kf), self.levels)  # (n * M', C) int32
            peaks.append(out.view(n, n_mel, -1).amax(dim=1))
        # positive per-channel scale and a per-channel constant commute with the maximum
        return torch.cat(peaks).t().float() * (step * self.step) + centre * self.level_sum


class TemporalToeplitz(nn.Module):
    """``max over mel`` of a 1-D convolution over time (kernel ``(k, 1)``) per mel band, as a bfloat16 band GEMM.

    Parameters
    ----------
    signed : Tensor [shape=(C, 1, k, 1), dtype=float32]
        The bias-free filters (negated where the batch-norm scale is negative).
    time_offset : int
        Where this block's window starts in the shared, time-padded input.
    """

    band: torch.Tensor

    def __init__(self, signed: torch.Tensor, *, time_offset: int) -> None:
        super().__init__()
        c, _, k, kf = signed.shape
        if kf != 1:
            raise ModelError(f"a temporal block has kernels k x 1, got {k} x {kf}")
        self.k, self.channels, self.time_offset = k, c, time_offset
        taps = diffuse_round(signed.reshape(c, k).t()).float()  # (k, C), rounded once
        band = torch.zeros(TOEPLITZ_FRAMES + k - 1, TOEPLITZ_FRAMES, c)
        for j in range(TOEPLITZ_FRAMES):
            band[j : j + k, j] = taps  # output frame j of a row reads input frames j..j+k-1
        self.register_buffer("band", band.reshape(TOEPLITZ_FRAMES + k - 1, TOEPLITZ_FRAMES * c).to(torch.bfloat16))

    def forward(self, padded_t: torch.Tensor, frames: int) -> torch.Tensor:
        """``(M, T_pad)`` bfloat16 padded patch, mel first -> ``(C, frames)`` float32 maxima over mel.

        ``T_pad`` must reach ``time_offset + ceil(frames / TOEPLITZ_FRAMES) * TOEPLITZ_FRAMES + k - 1``.
        """
        rows = -(-frames // TOEPLITZ_FRAMES)
        width = TOEPLITZ_FRAMES + self.k - 1
        src = padded_t[:, self.time_offset :]
        if src.shape[1] < rows * TOEPLITZ_FRAMES + self.k - 1:
            raise ModelError(f"the padded patch is too short for a {self.k}-frame temporal block")
        n_mel = src.shape[0]
        windows = src.as_strided((n_mel, rows, width), (src.stride(0), TOEPLITZ_FRAMES, 1))
        out = windows.reshape(n_mel * rows, width) @ self.band  # (M * rows, TOEPLITZ_FRAMES * C)
        peak = out.view(n_mel, rows * TOEPLITZ_FRAMES, self.channels).amax(dim=0)[:frames]  # (frames, C)
        return peak.t().float()


__all__ = [
    "INT8_STEPS",
    "TIMBRAL_CHUNK",
    "TOEPLITZ_FRAMES",
    "TemporalToeplitz",
    "TimbralInt8",
    "diffuse_round",
    "quantize_patch",
    "serpentine",
]
