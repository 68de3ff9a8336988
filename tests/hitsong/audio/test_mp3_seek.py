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
