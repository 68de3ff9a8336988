"""The pretrained MagnaTagATune tagger: weights loading, tagging one or many songs.

Implements the paper's m4 input (Yang et al. 2017, Sec. 3.4): 50 tag activations of an
MTT-trained CNN. JYnet's weights were never published, so this is musicnn 0.1.0's MTT_musicnn
(or MTT_vgg), run in PyTorch from weights converted by ``tools/convert_musicnn.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from hitsong.errors import InputError, ModelError
from hitsong.tagger.files import MODEL_NAMES, REGENERATE_HINT, weights_path
from hitsong.tagger.frontend import FRONTEND, load_audio_16k, log_mel, patch, to_mono_16k
from hitsong.tagger.kernels import MusiCNNKernel
from hitsong.tagger.nets import MusiCNN, build_net
from hitsong.tagger.precision import EXACT, resolve_precision

#: The 50 MagnaTagATune tags, in the models' output order (musicnn ``configuration.MTT_LABELS``).
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip

#: The tags among the 50 that name a genre (paper Fig. 4), in output order. Left out on purpose:
#: "classic" (in MTT's annotations a variant spelling of "classical"; keeping both would split
#: one genre in two), and "choral"/"choir" (a vocal texture, also tagged on pop and rock).
GENRE_TAGS: tuple[str, ...] = (
    "classical", "techno", "electronic", "rock", "ambient", "indian", "opera", "pop", "new age",
    "dance", "country", "metal",
)  # fmt: skip

_GENRE_INDEX = np.array([MTT_TAGS.index(t) for t in GENRE_TAGS])

DEFAULT_BATCH_PATCHES = 64


def predominant_genre(song_vector: np.ndarray | Sequence[float]) -> str:
    """The genre tag with the strongest activation (paper Sec. 4, Fig. 4).

    Parameters
    ----------
    song_vector : array-like [shape=(50,)]
        Song-level tag probabilities in :data:`MTT_TAGS` order.

    Returns
    -------
    str
        One of :data:`GENRE_TAGS` (ties go to the first in that order).
    """
    v = np.asarray(song_vector, dtype=np.float64)
    if v.shape != (len(MTT_TAGS),):
        raise InputError(f"a song tag vector has shape ({len(MTT_TAGS)},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError("the song tag vector contains NaN or infinite values")
    return GENRE_TAGS[int(np.argmax(v[_GENRE_INDEX]))]


@dataclass(frozen=True)
class TagResult:
    """Tags of one song.

    Attributes
    ----------
    taggram : np.ndarray [shape=(n_patches, 50), dtype=float32]
        Sigmoid probability of each tag for each 3-s patch.
    song : np.ndarray [shape=(50,), dtype=float32]
        Song level: the mean over patches of the probabilities (as the original).
    padded : bool
        True when the clip was shorter than one patch and zero-padded.
    """

    taggram: np.ndarray
    song: np.ndarray
    padded: bool = False

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` strongest song-level tags as ``(name, probability)``, strongest first."""
        order = np.argsort(-self.song, kind="stable")[:k]
        return [(MTT_TAGS[i], float(self.song[i])) for i in order]

    @property
    def genre(self) -> str:
        """The predominant genre tag (:func:`predominant_genre` of :attr:`song`)."""
        return predominant_genre(self.song)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other value as ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"invalid device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from exc


def load_weights(path: Path, net: nn.Module, model: str) -> None:
    """Load a converted safetensors file into ``net``, refusing anything that does not fit.

    Raises
    ------
    ModelError
        Missing, truncated or foreign file; another model's weights; missing, unexpected or
        wrongly shaped tensors. Every message names the file and how to regenerate it.
    """
    where = f"tagger weights {path}"
    if not path.is_file():
        raise ModelError(f"{where} do not exist; {REGENERATE_HINT}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{where} cannot be read as safetensors ({exc}); truncated or foreign file? {REGENERATE_HINT}"
        ) from exc
    if meta.get("model") != model:
        raise ModelError(f"{where} hold weights of {meta.get('model')!r}, not {model!r}; {REGENERATE_HINT}")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        raise ModelError(
            f"{where} do not fit {model}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {wrong[:5]}; {REGENERATE_HINT}"
        )
    bad = sorted(k for k, t in tensors.items() if t.dtype != expected[k].dtype or not torch.isfinite(t).all())
    if bad:
        raise ModelError(f"{where}: tensors {bad[:5]} have the wrong dtype or non-finite values; {REGENERATE_HINT}")
    net.load_state_dict(tensors, strict=True)


