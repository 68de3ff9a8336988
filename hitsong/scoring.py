"""Score audio files with a trained model bundle, in process (no MLflow here).

``SongScorer`` is what ``hitsong predict``, the MLflow pyfunc (``registry/pyfunc.py``) and the
dashboard's Predict page run. Per file it decodes the middle segment once
(``hitsong.audio.decode_for_features``: the CNN's 22,050 Hz wave and the tagger's 16 kHz wave),
computes the log-mel with ``TorchLogMel`` on the scorer's device, runs the auto-tagger (the
input of m4..m6, and the tag profile shown for every method), then the network, and turns its
standardised output back into the hit-score scale (paper section 2: ``ln(1+plays) * ln(1+users)``)
with the training target's mean and standard deviation. The percentile is the share of the
bundle's catalog (the training songs' hit scores) at or below the score.

A file that cannot be read gives an entry with ``error`` set; the other files are still scored.
An unexpected exception (a crafted file tripping a library, or a bug) is also an ``error`` of
that file only: its traceback goes to the log, never into the result a visitor sees.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hitsong.audio.config import TAGGER_SR, AudioConfig
from hitsong.errors import HitsongError, InputError, ModelError
from hitsong.settings import DEFAULT_TAGGER

if TYPE_CHECKING:
    import torch

    from hitsong.bundle import BundleMeta
    from hitsong.models.base import HitModel
    from hitsong.tagger import Tagger

log = logging.getLogger(__name__)

TOP_TAGS = 5

#: First bytes of the formats we sniff, to give uploaded bytes the right file suffix.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"RIFF", 0, ".wav"),
    (b"fLaC", 0, ".flac"),
    (b"OggS", 0, ".ogg"),
    (b"ID3", 0, ".mp3"),
    (b"FORM", 0, ".aiff"),
    (b"ftyp", 4, ".m4a"),
)

AudioItem = str | Path | bytes | bytearray


def _inference(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` under ``torch.inference_mode`` in this thread."""
    import torch

    with torch.inference_mode():
        return fn(*args)


def _suffix_for(data: bytes) -> str:
    for magic, offset, suffix in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return suffix
    if len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0:
        return ".mp3"
    return ".bin"


@dataclass(frozen=True)
class ScoreTimings:
    """Seconds spent per stage for one file: decode (+ resampling), features, tagger, network."""

    decode: float = 0.0
    features: float = 0.0
    tagger: float = 0.0
    network: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"decode": self.decode, "features": self.features, "tagger": self.tagger, "network": self.network}


def _test_tone(seconds: float, sr: int) -> bytes:
    """A short WAV (a tone with harmonics and a little noise) for warm-up and input examples."""
    import soundfile as sf

    t = np.arange(int(seconds * sr), dtype=np.float64) / sr
    y = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.1 * np.sin(2 * np.pi * 660.0 * t)
    y += 0.01 * np.random.default_rng(0).standard_normal(t.shape)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def example_wav(seconds: float = 3.0, sr: int = 22050) -> bytes:
    """A short generated WAV file's bytes (the pyfunc's input example, warm-up audio)."""
    return _test_tone(seconds, sr)


