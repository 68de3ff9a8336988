"""Write the demo label: ``songs.csv``, ``events.parquet``, ``truth.parquet``, ``audio/``, ``README.md``.

:func:`init_demo` draws the catalogue (artists, titles, release dates, synthesis plans),
renders every song in worker processes, simulates the listeners, and writes everything into a
temporary sibling folder that is renamed into place at the end, so an interrupted run never
leaves a half-written demo behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hitsong.demo import (
    DEFAULT_SEED,
    DEFAULT_SONGS_PER_SUBSET,
    DEFAULT_USERS,
    listeners,
)
from hitsong.demo.archetypes import ARCHETYPE_NAMES
from hitsong.demo.plan import SongPlan, draw_plan
from hitsong.demo.readme import readme_text
from hitsong.demo.synth import render_song, write_audio
from hitsong.errors import ConfigError
from hitsong.progress import Progress
from hitsong.store.rules import hit_score

log = logging.getLogger(__name__)

SONGS_FILE = "songs.csv"
EVENTS_FILE = "events.parquet"
TRUTH_FILE = "truth.parquet"
README_FILE = "README.md"
AUDIO_DIR = "audio"
SONGS_PER_ARTIST = 4
PRIMARY_ARCHETYPE_SHARE = 0.75

_TITLE_A = (
    "Midnight",
    "Golden",
    "Silent",
    "Electric",
    "Broken",
    "Paper",
    "Neon",
    "Summer",
    "Winter",
    "Falling",
    "Endless",
    "Crystal",
    "Wild",
    "Velvet",
    "Hidden",
    "Burning",
    "Lonely",
    "Secret",
)
_TITLE_B = (
    "Rain",
    "Heart",
    "River",
    "Lights",
    "Dream",
    "Road",
    "Sky",
    "Moon",
    "Fire",
    "Echo",
    "Letters",
    "Garden",
    "Waves",
    "City",
    "Promise",
    "Shadow",
    "Mirror",
    "Horizon",
)
_NAMES = {
    "mandarin": (
        ("Lin", "Chen", "Wang", "Zhang", "Liu", "Zhou", "Huang", "Wu", "Xu", "Guo"),
        ("Yu", "Xiao", "Jie", "Mei", "Hao", "Lan", "Wei", "Ting", "Jun", "Yan"),
    ),
    "western": (
        ("Ava", "Leo", "Mia", "Noah", "Ruby", "Jack", "Iris", "Owen", "Lena", "Miles"),
        ("Hart", "Stone", "Vale", "Reed", "Cross", "Lane", "Frost", "Gray", "Knight", "Wells"),
    ),
}


@dataclass(frozen=True)
class DemoConfig:
    """Size and shape of the demo label.

    Parameters
    ----------
    songs_per_subset : int
        Songs per market (two markets).
    users : int
        Simulated users per market.
    seed : int
        Seed of everything; the same seed writes the same files.
    song_seconds : (float, float)
        Range of regular song durations in seconds (log-uniform).
    short_share : float
        Share of songs of 35-58 s, shorter than the models' 60-s window.
    """

    songs_per_subset: int = DEFAULT_SONGS_PER_SUBSET
    users: int = DEFAULT_USERS
    seed: int = DEFAULT_SEED
    song_seconds: tuple[float, float] = (90.0, 200.0)
    short_share: float = 0.07

    def __post_init__(self) -> None:
        if self.songs_per_subset < 1:
            raise ConfigError(f"songs_per_subset must be >= 1, got {self.songs_per_subset}")
        if self.users < 1:
            raise ConfigError(f"users must be >= 1, got {self.users}")
        lo, hi = self.song_seconds
        if not 1.0 <= lo <= hi:
            raise ConfigError(f"song_seconds must satisfy 1 <= low <= high, got {self.song_seconds}")
        if not 0.0 <= self.short_share <= 1.0:
            raise ConfigError(f"short_share must be in [0, 1], got {self.short_share}")


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`init_demo` wrote.

    ``window_start``/``window_end`` are the observation window to pass to ``hitsong ingest``.
    """

    out_dir: Path
    songs_csv: Path
    events_path: Path
    truth_path: Path
    readme_path: Path
    n_songs: int
    n_events: int
    n_plays: int
    n_users: int
    audio_seconds: float
    elapsed_seconds: float
    window_start: dt.date = listeners.WINDOW_START
    window_end: dt.date = listeners.WINDOW_END


