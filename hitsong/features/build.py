"""Build the feature store: every sampled song's log-mel (and tag vector), computed once, in parallel.

How a run stays safe (``build_features``):

- the per-song work is a pure function, :func:`~hitsong.features.compute.compute_song_features`,
  run in worker processes (``spawn``, each loads the tagger once) or on a dask cluster; only
  this process writes the array and DuckDB (DuckDB allows one writer process);
- a row's bytes are written and ``fsync``-ed before its index row is committed, in small
  batches; a run killed at any moment (Ctrl-C, ``kill -9``) leaves only complete, indexed rows,
  and the next run skips them and overwrites the uncommitted tail;
- a song that fails is recorded in ``feature_failures`` with its error and the run goes on;
- when the audio config changes (its hash differs from the stored one), the subset is
  recomputed and the log says so.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hitsong.audio import (
    AudioConfig,
)
from hitsong.errors import ConfigError, StoreError
from hitsong.features.compute import NO_TAGGER, SongFeatures, cached_tagger, tagger_audio_config
from hitsong.features.executors import EXECUTORS, Task, run_dask, run_processes
from hitsong.features.layout import MEL_DTYPE, mel_path
from hitsong.progress import Progress
from hitsong.settings import DEFAULT_TAGGER
from hitsong.store import connect, featureindex
from hitsong.store.featureindex import FailureRow, IndexRow, TagRow

log = logging.getLogger(__name__)


class _MelWriter:
    """Writes rows of one subset's mel array with ``pwrite`` and syncs them."""

    def __init__(self, path: Path, n_mels: int, n_frames: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.shape = (n_mels, n_frames)
        self.row_bytes = n_mels * n_frames * MEL_DTYPE.itemsize
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)

    def write(self, row: int, mel: np.ndarray) -> None:
        if mel.shape != self.shape:
            raise StoreError(f"{self.path}: a mel of shape {mel.shape} does not fit rows of shape {self.shape}")
        data = np.ascontiguousarray(mel, dtype=MEL_DTYPE).tobytes()
        offset = row * self.row_bytes
        written = 0
        while written < len(data):
            written += os.pwrite(self.fd, data[written:], offset + written)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class SubsetReport:
    """Outcome of one subset in :func:`build_features`."""

    subset: str
    total: int
    skipped: int = 0
    computed: int = 0
    failures: list[FailureRow] = field(default_factory=list)
    recomputed_for_config: bool = False

    @property
    def failed(self) -> int:
        """Songs that failed in this run."""
        return len(self.failures)


@dataclass(frozen=True)
class FeatureReport:
    """Outcome of :func:`build_features`: per subset counts and this run's failures."""

    subsets: tuple[SubsetReport, ...]
    seconds: float

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.subsets)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.subsets)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.subsets)


@dataclass
class _SubsetState:
    writer: _MelWriter
    rows: dict[str, int]
    next_row: int
    config_hash: str


def _check_tagger(name: str, precision: str) -> None:
    if name == NO_TAGGER:
        return
    try:
        from hitsong.tagger import Tagger  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"the tagger {name!r} is not available ({exc}); run with --tagger none to compute mels only"
        ) from exc
    try:
        cached_tagger(name, precision)  # fail fast on a missing or wrong weights file, before any worker starts
    finally:
        cached_tagger.cache_clear()


def _prepare_subset(
    db_path: Path, store_dir: Path, subset: str, songs: pd.DataFrame, config: AudioConfig, tagger: str
) -> tuple[_SubsetState, SubsetReport, list[Task]]:
    """Check the stored config, find what is done, and open the subset's writer."""
    chash = config.config_hash()
    path = mel_path(store_dir, subset)
    report = SubsetReport(subset=subset, total=len(songs))
    with connect(db_path) as con:
        featureindex.ensure_schema(con)
        meta = featureindex.subset_meta(con, subset)
        if meta is None or meta.config_hash != chash:
            if meta is not None:
                log.warning(
                    "features %s: the audio config changed (stored %s, now %s); recomputing all %d songs",
                    subset,
                    meta.config_hash,
                    chash,
                    len(songs),
                )
                report.recomputed_for_config = True
            featureindex.reset_subset(
                con,
                subset,
                config_hash=chash,
                config_json=json.dumps(config.to_dict(), sort_keys=True),
                n_mels=config.n_mels,
                n_frames=config.n_frames,
            )
            reset = True
        else:
            reset = False
        rows = featureindex.index_rows(con, subset, chash)
        tagged = featureindex.tagged_songs(con, subset, tagger) if tagger != NO_TAGGER else None
        start = featureindex.next_row(con, subset)
    writer = _MelWriter(path, config.n_mels, config.n_frames)
    if reset:
        writer.truncate()
    tasks = []
    for song_id, audio_path in zip(songs["song_id"], songs["audio_path"], strict=True):
        if song_id in rows and (tagged is None or song_id in tagged):
            report.skipped += 1
        else:
            tasks.append(Task(str(song_id), subset, "" if pd.isna(audio_path) else str(audio_path)))
    return _SubsetState(writer, rows, start, chash), report, tasks


