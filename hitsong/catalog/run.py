"""Score many songs with one registered version: parallel, resumable, streamed into DuckDB.

How a run goes (:func:`score_items`):

- songs that this version already scored (rows in ``predictions``) are skipped, so a run that
  was stopped (Ctrl-C, ``kill -9``, a crash) continues where it ended; ``retry_failed`` scores
  the songs that failed before again;
- songs whose features the feature store holds for the version's audio config and tagger (the
  sampled songs, with ``store_dir``) are scored from there: the very features training read
  (:mod:`hitsong.catalog.stored`);
- the others' features are computed exactly as training's were: the pure per-song function
  :func:`hitsong.features.compute.compute_song_features` (one decode, the log-mel of the
  version's audio config, the tag vector of its tagger over its tagger window), run in worker
  processes or on a dask cluster by the feature store's executors, and the log-mel rounded to the
  feature store's float16 (:data:`hitsong.features.layout.MEL_DTYPE`) as training read it;
- this process runs the version's network on them (``SongScorer.score_features``: the scorer
  built from the version's data files) and writes rows in small transactions as songs finish
  (every ``batch_size`` songs or ``batch_seconds``): a run killed at any moment keeps whole rows,
  and the primary key (model, version, song) makes a re-run replace, never duplicate;
- a song that cannot be read or scored gets a row with its error, and the others go on.

The executors are used through one seam, :func:`_outcomes`: a task per song in, ``(task,
SongFeatures or None, error or None)`` out as songs finish.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hitsong.audio import AudioConfig
from hitsong.catalog.items import Item
from hitsong.catalog.stored import FeatureStore
from hitsong.errors import ConfigError, HitsongError, ModelError
from hitsong.features.compute import SongFeatures, compute_song_features
from hitsong.features.executors import Task, check_options, outcomes
from hitsong.features.layout import MEL_DTYPE
from hitsong.progress import Progress
from hitsong.scoring import TOP_TAGS
from hitsong.store import connect
from hitsong.store.predictions import PredictionRow, ensure_schema, export, scored, write_rows

if TYPE_CHECKING:
    from hitsong.scoring import SongScorer

log = logging.getLogger(__name__)

Outcome = tuple[Task, "SongFeatures | None", "str | None"]


@dataclass
class ScoreReport:
    """What one run did: songs asked for, skipped (scored before), scored and failed now."""

    model: str
    version: str
    total: int
    skipped: int = 0
    scored: int = 0
    from_store: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    exported: int | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def songs_per_second(self) -> float:
        """Songs finished (scored or failed) per second of this run."""
        return (self.scored + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model, "version": self.version, "total": self.total, "skipped": self.skipped,
            "scored": self.scored, "from_store": self.from_store, "failed": self.failed,
            "seconds": round(self.seconds, 2), "songs_per_second": round(self.songs_per_second, 3),
            "exported": self.exported,
        }  # fmt: skip


def song_features(task: Task, *, audio_config: AudioConfig, tagger_name: str) -> SongFeatures:
    """The task function of catalog scoring: one song's features, the log-mel as float16.

    Unlike the feature store's task function this returns the mel (165 kB as float16, what
    training read): the version's network runs in the client, which writes the predictions.
    """
    features = compute_song_features(task.path, audio_config, tagger_name)
    return replace(features, mel=features.mel.astype(MEL_DTYPE))


def _outcomes(
    tasks: Sequence[Task], *, executor: str, workers: int, scorer: SongScorer, scheduler: str | None
) -> Iterator[Outcome]:
    """The seam to the feature executors: features of each task, as they finish."""
    fn = functools.partial(song_features, audio_config=scorer.audio_config, tagger_name=scorer.tagger.name)
    return outcomes(tasks, fn, executor=executor, workers=workers, scheduler=scheduler)


def _row(
    item: Task | Item,
    scorer: SongScorer,
    model: str,
    version: str,
    mel: np.ndarray,
    tags: np.ndarray | None,
    genre: str | None,
) -> PredictionRow:
    """Score one song's features: the network on the store's float16 log-mel, the tag profile."""
    mel = mel.astype(MEL_DTYPE).astype(np.float32)  # what training read from the store
    tags = tags if tags is not None else np.zeros(len(scorer.tagger.tags), np.float32)
    score = float(scorer.score_features(mel[None], tags[None])[0])
    if not np.isfinite(score):
        raise ModelError(f"{item.path}: the model produced a non-finite score ({score}); the bundle may be corrupt")
    order = np.argsort(-tags, kind="stable")[:TOP_TAGS]
    top = [[scorer.tagger.tags[i], round(float(tags[i]), 6)] for i in order]
    return PredictionRow(
        song_id=item.song_id, path=item.path, model=model, version=version, method=scorer.method, score=score,
        percentile=scorer.percentile(score), genre=genre, top_tags=json.dumps(top), error=None,
    )  # fmt: skip


def _failure(item: Task | Item, scorer: SongScorer, model: str, version: str, error: str) -> PredictionRow:
    return PredictionRow(item.song_id, item.path, model, version, scorer.method, None, None, None, None, error)


def score_items(
    items: Sequence[Item],
    *,
    scorer: SongScorer,
    model: str,
    version: str,
    db_path: str | Path,
    workers: int | None = None,
    executor: str = "process",
    scheduler: str | None = None,
    retry_failed: bool = False,
    store_dir: Path | None = None,
    out: Path | None = None,
    batch_size: int = 16,
    batch_seconds: float = 5.0,
    bar: bool | None = None,
) -> ScoreReport:
    """Score ``items`` with one registered version into the ``predictions`` table of ``db_path``.

    Parameters
    ----------
    items : sequence of Item
        What to score (``hitsong.catalog.items.gather``).
    scorer : SongScorer
        The version's scorer, built from its data files (``registry.bundles.load_scorer``).
    model, version : str
        The registered model and version the rows are stored under.
    db_path : str or Path
        The DuckDB file (created when missing).
    workers : int or None
        Feature worker processes (dask: local cluster size); default all cores.
    executor : {"process", "dask"}
        A local process pool, or dask.distributed (a local cluster, or the one at ``scheduler``:
        the audio paths must be readable there).
    retry_failed : bool
        Score songs that failed before again (default: skip them like scored ones).
    store_dir : Path or None
        The feature store: songs it holds for the version's audio config and tagger are scored
        from their stored features instead of being decoded again (``None``: decode every song).
    out : Path or None
        Also write the rows of ``items`` to this ``.csv`` or ``.parquet`` file at the end.
    batch_size, batch_seconds :
        Rows per DuckDB transaction, and the longest wait between two.
    bar : bool or None
        A progress bar (``None``: on a terminal); otherwise rate/ETA log lines.

    Returns
    -------
    ScoreReport

    Raises
    ------
    ConfigError
        Unknown executor, bad worker count, a scheduler without dask, or an unknown ``out`` suffix.
    StoreError
        The database stays locked by another process.
    """
    workers = check_options(executor, workers, scheduler)
    if out is not None and Path(out).suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"--out {out}: write a .csv or a .parquet file")
    started = time.monotonic()
    report = ScoreReport(model=model, version=version, total=len(items))
    with connect(db_path) as con:
        ensure_schema(con)
        done = scored(con, model, version, include_failed=not retry_failed)
    todo = [item for item in items if item.song_id not in done]
    report.skipped = len(items) - len(todo)
    log.info(
        "score %s v%s (%s): %d songs, %d scored before, %d to score with %d %s worker(s)",
        model, version, scorer.method, len(items), report.skipped, len(todo), workers, executor,
    )  # fmt: skip
    store = (
        FeatureStore(Path(db_path), store_dir, config=scorer.audio_config, tagger=scorer.tagger.name)
        if store_dir
        else None
    )
    stored = store.find([i.song_id for i in todo]) if store is not None else {}
    pending = [_failure(i, scorer, model, version, "the song has no audio file (no path)")
               for i in todo if not i.path and i.song_id not in stored]  # fmt: skip
    tasks = [Task(item.song_id, "", item.path) for item in todo if item.path and item.song_id not in stored]
    if stored:
        log.info("score: %d song(s) from the feature store (the features training read), %d to decode",
                 len(stored), len(tasks))  # fmt: skip
    bar_ = Progress(f"score {model} v{version}", len(todo), unit="songs", bar=bar)
    last = time.monotonic()

    def flush() -> None:
        nonlocal last
        if pending:
            with connect(db_path) as con:
                write_rows(con, pending)
            for row in pending:
                if row.error is None:
                    report.scored += 1
                else:
                    report.failures.append((row.song_id, row.error))
                    log.warning("score: %s could not be scored: %s", row.path or row.song_id, row.error)
            pending.clear()
        last = time.monotonic()

    bar_.update(len(pending))
    finished = (
        _outcomes(tasks, executor=executor, workers=workers, scorer=scorer, scheduler=scheduler) if tasks else iter(())
    )
    try:
        for item in (i for i in todo if i.song_id in stored):  # while the workers start
            song = stored[item.song_id]
            try:
                mel = store.mel(song)  # type: ignore[union-attr]
                pending.append(_row(item, scorer, model, version, mel, song.tags, song.genre))
                report.from_store += 1
            except HitsongError as exc:
                pending.append(_failure(item, scorer, model, version, str(exc)))
            bar_.update()
            if len(pending) >= batch_size or time.monotonic() - last >= batch_seconds:
                flush()
        for task, features, error in finished:
            if features is None:
                pending.append(_failure(task, scorer, model, version, error or "unknown error"))
            else:
                try:
                    pending.append(_row(task, scorer, model, version, features.mel, features.tags, features.genre))
                except HitsongError as exc:
                    pending.append(_failure(task, scorer, model, version, str(exc)))
            bar_.update()
            if len(pending) >= batch_size or time.monotonic() - last >= batch_seconds:
                flush()
    finally:
        if hasattr(finished, "close"):
            finished.close()
        flush()
        bar_.close()
    report.seconds = time.monotonic() - started
    if out is not None:
        with connect(db_path, read_only=True) as con:
            report.exported = export(con, model, version, [i.song_id for i in items], Path(out))
        log.info("score: wrote %d rows to %s", report.exported, out)
    log.info(
        "score %s v%s: %d scored, %d failed, %d skipped (scored before) in %.1f s (%.2f songs/s)",
        model, version, report.scored, report.failed, report.skipped, report.seconds, report.songs_per_second,
    )  # fmt: skip
    return report
