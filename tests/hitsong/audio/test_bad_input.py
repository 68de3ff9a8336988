"""Bad audio: each case works as documented in hitsong.audio or raises AudioError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hitsong.audio import (
    AudioConfig,
    decode_for_features,
    decode_middle,
    load_segment,
    log_mel,
)
from hitsong.errors import AudioError, HitsongWarning
from tests.helpers.audio import bad_files, song, tone, write_audio

pytestmark = pytest.mark.timeout(60)  # nothing may hang

CFG5 = AudioConfig(seconds=5.0)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict:
    return bad_files(tmp_path_factory.mktemp("bad"), np.random.default_rng(5))


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.mp3"
    with pytest.raises(AudioError, match=r"nope\.mp3: no such audio file"):
        log_mel(path, config=CFG5)


def test_directory_is_not_a_file(tmp_path) -> None:
    with pytest.raises(AudioError, match="is not a file"):
        load_segment(tmp_path, sr=22050, seconds=5.0)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", r"empty\.wav: the file is empty"),
        ("text", r"notes\.mp3: not a readable audio file"),
        ("garbage", r"garbage\.mp3: not a readable audio file"),
        ("corrupt", r"corrupt\.mp3: decoding failed"),
    ],
)
def test_unreadable_files_raise_audio_error_naming_file_and_reason(bad: dict, kind: str, reason: str) -> None:
    with pytest.raises(AudioError, match=reason):
        log_mel(bad[kind], config=CFG5)


def test_truncated_mp3_uses_what_is_there_with_a_warning(bad: dict) -> None:
    """A third of a 20-s MP3: the header still says 20 s; ~6.7 s decode, the middle 5 s is used."""
    with pytest.warns(HitsongWarning, match=r"truncated\.mp3: the header says 20\.0 s but only"):
        wave, _, flags = decode_for_features(bad["truncated"], config=CFG5)
    assert flags.truncated and not flags.padded
    assert 5.0 < flags.duration < 8.0
    assert wave.shape == (CFG5.n_samples,) and np.abs(wave).max() > 0.01


def test_silence_gives_zero_features_and_a_warning(tmp_path) -> None:
    path = write_audio(tmp_path / "silence.wav", np.zeros((22050 * 7, 1), np.float32), 22050)
    with pytest.warns(HitsongWarning, match=r"silence\.wav: the analysed segment is silent"):
        mel = log_mel(path, config=CFG5)
    assert mel.shape == (128, CFG5.n_frames)
    assert np.all(mel == 0.0)


def test_short_clip_is_centre_padded_with_a_warning(tmp_path) -> None:
    clip = tone(440.0, seconds=0.3, sr=22050)
    path = write_audio(tmp_path / "clip.wav", clip, 22050, subtype="FLOAT")
    with pytest.warns(HitsongWarning, match=r"clip\.wav: 0\.30 s of audio is shorter than the 5 s segment"):
        seg = load_segment(path, sr=22050, seconds=5.0)
    n, m = 5 * 22050, clip.shape[0]
    left = (n - m) // 2
    assert seg.shape == (n,)
    np.testing.assert_array_equal(seg[left : left + m], clip[:, 0])
    assert not seg[:left].any() and not seg[left + m :].any()
    with pytest.warns(HitsongWarning, match="zero-padded"):
        assert log_mel(path, config=CFG5).shape == (128, CFG5.n_frames)


def test_nan_samples_are_replaced_by_zero_with_a_warning(tmp_path) -> None:
    data = song(seconds=7.0, sr=22050, seed=2, channels=1)
    data[1000:1100] = np.nan
    data[80000:80010] = np.inf
    path = write_audio(tmp_path / "nan.wav", data, 22050, subtype="FLOAT")
    with pytest.warns(HitsongWarning, match=r"nan\.wav: replaced 110 NaN/infinite samples"):
        y, _, info = decode_middle(path, seconds=10.0)
    assert info.nonfinite == 110 and np.isfinite(y).all()
    assert y[1000:1100].tolist() == [0.0] * 100


def test_all_nan_is_an_error(tmp_path) -> None:
    path = write_audio(tmp_path / "allnan.wav", np.full((22050, 1), np.nan, np.float32), 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"allnan\.wav: every decoded sample is NaN or infinite"):
        log_mel(path, config=CFG5)


def test_eight_channels_are_averaged(tmp_path, rng: np.random.Generator) -> None:
    data = (0.1 * rng.standard_normal((22050 * 6, 8))).astype(np.float32)
    path = write_audio(tmp_path / "octo.wav", data, 22050, subtype="FLOAT")
    y, _, info = decode_middle(path, seconds=5.0)
    start = (data.shape[0] - 5 * 22050) // 2
    assert info.channels == 8
    np.testing.assert_allclose(y, data[start : start + 5 * 22050].mean(axis=1), atol=1e-7)


@pytest.mark.parametrize(("native_sr", "freq"), [(8000, 1000.0), (96000, 5000.0)])
def test_odd_rates_are_resampled(tmp_path, native_sr: int, freq: float) -> None:
    """A sine at 8 kHz or 96 kHz lands in the same mel band as the same sine made at 22,050 Hz."""
    path = write_audio(tmp_path / f"r{native_sr}.flac", tone(freq, seconds=6.0, sr=native_sr), native_sr)
    seg = load_segment(path, sr=22050, seconds=5.0)
    assert seg.shape == (5 * 22050,)
    mel = log_mel(seg, config=CFG5)
    ref = log_mel(tone(freq, seconds=5.0, sr=22050)[:, 0], config=CFG5)
    assert (mel[:, 3:-3].argmax(axis=0) == ref[:, 3].argmax()).all()
    np.testing.assert_allclose(mel[:, 3:-3].max(axis=0), ref[:, 3:-3].max(axis=0), atol=0.05)


def test_m4a_without_ffmpeg_says_to_install_it(tmp_path, monkeypatch) -> None:
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on this PATH
    with pytest.raises(AudioError, match=r"song\.m4a: .*install ffmpeg \(apt-get install ffmpeg\) to read \.m4a"):
        log_mel(path, config=CFG5)


@pytest.mark.parametrize(
    ("wave", "reason"),
    [
        (np.zeros((2, 100), np.float32), "1-D float waveform"),
        (np.array([0.0, np.nan, 0.0], np.float32), "NaN"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(100, np.int16), "1-D float waveform"),
    ],
)
def test_bad_waveforms(wave: np.ndarray, reason: str) -> None:
    with pytest.raises(AudioError, match=reason):
        log_mel(wave, config=CFG5)


def test_long_ogg_written_in_blocks_reads_back(tmp_path) -> None:
    """Writing OGG in blocks (one huge write has crashed the interpreter) and reading its middle."""
    path = write_audio(tmp_path / "long.ogg", song(seconds=30.0, sr=44100, seed=9), 44100)
    assert sf.info(str(path)).frames == 30 * 44100
    assert log_mel(path, config=CFG5).shape == (128, CFG5.n_frames)
