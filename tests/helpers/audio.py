"""Audio fixtures generated in code: tones, songs in several formats, broken files, a tiny DB.

Nothing here is a binary fixture; every file is written into a pytest ``tmp_path``.
Audio is written in blocks (writing a long OGG in one call has crashed the interpreter here).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

#: Frames per block when writing audio.
BLOCK = 16384


def tone(freq: float, *, seconds: float, sr: int, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz, shape ``(n, channels)`` float32 (the same signal in every channel)."""
    t = np.arange(int(round(seconds * sr))) / sr
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(y[:, None], channels, axis=1)


def song(*, seconds: float, sr: int, seed: int, channels: int = 2) -> np.ndarray:
    """A music-like signal: a few harmonic notes with envelopes and a little noise, ``(n, channels)``."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    y = np.zeros(n, dtype=np.float64)
    beat = 0.5 + rng.random() * 0.3
    for k in range(int(seconds / beat) + 1):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        start, stop = int(k * beat * sr), min(n, int((k + 1.5) * beat * sr))
        if start >= n:
            break
        tt = t[start:stop] - t[start]
        env = np.exp(-3.0 * tt)
        for h in range(1, 5):
            y[start:stop] += env * np.sin(2 * np.pi * f0 * h * tt) / h
    y = 0.2 * y / max(1e-9, np.abs(y).max()) + 0.005 * rng.standard_normal(n)
    out = np.stack([np.roll(y, 37 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def write_audio(path: Path, data: np.ndarray, sr: int, *, subtype: str | None = None) -> Path:
    """Write ``data`` ``(n, channels)`` to ``path`` (format from the suffix), in blocks."""
    data = data if data.ndim == 2 else data[:, None]
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[path.suffix.lower()]
    with sf.SoundFile(str(path), "w", sr, data.shape[1], format=fmt, subtype=subtype) as f:
        for i in range(0, data.shape[0], BLOCK):
            f.write(data[i : i + BLOCK])
    return path


def bad_files(folder: Path, rng: np.random.Generator) -> dict[str, Path]:
    """Broken files: empty, text named .mp3, random bytes .mp3, truncated and corrupted MP3s."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["empty"] = folder / "empty.wav"
    out["empty"].write_bytes(b"")
    out["text"] = folder / "notes.mp3"
    out["text"].write_text("this is a text file, not audio\n" * 40)
    out["garbage"] = folder / "garbage.mp3"
    out["garbage"].write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    good = write_audio(folder / "good.mp3", song(seconds=20.0, sr=44100, seed=1), 44100)
    data = good.read_bytes()
    out["truncated"] = folder / "truncated.mp3"
    out["truncated"].write_bytes(data[: len(data) // 3])
    corrupt = bytearray(data)
    lo = len(data) // 3
    corrupt[lo : lo + len(data) // 3] = rng.integers(0, 256, len(data) // 3, dtype=np.uint8).tobytes()
    out["corrupt"] = folder / "corrupt.mp3"
    out["corrupt"].write_bytes(bytes(corrupt))
    return out


def make_library(folder: Path, specs: list[tuple[str, str, float, int, int]]) -> pd.DataFrame:
    """Write songs ``(song_id, suffix, seconds, sr, channels)`` and return a songs frame.

    A spec with suffix ``"broken.mp3"`` writes a text file named ``<song_id>.mp3``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (song_id, suffix, seconds, sr, channels) in enumerate(specs):
        if suffix == "broken.mp3":
            path = folder / f"{song_id}.mp3"
            path.write_text("not audio at all\n" * 50)
        else:
            path = write_audio(
                folder / f"{song_id}{suffix}", song(seconds=seconds, sr=sr, seed=i, channels=channels), sr
            )
        rows.append(
            {
                "song_id": song_id,
                "title": f"Song {i}",
                "artist": f"Artist {i % 2}",
                "subset": "western",
                "release_date": f"2016-0{1 + i % 9}-15",
                "audio_path": path.name,
            }
        )
    return pd.DataFrame(rows)


def make_db(folder: Path, songs: pd.DataFrame, *, seed: int = 7) -> Path:
    """A real listening DuckDB for ``songs`` (``hitsong.store`` ingest + sample).

    Every song gets plays (so every song is sampled); splits 0.5/0.25/0.25.
    """
    from hitsong.store.ingest import ingest
    from hitsong.store.sample import sample

    rng = np.random.default_rng(seed)
    songs_csv = folder / "songs.csv"
    songs.to_csv(songs_csv, index=False)
    events = [
        {"user_id": f"u{u}", "song_id": s, "play_count": int(rng.integers(1, 20))}
        for s in songs["song_id"]
        for u in range(int(rng.integers(1, 6)))
    ]
    events_csv = folder / "events.csv"
    pd.DataFrame(events).to_csv(events_csv, index=False)
    db = folder / "hitsong.duckdb"
    ingest(db, events_csv, songs_csv, window_start=date(2016, 1, 1), window_end=date(2016, 12, 31))
    sample(db, per_subset=len(songs), seed=seed, split=(0.5, 0.25, 0.25))
    return db
