"""A scored catalog and two comparable registered versions, for the Catalog and Registry pages.

On top of ``tests.helpers.dashboard.seed_store`` (60 songs ``s000..s059`` of subset western):

- :func:`write_song_audio` writes real WAV files where the catalog says the songs are;
- :func:`seed_scores` writes planted catalog scores through ``hitsong.store.predictions.write_rows``
  (the writer ``hitsong score`` uses): song ``sNNN`` scores ``100 - NNN``, so the ranking is known;
- :func:`log_compared_versions` logs two tiny methods into one experiment the way training does
  (params, val/test metrics, the test ``predictions`` table, the bundle), registers the better one
  on validation as champion and the other as challenger. m6 predicts the truth plus small noise,
  m1 the truth plus large noise, so their agreement and disagreements are known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hitsong.metrics import evaluate
from hitsong.models import METHODS
from hitsong.store import connect
from hitsong.tagger import GENRE_TAGS
from hitsong.training import runlayout
from tests.helpers.audio import song, write_audio

MODEL = "hitsong-western"
#: Noise of each method's predictions, in units of the truth's spread.
NOISE = {"m6": 0.3, "m1": 3.0}


def write_song_audio(home: Path, song_ids: list[str], *, seconds: float = 8.0) -> None:
    """Real WAVs at ``home/audio/<id>.wav`` (where ``seed_store``'s catalog points)."""
    (home / "audio").mkdir(parents=True, exist_ok=True)
    for i, song_id in enumerate(song_ids):
        write_audio(home / "audio" / f"{song_id}.wav", song(seconds=seconds, sr=22050, seed=i, channels=1), 22050)


def seed_scores(home: Path, version: str, *, n_songs: int = 60, method: str = "m6") -> pd.DataFrame:
    """Catalog scores of ``MODEL`` ``version``: ``sNNN`` scores ``100 - NNN``; genre ``GENRE_TAGS[NNN % 3]``."""
    from hitsong.store.predictions import PredictionRow, ensure_schema, write_rows

    genres = list(GENRE_TAGS)[:3]
    rows = [
        PredictionRow(
            song_id=f"s{i:03d}", path=str(home / "audio" / f"s{i:03d}.wav"), model=MODEL, version=version,
            method=method, score=100.0 - i, percentile=100.0 * (n_songs - i) / n_songs, genre=genres[i % 3],
            top_tags=json.dumps([[genres[i % 3], 0.9], ["guitar", 0.5], ["slow", 0.2], ["pop", 0.1], ["male", 0.05]]),
            error=None,
        )
        for i in range(n_songs)
    ]  # fmt: skip
    with connect(home / "hitsong.duckdb") as con:
        ensure_schema(con)
        write_rows(con, rows)
    return pd.DataFrame([r.__dict__ for r in rows])


def _params(method: str, n_test: int) -> dict[str, str]:
    from dataclasses import asdict

    from hitsong.audio import AudioConfig
    from hitsong.models.config import ModelConfig
    from hitsong.tracking import flatten_params
    from hitsong.training.config import TrainConfig

    return flatten_params(
        {
            "method": method, "model": ModelConfig.tiny(n_mels=128, n_tags=50).to_dict(),
            "train": asdict(TrainConfig.for_profile("demo")), "audio": AudioConfig().to_dict(),
            "data": {"subset": "western", "n_train": 20, "n_val": 10, "n_test": n_test, "tagger": "MTT_musicnn",
                     "shuffled_targets": False},
            "seed": 0,
        }
    )  # fmt: skip


def log_compared_versions(uri: str, root: Path, *, song_ids: list[str], truth: np.ndarray) -> dict:
    """Log m6 and m1 as training would, register m6 (best on validation) as champion, m1 as challenger.

    Returns ``{"champion": version, "challenger": version, "predictions": {method: (n,) array}}``.
    """
    import mlflow
    import torch

    from hitsong.bundle import save_bundle
    from hitsong.models import build_model
    from hitsong.models.config import ModelConfig
    from hitsong.settings import DEFAULT_TAGGER
    from registry.models import CHALLENGER, promote, register
    from registry.tracking import MlflowRunLogger

    rng = np.random.default_rng(3)
    logger = MlflowRunLogger.for_subset("compare", "western", tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=logger.experiment_id)
    predictions = {}
    for method, noise in NOISE.items():
        torch.manual_seed(0)
        config = ModelConfig.tiny(n_mels=128, n_tags=50)
        bundle = save_bundle(
            root / f"{method}-compared", build_model(method, config), method=method, model_config=config,
            target_mean=20.0, target_std=5.0, catalog=np.linspace(5.0, 35.0, 101), subset="western",
            tagger=DEFAULT_TAGGER,
        )  # fmt: skip
        tags = {runlayout.TAG_METHOD: method, runlayout.TAG_SUBSET: "western", runlayout.TAG_PROFILE: "demo",
                runlayout.TAG_DATA_VERSION: "planted", runlayout.TAG_CODE_VERSION: "test"}  # fmt: skip
        parent = logger.start_run(runlayout.method_run_name(method, METHODS[method].label),
                                  tags={**tags, runlayout.TAG_KIND: runlayout.METHOD})  # fmt: skip
        child = logger.start_run(runlayout.repetition_run_name(method, 0), parent=parent,
                                 tags={**tags, runlayout.TAG_KIND: runlayout.REPETITION,
                                       runlayout.TAG_REPETITION: "0"})  # fmt: skip
        logger.log_params(child, _params(method, len(song_ids)))
        predicted = truth + rng.normal(0.0, noise * float(np.std(truth)), size=truth.shape)
        scores = evaluate(truth, predicted)
        logger.log_metrics(child, {runlayout.split_metric(s, k): v for k, v in scores.items()
                                   for s in (runlayout.VAL, runlayout.TEST)} | {"best_epoch": 3})  # fmt: skip
        logger.log_table(child, runlayout.PREDICTIONS,
                         pd.DataFrame({"song_id": song_ids, "true": truth, "predicted": predicted}))  # fmt: skip
        logger.log_bundle(child, bundle)
        logger.end_run(child)
        logger.end_run(parent)
        predictions[method] = predicted
    champion = register("western", experiment=logger.experiment, tracking_uri=uri, rank=0)["version"]
    promote(MODEL, champion, "best on validation", tracking_uri=uri)
    challenger = register("western", experiment=logger.experiment, tracking_uri=uri, rank=1, alias=CHALLENGER)
    return {"champion": champion, "challenger": challenger["version"], "predictions": predictions}
