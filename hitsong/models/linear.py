"""The two linear-regression methods: m1 ``audio+LR`` and m4 ``tag+LR`` (paper sections 3.1, 3.4).

Both standardise their input vector with buffers fitted on the training songs
(:meth:`fit_input_stats`), then apply one linear layer. Their inputs are small vectors, so
training feeds them precomputed vectors through :meth:`forward_vectors` rather than re-reading
the spectrograms every epoch; :meth:`forward` keeps the common contract
``(mel (B, n_mels, T), tags (B, n_tags)) -> (B,)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hitsong.errors import ModelError
from hitsong.models.base import HitModel
from hitsong.models.config import ModelConfig

#: A standard deviation below this is treated as 1 (a constant input dimension stays 0).
STD_FLOOR = 1e-6


def mel_stats(mel: Tensor) -> Tensor:
    """Per-band mean then standard deviation over time, as ``hitsong.audio.mel_stats``.

    Parameters
    ----------
    mel : Tensor [shape=(B, n_mels, T)]
        Log-mel spectrograms.

    Returns
    -------
    Tensor [shape=(B, 2 * n_mels)]
        ``[mean_0 .. mean_{n-1}, std_0 .. std_{n-1}]``; population std (ddof 0, like NumPy).
    """
    mel = mel.float()
    return torch.cat([mel.mean(dim=-1), mel.std(dim=-1, unbiased=False)], dim=-1)


class StandardisedLinear(nn.Module):
    """``y = W ((x - mean) / std) + b``: a linear regressor on a standardised vector.

    Parameters
    ----------
    n_inputs : int
        Length of the input vector.
    """

    in_mean: Tensor
    in_std: Tensor

    def __init__(self, n_inputs: int) -> None:
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(n_inputs))
        self.register_buffer("in_std", torch.ones(n_inputs))
        self.linear = nn.Linear(n_inputs, 1)

    def fit(self, x: Tensor) -> None:
        """Set the standardisation buffers from training vectors ``x`` of shape (N, n_inputs)."""
        if x.ndim != 2 or x.shape[1] != self.in_mean.shape[0] or x.shape[0] < 1:
            raise ModelError(f"input statistics need a (N >= 1, {self.in_mean.shape[0]}) tensor, got {tuple(x.shape)}")
        x = x.detach().to(self.in_mean.device, torch.float32)
        std = x.std(dim=0, unbiased=False)
        self.in_mean.copy_(x.mean(dim=0))
        self.in_std.copy_(torch.where(std < STD_FLOOR, torch.ones_like(std), std))

    def forward(self, x: Tensor) -> Tensor:  # (B, n_inputs) -> (B,)
        return self.linear((x.float() - self.in_mean) / self.in_std).squeeze(-1)


class AudioLR(HitModel):
    """m1 ``audio+LR`` (paper 3.1): standardised 256-d mel mean/std, one linear layer."""

    uses_mel = True
    uses_tags = False
    vector_input = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.regressor = StandardisedLinear(2 * config.n_mels)

    def fit_input_stats(self, stats: Tensor, tags: Tensor) -> None:
        """Fit the standardisation on training ``stats`` (N, 2*n_mels); ``tags`` is unused."""
        self.regressor.fit(stats)

    def forward_vectors(self, stats: Tensor, tags: Tensor) -> Tensor:  # (B, 256), (B, 50) -> (B,)
        return self.regressor(stats)

    def forward(self, mel: Tensor, tags: Tensor) -> Tensor:  # (B, n_mels, T), (B, n_tags) -> (B,)
        return self.forward_vectors(mel_stats(mel), tags)


class TagLR(HitModel):
    """m4 ``tag+LR`` (paper 3.4): standardised tag activations of the frozen tagger, one linear layer."""

    uses_mel = False
    uses_tags = True
    vector_input = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.regressor = StandardisedLinear(config.n_tags)

    def fit_input_stats(self, stats: Tensor, tags: Tensor) -> None:
        """Fit the standardisation on training ``tags`` (N, n_tags); ``stats`` is unused."""
        self.regressor.fit(tags)

    def forward_vectors(self, stats: Tensor, tags: Tensor) -> Tensor:  # (B, 256), (B, 50) -> (B,)
        return self.regressor(tags)

    def forward(self, mel: Tensor, tags: Tensor) -> Tensor:  # (B, n_mels, T), (B, n_tags) -> (B,)
        return self.regressor(tags)
