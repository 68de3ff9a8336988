"""The two MagnaTagATune taggers of musicnn 0.1.0, as PyTorch modules (inference only).

Written from the published architectures (Pons & Serra, "musicnn: pre-trained convolutional
neural networks for music audio tagging", ISMIR 2019 LBD; Pons et al., "End-to-end learning for
music audio tagging at scale", ISMIR 2018) and checked layer by layer against the original's
outputs (``tests/hitsong/tagger/test_parity.py``). Facts that the numbers depend on:

- every batch norm uses epsilon 1e-3 and sits *after* the ReLU (conv + bias -> ReLU -> BN);
- TensorFlow 'SAME' padding with an even kernel puts the odd extra pad after the input;
- musicnn's back end pools max and mean over time per feature and flattens them interleaved
  (max0, mean0, max1, mean1, ...);
- the VGG flattens its last pooled map in (time, mel, channel) order.

Input of both: a batch of log-mel patches ``(B, T, 96)`` (time first, as the original);
output: tag logits ``(B, 50)``. Parameter names are this module's own; ``convert.py`` maps the
TensorFlow variables onto them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hitsong.errors import ModelError

BN_EPS = 1e-3  # TF's tf.layers.batch_normalization default
N_MELS = 96
N_CLASSES = 50


class FrozenBatchNorm(nn.Module):
    """Inference-time batch norm over dimension 1, ``eps`` as in TensorFlow (1e-3).

    Holds ``weight`` (gamma), ``bias`` (beta), ``running_mean`` and ``running_var`` as buffers:
    the taggers are frozen feature extractors, never trained here.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, *, eps: float = BN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def same_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (stride 1) for one axis: ``(before, after)``, extra pad after."""
    total = kernel - 1
    return total // 2, total - total // 2


class ConvReluBN(nn.Module):
    """Conv2d + bias -> ReLU -> batch norm, with explicit zero padding of the time axis.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel : (int, int)
        (time, mel) kernel size.
    time_pad : (int, int)
        Zeros added before/after along time; ``mel_pad`` the same along mel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int],
        *,
        time_pad: tuple[int, int] = (0, 0),
        mel_pad: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        self.pad = (mel_pad[0], mel_pad[1], time_pad[0], time_pad[1])
        self.conv = nn.Conv2d(in_channels, out_channels, kernel)
        self.bn = FrozenBatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, M) -> (B, C', T', M')
        if any(self.pad):
            x = F.pad(x, self.pad)
        return self.bn(F.relu(self.conv(x)))


class MidendLayer(nn.Module):
    """musicnn mid-end layer: a conv over time spanning all features (kernel 7, 'same')."""

    def __init__(self, in_features: int, out_features: int, *, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_features, out_features, kernel, padding=kernel // 2)
        self.bn = FrozenBatchNorm(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, T) -> (B, F', T)
        return self.bn(F.relu(self.conv(x)))


class MusiCNN(nn.Module):
    """musicnn (MTT): musically motivated front end, dense mid end, temporal-pooling back end.

    Front end: input batch norm; two timbral convolutions over (7 frames x 38 or 67 mel bands,
    204 filters each, time padded by 3) and three temporal convolutions over (128, 64, 32
    frames x 1 band, 51 filters each, 'SAME'); each is max-pooled over the whole mel axis and
    the five are concatenated (561 features per frame). Mid end: three 64-filter convolutions
    (7 frames x all features), the 2nd and 3rd with residual connections; front- and mid-end
    outputs are concatenated (753). Back end: max and mean over time (interleaved, 1506),
    batch norm, dense 200 + ReLU + batch norm, dense to the tags.

    Parameters
    ----------
    n_mels : int
        Mel bands of the input (96).
    n_classes : int
        Output tags (50).
    timbral_filters, temporal_filters, midend_filters, backend_units : int
        Layer widths of MTT_musicnn (int(1.6*128), int(1.6*32), 64, 200).
    """

    def __init__(
        self,
        *,
        n_mels: int = N_MELS,
        n_classes: int = N_CLASSES,
        timbral_filters: int = 204,
        temporal_filters: int = 51,
        midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:
        super().__init__()
        self.input_bn = FrozenBatchNorm(1)
        self.timbral = nn.ModuleList(
            ConvReluBN(1, timbral_filters, (7, int(frac * n_mels)), time_pad=(3, 3)) for frac in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(
            ConvReluBN(1, temporal_filters, (k, 1), time_pad=same_pad(k)) for k in (128, 64, 32)
        )
        front = 2 * timbral_filters + 3 * temporal_filters
        self.midend = nn.ModuleList(
            [
                MidendLayer(front, midend_filters),
                MidendLayer(midend_filters, midend_filters),
                MidendLayer(midend_filters, midend_filters),
            ]
        )
        pooled = 2 * (front + 3 * midend_filters)
        self.pool_bn = FrozenBatchNorm(pooled)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_bn = FrozenBatchNorm(backend_units)
        self.output = nn.Linear(backend_units, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tag logits.

        Parameters
        ----------
        x : Tensor [shape=(B, T, n_mels)]
            Log-mel patches (T = 187 for the pretrained weights; other lengths work).

        Returns
        -------
        Tensor [shape=(B, n_classes)]
        """
        x = self.input_bn(x.unsqueeze(1))  # (B, 1, T, M)
        front = [block(x).amax(dim=3) for block in (*self.timbral, *self.temporal)]  # each (B, C, T)
        return self.head(torch.cat(front, dim=1))  # (B, 561, T) -> (B, n_classes)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Mid end and back end: front-end features ``(B, 561, T)`` -> logits ``(B, n_classes)``."""
        features = [h]
        h = self.midend[0](h)
        features.append(h)
        for layer in self.midend[1:]:
            h = layer(h) + h  # residual on batch-norm outputs
            features.append(h)
        f = torch.cat(features, dim=1)  # (B, 753, T)
        B = f.shape[0]
        pooled = torch.stack([f.amax(dim=2), f.mean(dim=2)], dim=2).reshape(B, -1)  # (B, 1506) interleaved
        h = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return self.output(h)


class VGG(nn.Module):
    """musicnn's VGG-like MTT baseline: five 3x3 conv layers (128 filters), then dense.

    Pools: (4,1) stride (2,2) after conv 1; (2,2) stride 2 after convs 2-4; (4,4) stride 4
    after conv 5; a 187 x 96 patch ends as 2 x 1 x 128, flattened (time, mel, channel).

    Parameters
    ----------
    n_classes : int
        Output tags (50).
    filters : int
        Filters per conv layer (128).
    flat_features : int
        Size of the flattened last pool (256 for 187 x 96 input patches).
    """

    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, *, n_classes: int = N_CLASSES, filters: int = 128, flat_features: int = 256) -> None:
        super().__init__()
        self.input_bn = FrozenBatchNorm(1)
        self.convs = nn.ModuleList(
            ConvReluBN(1 if i == 0 else filters, filters, (3, 3), time_pad=(1, 1), mel_pad=(1, 1))
            for i in range(len(self.POOLS))
        )
        self.output = nn.Linear(flat_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tag logits: ``(B, 187, 96) -> (B, n_classes)``."""
        h = self.input_bn(x.unsqueeze(1))  # (B, 1, T, M)
        for conv, (kernel, stride) in zip(self.convs, self.POOLS):
            h = F.max_pool2d(conv(h), kernel, stride)
        h = h.permute(0, 2, 3, 1).flatten(1)  # (B, T', M', C) -> (B, T'*M'*C), TF order
        return self.output(h)


NETS: dict[str, type[nn.Module]] = {"MTT_musicnn": MusiCNN, "MTT_vgg": VGG}


def build_net(name: str) -> nn.Module:
    """An untrained network of architecture ``name`` (a key of :data:`NETS`)."""
    if name not in NETS:
        raise ModelError(f"unknown tagger model {name!r}; valid names: {', '.join(sorted(NETS))}")
    return NETS[name]()
