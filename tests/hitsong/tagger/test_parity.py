"""The PyTorch port reproduces the original TensorFlow musicnn on real music clips.

Reference values in ``tests/data/musicnn/`` were computed by musicnn 0.1.0 under TensorFlow
(see its PROVENANCE.md). Tolerances: 1e-4 absolute on the mel input, the
per-patch probabilities and the song level; same top-3 tags.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from hitsong.tagger import MTT_TAGS, Tagger
from hitsong.tagger.frontend import load_audio_16k, log_mel, patch

DATA = Path(__file__).resolve().parents[2] / "data" / "musicnn"
CLIPS = ("lincity_city_blues", "wz2100_ost_track1", "xmoto_speeditup")
MODELS = ("MTT_musicnn", "MTT_vgg")
TOL = 1e-4


@pytest.fixture(scope="module")
def waves() -> dict[str, np.ndarray]:
    return {clip: load_audio_16k(DATA / "audio" / f"{clip}.wav") for clip in CLIPS}


@pytest.fixture(scope="module", params=MODELS)
def tagger(request: pytest.FixtureRequest) -> Tagger:
    return Tagger.from_pretrained(request.param, device="cpu")


def test_tag_names_match_the_original() -> None:
    assert tuple(json.loads((DATA / "tags.json").read_text())) == MTT_TAGS


@pytest.mark.parametrize("clip", CLIPS)
def test_mel_matches_the_original(clip: str, waves: dict[str, np.ndarray]) -> None:
    ref = np.load(DATA / f"mel_{clip}.npy")
    mel = log_mel(waves[clip])
    assert mel.shape == ref.shape and mel.dtype == np.float32
    np.testing.assert_allclose(mel, ref, rtol=0, atol=TOL)
    patches, padded = patch(mel)
    assert not padded and patches.shape == (ref.shape[0] // 187, 187, 96)
    np.testing.assert_array_equal(patches[1], mel[187:374])


def test_taggram_and_song_level_match_the_original(tagger: Tagger) -> None:
    results = tagger.tag_batch([DATA / "audio" / f"{clip}.wav" for clip in CLIPS])
    for clip, res in zip(CLIPS, results):
        ref_taggram = np.load(DATA / tagger.name / f"{clip}_taggram.npy")
        ref_song = np.load(DATA / tagger.name / f"{clip}_mean.npy")
        assert res.taggram.shape == ref_taggram.shape, clip
        np.testing.assert_allclose(res.taggram, ref_taggram, rtol=0, atol=TOL, err_msg=clip)
        np.testing.assert_allclose(res.song, ref_song, rtol=0, atol=TOL, err_msg=clip)
        ref_top3 = [MTT_TAGS[i] for i in np.argsort(-ref_song, kind="stable")[:3]]
        assert [name for name, _ in res.top(3)] == ref_top3, clip


def test_batched_equals_one_at_a_time(waves: dict[str, np.ndarray]) -> None:
    tagger = Tagger.from_pretrained("MTT_musicnn", device="cpu", batch_patches=5)
    one = tagger.tag(waves["xmoto_speeditup"])
    ref = np.load(DATA / "MTT_musicnn" / "xmoto_speeditup_taggram.npy")
    np.testing.assert_allclose(one.taggram, ref, rtol=0, atol=TOL)
    short = waves["lincity_city_blues"][: 16000 * 7]
    batch = tagger.tag_batch([short, waves["xmoto_speeditup"]], sr=16000)
    assert [r.taggram.shape[0] for r in batch] == [2, ref.shape[0]]
    np.testing.assert_allclose(batch[1].taggram, one.taggram, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch[0].taggram, tagger.tag(short).taggram, rtol=0, atol=1e-6)


def test_other_rates_resample_like_librosa_load(tmp_path: Path, waves: dict[str, np.ndarray]) -> None:
    import librosa

    # A 44.1 kHz stereo file made from 8 s of a clip; librosa.load(sr=16000) is the reference.
    y = soxr.resample(waves["xmoto_speeditup"][: 16000 * 8], 16000, 44100)
    stereo = np.stack([y, 0.5 * y], axis=1)
    path = tmp_path / "clip44k.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    ref_wave, _ = librosa.load(path, sr=16000)
    tagger = Tagger.from_pretrained("MTT_musicnn", device="cpu")
    from_file = tagger.tag(path)
    from_wave = tagger.tag(stereo.T, sr=44100)
    expected = tagger.predict_patches(patch(log_mel(ref_wave))[0])
    np.testing.assert_allclose(from_file.taggram, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(from_wave.taggram, expected, rtol=0, atol=1e-6)
