"""Render a demo song to samples and write it as an audio file.

Instruments come from the General MIDI soundfont that ``pretty_midi`` bundles
(``TimGM6mb.sf2``, GPL-2, Tim Brechbill), played in-process by ``tinysoundfont``; the sung line
is this project's own formant synthesis (:mod:`hitsong.demo.voice`). The mix is tilted in
brightness, normalised to the plan's loudness, soft-limited, and written in blocks.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from hitsong.demo.arrange import (
    CH_BASS,
    CH_COMP,
    CH_DRUMS,
    CH_LEAD,
    CH_PAD,
    Arrangement,
    arrange,
)
from hitsong.demo.plan import SongPlan
from hitsong.demo.voice import render_voice
from hitsong.errors import ConfigError

TAIL_S = 1.5
#: Everything is synthesised at this rate; 44.1-kHz files are resampled from it (soxr), which
#: halves the synthesis cost and leaves their band above 11 kHz empty.
RENDER_SR = 22050
WRITE_BLOCK_FRAMES = 65536
BRIGHTNESS_SPLIT_HZ = 1800.0
#: Voice level relative to the instruments' RMS.
VOICE_LEVEL = 0.8
#: Per channel: (volume CC7, pan CC10; 64 is centre).
CHANNEL_MIX = {CH_COMP: (92, 44), CH_BASS: (105, 64), CH_PAD: (70, 88), CH_LEAD: (100, 70), CH_DRUMS: (100, 64)}


@functools.cache
def soundfont_path() -> Path:
    """The General MIDI soundfont bundled with ``pretty_midi`` (``TimGM6mb.sf2``)."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise ConfigError(
            f"the General MIDI soundfont {path} is missing; reinstall pretty_midi "
            "(`pip install --force-reinstall pretty-midi`)"
        )
    return path


def _render_midi(arr: Arrangement, *, sr: int, n_samples: int) -> np.ndarray:
    """Play the arrangement's notes through the soundfont: (n_samples, 2) float32."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sr, gain=-8.0)
    sfid = synth.sfload(str(soundfont_path()), max_voices=32)
    for ch, (bank, program, drums) in arr.programs.items():
        synth.program_select(ch, sfid, bank, program, is_drums=drums)
        volume, pan = CHANNEL_MIX[ch]
        synth.control_change(ch, 7, volume)
        synth.control_change(ch, 10, pan)
    events = []
    for note in arr.notes:
        events.append((int(note.start * sr), 1, note.channel, note.key, note.velocity))
        events.append((int(note.end * sr), 0, note.channel, note.key, 0))
    events.sort()  # at one sample, note-offs (0) before note-ons (1)
    buf = np.zeros((n_samples, 2), dtype=np.float32)
    view = memoryview(buf.data).cast("B")
    frame_bytes = 2 * 4
    pos = 0
    for at, on, ch, key, vel in events:
        at = min(at, n_samples)
        if at > pos:
            synth.generate_simple(at - pos, buffer=view[pos * frame_bytes : at * frame_bytes])
            pos = at
        if on:
            synth.noteon(ch, key, vel)
        else:
            synth.noteoff(ch, key)
    if pos < n_samples:
        synth.generate_simple(n_samples - pos, buffer=view[pos * frame_bytes :])
    return buf


def _rms(x: np.ndarray) -> float:
    if not x.size:
        return 0.0
    flat = x.reshape(-1).astype(np.float64)
    return float(np.sqrt(np.dot(flat, flat) / flat.size))


def render_song(plan: SongPlan, *, arrangement: Arrangement | None = None) -> np.ndarray:
    """Render a plan to samples at ``plan.sample_rate``.

    Parameters
    ----------
    plan : SongPlan
        The song.
    arrangement : Arrangement or None
        Its arrangement when already built (``arrange(plan)`` otherwise).

    Returns
    -------
    np.ndarray [shape=(n_samples, plan.channels), dtype=float32]
        Samples in [-1, 1] at ``plan.sample_rate``; ``n_samples`` covers the arrangement's
        bars plus a 1.5-s tail.
    """
    arr = arrangement or arrange(plan)
    sr = RENDER_SR
    n = int((arr.seconds + TAIL_S) * sr)
    mix = _render_midi(arr, sr=sr, n_samples=n)  # (n, 2)
    if plan.channels == 1:
        mix = mix.mean(axis=1, keepdims=True)  # (n, 1)
    if arr.voice:
        voice = render_voice(
            arr.voice,
            n_samples=n,
            sr=sr,
            female=plan.vocal == "female",
            rap=plan.rap,
            rng=np.random.default_rng([plan.seed, 1]),
        )
        voice_rms, inst_rms = _rms(voice), _rms(mix)
        if voice_rms > 0 and inst_rms > 0:
            mix += np.float32(VOICE_LEVEL * inst_rms / voice_rms) * voice[:, None]
    # brightness: tilt the band above BRIGHTNESS_SPLIT_HZ by -9 dB (0) .. +9 dB (1)
    sos = signal.butter(2, BRIGHTNESS_SPLIT_HZ, btype="low", fs=sr, output="sos").astype(np.float32)
    low = signal.sosfilt(sos, mix, axis=0).astype(np.float32)
    mix -= low
    mix *= np.float32(10.0 ** ((plan.brightness - 0.5) * 18.0 / 20.0))
    mix += low
    del low
    rms = _rms(mix)
    if rms > 0:
        mix *= np.float32(10.0 ** (plan.loudness_dbfs / 20.0) / rms / 0.98)
    np.tanh(mix, out=mix)
    mix *= np.float32(0.98)  # soft limiter: 0.98 * tanh(x / 0.98)
    fade_in = min(int(0.02 * sr), n)
    mix[:fade_in] *= np.linspace(0.0, 1.0, fade_in, dtype=np.float32)[:, None]
    fade_out = min(int(TAIL_S * sr), n)
    mix[n - fade_out :] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32)[:, None]
    if plan.sample_rate != sr:
        mix = np.clip(soxr.resample(mix, sr, plan.sample_rate, quality="HQ"), -1.0, 1.0)
    return np.ascontiguousarray(mix, dtype=np.float32)


def write_audio(samples: np.ndarray, path: Path, *, sr: int, audio_format: str, subtype: str) -> None:
    """Write ``samples`` (n, channels) to ``path`` in blocks of 65,536 frames.

    Writing a long OGG in a single call has crashed the interpreter (libsndfile's Vorbis
    encoder); block writes avoid that and keep memory flat.
    """
    with sf.SoundFile(
        str(path), "w", samplerate=sr, channels=samples.shape[1], format=audio_format.upper(), subtype=subtype
    ) as f:
        for i in range(0, samples.shape[0], WRITE_BLOCK_FRAMES):
            f.write(samples[i : i + WRITE_BLOCK_FRAMES])
