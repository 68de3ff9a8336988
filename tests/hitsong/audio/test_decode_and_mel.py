"""The audio front end against hand-computed values and a second implementation (librosa)."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from hitsong.audio import (
    AudioConfig,
    decode_for_features,
    decode_middle,
    load_segment,
    log_compress,
    log_mel,
    mel_filterbank,
    mel_stats,
)
from hitsong.audio.torchmel import TorchLogMel
from hitsong.errors import ConfigError
from tests.helpers.audio import song, tone, write_audio

pytestmark = pytest.mark.timeout(120)

#: Stated tolerances, in log10 units of the compressed mel (values range 0..~10).
#: Our decode-the-middle path vs the naive whole-file librosa path (measured ~4e-5).
PATH_ATOL = 1e-3
#: TorchLogMel vs log_mel, float32 on CPU (measured ~1e-5 absolute, ~2e-6 relative).
TORCH_ATOL = 1e-4

CFG5 = AudioConfig(seconds=5.0)


def naive_log_mel(path, cfg: AudioConfig) -> np.ndarray:
    """What a newcomer writes: load all at cfg.sr, cut the middle, librosa melspectrogram."""
    y, _ = librosa.load(str(path), sr=cfg.sr)
    start = (len(y) - cfg.n_samples) // 2
    y = y[start : start + cfg.n_samples]
    mel = librosa.feature.melspectrogram(
        y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, center=True, pad_mode="constant"
    )
    return np.log10(1.0 + 10000.0 * mel)


def test_paper_config_gives_646_frames() -> None:
    cfg = AudioConfig()
    assert (cfg.sr, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.seconds) == (22050, 4096, 2048, 128, 60.0)
    assert cfg.n_samples == 1_323_000
    assert cfg.n_frames == 1 + 1_323_000 // 2048 == 646
    assert cfg.fmax_hz == 11025.0


def test_config_hash_follows_every_field() -> None:
    assert AudioConfig().config_hash() == AudioConfig().config_hash()
    assert AudioConfig(seconds=30.0).config_hash() != AudioConfig().config_hash()
    assert AudioConfig(fmax=8000.0).config_hash() != AudioConfig().config_hash()


@pytest.mark.parametrize(
    "kwargs", [{"n_mels": 0}, {"sr": 22050.5}, {"seconds": 0.0}, {"fmax": 20000.0}, {"fmin": 5000.0, "fmax": 4000.0}]
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="AudioConfig"):
        AudioConfig(**kwargs)


def test_log_compress_hand_values() -> None:
    x = np.array([0.0, 1e-4, 0.0999, 9.9999], dtype=np.float32)
    want = np.array([0.0, math.log10(2.0), 3.0, 5.0], dtype=np.float32)
    np.testing.assert_allclose(log_compress(x), want, rtol=1e-6, atol=1e-7)
    assert log_compress(x).dtype == np.float32
    np.testing.assert_allclose(log_compress(torch.from_numpy(x)).numpy(), want, rtol=1e-6, atol=1e-7)


def test_mel_stats_hand_computed() -> None:
    mel = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(mel_stats(mel), [2.0, 4.0, math.sqrt(2.0 / 3.0), 0.0], rtol=1e-6)
    assert mel_stats(np.zeros((128, 646))).shape == (256,)
    with pytest.raises(ConfigError, match="shape"):
        mel_stats(np.zeros(5))


@pytest.mark.parametrize("band", [90, 105, 120])
def test_sine_at_band_centre_lights_that_band_with_predicted_energy(band: int) -> None:
    """A sine at the centre of band k: band k is the loudest, with the energy Parseval predicts.

    For a sine of amplitude A under a periodic Hann window of N samples, the one-sided STFT
    power sums to 3 A^2 N^2 / 32; a Slaney-normalised triangle of band k peaks at
    2 / (f_{k+2} - f_k) at its centre f_{k+1}, and is nearly flat over the sine's 4-bin main lobe
    when the band is wide, so the band's mel power is about peak * 3 A^2 N^2 / 32 (slightly less:
    the lobe's ~0.5-bin mean offset from the peak costs 0.5 / half-width, under 3 % from band 90 up).
    """
    cfg, amp = CFG5, 0.5
    edges = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax_hz)
    freq = edges[band + 1]
    y = tone(freq, seconds=cfg.seconds, sr=cfg.sr, amp=amp)[:, 0]
    mel = log_mel(y, config=cfg)
    assert mel.shape == (128, cfg.n_frames) and mel.dtype == np.float32
    inner = mel[:, 3:-3]
    assert (inner.argmax(axis=0) == band).all()
    power = (10.0 ** inner[band].astype(np.float64) - 1.0) / 10000.0
    predicted = 2.0 / (edges[band + 2] - edges[band]) * 3 * amp**2 * cfg.n_fft**2 / 32
    np.testing.assert_allclose(power, predicted, rtol=0.04)


def test_log_mel_matches_librosa_directly(rng: np.random.Generator) -> None:
    cfg = CFG5
    y = (tone(440.0, seconds=5.0, sr=cfg.sr)[:, 0] + 0.1 * rng.standard_normal(cfg.n_samples)).astype(np.float32)
    ref = librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    np.testing.assert_allclose(log_mel(y, config=cfg), np.log10(1 + 10000 * ref), atol=TORCH_ATOL)
    for c in (cfg, AudioConfig(fmin=30.0, fmax=8000.0, n_mels=96, n_fft=2048)):
        ref_fb = librosa.filters.mel(sr=c.sr, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax_hz)
        np.testing.assert_allclose(mel_filterbank(c), ref_fb, rtol=1e-5, atol=1e-9)


def test_torch_log_mel_equals_log_mel(rng: np.random.Generator) -> None:
    cfg = CFG5
    a = tone(1000.0, seconds=5.0, sr=cfg.sr)[:, 0]
    b = (0.2 * rng.standard_normal(cfg.n_samples)).astype(np.float32)
    module = TorchLogMel(cfg)
    with torch.no_grad():
        out = module(torch.from_numpy(np.stack([a, b])))
    assert out.shape == (2, 128, cfg.n_frames)
    for wave, got in zip((a, b), out, strict=True):
        np.testing.assert_allclose(got.numpy(), log_mel(wave, config=cfg), atol=TORCH_ATOL)
    odd = b[:12345]
    with torch.no_grad():
        single = module(torch.from_numpy(odd))
    assert single.shape == (128, 1 + 12345 // cfg.hop_length)
    np.testing.assert_allclose(single.numpy(), log_mel(odd, config=cfg), atol=TORCH_ATOL)


def test_full_60s_file_matches_the_naive_librosa_path(tmp_path) -> None:
    """The one full-length case: 70 s of 44.1 kHz stereo; ours vs load-all + cut + librosa."""
    path = write_audio(tmp_path / "long.wav", song(seconds=70.0, sr=44100, seed=3), 44100, subtype="FLOAT")
    cfg = AudioConfig()
    ours = log_mel(path, config=cfg)
    assert ours.shape == (128, 646) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, naive_log_mel(path, cfg), atol=PATH_ATOL)


def test_decode_middle_mp3_seek_is_sample_exact(tmp_path) -> None:
    path = write_audio(tmp_path / "s.mp3", song(seconds=20.0, sr=44100, seed=4), 44100)
    full, sr = sf.read(str(path), dtype="float32")
    y, native_sr, info = decode_middle(path, seconds=5.0)
    start = (full.shape[0] - 5 * 44100) // 2
    assert native_sr == sr == 44100 and info.channels == 2 and not info.short
    np.testing.assert_array_equal(y, full[start : start + 5 * 44100].mean(axis=1, dtype=np.float32))


def test_load_segment_at_native_rate_is_the_exact_middle(tmp_path, rng: np.random.Generator) -> None:
    data = (0.1 * rng.standard_normal(22050 * 12 + 7)).astype(np.float32)
    path = write_audio(tmp_path / "n.wav", data, 22050, subtype="FLOAT")
    seg = load_segment(path, sr=22050, seconds=5.0)
    start = (data.shape[0] - 5 * 22050) // 2
    np.testing.assert_array_equal(seg, data[start : start + 5 * 22050])


def test_load_segment_resampled_matches_librosa_load(tmp_path) -> None:
    path = write_audio(tmp_path / "s.wav", song(seconds=12.0, sr=44100, seed=5), 44100, subtype="FLOAT")
    seg = load_segment(path, sr=22050, seconds=5.0)
    y, _ = librosa.load(str(path), sr=22050)
    start = (len(y) - seg.shape[0]) // 2
    assert seg.shape == (110250,)
    np.testing.assert_allclose(seg, y[start : start + seg.shape[0]], atol=1e-5)


def test_decode_for_features_gives_both_rates_from_one_decode(tmp_path) -> None:
    path = write_audio(tmp_path / "s.flac", song(seconds=10.0, sr=44100, seed=6), 44100)
    wave, wave16, flags = decode_for_features(path, config=CFG5)
    assert wave.shape == (CFG5.n_samples,) and wave16.shape == (80000,)
    assert not flags.padded and flags.native_sr == 44100 and flags.channels == 2
    y16, _ = librosa.load(str(path), sr=16000)
    start = (len(y16) - 80000) // 2
    np.testing.assert_allclose(wave16, y16[start : start + 80000], atol=1e-4)
    np.testing.assert_array_equal(wave, load_segment(path, sr=CFG5.sr, seconds=CFG5.seconds))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_every_format_decodes_to_the_same_music(tmp_path, suffix: str) -> None:
    """WAV, FLAC, OGG and MP3 of one song give nearly the same log-mel (lossy ones less so)."""
    data = song(seconds=8.0, sr=44100, seed=8)
    ref = log_mel(write_audio(tmp_path / "ref.wav", data, 44100, subtype="FLOAT"), config=CFG5)
    mel = log_mel(write_audio(tmp_path / f"x{suffix}", data, 44100), config=CFG5)
    assert mel.shape == (128, CFG5.n_frames)
    # lossy codecs cut the highest bands; compare where the music is
    loud = ref > 1.0
    tol = {".wav": 1e-2, ".flac": 1e-2, ".ogg": 0.5, ".mp3": 0.5}[suffix]
    assert np.median(np.abs(mel - ref)[loud]) < tol


def test_audio_config_round_trips_and_refuses_what_it_does_not_know() -> None:
    config = AudioConfig(tagger_seconds=15.0)
    assert AudioConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"bundle\.json: unknown audio config key\(s\) \['hop_ms'\]"):
        AudioConfig.from_dict({**config.to_dict(), "hop_ms": 93}, source="bundle.json")