def build_features(
    db_path: str | Path,
    store_dir: str | Path,
    *,
    subset: str | None = None,
    workers: int | None = None,
    executor: str = "process",
    tagger: str = DEFAULT_TAGGER,
    config: AudioConfig = AudioConfig(),
    scheduler: str | None = None,
    batch_size: int = 16,
    batch_seconds: float = 5.0,
) -> FeatureReport:
    """Compute and store the features of every song in ``splits`` that is not done yet.

    Parameters
    ----------
    db_path : str or Path
        The DuckDB file with ``songs``/``song_stats``/``splits`` (``hitsong sample``).
    store_dir : str or Path
        The feature store folder.
    subset : str or None
        Only this subset; ``None`` means all.
    workers : int or None
        Worker processes; ``None`` means all cores.
    executor : {"process", "dask"}
        A local ``spawn`` process pool, or dask.distributed (a local cluster of ``workers``
        processes, or the cluster at ``scheduler``; the audio paths must be readable there).
    tagger : str
        Tagger name for the 50-d tag vectors, or ``"none"``.
    config : AudioConfig
        The CNN front end's settings.
    scheduler : str or None
        Address of a running dask scheduler (``executor="dask"`` only).
    batch_size : int
        Index rows per DuckDB commit.
    batch_seconds : float
        Longest time between two commits.

    Returns
    -------
    FeatureReport
        Per subset: songs total, skipped (already done), computed and failed in this run.

    Raises
    ------
    StoreError
        No sampled songs (run ``hitsong sample``), or the database is locked.
    ConfigError
        Unknown executor, bad worker count, tagger not available.
    """
    from hitsong.store.read import split_frame

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if scheduler is not None and executor != "dask":
        raise ConfigError("a dask scheduler address needs --executor dask")
    db_path, store_dir = Path(db_path), Path(store_dir)
    t_start = time.monotonic()
    frame = split_frame(db_path, subset=subset)
    if frame.empty:
        which = f"subset {subset!r}" if subset else "any subset"
        raise StoreError(f"{db_path}: no sampled songs for {which}; run `hitsong sample` first")
    config = tagger_audio_config(config, tagger)
    _check_tagger(tagger, config.tagger_precision)

    states: dict[str, _SubsetState] = {}
    reports: dict[str, SubsetReport] = {}
    tasks: list[Task] = []
    for name, songs in frame.groupby("subset", sort=True):
        state, report, todo = _prepare_subset(db_path, store_dir, str(name), songs, config, tagger)
        states[str(name)], reports[str(name)] = state, report
        tasks.extend(todo)
        log.info("features %s: %d songs, %d done, %d to compute", name, report.total, report.skipped, len(todo))

    runnable = [t for t in tasks if t.path]
    pending_idx: list[IndexRow] = []
    pending_tags: list[TagRow] = []
    pending_fail: list[FailureRow] = [
        FailureRow(t.song_id, t.subset, "", "the song has no audio_path in the songs table")
        for t in tasks
        if not t.path
    ]
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal last_commit
        if pending_idx or pending_fail or pending_tags:
            for state in states.values():
                state.writer.sync()
            with connect(db_path) as con:
                featureindex.commit_batch(con, computed=pending_idx, tags=pending_tags, failures=pending_fail)
            pending_idx.clear()
            pending_tags.clear()
            pending_fail.clear()
        last_commit = time.monotonic()

    for f in pending_fail:
        reports[f.subset].failures.append(f)
    bar = Progress("features", len(tasks), unit="songs")
    bar.update(len(tasks) - len(runnable))
    if executor == "process":
        outcomes = run_processes(runnable, workers=workers, config=config, tagger=tagger)
    else:
        outcomes = run_dask(runnable, workers=workers, config=config, tagger=tagger, scheduler=scheduler)
    try:
        for task, result, error in outcomes:
            report = reports[task.subset]
            if result is None:
                failure = FailureRow(task.song_id, task.subset, task.path, error or "unknown error")
                log.warning("features: %s failed: %s", task.song_id, failure.error)
                pending_fail.append(failure)
                report.failures.append(failure)
            else:
                _store(states[task.subset], task, result, tagger, pending_idx, pending_tags)
                report.computed += 1
            bar.update()
            if len(pending_idx) + len(pending_fail) >= batch_size or time.monotonic() - last_commit >= batch_seconds:
                commit()
    finally:
        if hasattr(outcomes, "close"):
            outcomes.close()
        commit()
        for state in states.values():
            state.writer.close()

    report_all = FeatureReport(subsets=tuple(reports[s] for s in sorted(reports)), seconds=time.monotonic() - t_start)
    for rep in report_all.subsets:
        log.info(
            "features %s: %d computed, %d skipped (done before), %d failed",
            rep.subset,
            rep.computed,
            rep.skipped,
            rep.failed,
        )
    if report_all.failed:
        log.warning(
            "features: %d song(s) failed; they are listed above and in the DuckDB table feature_failures",
            report_all.failed,
        )
    return report_all


def _store(
    state: _SubsetState, task: Task, result: SongFeatures, tagger: str, idx: list[IndexRow], tags: list[TagRow]
) -> None:
    """Write one song's mel row and queue its index (and tag) rows for the next commit."""
    for msg in result.flags.warnings:
        log.warning("features: %s", msg)
    row = state.rows.get(task.song_id)
    if row is None:
        row = state.next_row
        state.next_row += 1
        state.rows[task.song_id] = row
    state.writer.write(row, result.mel)
    fl = result.flags
    idx.append(
        IndexRow(
            task.song_id,
            task.subset,
            row,
            state.config_hash,
            fl.padded,
            fl.silent,
            fl.truncated,
            float(fl.duration),
            int(fl.native_sr),
            int(fl.channels),
        )
    )
    if tagger != NO_TAGGER and result.tags is not None:
        tags.append(TagRow(task.song_id, task.subset, tagger, tuple(float(v) for v in result.tags), result.genre))


def failures(db_path: str | Path, subset: str | None = None) -> pd.DataFrame:
    """The recorded failures (song_id, subset, audio_path, error, failed_at)."""
    with connect(db_path, read_only=True) as con:
        return featureindex.failure_frame(con, subset)
