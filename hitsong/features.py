"""The feature store: every sampled song's log-mel (and tag vector), computed once, in parallel.

Layout, per subset: ``<store>/<subset>/mel.f16``, a headerless little-endian float16 array of
shape ``(N, n_mels, n_frames)`` (``(N, 128, 646)`` for the paper's config) that is read as a
memory map; its rows are indexed in DuckDB (``hitsong.store.featureindex``). float16 keeps the
log-mel (values 0..~10) to about 3 significant digits (absolute error <= 0.004 at 8).

How a run stays safe (``build_features``):

- the per-song work is a pure function, :func:`compute_song_features`, run in worker
  processes (``spawn``, each loads the tagger once) or on a dask cluster; only this process
  writes the array and DuckDB (DuckDB allows one writer process);
- a row's bytes are written and ``fsync``-ed before its index row is committed, in small
  batches; a run killed at any moment (Ctrl-C, ``kill -9``) leaves only complete, indexed rows,
  and the next run skips them and overwrites the uncommitted tail;
- a song that fails is recorded in ``feature_failures`` with its error and the run goes on;
  a worker process that dies (a decoder crash, or killed) is replaced, and the songs it held are
  retried one at a time so that only the song that kills a worker is recorded as failed;
- when the audio config changes (its hash differs from the stored one), the subset is
  recomputed and the log says so.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hitsong.audio import TAGGER_SR, AudioConfig, FeatureFlags, decode_for_features, log_mel
from hitsong.errors import ConfigError, HitsongError, HitsongWarning, StoreError
from hitsong.progress import Progress
from hitsong.store import connect, featureindex
from hitsong.store.featureindex import N_TAGS, FailureRow, IndexRow, TagRow

log = logging.getLogger(__name__)

#: File name of a subset's mel array inside ``<store>/<subset>/``.
MEL_FILE = "mel.f16"
#: Storage dtype of the mel array (little-endian float16).
MEL_DTYPE = np.dtype("<f2")
#: ``--tagger none``: compute mels only.
NO_TAGGER = "none"
EXECUTORS = ("process", "dask")
_SUBSET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SongFeatures:
    """What :func:`compute_song_features` returns for one song.

    Attributes
    ----------
    mel : np.ndarray [shape=(n_mels, n_frames), dtype=float32]
        The log-mel of the middle segment.
    tags : np.ndarray [shape=(50,), dtype=float32] or None
        Song-level tag probabilities (``None`` without a tagger).
    genre : str or None
        The predominant genre tag.
    flags : FeatureFlags
        Padding, silence, truncation and warning texts.
    """

    mel: np.ndarray
    tags: np.ndarray | None
    genre: str | None
    flags: FeatureFlags

    @property
    def padded(self) -> bool:
        """The song was shorter than the segment and zero-padded."""
        return self.flags.padded


@lru_cache(maxsize=2)
def _tagger(name: str, precision: str) -> Any:
    """Load a tagger once per process."""
    from hitsong.tagger import Tagger

    return Tagger.from_pretrained(name, device="auto", precision=precision)


def tagger_audio_config(config: AudioConfig, tagger: str) -> AudioConfig:
    """``config`` with the tagger precision resolved to what runs here (it is hashed and recorded).

    See :func:`hitsong.tagger.precision.resolve_audio_config`; the tagger runs on ``device="auto"``.
    """
    from hitsong.tagger.inference import resolve_device
    from hitsong.tagger.precision import resolve_audio_config

    model = None if tagger == NO_TAGGER else tagger
    return resolve_audio_config(config, device=resolve_device("auto"), model=model)


def compute_song_features(path: str | Path, audio_config: AudioConfig, tagger_name: str = NO_TAGGER) -> SongFeatures:
    """Decode one song once and compute its log-mel and (optionally) its tag vector.

    A pure function of its arguments (the tagger is loaded once per process and cached), so it
    runs unchanged in a local process pool or on a dask cluster.

    Parameters
    ----------
    path : str or Path
        The audio file.
    audio_config : AudioConfig
        The CNN front end's settings.
    tagger_name : str
        ``"MTT_musicnn"`` (or another name ``Tagger.from_pretrained`` knows), or ``"none"``.

    Returns
    -------
    SongFeatures

    Raises
    ------
    AudioError
        The file cannot be decoded (see :func:`hitsong.audio.decode_middle`).
    """
    use_tagger = tagger_name != NO_TAGGER
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HitsongWarning)  # their texts travel in flags.warnings
        wave, wave_tagger, flags = decode_for_features(
            path, config=audio_config, tagger_sr=TAGGER_SR if use_tagger else None
        )
        mel = log_mel(wave, config=audio_config)
        tags = genre = None
        if use_tagger:
            from hitsong.tagger import predominant_genre

            result = _tagger(tagger_name, audio_config.tagger_precision).tag_batch([wave_tagger], sr=TAGGER_SR)[0]
            tags = np.asarray(result.song, dtype=np.float32).reshape(N_TAGS)
            genre = str(predominant_genre(tags))
    extra = tuple(str(w.message) for w in caught if issubclass(w.category, HitsongWarning))
    flags = replace(flags, warnings=tuple(dict.fromkeys(flags.warnings + extra)))
    return SongFeatures(mel=mel, tags=tags, genre=genre, flags=flags)


# --------------------------------------------------------------------------- executors


@dataclass(frozen=True)
class _Task:
    song_id: str
    subset: str
    path: str


_Outcome = tuple[_Task, "SongFeatures | None", "str | None"]


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, HitsongError) else f"{type(exc).__name__}: {exc}"


def _exit_with_parent() -> None:
    """Block until the parent process is gone, then end this worker.

    A pool worker holds both ends of its task pipe, so it never sees EOF when the parent is
    killed (``kill -9``) and would wait forever; this watchdog thread ends it instead.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _init_worker() -> None:
    """Worker processes leave Ctrl-C to the parent, die with it, and use one thread each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch is a dependency; a worker without it just skips this
        pass


def _run_processes(tasks: Iterable[_Task], *, workers: int, config: AudioConfig, tagger: str) -> Iterator[_Outcome]:
    """Run tasks in a ``spawn`` process pool, surviving worker deaths.

    When a worker dies every task in flight fails with ``BrokenProcessPool``; those tasks are
    retried one at a time in a fresh single-worker pool, and only a task that kills a worker
    on its own is reported as failed.
    """
    ctx = multiprocessing.get_context("spawn")
    queue: deque[tuple[_Task, int]] = deque((t, 0) for t in tasks)
    while queue:
        isolate = queue[0][1] > 0
        n = 1 if isolate else workers
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker)
        inflight: dict[Future, tuple[_Task, int]] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < 2 * n and (queue[0][1] > 0) == isolate:
                    task, crashes = queue.popleft()
                    inflight[pool.submit(compute_song_features, task.path, config, tagger)] = (task, crashes)
                if not inflight:
                    break  # the next task needs the other mode: start a new pool
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    task, crashes = inflight.pop(fut)
                    try:
                        yield task, fut.result(), None
                    except BrokenProcessPool:
                        broken = True
                        if crashes > 0:
                            yield task, None, (
                                "the worker process died while computing this song (a crash in the "
                                "decoder, out of memory, or killed)"
                            )
                        else:
                            queue.appendleft((task, crashes + 1))
                    except Exception as exc:  # noqa: BLE001 - any error of one song is recorded, not fatal
                        yield task, None, _describe(exc)
                if broken:
                    log.warning("a worker process died; retrying the songs it was given one at a time")
                    for task, crashes in inflight.values():
                        queue.appendleft((task, crashes + 1))
                    inflight.clear()
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _run_dask(
    tasks: Iterable[_Task], *, workers: int, config: AudioConfig, tagger: str, scheduler: str | None
) -> Iterator[_Outcome]:
    """Run tasks on dask.distributed: a local cluster of ``workers`` processes, or ``scheduler``."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ConfigError(
            "--executor dask needs dask.distributed: pip install 'hitsong[dask]'"
        ) from exc
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.WARNING,
        )
    client = Client(scheduler or cluster)
    try:
        client.run(_init_worker_threads)
        todo = deque(tasks)
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})) or workers)
        futures: dict[Any, _Task] = {}

        def submit() -> Any:
            task = todo.popleft()
            fut = client.submit(compute_song_features, task.path, config, tagger, pure=False)
            futures[fut] = task
            return fut

        pending = as_completed([submit() for _ in range(min(window, len(todo)))])
        for fut in pending:
            task = futures.pop(fut)
            if fut.status == "finished":
                yield task, fut.result(), None
            elif fut.status == "error":
                yield task, None, _describe(fut.exception())
            else:
                yield task, None, f"the dask task ended as {fut.status!r} (worker lost or cancelled)"
            fut.release()
            if todo:
                pending.add(submit())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _init_worker_threads() -> None:
    """On a dask worker: one thread for torch/BLAS (dask owns the parallelism)."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


# --------------------------------------------------------------------------- the store


def mel_path(store_dir: str | Path, subset: str) -> Path:
    """``<store>/<subset>/mel.f16``."""
    if not _SUBSET_RE.match(subset):
        raise ConfigError(f"subset name {subset!r} cannot name a folder of the feature store (letters, digits, _ . -)")
    return Path(store_dir) / subset / MEL_FILE


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
        _tagger(name, precision)  # fail fast on a missing or wrong weights file, before any worker starts
    finally:
        _tagger.cache_clear()


def _prepare_subset(
    db_path: Path, store_dir: Path, subset: str, songs: pd.DataFrame, config: AudioConfig, tagger: str
) -> tuple[_SubsetState, SubsetReport, list[_Task]]:
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
                    subset, meta.config_hash, chash, len(songs),
                )
                report.recomputed_for_config = True
            featureindex.reset_subset(
                con, subset, config_hash=chash, config_json=json.dumps(config.to_dict(), sort_keys=True),
                n_mels=config.n_mels, n_frames=config.n_frames,
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
            tasks.append(_Task(str(song_id), subset, "" if pd.isna(audio_path) else str(audio_path)))
    return _SubsetState(writer, rows, start, chash), report, tasks


def build_features(
    db_path: str | Path,
    store_dir: str | Path,
    *,
    subset: str | None = None,
    workers: int | None = None,
    executor: str = "process",
    tagger: str = "MTT_musicnn",
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
    from hitsong.store.listening import split_frame

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
    tasks: list[_Task] = []
    for name, songs in frame.groupby("subset", sort=True):
        state, report, todo = _prepare_subset(db_path, store_dir, str(name), songs, config, tagger)
        states[str(name)], reports[str(name)] = state, report
        tasks.extend(todo)
        log.info("features %s: %d songs, %d done, %d to compute", name, report.total, report.skipped, len(todo))

    runnable = [t for t in tasks if t.path]
    pending_idx: list[IndexRow] = []
    pending_tags: list[TagRow] = []
    pending_fail: list[FailureRow] = [
        FailureRow(t.song_id, t.subset, "", "the song has no audio_path in the songs table") for t in tasks if not t.path
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
        outcomes = _run_processes(runnable, workers=workers, config=config, tagger=tagger)
    else:
        outcomes = _run_dask(runnable, workers=workers, config=config, tagger=tagger, scheduler=scheduler)
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

    result = FeatureReport(subsets=tuple(reports[s] for s in sorted(reports)), seconds=time.monotonic() - t_start)
    for rep in result.subsets:
        log.info(
            "features %s: %d computed, %d skipped (done before), %d failed",
            rep.subset, rep.computed, rep.skipped, rep.failed,
        )
    if result.failed:
        log.warning(
            "features: %d song(s) failed; they are listed above and in the DuckDB table feature_failures", result.failed
        )
    return result


def _store(
    state: _SubsetState, task: _Task, result: SongFeatures, tagger: str, idx: list[IndexRow], tags: list[TagRow]
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
        IndexRow(task.song_id, task.subset, row, state.config_hash, fl.padded, fl.silent, fl.truncated,
                 float(fl.duration), int(fl.native_sr), int(fl.channels))
    )
    if tagger != NO_TAGGER and result.tags is not None:
        tags.append(TagRow(task.song_id, task.subset, tagger, tuple(float(v) for v in result.tags), result.genre))


def failures(db_path: str | Path, subset: str | None = None) -> pd.DataFrame:
    """The recorded failures (song_id, subset, audio_path, error, failed_at)."""
    with connect(db_path, read_only=True) as con:
        return featureindex.failure_frame(con, subset)


# --------------------------------------------------------------------------- loading


def open_mels(store_dir: str | Path, subset: str, *, n_mels: int, n_frames: int) -> np.memmap:
    """The subset's mel array as a read-only memory map ``(N, n_mels, n_frames)`` float16."""
    path = mel_path(store_dir, subset)
    if not path.exists():
        raise StoreError(f"{path}: no feature array; run `hitsong features` first")
    row_bytes = n_mels * n_frames * MEL_DTYPE.itemsize
    n = path.stat().st_size // row_bytes
    return np.memmap(path, dtype=MEL_DTYPE, mode="r", shape=(n, n_mels, n_frames))


