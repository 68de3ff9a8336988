"""Small listening datasets written into a test's folder, and a database snapshot helper."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

WINDOW_START = date(2012, 10, 1)

#: song_id, title, artist, subset, release_date, audio_path, expected quarter
SONGS = [
    ("a", "A", "X", "m", "2012-10-01", "audio/a.mp3", "Q1", 1),
    ("b", "B", "Y", "m", "2012-09-30", "audio/b.mp3", "-Q1", -1),
    ("c", "C", "Z", "w", "2013-01-01", "/abs/c.mp3", "Q2", 2),
    ("d", "D", "Z", "w", "2012-06-30", "audio/d.mp3", "-Q2", -2),
    ("e", "E", "Z", "w", "2012-07-01", "audio/e.mp3", "-Q1", -1),
    ("f", "F", "X", "m", "2013-12-31", "audio/f.mp3", "Q5", 5),
]

#: aggregated events (user_id, song_id, play_count)
EVENTS = [("u1", "a", 3), ("u2", "a", 1), ("u1", "b", 2), ("u3", "c", 5)]

#: hand-computed: song -> (playcount, listeners, hit score)
EXPECTED = {
    "a": (4, 2, math.log(5) * math.log(3)),
    "b": (2, 1, math.log(3) * math.log(2)),
    "c": (5, 1, math.log(6) * math.log(2)),
    "d": (0, 0, 0.0),
    "e": (0, 0, 0.0),
    "f": (0, 0, 0.0),
}


def write_songs(folder: Path, rows=SONGS, name: str = "songs.csv") -> Path:
    """The catalogue as CSV (the expected-quarter columns are left out)."""
    path = folder / name
    frame = pd.DataFrame(
        [r[:6] for r in rows], columns=["song_id", "title", "artist", "subset", "release_date", "audio_path"]
    )
    frame.to_csv(path, index=False)
    return path


def write_events(folder: Path, rows=EVENTS, name: str = "events.csv") -> Path:
    """Aggregated events as CSV (or Parquet / gzipped CSV by the name's suffix)."""
    path = folder / name
    frame = pd.DataFrame(rows, columns=["user_id", "song_id", "play_count"])
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, compression="gzip" if name.endswith(".gz") else None)
    return path


def write_plays(folder: Path, rows=EVENTS, name: str = "plays.csv", start: date = WINDOW_START) -> Path:
    """The same listening as one row per play, spread over the first days of the window."""
    out = []
    for i, (user, song, count) in enumerate(rows):
        for k in range(count):
            out.append((user, song, datetime.combine(start, datetime.min.time()) + timedelta(days=i, hours=k)))
    frame = pd.DataFrame(out, columns=["user_id", "song_id", "played_at"])
    if name.endswith(".parquet"):
        frame.to_parquet(path := folder / name, index=False)
    else:
        frame["played_at"] = frame["played_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
        frame.to_csv(path := folder / name, index=False)
    return path


def random_dataset(
    folder: Path,
    rng: np.random.Generator,
    *,
    subsets=("m", "w", "k"),
    per_subset: int = 50,
    users: int = 40,
    rows: int = 3000,
) -> tuple[Path, Path, pd.DataFrame]:
    """A random catalogue with heavy-tailed plays; returns (songs, events, events frame)."""
    songs = []
    for s in subsets:
        for i in range(per_subset):
            day = date(2012, 1, 1) + timedelta(days=int(rng.integers(0, 700)))
            songs.append((f"{s}{i:03d}", f"t{i}", f"a{i % 7}", s, day.isoformat(), f"{s}/{i}.mp3"))
    ids = np.array([r[0] for r in songs])
    pop = rng.pareto(1.2, size=ids.size) + 0.01
    song = rng.choice(ids, size=rows, p=pop / pop.sum())
    user = np.array([f"u{u}" for u in rng.integers(0, users, size=rows)])
    frame = (
        pd.DataFrame({"user_id": user, "song_id": song, "play_count": rng.integers(1, 6, size=rows)})
        .groupby(["user_id", "song_id"], as_index=False)["play_count"]
        .sum()
    )
    return write_songs(folder, songs), write_events(folder, list(frame.itertuples(index=False)), "ev.parquet"), frame


def snapshot(db: Path) -> dict[str, list[tuple]] | None:
    """Every table's rows, sorted; ``None`` when the database file does not exist."""
    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
            ).fetchall()
        ]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}
    finally:
        con.close()
