"""An MP3 whose header lies about its length decodes in bounded memory.

The attack: an upload whose first frame (its Xing header) claims 6,000 s. Seeking to that
middle fails, so the decoder falls back to reading the file from its start; unbounded, that
read the whole stream, twice over (blocks, then their concatenation): gigabytes at the 100 MB
upload limit. The fallback now stops after ``MAX_FALLBACK_SEGMENTS`` times the segment and
fills one buffer in place.

Stated bound, measured here as the growth of the peak resident memory of a fresh process during
one ``decode_middle`` call (each file in its own subprocess, so that nothing is shared): the
crafted file may take at most ``MAX_FALLBACK_SEGMENTS`` segments of decoded audio (float32,
all channels) more than the honest file, plus 4 MB. With a 5-s segment and a 2-minute stereo
file that is 7.3 + 4 MB. Measured on the development machine: honest 3.9 MB, crafted 9.2 MB;
the unbounded fallback took 81.4 MB (it grows with the file: gigabytes at the upload limit).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from hitsong.audio.decode import CONTEXT_SECONDS, MAX_FALLBACK_SEGMENTS, decode_middle
from hitsong.errors import HitsongWarning
from tests.helpers.audio import song, write_audio

SR, CHANNELS, FILE_SECONDS, SEGMENT = 44100, 2, 120.0, 5.0
CLAIMED_SECONDS = 6000.0
MP3_FRAME = 1152  # samples per MPEG-1 layer III frame
SLACK_BYTES = 4 << 20

#: Run in a fresh process: the peak resident memory (Linux ``VmHWM``, reset through
#: ``/proc/self/clear_refs`` once the imports are done) gained during one decode, in bytes.
PEAK = textwrap.dedent(
    """
    import sys, warnings
    from hitsong.audio.decode import CONTEXT_SECONDS, decode_middle
    warnings.simplefilter("ignore")

    def high_water_mark():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak to the current resident size
    before = high_water_mark()
    y, sr, info = decode_middle(sys.argv[1], seconds=float(sys.argv[2]), context_seconds=CONTEXT_SECONDS)
    print(high_water_mark() - before, info.duration, info.truncated)
    """
)


def lie_about_length(mp3: bytes, seconds: float, sr: int) -> bytes:
    """The same MP3 with its Xing/Info header's frame count claiming ``seconds``."""
    at = max(mp3.find(b"Xing", 0, 200), mp3.find(b"Info", 0, 200))
    if at < 0:
        raise ValueError("no Xing/Info header in the first frame")
    (flags,) = struct.unpack(">I", mp3[at + 4 : at + 8])
    if not flags & 1:
        raise ValueError("the Xing header carries no frame count")
    return mp3[: at + 8] + struct.pack(">I", int(seconds * sr / MP3_FRAME)) + mp3[at + 12 :]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lying-mp3")
    honest = write_audio(folder / "honest.mp3", song(seconds=FILE_SECONDS, sr=SR, seed=5, channels=CHANNELS), SR)
    crafted = folder / "crafted.mp3"
    crafted.write_bytes(lie_about_length(honest.read_bytes(), CLAIMED_SECONDS, SR))
    return {"honest": honest, "crafted": crafted}


def _peak_growth(path: Path) -> tuple[int, float, bool]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure a peak")
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, str(path), str(SEGMENT)], capture_output=True, text=True, timeout=300, check=True
    )
    grown, duration, truncated = proc.stdout.split()
    return int(grown), float(duration), truncated == "True"


def test_the_crafted_header_is_believed_by_the_decoder_library(files):
    """The attack is real: libsndfile reports the claimed length, so the middle cannot be sought."""
    import soundfile as sf

    with sf.SoundFile(str(files["crafted"])) as f:
        assert f.frames / f.samplerate == pytest.approx(CLAIMED_SECONDS, rel=0.01)


def test_a_lying_header_is_decoded_in_bounded_memory_with_a_warning(files):
    honest_growth, honest_duration, honest_truncated = _peak_growth(files["honest"])
    crafted_growth, crafted_duration, crafted_truncated = _peak_growth(files["crafted"])
    cap_seconds = MAX_FALLBACK_SEGMENTS * (SEGMENT + 2 * CONTEXT_SECONDS)
    assert not honest_truncated and honest_duration == pytest.approx(FILE_SECONDS, abs=0.1)
    assert crafted_truncated and crafted_duration == pytest.approx(cap_seconds, abs=0.01)  # stopped at the cap
    bound = int(cap_seconds * SR * CHANNELS * 4) + SLACK_BYTES
    assert crafted_growth - honest_growth <= bound, (
        f"decoding the crafted file grew the peak by {crafted_growth / 2**20:.1f} MB, the honest one by "
        f"{honest_growth / 2**20:.1f} MB; the bound is {bound / 2**20:.1f} MB more"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y, sr, info = decode_middle(files["crafted"], seconds=SEGMENT)
    texts = [str(w.message) for w in caught if issubclass(w.category, HitsongWarning)]
    assert any("header says 6000.0 s" in t and f"at most {MAX_FALLBACK_SEGMENTS} times" in t for t in texts), texts
    assert y.shape == (int(SEGMENT * sr),) and info.truncated
