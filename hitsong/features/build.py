"""Build the feature store: every sampled song's log-mel (and tag vector), computed once, in parallel.

How a run stays safe (``build_features``):

- one run at a time: the run holds the ``features`` lock of the database and of the store folder
  (:mod:`hitsong.store.lock`) from start to end; a second run stops at once with an error naming
  the first one's pid (``wait_seconds`` makes it wait instead);
- the per-song work is the task function :func:`~hitsong.features.compute.compute_to_shard`,
  run in worker processes (``spawn``, each loads the tagger once) or on a dask cluster
  (:mod:`hitsong.features.executors`); each worker writes its song's mel to the song's own shard
  file (temporary name, fsync, rename) and returns only the small rest; this process records the
  shard in DuckDB (:class:`IndexSink`), in small batches;
- a run killed at any moment (Ctrl-C, ``kill -9``) leaves only complete shards and index rows
  that point at complete shards; the next run skips indexed songs and recomputes the others;
- a song that fails is recorded in ``feature_failures`` with its error and the run goes on;
- when the audio config changes (its hash differs from the stored one), the subset is
  recomputed into a new shard folder, the old one is deleted, and the log says so.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hitsong.audio import AudioConfig
from hitsong.errors import ConfigError, StoreError
from hitsong.features.compute import NO_TAGGER, StoredFeatures, cached_tagger, compute_to_shard, tagger_audio_config
from hitsong.features.executors import Task, check_options, run_tasks
from hitsong.features.layout import remove_other_configs, subset_dir
from hitsong.settings import DEFAULT_TAGGER
from hitsong.store import connect, featureindex
from hitsong.store.featureindex import FailureRow, IndexRow, TagRow
from hitsong.store.lock import exclusive

log = logging.getLogger(__name__)


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


class IndexSink:
    """The feature store's result sink: shards, tag vectors and failures into DuckDB.

    ``record``/``fail`` queue rows; ``flush`` commits them in one transaction (a short
    read-write connection, so readers wait at most that long).
    """

    def __init__(self, db_path: Path, reports: dict[str, SubsetReport], *, config_hash: str, tagger: str) -> None:
        self.db_path = db_path
        self.reports = reports
        self.config_hash = config_hash
        self.tagger = tagger
        self.index: list[IndexRow] = []
        self.tags: list[TagRow] = []
        self.failures: list[FailureRow] = []

    def record(self, task: Task, result: StoredFeatures) -> None:
        for msg in result.flags.warnings:
            log.warning("features: %s", msg)
        fl = result.flags
        self.index.append(
            IndexRow(
                task.song_id,
                task.subset,
                result.shard,
                self.config_hash,
                fl.padded,
                fl.silent,
                fl.truncated,
                float(fl.duration),
                int(fl.native_sr),
                int(fl.channels),
            )
        )
        if self.tagger != NO_TAGGER and result.tags is not None:
            self.tags.append(
                TagRow(task.song_id, task.subset, self.tagger, tuple(float(v) for v in result.tags), result.genre)
            )
        self.reports[task.subset].computed += 1

    def fail(self, task: Task, error: str) -> None:
        failure = FailureRow(task.song_id, task.subset, task.path, error or "unknown error")
        log.warning("features: %s failed: %s", task.song_id, failure.error)
        self.failures.append(failure)
        self.reports[task.subset].failures.append(failure)

    def flush(self) -> None:
        if self.index or self.tags or self.failures:
            with connect(self.db_path) as con:
                featureindex.commit_batch(con, computed=self.index, tags=self.tags, failures=self.failures)
            self.index, self.tags, self.failures = [], [], []


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
) -> tuple[SubsetReport, list[Task]]:
    """Check the stored config (a change resets the subset), and list the songs still to compute."""
    chash = config.config_hash()
    subset_dir(store_dir, subset)  # a subset that cannot name a folder fails before any work
    report = SubsetReport(subset=subset, total=len(songs))
    with connect(db_path) as con:
        if featureindex.ensure_schema(con):
            log.warning("features: the store used the earlier one-array layout; every subset is recomputed")
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
        done = featureindex.index_rows(con, subset, chash)
        tagged = featureindex.tagged_songs(con, subset, tagger) if tagger != NO_TAGGER else None
    remove_other_configs(store_dir, subset, chash)
    tasks = []
    for song_id, audio_path in zip(songs["song_id"], songs["audio_path"], strict=True):
        if song_id in done and (tagged is None or song_id in tagged):
            report.skipped += 1
        else:
            tasks.append(Task(str(song_id), subset, "" if pd.isna(audio_path) else str(audio_path)))
    return report, tasks


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
    wait_seconds: float = 0.0,
) -> FeatureReport:
    """Compute and store the features of every song in ``splits`` that is not done yet.

    Parameters
    ----------
    db_path : str or Path
        The DuckDB file with ``songs``/``song_stats``/``splits`` (``hitsong sample``).
    store_dir : str or Path
        The feature store folder (with dask: a folder every worker can write).
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
    wait_seconds : float
        How long to wait for another run on the same database or store to finish; 0 (default)
        stops at once with an error naming it.

    Returns
    -------
    FeatureReport
        Per subset: songs total, skipped (already done), computed and failed in this run.

    Raises
    ------
    StoreError
        No sampled songs (run ``hitsong sample``), the database is locked, or another features
        run holds the store.
    ConfigError
        Unknown executor, bad worker count, tagger not available.
    """
    from hitsong.store.read import split_frame

    workers = check_options(executor, workers, scheduler)
    db_path, store_dir = Path(db_path).resolve(), Path(store_dir).resolve()
    t_start = time.monotonic()
    store_dir.mkdir(parents=True, exist_ok=True)
    with (
        exclusive(db_path, "features", wait_seconds=wait_seconds),
        exclusive(store_dir, "features", wait_seconds=wait_seconds),
    ):
        frame = split_frame(db_path, subset=subset)
        if frame.empty:
            which = f"subset {subset!r}" if subset else "any subset"
            raise StoreError(f"{db_path}: no sampled songs for {which}; run `hitsong sample` first")
        config = tagger_audio_config(config, tagger)
        _check_tagger(tagger, config.tagger_precision)

        reports: dict[str, SubsetReport] = {}
        tasks: list[Task] = []
        for name, songs in frame.groupby("subset", sort=True):
            report, todo = _prepare_subset(db_path, store_dir, str(name), songs, config, tagger)
            reports[str(name)] = report
            tasks.extend(todo)
            log.info("features %s: %d songs, %d done, %d to compute", name, report.total, report.skipped, len(todo))

        sink = IndexSink(db_path, reports, config_hash=config.config_hash(), tagger=tagger)
        for t in tasks:
            if not t.path:
                sink.fail(t, "the song has no audio_path in the songs table")
        fn = functools.partial(compute_to_shard, store_dir=str(store_dir), audio_config=config, tagger_name=tagger)
        run_tasks(
            [t for t in tasks if t.path],
            fn,
            sink,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            label="features",
            batch_size=batch_size,
            batch_seconds=batch_seconds,
        )

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


def failures(db_path: str | Path, subset: str | None = None) -> pd.DataFrame:
    """The recorded failures (song_id, subset, audio_path, error, failed_at)."""
    with connect(db_path, read_only=True) as con:
        return featureindex.failure_frame(con, subset)
