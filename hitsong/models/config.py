"""Every size of the six methods, in one frozen dataclass (DESIGN.md section 4).

Defaults come from Yang et al. (ICASSP 2017) section 3 and, where the paper is silent, from
the authors' lab's later public re-implementation of this baseline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from hitsong.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of m1..m6.

    Parameters
    ----------
    n_mels : int
        Mel bands of the input spectrogram (the height of the first kernels).
    n_tags : int
        Tag activations of the auto-tagger (m4, m5, m6).
    conv1_channels, conv1_width : int
        First early convolution of m2 (and m3's unpadded branch): ``conv1_channels`` kernels of
        ``n_mels x conv1_width``.
    conv2_channels, conv2_width : int
        Second early convolution: kernels of ``1 x conv2_width``.
    pool : int
        Max-pool width (over time) after each early convolution.
    late_channels : int
        Channels of the two 1x1 late convolutions before the 1-channel output convolution.
    dropout : float
        Dropout probability before each late convolution.
    leaky_slope : float
        Negative slope of the leaky ReLUs.
    inception_branches : tuple of (channels, width)
        m3's extra early branches. A branch of width ``w`` sees the input zero-padded by
        ``p = (w - conv1_width) / 2`` on every side and has kernels ``(n_mels + 2p) x w``, so each
        branch yields ``1 x (T - conv1_width + 1)`` frames like the unpadded one. Paper:
        ``16 x (132x8)`` (p=2) and ``16 x (140x16)`` (p=6).
    inception_reduce : int or None
        m3: channels of the 1x1 convolution that reduces the concatenated branches (after a
        leaky ReLU: two linear maps in a row would be one) before the shared body, as in the
        lab's later public code (DESIGN.md section 4). ``None`` feeds the concatenation straight
        into the body (its activation, pooling and second convolution), the paper's Fig. 3 read
        literally (docs/PAPER.md).
    joint_w_init : float
        Initial w of the joint models (m5, m6), in (0, 1); learned as ``sigmoid(free)``.
    joint_w_fixed : float or None
        When set, w is this constant in [0, 1] and not learned.
    standardise_mel : bool
        CNNs standardise each mel band with the training songs' mean and std (over songs and
        time) before the first convolution. The paper is silent; this per-band affine map could
        be folded into the first layer's weights and bias, so the model family is unchanged,
        but without it raw log-mel values (~0-5) summed over 128x4 kernels give initial outputs
        in the hundreds, whose gradients inflate Adagrad's accumulators and stall training.
        m3's zero-padding is applied after it (zeros = the average level of a band).
    """

    n_mels: int = 128
    n_tags: int = 50
    conv1_channels: int = 32
    conv1_width: int = 4
    conv2_channels: int = 64
    conv2_width: int = 4
    pool: int = 2
    late_channels: int = 256
    dropout: float = 0.25
    leaky_slope: float = 0.1
    inception_branches: tuple[tuple[int, int], ...] = ((16, 8), (16, 16))
    inception_reduce: int | None = 32
    joint_w_init: float = 0.5
    joint_w_fixed: float | None = None
    standardise_mel: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"ModelConfig.{f.name} must be a positive integer, got {value!r}")
        if self.inception_reduce is not None and (
            isinstance(self.inception_reduce, bool)
            or not isinstance(self.inception_reduce, int)
            or self.inception_reduce < 1
        ):
            raise ConfigError(
                f"ModelConfig.inception_reduce must be a positive integer or None, got {self.inception_reduce!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 < self.joint_w_init < 1.0:
            raise ConfigError(f"ModelConfig.joint_w_init must be in (0, 1), got {self.joint_w_init!r}")
        if self.joint_w_fixed is not None and not 0.0 <= self.joint_w_fixed <= 1.0:
            raise ConfigError(f"ModelConfig.joint_w_fixed must be in [0, 1] or None, got {self.joint_w_fixed!r}")
        # normalise lists (e.g. from JSON) to tuples so the config stays hashable
        object.__setattr__(self, "inception_branches", tuple(tuple(b) for b in self.inception_branches))
        for channels, width in self.inception_branches:
            extra = width - self.conv1_width
            if channels < 1 or extra < 0 or extra % 2:
                raise ConfigError(
                    f"ModelConfig.inception_branches entry ({channels}, {width}): need channels >= 1 and "
                    f"width - conv1_width ({self.conv1_width}) even and >= 0 so every branch keeps T - "
                    f"{self.conv1_width - 1} frames"
                )

    def branch_padding(self, width: int) -> int:
        """Zero-padding on every side of the input for an inception branch of kernel ``width``."""
        return (width - self.conv1_width) // 2

    def min_frames(self) -> int:
        """Shortest input (frames) the CNN body accepts: one output frame after both pools."""
        t = 1
        t = t * self.pool + self.conv2_width - 1
        t = t * self.pool + self.conv1_width - 1
        return t

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = asdict(self)
        out["inception_branches"] = [list(b) for b in self.inception_branches]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ``ConfigError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def tiny(cls, *, n_mels: int = 16, n_tags: int = 6) -> ModelConfig:
        """A configuration small enough for CPU tests in seconds (same structure, fewer sizes)."""
        return cls(
            n_mels=n_mels,
            n_tags=n_tags,
            conv1_channels=4,
            conv2_channels=8,
            late_channels=8,
            inception_branches=((2, 8), (2, 16)),
            inception_reduce=4,
        )
