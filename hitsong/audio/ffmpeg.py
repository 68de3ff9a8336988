"""Containers libsndfile cannot read (M4A/AAC, ...), decoded by an ``ffmpeg`` subprocess when it is installed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from hitsong.audio.info import DecodeInfo
from hitsong.errors import AudioError

#: Containers that libsndfile cannot read and ``ffmpeg`` can.
FFMPEG_SUFFIXES = frozenset({".m4a", ".aac", ".mp4", ".m4b", ".wma", ".webm", ".mka"})


def ffprobe(path: Path) -> tuple[int, int, float]:
    """``(sample rate, channels, duration in s)`` of the first audio stream, from ``ffprobe``."""
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate,channels:format=duration",
        "-of",
        "json",
        str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    try:
        meta = json.loads(proc.stdout or b"{}")
        stream = meta["streams"][0]
        return int(stream["sample_rate"]), int(stream["channels"]), float(meta["format"]["duration"])
    except (KeyError, IndexError, ValueError) as exc:
        err = proc.stderr.decode(errors="replace").strip()
        raise AudioError(f"{path}: ffprobe finds no audio stream ({err or exc})") from exc


def decode_ffmpeg(path: Path, seconds: float, context: float) -> tuple[np.ndarray, DecodeInfo]:
    """Decode the middle of a container libsndfile cannot read with an ffmpeg subprocess."""
    nsr, channels, duration = ffprobe(path)
    t0 = max(0.0, (duration - seconds) / 2 - context) if duration > seconds else 0.0
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-ss",
        f"{t0:.6f}",
        "-t",
        f"{seconds + 2 * context:.6f}",
        "-i",
        str(path),
        "-map",
        "a:0",
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "pipe:1",
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AudioError(f"{path}: ffmpeg cannot decode it: {proc.stderr.decode(errors='replace').strip()}")
    data = np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, channels)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: ffmpeg decoded no audio from the file")
    need = int(round(seconds * nsr))
    if duration > seconds:
        lead = int(round(((duration - seconds) / 2 - t0) * nsr))
        seg = min(need, max(0, data.shape[0] - lead))
        info = DecodeInfo(str(path), nsr, channels, duration, lead, seg, max(0, data.shape[0] - lead - seg))
    else:
        info = DecodeInfo(str(path), nsr, channels, data.shape[0] / nsr, 0, data.shape[0], 0, True)
    return data, info
