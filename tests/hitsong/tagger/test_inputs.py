"""What the tagger does with odd input and broken weights (never a silently random model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hitsong.errors import AudioError, HitsongWarning, InputError, ModelError
from hitsong.tagger import GENRE_TAGS, MTT_TAGS, Tagger, predominant_genre
from hitsong.tagger.files import weights_path
from hitsong.tagger.inference import resolve_device


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.from_pretrained("MTT_vgg", device="cpu")


def test_genre_tags_are_tags() -> None:
    assert set(GENRE_TAGS) <= set(MTT_TAGS)
    assert len(set(GENRE_TAGS)) == len(GENRE_TAGS)
    assert list(GENRE_TAGS) == sorted(GENRE_TAGS, key=MTT_TAGS.index)


def test_predominant_genre_is_argmax_over_genres() -> None:
    v = np.zeros(50)
    v[MTT_TAGS.index("guitar")] = 0.9  # not a genre: ignored
    v[MTT_TAGS.index("rock")] = 0.3
    v[MTT_TAGS.index("country")] = 0.4
    assert predominant_genre(v) == "country"
    with pytest.raises(InputError, match=r"shape \(50,\)"):
        predominant_genre(np.zeros(49))
    v[0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predominant_genre(v)


def test_short_clip_is_padded_with_a_warning(tagger: Tagger, rng: np.random.Generator) -> None:
    y = (0.1 * rng.standard_normal(16000)).astype(np.float32)  # 1 s: 63 frames < 187
    with pytest.warns(HitsongWarning, match="shorter than one tagger patch"):
        res = tagger.tag(y, sr=16000)
    assert res.padded and res.taggram.shape == (1, 50)
    assert np.all((res.song > 0) & (res.song < 1))
    assert res.genre in GENRE_TAGS


def test_silence_is_valid(tagger: Tagger) -> None:
    res = tagger.tag(np.zeros(16000 * 4, np.float32))
    assert res.taggram.shape == (1, 50) and np.all(np.isfinite(res.song))


@pytest.mark.parametrize(
    ("wave", "match"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN"),
        (np.zeros((2, 2, 2), np.float32), "shape"),
    ],
)
def test_bad_waveforms(tagger: Tagger, wave: np.ndarray, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        tagger.tag(wave)


def test_bad_arguments(tagger: Tagger, tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="sample rate"):
        tagger.tag(np.zeros(1000, np.float32), sr=0)
    with pytest.raises(InputError, match="waveforms only"):
        tagger.tag(tmp_path / "x.wav", sr=16000)
    with pytest.raises(InputError, match="audio path or a waveform"):
        tagger.tag([0.0, 1.0])  # type: ignore[arg-type]
    with pytest.raises(AudioError, match=r"cannot decode audio file .*missing\.wav"):
        tagger.tag(tmp_path / "missing.wav")
    assert tagger.tag_batch([]) == []


def test_unknown_model_and_device() -> None:
    with pytest.raises(ModelError, match="valid names: MTT_musicnn, MTT_vgg"):
        Tagger.from_pretrained("MSD_musicnn")
    with pytest.raises(ModelError, match="invalid device"):
        resolve_device("tpu-please")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="cannot move the MTT_vgg tagger to device cuda"):
            Tagger.from_pretrained("MTT_vgg", device="cuda")


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.safetensors do not exist.*python -m tools\.convert_musicnn"):
        Tagger.from_pretrained("MTT_vgg", weights=tmp_path / "nope.safetensors")


def test_truncated_and_foreign_weights(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights_path("MTT_vgg").read_bytes()[:100_000])
    with pytest.raises(ModelError, match=r"truncated\.safetensors cannot be read.*tools\.convert_musicnn"):
        Tagger.from_pretrained("MTT_vgg", weights=truncated)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"RIFF" + bytes(1000))
    with pytest.raises(ModelError, match=r"foreign\.safetensors cannot be read"):
        Tagger.from_pretrained("MTT_vgg", weights=foreign)


def test_other_models_weights_are_refused() -> None:
    with pytest.raises(ModelError, match="hold weights of 'MTT_vgg', not 'MTT_musicnn'"):
        Tagger.from_pretrained("MTT_musicnn", weights=weights_path("MTT_vgg"))


def test_wrong_shapes_or_keys_are_refused(tmp_path: Path) -> None:
    good = load_file(str(weights_path("MTT_vgg")))
    meta = {"model": "MTT_vgg"}
    wrong = dict(good, **{"output.weight": torch.zeros(10, 256)})
    save_file(wrong, str(tmp_path / "shape.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match=r"wrong shape \['output.weight'\]"):
        Tagger.from_pretrained("MTT_vgg", weights=tmp_path / "shape.safetensors")
    missing = {k: v for k, v in good.items() if k != "convs.2.bn.running_var"}
    save_file(missing, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match=r"missing \['convs.2.bn.running_var'\]"):
        Tagger.from_pretrained("MTT_vgg", weights=tmp_path / "missing.safetensors")
    nan = dict(good, **{"output.bias": torch.full((50,), float("nan"))})
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match="non-finite"):
        Tagger.from_pretrained("MTT_vgg", weights=tmp_path / "nan.safetensors")