class MelDataset:
    """(mel, tags, hit score) per song of one subset and split, read lazily from the store.

    A map-style dataset for ``torch.utils.data.DataLoader`` (its default collate turns the
    numpy arrays into tensors). The memory map is opened on first access in each process
    (DataLoader workers open their own), so the store is never read whole into memory.

    Parameters
    ----------
    db_path : str or Path
        The DuckDB file (read once, with a short read-only connection, at construction).
    store_dir : str or Path
        The feature store.
    subset : str
        E.g. ``"mandarin"``.
    split : {"train", "val", "test"} or None
        ``None`` means all splits.
    tagger : str
        Which tag vectors to attach (``"none"``: zeros).

    Notes
    -----
    Items are ``{"mel": float32 (n_mels, n_frames), "tags": float32 (50,), "has_tags": bool,
    "target": float32 hit score, "song_id": str}``. A song without a tag vector gets zeros
    and ``has_tags=False``. Songs of the split without a stored mel (failed, or not computed
    yet) are left out with a warning; ``missing`` lists them.
    """

    def __init__(
        self,
        db_path: str | Path,
        store_dir: str | Path,
        subset: str,
        split: str | None = None,
        *,
        tagger: str = "MTT_musicnn",
    ) -> None:
        from hitsong.store.listening import split_frame

        self.store_dir = Path(store_dir)
        self.subset = subset
        self.split = split
        songs = split_frame(db_path, subset=subset, split=split)
        with connect(db_path, read_only=True) as con:
            meta = featureindex.subset_meta_readonly(con, subset)
            index = featureindex.index_frame(con, subset)
            tags = featureindex.tags_frame(con, subset, tagger) if tagger != NO_TAGGER else None
        if meta is None:
            raise StoreError(f"{db_path}: no features for subset {subset!r}; run `hitsong features` first")
        self.shape = (meta.n_mels, meta.n_frames)
        merged = songs[["song_id", "hit_score"]].merge(index[["song_id", "row"]], on="song_id", how="left")
        self.missing = merged.loc[merged["row"].isna(), "song_id"].astype(str).tolist()
        if self.missing:
            log.warning(
                "MelDataset %s/%s: %d song(s) have no stored features and are left out (e.g. %s)",
                subset, split, len(self.missing), ", ".join(self.missing[:3]),
            )
        merged = merged.dropna(subset=["row"]).reset_index(drop=True)
        self.song_ids: list[str] = merged["song_id"].astype(str).tolist()
        self.rows = merged["row"].to_numpy(dtype=np.int64)
        self.targets = merged["hit_score"].to_numpy(dtype=np.float32)
        self.tags = np.zeros((len(merged), N_TAGS), dtype=np.float32)
        self.has_tags = np.zeros(len(merged), dtype=bool)
        if tags is not None and len(tags):
            pos = {s: i for i, s in enumerate(self.song_ids)}
            for song_id, vec in zip(tags["song_id"], tags["tags"], strict=True):
                i = pos.get(str(song_id))
                if i is not None:
                    self.tags[i] = np.asarray(vec, dtype=np.float32)
                    self.has_tags[i] = True
        self._mels: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.song_ids)

    def _memmap(self) -> np.memmap:
        if self._mels is None:
            self._mels = open_mels(self.store_dir, self.subset, n_mels=self.shape[0], n_frames=self.shape[1])
            if len(self.rows) and int(self.rows.max()) >= self._mels.shape[0]:
                raise StoreError(
                    f"{mel_path(self.store_dir, self.subset)} holds {self._mels.shape[0]} rows but the index "
                    f"points at row {int(self.rows.max())}; the store and the database do not match"
                )
        return self._mels

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mels"] = None  # each DataLoader worker opens its own map
        return state

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"MelDataset index {i} out of range for {len(self)} songs")
        mel = np.asarray(self._memmap()[self.rows[i]], dtype=np.float32)
        return {
            "mel": mel,
            "tags": self.tags[i].copy(),
            "has_tags": bool(self.has_tags[i]),
            "target": np.float32(self.targets[i]),
            "song_id": self.song_ids[i],
        }