class Tagger:
    """A pretrained MTT-50 auto-tagger (musicnn's MTT_musicnn or MTT_vgg) in PyTorch.

    Build it with :meth:`from_pretrained`. Input audio goes through the original's front end
    (:mod:`hitsong.tagger.frontend`); the song level is the mean of per-patch probabilities.

    Parameters
    ----------
    net : nn.Module
        A network with loaded weights.
    name : str
        Its model name.
    device : torch.device
    batch_patches : int
        Patches per forward pass (memory bound; results do not depend on it beyond ~1e-7).
    precision : {"exact", "fast", "auto"}
        The arithmetic (:mod:`hitsong.tagger.precision`); resolved here to what runs on
        ``device`` and kept in :attr:`precision`. MTT_musicnn runs through
        :class:`~hitsong.tagger.kernels.MusiCNNKernel` (the same function as the port, restructured);
        MTT_vgg through the port itself.
    """

    tags: tuple[str, ...] = MTT_TAGS

    def __init__(
        self,
        net: nn.Module,
        name: str,
        device: torch.device,
        *,
        batch_patches: int = DEFAULT_BATCH_PATCHES,
        precision: str = EXACT,
    ) -> None:
        if batch_patches < 1:
            raise ModelError(f"batch_patches must be >= 1, got {batch_patches}")
        try:
            self.net = net.to(device).eval()
        except (RuntimeError, AssertionError) as exc:  # e.g. a CUDA device on a machine without one
            raise ModelError(
                f"cannot move the {name} tagger to device {device}: {exc}; use device='auto' or 'cpu'"
            ) from exc
        self.name = name
        self.device = device
        self.batch_patches = batch_patches
        self.frontend = FRONTEND
        #: The precision that runs: ``"exact"`` or ``"fast"``.
        self.precision = resolve_precision(precision, device=device, model=name)
        self.runner: nn.Module = (
            MusiCNNKernel(self.net, precision=self.precision).to(device).eval()
            if isinstance(self.net, MusiCNN)
            else self.net
        )

    @classmethod
    def from_pretrained(
        cls,
        name: str = "MTT_musicnn",
        *,
        device: str | torch.device = "auto",
        weights: str | Path | None = None,
        batch_patches: int = DEFAULT_BATCH_PATCHES,
        precision: str = EXACT,
    ) -> Tagger:
        """Load a converted pretrained tagger.

        Parameters
        ----------
        name : str
            ``"MTT_musicnn"`` (default) or ``"MTT_vgg"``.
        device : str or torch.device
            ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ...
        weights : str or Path, optional
            A safetensors file; default ``hitsong/tagger/weights/<name>.safetensors``.
        batch_patches : int
            Patches per forward pass.
        precision : {"exact", "fast", "auto"}
            ``exact`` (default: float32, the original's outputs within 1e-4), ``fast``
            (bfloat16 timbral convolutions where the CPU has native bfloat16, else ``exact``),
            ``auto`` (``fast`` where supported). See :mod:`hitsong.tagger.precision`.

        Raises
        ------
        ModelError
            Unknown name, or weights missing / not fitting the network.
        """
        if name not in MODEL_NAMES:
            raise ModelError(f"unknown tagger model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
        net = build_net(name)
        path = Path(weights) if weights is not None else weights_path(name)
        load_weights(path, net, name)
        return cls(net, name, resolve_device(device), batch_patches=batch_patches, precision=precision)

    def __repr__(self) -> str:
        return f"Tagger({self.name!r}, device={str(self.device)!r}, precision={self.precision!r})"

    # ------------------------------------------------------------------ core
    @torch.inference_mode()
    def predict_patches(self, patches: np.ndarray) -> np.ndarray:
        """Tag probabilities of log-mel patches.

        Parameters
        ----------
        patches : np.ndarray [shape=(n, 187, 96), dtype=float32]

        Returns
        -------
        np.ndarray [shape=(n, 50), dtype=float32]
            Sigmoid probabilities.
        """
        fe = self.frontend
        if patches.ndim != 3 or patches.shape[1:] != (fe.patch_frames, fe.n_mels):
            raise InputError(f"patches must have shape (n, {fe.patch_frames}, {fe.n_mels}), got {patches.shape}")
        out = np.empty((patches.shape[0], len(MTT_TAGS)), dtype=np.float32)
        for start in range(0, patches.shape[0], self.batch_patches):
            x = torch.from_numpy(np.ascontiguousarray(patches[start : start + self.batch_patches], dtype=np.float32))
            out[start : start + x.shape[0]] = torch.sigmoid(self.runner(x.to(self.device))).cpu().numpy()
        return out

    def _waveform_16k(self, item: object, sr: int | None, source: str) -> np.ndarray:
        if isinstance(item, (str, Path)):
            if sr is not None:
                raise InputError(f"{source}: sr applies to waveforms only; a file's rate is read from the file")
            return load_audio_16k(item, frontend=self.frontend)
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        if not isinstance(item, np.ndarray):
            raise InputError(f"{source}: expected an audio path or a waveform array, got {type(item).__name__}")
        return to_mono_16k(item, self.frontend.sr if sr is None else sr, frontend=self.frontend, source=source)

    def _patches(self, y16: np.ndarray, source: str) -> tuple[np.ndarray, bool]:
        return patch(log_mel(y16, frontend=self.frontend), frontend=self.frontend, source=source)

    # ------------------------------------------------------------------ public
    def tag(self, path_or_waveform: str | Path | np.ndarray | torch.Tensor, sr: int | None = None) -> TagResult:
        """Tag one song.

        Parameters
        ----------
        path_or_waveform : str, Path, np.ndarray [shape=(n,) or (channels, n)] or Tensor
            An audio file (decoded whole, mono, resampled to 16 kHz with soxr_hq as
            ``librosa.load`` does), or a waveform.
        sr : int, optional
            Sample rate of a waveform in Hz; None means 16 kHz. Must be None for a path.

        Returns
        -------
        TagResult
        """
        source = str(path_or_waveform) if isinstance(path_or_waveform, (str, Path)) else "waveform"
        patches, padded = self._patches(self._waveform_16k(path_or_waveform, sr, source), source)
        taggram = self.predict_patches(patches)
        return TagResult(taggram=taggram, song=taggram.mean(axis=0), padded=padded)

    def tag_batch(self, waveforms: Sequence[np.ndarray | str | Path], sr: int | None = None) -> list[TagResult]:
        """Tag many songs at once: all their patches go through the network in shared batches.

        This is the path the feature store uses: ``tag_batch(list_of_16k_waveforms, sr=16000)``.

        Parameters
        ----------
        waveforms : sequence of np.ndarray [shape=(n_i,) or (channels, n_i)], or of paths
            Songs of any lengths.
        sr : int, optional
            Sample rate of every waveform in Hz; None means 16 kHz.

        Returns
        -------
        list of TagResult
            One per input, in order.
        """
        all_patches: list[np.ndarray] = []
        padded: list[bool] = []
        for i, item in enumerate(waveforms):
            source = str(item) if isinstance(item, (str, Path)) else f"waveform {i}"
            p, pad = self._patches(self._waveform_16k(item, sr, source), source)
            all_patches.append(p)
            padded.append(pad)
        if not all_patches:
            return []
        probs = self.predict_patches(np.concatenate(all_patches))
        results: list[TagResult] = []
        start = 0
        for p, pad in zip(all_patches, padded):
            taggram = probs[start : start + len(p)]
            start += len(p)
            results.append(TagResult(taggram=taggram, song=taggram.mean(axis=0), padded=pad))
        return results
