"""Seeking into MP3s: exact samples despite the bit reservoir, and no libmpg123 noise on stderr."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hitsong.audio.decode
from hitsong.audio import AudioConfig, decode_for_features, decode_middle
from hitsong.audio.mpg123 import quiet_decoder_stderr
from hitsong.errors import ConfigError, HitsongWarning
from tests.helpers.audio import write_audio

#: What libmpg123 itself prints (not hitsong's one log line that explains it).
RESERVOIR_MESSAGE = "too large for available bit count"
#: Segment lengths whose seeks (with the pre-roll) land inside a reservoir in this file (measured).
NOISY_SECONDS = (4.0, 9.5, 15.0, 20.0)


def reservoir_mp3(path: Path, *, seconds: float = 40.0, sr: int = 22050) -> Path:
    """A mono MPEG-2 layer III file whose frames lean on the bit reservoir.

    A gliding tone with noise bursts switched on and off makes LAME borrow bits across frames;
    a seek into such a file lands in the middle of a reservoir (measured: libmpg123 complains
    and the first ~0.25 s after the seek decode wrongly).
    """
    rng = np.random.default_rng(1)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.01 * np.sin(t)))
    y += 0.2 * rng.standard_normal(n) * (np.sin(2 * np.pi * 0.5 * t) > 0.5)
    return write_audio(path, y.astype(np.float32), sr)


@pytest.fixture(scope="module")
def mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reservoir_mp3(tmp_path_factory.mktemp("mp3") / "reservoir.mp3")


def test_a_plain_seek_into_this_file_decodes_wrong_samples(mp3: Path) -> None:
    """The problem the pre-roll solves is real for this file (else the next tests prove nothing)."""
    full, sr = sf.read(str(mp3), dtype="float32")
    worst = 0.0
    for seconds in (7.0, 13.0, 30.0):
        lo = (full.shape[0] - int(seconds * sr)) // 2
        with sf.SoundFile(str(mp3)) as f:
            f.seek(lo)
            got = f.read(int(seconds * sr), dtype="float32")
        worst = max(worst, float(np.abs(got - full[lo : lo + got.size]).max()))
    assert worst > 0.05


def test_without_the_redirect_the_decoder_would_print(
    mp3: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hitsong.audio.decode, "quiet_decoder_stderr", lambda path: contextlib.nullcontext())
    for seconds in NOISY_SECONDS:
        decode_middle(mp3, seconds=seconds, context_seconds=0.1)
    assert RESERVOIR_MESSAGE in capfd.readouterr().err


@pytest.mark.parametrize("seconds", [7.0, 13.0, 21.7, 30.0, *NOISY_SECONDS])
def test_decode_middle_is_sample_exact_and_quiet(mp3: Path, seconds: float, capfd: pytest.CaptureFixture[str]) -> None:
    full, sr = sf.read(str(mp3), dtype="float32")
    y, native_sr, info = decode_middle(mp3, seconds=seconds, context_seconds=0.1)
    start = (full.shape[0] - round(seconds * sr)) // 2 - info.lead
    assert native_sr == sr and y.size == info.lead + info.segment + info.trail
    np.testing.assert_allclose(y, full[start : start + y.size], rtol=0, atol=1e-6)
    assert RESERVOIR_MESSAGE not in capfd.readouterr().err


def test_features_decode_is_quiet(mp3: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for seconds in NOISY_SECONDS:
        decode_for_features(mp3, config=AudioConfig(seconds=seconds, tagger_seconds=seconds))
    assert RESERVOIR_MESSAGE not in capfd.readouterr().err


def test_other_stderr_output_passes_through_in_order(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    noise = (
        b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: "
        b"part2_3_length (160) too large for available bit count (104)\n"
    )
    with quiet_decoder_stderr(tmp_path / "x.mp3"):
        os.write(2, b"first\n" + noise + b"second\n")
    err = capfd.readouterr().err
    assert err == "first\nsecond\n"


def test_quiet_blocks_nest_in_one_thread(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A decode inside a caller's own quiet block (as around a whole library call) does not wait for itself."""
    noise = b"libmpg123: part2_3_length (160) too large for available bit count (104)\n"
    with quiet_decoder_stderr(tmp_path / "outer.mp3"):
        os.write(2, b"outer\n")
        with quiet_decoder_stderr(tmp_path / "inner.mp3"):
            os.write(2, b"inner\n" + noise)
        os.write(2, noise)
    assert capfd.readouterr().err == "outer\ninner\n"


