"""The fully convolutional methods: m2 ``audio+CNN`` and m3 ``audio+inception CNN`` (paper 3.2, 3.3).

Both end in the same body: leaky ReLU -> max-pool (1 x pool) -> conv ``conv2_channels x
(1 x conv2_width)`` -> leaky ReLU -> max-pool -> [dropout -> 1x1 conv] x 3 (``late_channels``,
``late_channels``, 1) -> global average over time. No dense layers: every output frame is a
score for one stretch of the song (:meth:`frame_scores`), and the song's score is their mean.

The early convolutions are written as the paper draws them, 2-D kernels over the whole
(mel x time) image; a kernel as high as the (padded) input gives one row, which is then
treated as a 1-D sequence of channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hitsong.errors import ModelError
from hitsong.models.base import HitModel
from hitsong.models.config import ModelConfig
from hitsong.models.linear import STD_FLOOR


def check_mel(mel: Tensor, config: ModelConfig) -> None:
    """Raise ``ModelError`` unless ``mel`` is (B, n_mels, T) with T long enough for the CNN body."""
    if mel.ndim != 3 or mel.shape[1] != config.n_mels:
        raise ModelError(f"expected mel of shape (B, {config.n_mels}, T), got {tuple(mel.shape)}")
    if mel.shape[2] < config.min_frames():
        raise ModelError(
            f"mel has {mel.shape[2]} frames; the CNN needs at least {config.min_frames()} "
            f"(pad shorter audio to the configured segment length)"
        )


class FullHeightConv(nn.Module):
    """A 2-D convolution whose kernel spans the whole (zero-padded) mel axis: (B, M, T) -> (B, C, T').

    Parameters
    ----------
    n_mels : int
        Mel bands M of the input.
    channels : int
        Output channels C.
    width : int
        Kernel width over time (frames).
    padding : int
        Zeros added on every side (mel and time) before the convolution; the kernel height is
        ``n_mels + 2 * padding`` so the output has one row and ``T + 2 * padding - width + 1``
        frames.
    """

    def __init__(self, n_mels: int, channels: int, width: int, *, padding: int = 0) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(1, channels, kernel_size=(n_mels + 2 * padding, width))

    def forward(self, mel: Tensor) -> Tensor:
        x = mel.unsqueeze(1)  # (B, 1, M, T)
        if self.padding:
            p = self.padding
            x = F.pad(x, (p, p, p, p))  # (B, 1, M + 2p, T + 2p)
        return self.conv(x).squeeze(2)  # (B, C, T + 2p - width + 1)


class ConvBody(nn.Module):
    """The shared CNN body from the first early convolution's output to per-frame scores.

    (B, conv1_channels, T1) -> (B, T'), with T' = ((T1 // pool) - conv2_width + 1) // pool.
    """

    def __init__(self, config: ModelConfig, *, in_channels: int | None = None) -> None:
        super().__init__()
        c = config
        self.act = nn.LeakyReLU(c.leaky_slope)
        self.pool = nn.MaxPool1d(c.pool)
        self.conv2 = nn.Conv1d(in_channels or c.conv1_channels, c.conv2_channels, c.conv2_width)
        self.late = nn.ModuleList(
            [
                nn.Conv1d(c.conv2_channels, c.late_channels, 1),
                nn.Conv1d(c.late_channels, c.late_channels, 1),
                nn.Conv1d(c.late_channels, 1, 1),
            ]
        )
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(x))  # (B, C1, T1 // pool)
        x = self.pool(self.act(self.conv2(x)))  # (B, C2, T')
        for i, layer in enumerate(self.late):
            x = layer(self.dropout(x))
            if i < len(self.late) - 1:
                x = self.act(x)
        return x.squeeze(1)  # (B, T')


class AudioCNN(HitModel):
    """m2 ``audio+CNN`` (paper 3.2): conv ``32 x (128x4)`` then the shared body.

    ``forward(mel, tags) -> (B,)`` is the mean of :meth:`frame_scores` over time; tags are unused.
    """

    uses_mel = True
    uses_tags = False
    vector_input = False
    has_frames = True
    mel_mean: Tensor
    mel_std: Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mel_mean", torch.zeros(config.n_mels))
        self.register_buffer("mel_std", torch.ones(config.n_mels))
        self.conv1 = FullHeightConv(config.n_mels, config.conv1_channels, config.conv1_width)
        self.body = ConvBody(config)

    def fit_input_stats(self, stats: Tensor, tags: Tensor) -> None:
        """Per-band mean and std of the training log-mels, from their per-song statistics.

        Parameters
        ----------
        stats : Tensor [shape=(N, 2 * n_mels)]
            Per song and band the mean then the std over time (``mel_stats``); all songs have the
            same number of frames, so the pooled mean is the mean of means and the pooled
            variance ``mean(std^2 + mean^2) - pooled_mean^2``.
        tags : Tensor
            Unused.
        """
        n = self.config.n_mels
        if stats.ndim != 2 or stats.shape[1] != 2 * n or stats.shape[0] < 1:
            raise ModelError(f"input statistics need a (N >= 1, {2 * n}) tensor, got {tuple(stats.shape)}")
        s = stats.detach().to(self.mel_mean.device, torch.float64)
        means, stds = s[:, :n], s[:, n:]
        mean = means.mean(dim=0)
        var = (stds**2 + means**2).mean(dim=0) - mean**2
        std = var.clamp_min(0.0).sqrt()
        self.mel_mean.copy_(mean.float())
        self.mel_std.copy_(torch.where(std < STD_FLOOR, torch.ones_like(std), std).float())

    def standardise(self, mel: Tensor) -> Tensor:
        """(B, n_mels, T) -> the same, per band standardised when ``config.standardise_mel``."""
        if not self.config.standardise_mel:
            return mel
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def early(self, mel: Tensor) -> Tensor:
        """First-stage features: (B, n_mels, T) -> (B, conv1_channels, T - conv1_width + 1)."""
        return self.conv1(mel)

    def frame_scores(self, mel: Tensor, tags: Tensor | None = None) -> Tensor:
        """Per-frame scores before the global average: (B, n_mels, T) -> (B, T')."""
        check_mel(mel, self.config)
        return self.body(self.early(self.standardise(mel.float())))

    def forward(self, mel: Tensor, tags: Tensor | None = None) -> Tensor:
        return self.frame_scores(mel).mean(dim=-1)  # (B,)


class InceptionCNN(AudioCNN):
    """m3 ``audio+inception CNN`` (paper 3.3): three parallel early convolutions, then the m2 body.

    Branches: ``32 x (128x4)`` unpadded; ``16 x (132x8)`` on the input zero-padded by 2 on every
    side; ``16 x (140x16)`` zero-padded by 6. Each gives ``1 x (T-3)``. With
    ``config.inception_reduce`` (default 32, the lab's code) the 64 concatenated channels pass a
    leaky ReLU and a 1x1 convolution down to that many channels before the body; with ``None``
    the concatenation feeds the body directly (the paper's figure).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.branches = nn.ModuleList(
            [
                FullHeightConv(config.n_mels, channels, width, padding=config.branch_padding(width))
                for channels, width in config.inception_branches
            ]
        )
        total = config.conv1_channels + sum(ch for ch, _ in config.inception_branches)
        self.act = nn.LeakyReLU(config.leaky_slope)
        self.reduce: nn.Module = (
            nn.Identity() if config.inception_reduce is None else nn.Conv1d(total, config.inception_reduce, 1)
        )
        body_in = total if config.inception_reduce is None else config.inception_reduce
        if body_in != config.conv1_channels:  # the body m2 built takes conv1_channels
            self.body = ConvBody(config, in_channels=body_in)

    def branch_outputs(self, mel: Tensor) -> list[Tensor]:
        """The early branches' outputs, each (B, C_i, T - conv1_width + 1)."""
        return [self.conv1(mel)] + [branch(mel) for branch in self.branches]

    def early(self, mel: Tensor) -> Tensor:
        x = cat_branches(self.branch_outputs(mel))  # (B, 64, T - 3)
        if self.config.inception_reduce is None:
            return x  # the body's activation comes next
        return self.reduce(self.act(x))  # (B, inception_reduce, T - 3)


def cat_branches(parts: list[Tensor]) -> Tensor:
    """Concatenate branch outputs along channels; ``ModelError`` if their lengths differ."""
    lengths = {p.shape[-1] for p in parts}
    if len(lengths) != 1:
        raise ModelError(f"inception branches gave different lengths {sorted(lengths)}")
    return torch.cat(parts, dim=1)
