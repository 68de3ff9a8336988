"""Seed a real MLflow server with tiny runs shaped exactly like training's output.

Layout (``hitsong.training.runlayout``, written through registry.tracking.MlflowRunLogger):
experiment ``hitsong/<dataset>/<subset>``; a method run per method with mean/std metrics; a
repetition run per repetition with params, stepped ``train_loss``/``val_loss``, the final
``val_<metric>``/``test_<metric>`` and a ``predictions`` table (song_id, true, predicted).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hitsong.metrics import evaluate
from hitsong.models import METHODS, method_label
from hitsong.results import ResultsConfig, table1
from hitsong.store import connect, featureindex
from hitsong.store.ingest import ingest
from hitsong.store.read import split_frame
from hitsong.store.sample import sample
from hitsong.tagger import GENRE_TAGS
from hitsong.training import runlayout
from registry.tracking import MlflowRunLogger

N_TAGS = 50


def seed_runs(
    uri: str,
    *,
    dataset: str = "test",
    subset: str = "western",
    methods=("m1", "m2"),
    repeats: int = 2,
    song_ids: list[str],
    truth: np.ndarray,
    seed: int = 0,
    summary: bool = True,
    split_by: str = "random",
) -> dict[str, dict[str, float]]:
    """Log runs the way ``hitsong.training`` does; return each child's final metrics by run name.

    Parent ``"<m> <label>"`` (tag ``method``) per method with ``test_<metric>_mean/_std``; child
    ``"<m> rep <r>"`` with per-epoch ``train_loss``/``val_loss``, ``test_<metric>`` and a
    ``predictions`` table; with ``summary``, a ``"<subset> summary"`` run holding the
    ``table1`` artifact computed by ``hitsong.results.table1`` (bootstrap intervals, paired tests).
    Method ``m2``'s predictions are the truth (every metric 1, the best possible); the others'
    are the truth plus noise of three times its spread, so the best-per-column marks are known.
    ``split_by`` names the experiment's split (``hitsong/<dataset>/<subset>/artist`` for ``artist``).
    """
    rng = np.random.default_rng(seed)
    logger = MlflowRunLogger.for_subset(dataset, subset, split_by=split_by, tracking_uri=uri)
    finals: dict[str, dict[str, float]] = {}
    predictions: dict[str, np.ndarray] = {}
    for method in methods:
        parent = logger.start_run(
            runlayout.method_run_name(method, method_label(method)),
            tags={runlayout.TAG_KIND: runlayout.METHOD, runlayout.TAG_METHOD: method},
        )
        logger.log_params(parent, {"method": method, "training.epochs": 3})
        per_rep, preds = [], []
        for rep in range(repeats):
            child = logger.start_run(
                runlayout.repetition_run_name(method, rep),
                parent=parent,
                tags={
                    runlayout.TAG_KIND: runlayout.REPETITION,
                    runlayout.TAG_METHOD: method,
                    runlayout.TAG_REPETITION: str(rep),
                },
            )
            logger.log_params(child, {"method": method, "seed": rep, "training.epochs": 3})
            for epoch in range(3):
                logger.log_metrics(
                    child, {"train_loss": 1.0 / (epoch + 1), "val_loss": 1.2 / (epoch + 1) + 0.1 * rep}, step=epoch
                )
            noise = 0.0 if method == "m2" else 3.0 * float(np.std(truth))
            predicted = truth + rng.normal(0.0, noise, size=truth.shape)
            metrics = evaluate(truth, predicted)
            logger.log_metrics(
                child,
                {
                    runlayout.split_metric(split, k): v
                    for k, v in metrics.items()
                    for split in (runlayout.VAL, runlayout.TEST)
                },
            )
            logger.log_table(
                child, runlayout.PREDICTIONS, pd.DataFrame({"song_id": song_ids, "true": truth, "predicted": predicted})
            )
            logger.end_run(child)
            finals[f"{method} rep {rep}"] = metrics
            per_rep.append(metrics)
            preds.append(predicted)
        frame = pd.DataFrame(per_rep)
        logger.log_metrics(
            parent,
            {runlayout.method_metric(runlayout.TEST, k): float(frame[k].mean()) for k in frame}
            | {runlayout.method_metric(runlayout.TEST, k, "std"): float(frame[k].std(ddof=1)) for k in frame},
        )
        logger.end_run(parent)
        predictions[method] = np.stack(preds)
    if summary:
        run = logger.start_run(runlayout.summary_run_name(subset), tags={runlayout.TAG_KIND: runlayout.SUMMARY})
        labels = {m: method_label(m) for m in methods}
        table = table1(truth, predictions, subset=subset, labels=labels, config=ResultsConfig(n_bootstrap=200))
        logger.log_table(run, runlayout.TABLE1, table.frame)
        logger.end_run(run)
    return finals


def seed_store(home, *, n_songs: int = 60, per_subset: int = 40, seed: int = 0) -> list[str]:
    """Ingest generated songs and plays for subset ``western``, sample, and store tag vectors.

    Song ``s000`` is the most played; plays fall geometrically with the id, releases spread
    over the quarters around the window start (2016-01-01). Song ``sNNN``'s predominant genre
    is ``GENRE_TAGS[NNN % 3]``. Returns the test split's song ids.
    """
    rng = np.random.default_rng(seed)
    home.mkdir(parents=True, exist_ok=True)
    ids = [f"s{i:03d}" for i in range(n_songs)]
    months = np.arange(n_songs) % 18 - 6  # released from six months before to a year after the start
    release = [pd.Timestamp("2016-01-15") + pd.DateOffset(months=int(m)) for m in months]
    pd.DataFrame(
        {
            "song_id": ids,
            "title": [f"Song {i}" for i in ids],
            "artist": [f"Artist {i % 7}" for i in range(n_songs)],
            "subset": "western",
            "release_date": [d.date().isoformat() for d in release],
            "audio_path": [f"audio/{i}.wav" for i in ids],
        }
    ).to_csv(home / "songs.csv", index=False)
    rows = []
    for i, song in enumerate(ids):
        for user in range(1 + (n_songs - i) // 4):
            rows.append((f"u{user:03d}", song, int(1 + rng.poisson(200 * 0.93**i))))
    pd.DataFrame(rows, columns=["user_id", "song_id", "play_count"]).to_csv(home / "events.csv", index=False)
    db = home / "hitsong.duckdb"
    ingest(db, home / "events.csv", home / "songs.csv", window_start=pd.Timestamp("2016-01-01").date())
    sample(db, per_subset=per_subset, seed=seed, split=(0.5, 0.25, 0.25))
    genres = list(GENRE_TAGS)[:3]
    with connect(db) as con:
        featureindex.ensure_schema(con)
        featureindex.commit_batch(
            con,
            computed=[],
            failures=[],
            tags=[
                featureindex.TagRow(song, "western", "MTT_musicnn", tuple([0.1] * N_TAGS), genres[i % 3])
                for i, song in enumerate(ids)
            ],
        )
    test = split_frame(db, "western", "test")
    return test["song_id"].tolist()


def log_champion(
    uri: str,
    bundle_root,
    *,
    dataset: str = "champion",
    subset: str = "western",
    method: str = "m6",
    username: str | None = None,
    password: str | None = None,
    audio_config=None,
) -> dict:
    """Train nothing: save a tiny ``method`` model as a bundle, log it as a child run with metrics,
    register it as ``hitsong-<subset>`` and promote it to champion. Returns the registration.

    ``audio_config`` (default the paper's) is the bundle's front end: a shorter segment scores faster."""
    import torch

    from hitsong.bundle import save_bundle
    from hitsong.models import build_model
    from hitsong.models.config import ModelConfig
    from hitsong.settings import DEFAULT_TAGGER
    from registry.models import promote, register

    torch.manual_seed(0)
    config = ModelConfig.tiny(n_mels=128, n_tags=N_TAGS)
    bundle = save_bundle(
        bundle_root / f"{method}-bundle",
        build_model(method, config),
        method=method,
        model_config=config,
        target_mean=20.0,
        target_std=5.0,
        catalog=np.linspace(5.0, 35.0, 101),
        subset=subset,
        tagger=DEFAULT_TAGGER,
        audio_config=audio_config,
    )
    logger = MlflowRunLogger.for_subset(dataset, subset, tracking_uri=uri)
    parent = logger.start_run(
        runlayout.method_run_name(method, METHODS[method].label),
        tags={runlayout.TAG_KIND: runlayout.METHOD, runlayout.TAG_METHOD: method},
    )
    child = logger.start_run(
        runlayout.repetition_run_name(method, 0),
        parent=parent,
        tags={runlayout.TAG_KIND: runlayout.REPETITION, runlayout.TAG_METHOD: method, runlayout.TAG_REPETITION: "0"},
    )
    logger.log_params(child, {"method": method, "seed": 0})
    logger.log_metrics(
        child,
        {
            "test_recall_at_k": 0.5,
            "test_ndcg_at_k": 0.5,
            "test_kendall_tau": 0.3,
            "test_spearman_rho": 0.4,
            "val_recall_at_k": 0.4,
            "val_ndcg_at_k": 0.45,
            "val_kendall_tau": 0.25,
            "val_spearman_rho": 0.35,
        },
    )
    # registry.pyfunc.log_bundle_model logs the LoggedModel into MLflow's *active* experiment
    # (Default unless set), where registry.models.register does not look: point it at ours.
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=logger.experiment_id)
    logger.log_bundle(child, bundle)
    logger.end_run(child)
    logger.end_run(parent)
    done = register(subset, experiment=logger.experiment, tracking_uri=uri, username=username, password=password)
    promote(done["model"], done["version"], "first champion", tracking_uri=uri, username=username, password=password)
    return done


def mp3_bytes(path, *, seconds: float, seed: int = 0) -> bytes:
    """A generated music-like 44.1 kHz stereo MP3 of ``seconds`` (written to ``path``)."""
    from tests.helpers.audio import song, write_audio

    write_audio(path, song(seconds=seconds, sr=44100, seed=seed), 44100)
    return path.read_bytes()