@pytest.fixture
def split_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let segments of a few seconds be split into parts (the default needs 8 s per part)."""
    monkeypatch.setattr(hitsong.audio.decode, "_PARALLEL_MIN_SECONDS", 2.0)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("seconds", [7.0, 13.0, *NOISY_SECONDS])
def test_a_segment_decoded_in_parts_on_threads_equals_one_read(
    mp3: Path, seconds: float, threads: int, split_small: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """Each part enters the stream with its own pre-roll, so the joined parts are the samples of
    one read (up to the decoder's float rounding, 1e-6, as one read against a decode from the
    start above); and the parts' seeks stay quiet too."""
    hitsong.audio.decode.set_decode_threads(1)
    try:
        one, _, info_one = decode_middle(mp3, seconds=seconds, context_seconds=0.1)
        hitsong.audio.decode.set_decode_threads(threads)
        parts, _, info_parts = decode_middle(mp3, seconds=seconds, context_seconds=0.1)
    finally:
        hitsong.audio.decode.set_decode_threads(None)
    assert info_parts == info_one
    np.testing.assert_allclose(parts, one, rtol=0, atol=1e-6)
    assert RESERVOIR_MESSAGE not in capfd.readouterr().err


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_flac_and_ogg_decoded_in_parts_equal_one_read(tmp_path: Path, fmt: str, split_small: None) -> None:
    rng = np.random.default_rng(3)
    y = (0.2 * rng.standard_normal((22050 * 12, 2))).astype(np.float32)
    path = tmp_path / f"noise.{fmt.lower()}"
    with sf.SoundFile(str(path), "w", 22050, 2, format=fmt) as f:
        for i in range(0, y.shape[0], 65536):  # long OGG writes in one call have crashed libsndfile
            f.write(y[i : i + 65536])
    out = {}
    for threads in (1, 3):
        hitsong.audio.decode.set_decode_threads(threads)
        try:
            out[threads] = decode_middle(path, seconds=9.0, context_seconds=0.1)[0]
        finally:
            hitsong.audio.decode.set_decode_threads(None)
    np.testing.assert_array_equal(out[3], out[1])


def test_a_truncated_mp3_read_in_parts_falls_back_like_one_read(tmp_path: Path, split_small: None) -> None:
    """A part that finds the stream's end makes the read short, so the file is treated as truncated
    exactly as with one thread (same samples, same warning)."""
    whole = reservoir_mp3(tmp_path / "whole.mp3", seconds=30.0)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    got = {}
    for threads in (1, 3):
        hitsong.audio.decode.set_decode_threads(threads)
        try:
            with pytest.warns(HitsongWarning, match=r"cut\.mp3: the header says 30\.0 s but only"):
                got[threads] = decode_middle(cut, seconds=15.0, context_seconds=0.1)
        finally:
            hitsong.audio.decode.set_decode_threads(None)
    np.testing.assert_allclose(got[3][0], got[1][0], rtol=0, atol=1e-6)
    assert got[3][2] == got[1][2] and got[1][2].truncated


def test_decode_threads_are_checked() -> None:
    with pytest.raises(ConfigError, match="decode threads"):
        hitsong.audio.decode.set_decode_threads(0)
    assert hitsong.audio.decode.decode_threads() >= 1
