"""``HitModel``: what training and scoring rely on in every method's network.

Every method is an ``nn.Module`` with one contract, ``forward(mel (B, n_mels, T), tags (B, n_tags))
-> (B,)``, a standardised hit score. Class attributes say which inputs it reads (``uses_mel``,
``uses_tags``) and whether training may feed it precomputed vectors (``vector_input``: then
:meth:`forward_vectors` is implemented). CNN methods implement :meth:`frame_scores` (the score
per time step before the global average; ``has_frames``). Training calls
:meth:`fit_input_stats` on the training songs before the first epoch.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn


class HitModel(nn.Module):
    """Base of the six methods' networks (paper section 3); see the module docstring."""

    uses_mel: ClassVar[bool] = True
    uses_tags: ClassVar[bool] = False
    vector_input: ClassVar[bool] = False
    has_frames: ClassVar[bool] = False

    def fit_input_stats(self, stats: Tensor, tags: Tensor) -> None:
        """Fit input standardisation on the training songs.

        Parameters
        ----------
        stats : Tensor [shape=(N, 2 * n_mels)]
            Per-song mel mean then std over time.
        tags : Tensor [shape=(N, n_tags)]
            Per-song tag activations.
        """
        raise NotImplementedError

    def forward(self, mel: Tensor, tags: Tensor) -> Tensor:
        """``(B, n_mels, T), (B, n_tags) -> (B,)`` standardised hit scores."""
        raise NotImplementedError

    def forward_vectors(self, stats: Tensor, tags: Tensor) -> Tensor:
        """``(B, 2 * n_mels), (B, n_tags) -> (B,)``, for models with ``vector_input``."""
        raise NotImplementedError(f"{type(self).__name__} takes spectrograms, not vectors")

    def frame_scores(self, mel: Tensor, tags: Tensor) -> Tensor:
        """``(B, n_mels, T), (B, n_tags) -> (B, T')`` scores per time step, for models with ``has_frames``."""
        raise NotImplementedError(f"{type(self).__name__} scores the whole track at once")