def demo_exists(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished demo (songs, events and truth files)."""
    d = Path(out_dir)
    return all((d / name).is_file() for name in (SONGS_FILE, EVENTS_FILE, TRUTH_FILE))


def _song_seed(seed: int, market_idx: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, market_idx, i]).generate_state(1)[0])


def build_catalogue(config: DemoConfig) -> tuple[pd.DataFrame, list[SongPlan]]:
    """Draw every song's metadata and synthesis plan (no audio yet).

    Returns
    -------
    songs : pd.DataFrame
        ``song_id, title, artist, subset, release_date (datetime.date), audio_path`` (relative).
    plans : list of SongPlan
        ``plans[i]`` belongs to ``songs.iloc[i]``.
    """
    rows: list[dict[str, object]] = []
    plans: list[SongPlan] = []
    n_release_days = (listeners.RELEASE_END - listeners.RELEASE_START).days + 1
    for m_idx, market in enumerate(listeners.MARKETS.values()):
        rng = np.random.default_rng([config.seed, m_idx, 0])
        n = config.songs_per_subset
        share = np.array([market.catalogue[a] for a in ARCHETYPE_NAMES])
        share /= share.sum()
        n_artists = max(1, int(np.ceil(n / SONGS_PER_ARTIST)))
        first, last = _NAMES[market.name]
        artist_names = [
            f"{first[i % len(first)]} {last[(i // len(first) + 3 * i) % len(last)]}" for i in range(n_artists)
        ]
        artist_names = [
            f"{name} {i // (len(first) * len(last)) + 1}" if i >= len(first) * len(last) else name
            for i, name in enumerate(artist_names)
        ]
        primary = rng.choice(len(ARCHETYPE_NAMES), size=n_artists, p=share)
        weights = 1.0 / np.arange(1, n_artists + 1) ** 0.6
        artist_of = np.concatenate(
            [np.arange(min(n, n_artists)), rng.choice(n_artists, size=max(0, n - n_artists), p=weights / weights.sum())]
        )
        for i in range(n):
            a = int(artist_of[i])
            arch_idx = primary[a] if rng.random() < PRIMARY_ARCHETYPE_SHARE else rng.choice(len(share), p=share)
            archetype = ARCHETYPE_NAMES[int(arch_idx)]
            song_rng = np.random.default_rng([config.seed, m_idx, 1, i])
            plan = draw_plan(
                song_rng,
                archetype,
                seed=_song_seed(config.seed, m_idx, i),
                song_seconds=config.song_seconds,
                short_share=config.short_share,
            )
            song_id = f"{market.name[0].upper()}{i + 1:05d}"
            release = listeners.RELEASE_START + dt.timedelta(days=int(rng.integers(n_release_days)))
            title = f"{_TITLE_A[int(rng.integers(len(_TITLE_A)))]} {_TITLE_B[int(rng.integers(len(_TITLE_B)))]}"
            rows.append(
                {
                    "song_id": song_id,
                    "title": title,
                    "artist": artist_names[a],
                    "subset": market.name,
                    "release_date": release,
                    "audio_path": f"{AUDIO_DIR}/{market.name}/{song_id}.{plan.audio_format}",
                }
            )
            plans.append(plan)
    return pd.DataFrame(rows), plans


def _render_one(plan: SongPlan, path: str) -> float:
    """Worker: render one song and write it; returns its length in seconds."""
    samples = render_song(plan)
    write_audio(samples, Path(path), sr=plan.sample_rate, audio_format=plan.audio_format, subtype=plan.subtype)
    return samples.shape[0] / plan.sample_rate


def render_all(plans: list[SongPlan], paths: list[Path], *, workers: int) -> np.ndarray:
    """Render and write every song, ``workers`` processes at a time (1: in this process).

    Returns the seconds of audio per song, in input order. Each song depends only on its plan,
    so the files are the same whatever the number of workers.
    """
    seconds = np.zeros(len(plans))
    bar = Progress("demo audio", len(plans), unit="songs")
    # longest first: the pool's tail is short
    order = sorted(range(len(plans)), key=lambda i: -plans[i].duration_s)
    if workers <= 1 or len(plans) <= 2:
        for i in order:
            seconds[i] = _render_one(plans[i], str(paths[i]))
            bar.update()
        return seconds
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(_render_one, plans[i], str(paths[i])): i for i in order}
        for fut in as_completed(futures):
            seconds[futures[fut]] = fut.result()
            bar.update()
    except BaseException:
        # Ctrl-C or a failed song: drop the queued songs instead of rendering them all first
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return seconds


def simulate_listening(
    songs: pd.DataFrame, plans: list[SongPlan], config: DemoConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events (aggregated) and per-song ground truth for both markets."""
    events, truths = [], []
    for m_idx, market in enumerate(listeners.MARKETS.values()):
        mask = (songs["subset"] == market.name).to_numpy()
        idx = np.flatnonzero(mask)
        ev, tr = listeners.simulate_market(
            market,
            songs.iloc[idx].reset_index(drop=True),
            [plans[i] for i in idx],
            users=config.users,
            rng=np.random.default_rng([config.seed, m_idx, 2]),
        )
        events.append(ev)
        truths.append(tr)
    return pd.concat(events, ignore_index=True), pd.concat(truths, ignore_index=True)


def _truth_frame(
    songs: pd.DataFrame, plans: list[SongPlan], truth: pd.DataFrame, events: pd.DataFrame, seconds: np.ndarray
) -> pd.DataFrame:
    params = pd.DataFrame([p.to_record() for p in plans])
    stats = events.groupby("song_id").agg(playcount=("play_count", "sum"), listeners=("user_id", "size"))
    out = songs[["song_id", "subset", "artist", "release_date"]].merge(truth, on="song_id")
    out = out.merge(stats, left_on="song_id", right_index=True, how="left")
    out[["playcount", "listeners"]] = out[["playcount", "listeners"]].fillna(0).astype(np.int64)
    out["hit_score"] = hit_score(out["playcount"], out["listeners"])
    out["seconds"] = seconds
    out = pd.concat([out, params], axis=1)
    out["release_date"] = pd.to_datetime(out["release_date"])
    return out


def _prepare_out_dir(out_dir: Path, force: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder; choose another path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ConfigError(
            f"{out_dir} is not empty (a demo is there already?); pass --force to replace it or choose another --out"
        )
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def init_demo(
    out_dir: str | Path,
    *,
    songs_per_subset: int = DemoConfig.songs_per_subset,
    users: int = DemoConfig.users,
    seed: int = DemoConfig.seed,
    workers: int | None = None,
    song_seconds: tuple[float, float] = DemoConfig.song_seconds,
    short_share: float = DemoConfig.short_share,
    force: bool = False,
) -> DemoSummary:
    """Write the synthetic demo label into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Target folder; must be missing or empty unless ``force``.
    songs_per_subset, users, seed, song_seconds, short_share
        See :class:`DemoConfig`.
    workers : int or None
        Rendering processes; ``None`` uses every core.
    force : bool
        Replace an existing non-empty ``out_dir``.

    Returns
    -------
    DemoSummary
        Paths and counts; ``window_start``/``window_end`` for ``hitsong ingest``.
    """
    config = DemoConfig(
        songs_per_subset=songs_per_subset,
        users=users,
        seed=seed,
        song_seconds=(float(song_seconds[0]), float(song_seconds[1])),
        short_share=short_share,
    )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    n_workers = workers or os.cpu_count() or 1
    out_dir = Path(out_dir).expanduser().resolve()
    started = time.monotonic()
    tmp = _prepare_out_dir(out_dir, force)
    try:
        songs, plans = build_catalogue(config)
        for market in listeners.MARKETS:
            (tmp / AUDIO_DIR / market).mkdir(parents=True)
        log.info("demo: rendering %d synthetic songs with %d worker(s)", len(plans), n_workers)
        seconds = render_all(plans, [tmp / p for p in songs["audio_path"]], workers=n_workers)
        events, truth = simulate_listening(songs, plans, config)
        songs.to_csv(tmp / SONGS_FILE, index=False, lineterminator="\n")
        events.to_parquet(tmp / EVENTS_FILE, index=False)
        truth_frame = _truth_frame(songs, plans, truth, events, seconds)
        truth_frame.to_parquet(tmp / TRUTH_FILE, index=False)
        (tmp / README_FILE).write_text(readme_text(config, truth_frame, events), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    elapsed = time.monotonic() - started
    summary = DemoSummary(
        out_dir=out_dir,
        songs_csv=out_dir / SONGS_FILE,
        events_path=out_dir / EVENTS_FILE,
        truth_path=out_dir / TRUTH_FILE,
        readme_path=out_dir / README_FILE,
        n_songs=len(songs),
        n_events=len(events),
        n_plays=int(events["play_count"].sum()),
        n_users=int(events["user_id"].nunique()),
        audio_seconds=float(seconds.sum()),
        elapsed_seconds=elapsed,
    )
    log.info(
        "demo: %d songs (%.0f min of audio), %d listening rows, %d plays in %.0f s -> %s",
        summary.n_songs,
        summary.audio_seconds / 60,
        summary.n_events,
        summary.n_plays,
        elapsed,
        out_dir,
    )
    return summary


__all__ = ["DemoConfig", "DemoSummary", "build_catalogue", "demo_exists", "init_demo"]
