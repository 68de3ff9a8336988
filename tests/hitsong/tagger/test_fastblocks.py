"""The ``fast`` kernel's blocks against second implementations in float64.

Each low-precision block must compute exactly the convolution of its rounded operands (then the
maximum over mel): the int8 timbral blocks up to float32 rounding of the final scaling, the
bfloat16 temporal blocks up to the bfloat16 rounding of their products' output. The rounding
itself (error diffusion, patch quantisation) is checked against its stated guarantees.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hitsong.tagger import Tagger
from hitsong.tagger.fastblocks import (
    INT8_STEPS,
    TIMBRAL_CHUNK,
    TemporalToeplitz,
    TimbralInt8,
    diffuse_round,
    quantize_patch,
    serpentine,
)
from hitsong.tagger.kernels import MusiCNNKernel


@pytest.fixture(scope="module")
def kernel() -> MusiCNNKernel:
    return MusiCNNKernel(Tagger.from_pretrained("MTT_musicnn", device="cpu").net, precision="fast").eval()


def _bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """One bfloat16 unit in the last place at ``|x|`` (8 significant bits)."""
    return torch.exp2(torch.floor(torch.log2(x.abs().clamp(min=1e-30))) - 7)


def test_diffused_bfloat16_keeps_every_partial_sum(rng: np.random.Generator) -> None:
    w = torch.from_numpy(rng.normal(0, 0.05, (128, 51)))
    q = diffuse_round(w).double()
    drift = (q - w).cumsum(dim=0).abs()
    # the carry is what the last rounding left: at most half a unit of the value it rounded,
    # which is the tap plus the carry before it
    before = torch.cat([torch.zeros(1, w.shape[1], dtype=w.dtype), drift[:-1]])
    assert bool((drift <= _bf16_ulp(w.abs() + before) / 2 * 1.001).all())  # (float32 on the way: a hair over)
    nearest = (w.to(torch.bfloat16).double() - w).cumsum(dim=0).abs()
    assert float(drift[-1].abs().mean()) < 0.2 * float(nearest[-1].abs().mean())  # round-to-nearest drifts
    assert float((q - w).abs().max()) <= float(_bf16_ulp(w).max())  # each tap still within one unit


def test_diffused_int8_levels(rng: np.random.Generator) -> None:
    w = torch.from_numpy(rng.normal(0, 1.0, (266, 8)))
    step = w.abs().amax(dim=0) / INT8_STEPS
    levels = diffuse_round(w, dtype=torch.int8, step=step)
    assert levels.dtype == torch.int8 and int(levels.abs().max()) <= INT8_STEPS
    drift = (levels.double() * step - w).cumsum(dim=0).abs()
    assert bool((drift <= step / 2 + 1e-12).all())
    with pytest.raises(Exception, match="step"):
        diffuse_round(w, dtype=torch.int8)


def test_serpentine_walks_neighbours() -> None:
    order = serpentine(7, 38)
    assert sorted(order.tolist()) == list(range(7 * 38))
    rows, cols = order // 38, order % 38
    steps = (rows.diff().abs() + cols.diff().abs()).tolist()
    assert set(steps) == {1}


def test_quantize_patch(rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.normal(0.2, 0.3, (200, 96)).astype(np.float32))
    levels, centre, step = quantize_patch(x)
    assert levels.dtype == torch.int8 and int(levels.abs().max()) <= INT8_STEPS
    assert float((centre + step * levels.float() - x).abs().max()) <= float(step) / 2 * 1.0001
    flat = torch.full((50, 96), 0.7)
    levels, centre, step = quantize_patch(flat)
    assert int(levels.abs().max()) == 0 and float(centre) == pytest.approx(0.7)


@pytest.mark.parametrize("frames", [187, 40, TIMBRAL_CHUNK + 1])
def test_int8_timbral_block_is_the_convolution_of_its_levels(
    kernel: MusiCNNKernel, rng: np.random.Generator, frames: int
) -> None:
    x = torch.from_numpy(rng.normal(0.1, 0.3, (frames, 96)).astype(np.float32))
    padded = F.pad(x, (0, 0, kernel.pad_before, kernel.pad_after + 8))
    levels, centre, step = quantize_patch(padded)
    for blk in kernel.blocks[:2]:
        low = blk.low
        assert isinstance(low, TimbralInt8)
        got = low(levels, centre, step, frames)  # (C, frames)
        filters = (low.levels.double() * low.step.double().t()).t().reshape(-1, 1, low.kt, low.kf)
        window = (centre.double() + step.double() * levels.double())[
            low.time_offset : low.time_offset + frames + low.kt - 1
        ]
        want = F.conv2d(window[None, None], filters)[0].amax(dim=2)  # (C, frames)
        assert got.shape == want.shape == (204, frames)
        np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [187, 40])
def test_bf16_temporal_block_is_the_convolution_of_its_rounded_filters(
    kernel: MusiCNNKernel, rng: np.random.Generator, frames: int
) -> None:
    x = torch.from_numpy(rng.normal(0.1, 0.3, (frames, 96)).astype(np.float32))
    padded = F.pad(x, (0, 0, kernel.pad_before, kernel.pad_after + 8))
    padded_t = padded.t().to(torch.bfloat16).contiguous()
    for blk in kernel.blocks[2:]:
        low = blk.low
        assert isinstance(low, TemporalToeplitz)
        got = low(padded_t, frames)  # (C, frames)
        taps = diffuse_round(blk.weight.reshape(low.channels, low.k).t()).double()  # (k, C)
        window = padded_t.double()[:, low.time_offset : low.time_offset + frames + low.k - 1]  # (M, frames + k - 1)
        conv = F.conv1d(window[:, None], taps.t()[:, None])  # (M, C, frames)
        want = conv.amax(dim=0)
        assert got.shape == want.shape == (51, frames)
        # the products come out of the GEMM in bfloat16: within one unit of the value
        assert bool(((got.double() - want).abs() <= _bf16_ulp(want) + 1e-9).all())


def test_fast_kernel_on_silence_and_short_patches(kernel: MusiCNNKernel) -> None:
    with torch.inference_mode():
        for x in (torch.zeros(2, 187, 96), torch.zeros(1, 9, 96) + 0.3):
            out = kernel(x)
            assert out.shape == (x.shape[0], 50) and bool(torch.isfinite(out).all())