class SongScorer:
    """Score songs with one trained method (paper section 3) from a model bundle.

    Build it with :meth:`from_bundle`.

    Parameters
    ----------
    model : HitModel
        The trained network, ``forward(mel (B, n_mels, T), tags (B, n_tags)) -> (B,)``.
    meta : object
        The bundle's metadata (``hitsong.bundle``): method, audio config, tagger name, target
        mean/std, catalog hit scores.
    tagger : hitsong.tagger.Tagger
        The auto-tagger the model was trained with.
    device : torch.device
    """

    def __init__(self, model: HitModel, meta: BundleMeta, tagger: Tagger, device: torch.device) -> None:
        from hitsong.audio.torchmel import TorchLogMel
        from hitsong.tagger.frontend import FRONTEND

        self.model = model.to(device).eval()
        self.meta = meta
        self.tagger = tagger
        self.device = device
        self.method: str = str(meta.method)
        self.audio_config: AudioConfig = meta.audio_config
        self.uses_tags = model.uses_tags
        self.uses_mel = model.uses_mel
        self.has_frames = model.has_frames
        self.target_mean = float(meta.target_mean)
        self.target_std = float(meta.target_std)
        catalog = np.asarray(meta.catalog, dtype=np.float64)
        self.catalog = np.sort(catalog[np.isfinite(catalog)])
        n_tags = int(getattr(meta.model_config, "n_tags", len(tagger.tags)))
        if self.uses_tags and n_tags != len(tagger.tags):
            raise ModelError(
                f"the {self.method} bundle expects {n_tags} tag inputs but tagger {tagger.name} gives "
                f"{len(tagger.tags)}; it cannot score audio (retrain with model_config.n_tags={len(tagger.tags)})"
            )
        self.mel = TorchLogMel(self.audio_config).to(device)
        #: Where the taggram's rows sit: the first starts ``taggram_offset`` s into the analysed
        #: segment, each covers ``patch_seconds``.
        self.taggram_offset = self.audio_config.tagger_offset
        self.patch_seconds = FRONTEND.patch_seconds
        # Every file is scored on this scorer's own thread: torch warms up per calling thread, and
        # callers such as the dashboard call from a new thread each time (measured: the tagger
        # took 0.31 s from a fresh thread against 0.20 s from a warm one).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hitsong-scorer")

    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | Path,
        *,
        device: str = "auto",
        tagger_weights: str | Path | None = None,
        warm_up: bool = True,
    ) -> SongScorer:
        """Load a bundle folder and its tagger on ``device`` (``auto``, ``cpu``, ``cuda[:N]``).

        Parameters
        ----------
        bundle_dir : str or Path
            A folder written by ``hitsong.bundle.save_bundle``.
        device : str
            Where the network, the log-mel and the tagger run.
        tagger_weights : str or Path, optional
            The tagger's safetensors file (the pyfunc ships its own copy); default the
            packaged weights of the bundle's tagger.
        warm_up : bool
            Score a generated clip once so the first real call runs at full speed.
        """
        from hitsong.bundle import load_bundle
        from hitsong.models import resolve_device
        from hitsong.tagger import Tagger

        dev = resolve_device(device)
        bundle = load_bundle(Path(bundle_dir), device=dev)
        # Methods without tags still show the tag profile: they get the default tagger. The tagger
        # runs in the precision the bundle's tags were computed in (falling back to exact, with
        # a warning, where this machine cannot run the fast path).
        tagger = Tagger.from_pretrained(
            bundle.meta.tagger or DEFAULT_TAGGER,
            device=dev,
            weights=tagger_weights,
            precision=bundle.meta.audio_config.tagger_precision,
        )
        scorer = cls(bundle.model, bundle.meta, tagger, dev)
        if warm_up:
            scorer.warm_up()
        return scorer

    def warm_up(self) -> float:
        """Score a generated clip once (decoder, resampler, FFT plans, tagger, network); seconds."""
        start = time.perf_counter()
        seconds = float(self.audio_config.seconds) + 1.0  # a full segment: the shapes real songs have
        result = self.score([_test_tone(seconds, 44100)], names=["warm-up"])[0]
        if result["error"]:
            raise ModelError(f"the scorer failed on its own warm-up clip: {result['error']}")
        took = time.perf_counter() - start
        log.debug("scorer warm-up took %.2f s", took)
        return took

    def percentile(self, score: float) -> float:
        """Percent of catalog hit scores at or below ``score`` (0..100); NaN for an empty catalog."""
        if self.catalog.size == 0 or not np.isfinite(score):
            return float("nan")
        return float(100.0 * np.searchsorted(self.catalog, score, side="right") / self.catalog.size)

    def _to_hit_scale(self, standardised: np.ndarray) -> np.ndarray:
        return standardised * self.target_std + self.target_mean

    def score_features(self, mel: np.ndarray, tags: np.ndarray) -> np.ndarray:
        """Hit scores of features computed elsewhere, e.g. by training's feature path.

        Parameters
        ----------
        mel : np.ndarray [shape=(B, n_mels, n_frames)]
            Log-mels of the bundle's audio config (``hitsong.features.compute``).
        tags : np.ndarray [shape=(B, n_tags)]
            Song-level tag probabilities of the bundle's tagger (any values for methods without tags).

        Returns
        -------
        np.ndarray [shape=(B,), dtype=float64]
            Scores on the hit-score scale.

        Raises
        ------
        InputError
            Shapes that do not fit the bundle.
        """
        import torch

        mel = np.asarray(mel, dtype=np.float32)
        tags = np.asarray(tags, dtype=np.float32)
        want = (self.audio_config.n_mels, self.audio_config.n_frames)
        if mel.ndim != 3 or mel.shape[1:] != want or tags.ndim != 2 or tags.shape[0] != mel.shape[0]:
            raise InputError(
                f"score_features needs mel (B, {want[0]}, {want[1]}) and tags (B, n_tags), "
                f"got {mel.shape} and {tags.shape}"
            )
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel)).to(self.device)
            t = torch.from_numpy(np.ascontiguousarray(tags)).to(self.device)
            out = self.model(x, t).float().cpu().numpy().astype(np.float64)
        return self._to_hit_scale(out)

    def score(self, items: Sequence[AudioItem], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Score audio files (paths or the bytes of a file).

        Parameters
        ----------
        items : sequence of str, Path or bytes
            Audio files (WAV, FLAC, OGG, MP3; others through ffmpeg when installed).
        names : sequence of str, optional
            Display names, one per item; default the path, or ``upload-<i>`` for bytes.

        Returns
        -------
        list of dict
            One per item, in order, with keys ``name``, ``score`` (hit-score scale),
            ``percentile`` (0..100 within the training catalog), ``tags`` (dict of 50 tag
            probabilities), ``top_tags`` (the 5 strongest ``[tag, probability]``), ``taggram``
            (``(n_patches, 50)`` list, for every method), ``frame_scores``
            (per time step, hit-score scale, CNN methods, else None), ``timings`` (seconds per
            stage), ``warnings`` (texts), ``error`` (None, or why the file could not be scored).
        """
        if isinstance(items, (str, Path, bytes, bytearray)):
            raise InputError("score() takes a list of files; wrap a single file in a list")
        items = list(items)
        if names is not None and len(names) != len(items):
            raise InputError(f"score() got {len(items)} items but {len(names)} names")
        out = []
        for i, item in enumerate(items):
            if names is not None:
                name = str(names[i])
            elif isinstance(item, (bytes, bytearray)):
                name = f"upload-{i}"
            else:
                name = str(item)
            out.append(self._thread.submit(self._score_one, item, name).result())
        return out

    def _score_one(self, item: AudioItem, name: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": name, "score": None, "percentile": None, "tags": None, "top_tags": None,
            "taggram": None, "frame_scores": None, "timings": None, "warnings": [], "error": None,
        }  # fmt: skip
        try:
            if isinstance(item, (bytes, bytearray)):
                if not item:
                    raise InputError(f"{name}: the uploaded file is empty (0 bytes)")
                with tempfile.NamedTemporaryFile(suffix=_suffix_for(bytes(item[:16]))) as tmp:
                    tmp.write(item)
                    tmp.flush()
                    result.update(self._score_path(Path(tmp.name)))
            elif isinstance(item, (str, Path)):
                result.update(self._score_path(Path(item)))
            else:
                raise InputError(f"{name}: expected a path or the bytes of an audio file, got {type(item).__name__}")
        except HitsongError as exc:
            result["error"] = str(exc)
            log.warning("could not score %s: %s", name, exc)
        except Exception as exc:  # a crafted file tripping a decoder, or a bug: this file fails, the batch goes on
            log.error("unexpected error while scoring %s", name, exc_info=exc)
            result["error"] = (
                f"{name}: unexpected error while scoring ({type(exc).__name__}); the details are in the server's log"
            )
        return result

    def _network(self, mel: Any, tags: Any) -> tuple[Any, Any]:
        """The score ``(1,)`` and, for CNN methods, the frame scores ``(1, T')``."""
        frames = self.model.frame_scores(mel, tags) if self.has_frames else None
        return self.model(mel, tags), frames

    def _score_path(self, path: Path) -> dict[str, Any]:
        import torch

        from hitsong.audio import decode_for_features
        from hitsong.tagger.kernels import on_one_thread

        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wave, wave16, _flags = decode_for_features(path, config=self.audio_config, tagger_sr=TAGGER_SR)
        assert wave16 is not None  # asked for with tagger_sr
        t1 = time.perf_counter()
        # on a CPU the log-mel and the network (small) run on one torch thread, like the tagger's
        # steps (hitsong.tagger.kernels.on_one_thread: no OpenMP team stalling on a busy machine)
        step = on_one_thread if self.device.type == "cpu" else _inference
        x = torch.from_numpy(np.ascontiguousarray(wave)).to(self.device)
        mel = step(self.mel, x[None])  # (1, n_mels, T)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        tag_result = self.tagger.tag(wave16, sr=TAGGER_SR)
        song_tags = np.asarray(tag_result.song, dtype=np.float32)  # (50,)
        t3 = time.perf_counter()
        tags = torch.from_numpy(song_tags[None]).to(self.device)  # (1, 50)
        pred, frames = step(self._network, mel, tags)  # (1,), (1, T') or None
        pred_np = pred.float().cpu().numpy()
        frames_np = frames.float().cpu().numpy()[0] if frames is not None else None
        t4 = time.perf_counter()
        score = float(self._to_hit_scale(pred_np)[0])
        if not np.isfinite(score):
            raise ModelError(f"{path}: the model produced a non-finite score ({score}); the bundle may be corrupt")
        tag_names = list(self.tagger.tags)
        return {
            "score": score,
            "percentile": self.percentile(score),
            "tags": {t: float(v) for t, v in zip(tag_names, song_tags)},
            "top_tags": [[t, float(v)] for t, v in tag_result.top(TOP_TAGS)],
            "taggram": np.asarray(tag_result.taggram).tolist(),
            "frame_scores": self._to_hit_scale(frames_np).tolist() if frames_np is not None else None,
            "timings": ScoreTimings(decode=t1 - t0, features=t2 - t1, tagger=t3 - t2, network=t4 - t3).as_dict(),
            "warnings": [str(w.message) for w in caught],
        }
