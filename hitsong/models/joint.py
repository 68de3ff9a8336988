"""Joint training: m5 = m2 + m4 and m6 = m3 + m4 (paper section 3.5, eq. 1).

``y = w * f_cnn(mel) + (1 - w) * f_tag(tags)``. By default ``w = sigmoid(v)`` with one free
parameter ``v`` trained with everything else; ``ModelConfig.joint_w_fixed`` pins w instead.
The auto-tagger itself is not part of the model: its 50 activations are precomputed inputs,
so only the tag regressor, the CNN and w train.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hitsong.models.base import HitModel
from hitsong.models.cnn import AudioCNN, InceptionCNN
from hitsong.models.config import ModelConfig
from hitsong.models.linear import TagLR


class JointModel(HitModel):
    """``w * cnn + (1 - w) * tag``: a CNN method and m4 trained together.

    Parameters
    ----------
    cnn : AudioCNN
        m2 or m3.
    tag : TagLR
        m4.
    config : ModelConfig
        Supplies ``joint_w_init`` and ``joint_w_fixed``.
    """

    uses_mel = True
    uses_tags = True
    vector_input = False
    has_frames = True

    def __init__(self, cnn: AudioCNN, tag: TagLR, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn = cnn
        self.tag = tag
        if config.joint_w_fixed is None:
            p = config.joint_w_init
            self.w_logit = nn.Parameter(torch.tensor(math.log(p / (1.0 - p)), dtype=torch.float32))
        else:
            self.register_buffer("w_value", torch.tensor(float(config.joint_w_fixed)))

    @property
    def w(self) -> Tensor:
        """The current weight of the CNN part, a scalar in [0, 1]."""
        if self.config.joint_w_fixed is None:
            return torch.sigmoid(self.w_logit)
        value = self.w_value
        assert isinstance(value, Tensor)  # a registered buffer
        return value

    def fit_input_stats(self, stats: Tensor, tags: Tensor) -> None:
        """Fit both parts' input standardisation on the training songs' ``stats`` and ``tags``."""
        self.cnn.fit_input_stats(stats, tags)
        self.tag.fit_input_stats(stats, tags)

    def frame_scores(self, mel: Tensor, tags: Tensor) -> Tensor:
        """``w * cnn frame scores + (1 - w) * tag score`` per frame: -> (B, T')."""
        w = self.w
        return w * self.cnn.frame_scores(mel) + (1.0 - w) * self.tag(mel, tags).unsqueeze(-1)

    def forward(self, mel: Tensor, tags: Tensor) -> Tensor:  # (B, n_mels, T), (B, n_tags) -> (B,)
        w = self.w
        return w * self.cnn(mel) + (1.0 - w) * self.tag(mel, tags)


def joint_cnn_tag(config: ModelConfig) -> JointModel:
    """m5: m2 + m4."""
    return JointModel(AudioCNN(config), TagLR(config), config)


def joint_inception_tag(config: ModelConfig) -> JointModel:
    """m6: m3 + m4."""
    return JointModel(InceptionCNN(config), TagLR(config), config)
