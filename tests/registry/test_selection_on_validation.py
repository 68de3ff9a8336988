"""Every choice is made on the validation split; the test split only reports.

A constructed subset where the best method on validation is not the best on test: training
targets mix a signal in the mel bands (visible to m1) and one in a tag (visible to m4); the
validation songs' hit scores follow only the tag signal and the test songs' only the mel
signal. So m4 wins on validation and m1 on test. ``hitsong register`` must register m4 (and
report m4's held-out test figures), and the Genres page (paper Fig. 4) must show each method's
repetition chosen on validation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from dashboard import data as dashboard_data
from hitsong.audio import AudioConfig
from hitsong.models.config import ModelConfig
from hitsong.training import runlayout
from hitsong.training.config import TrainConfig
from hitsong.training.experiment import train_subset
from registry import runs as registry_runs
from registry.models import list_versions, register
from registry.tracking import MlflowRunLogger
from tests.helpers.mlflow import mlflow_server

pytestmark = pytest.mark.timeout(600)

N_MELS, N_FRAMES, N_TAGS = 16, 40, 50


class TwoSignals(Dataset):
    """Songs with a mel signal ``a`` (bands 3-6) and a tag signal ``b`` (tag 0); the hit score is
    ``10 + 2 * (mel_weight * a + tag_weight * b)`` plus a little noise."""

    def __init__(self, n: int, *, seed: int, mel_weight: float, tag_weight: float, prefix: str) -> None:
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=n), rng.normal(size=n)
        mel = rng.normal(scale=0.5, size=(n, N_MELS, N_FRAMES)) + 2.0
        mel[:, 3:7, :] += a[:, None, None]
        self.mel = mel.astype(np.float32)
        tags = rng.uniform(0.0, 0.3, size=(n, N_TAGS))
        tags[:, 0] = 1.0 / (1.0 + np.exp(-b))
        self.tags = tags.astype(np.float32)
        self.target = (10.0 + 2.0 * (mel_weight * a + tag_weight * b) + rng.normal(scale=0.1, size=n)).astype(
            np.float32
        )
        self.ids = [f"{prefix}{i:03d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {
            "mel": torch.from_numpy(self.mel[i]),
            "tags": torch.from_numpy(self.tags[i]),
            "target": float(self.target[i]),
            "song_id": self.ids[i],
        }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    splits = {
        "train": TwoSignals(80, seed=1, mel_weight=1.0, tag_weight=1.0, prefix="tr"),
        "val": TwoSignals(40, seed=2, mel_weight=0.0, tag_weight=1.0, prefix="va"),  # only m4 can rank these
        "test": TwoSignals(40, seed=3, mel_weight=1.0, tag_weight=0.0, prefix="te"),  # only m1 can rank these
    }
    with mlflow_server(tmp_path_factory.mktemp("selection")) as server:
        logger = MlflowRunLogger.for_subset("unit", "twosig", tracking_uri=server.uri)
        result = train_subset(
            splits,
            subset="twosig",
            logger=logger,
            methods=["m1", "m4"],
            model_config=ModelConfig.tiny(n_mels=N_MELS, n_tags=N_TAGS),
            train_config=TrainConfig.for_profile("tiny", lr=0.05, max_epochs=8, early_stop_patience=8, repeats=2),
            audio_config=AudioConfig(n_mels=N_MELS),
            tagger="MTT_musicnn",
            device="cpu",
        )
        yield server.uri, result, logger.experiment_id


def test_the_construction_disagrees_between_validation_and_test(trained):
    _, result, _ = trained
    val = {m: np.mean([r.val_metrics["spearman_rho"] for r in result.reps if r.method == m]) for m in ("m1", "m4")}
    test = {m: result.metric(m, "spearman_rho").mean() for m in ("m1", "m4")}
    assert val["m4"] > val["m1"] + 0.3 and test["m1"] > test["m4"] + 0.3, (val, test)


def test_register_picks_the_validation_winner_and_reports_its_held_out_figures(trained):
    uri, result, _ = trained
    done = register("twosig", tracking_uri=uri)
    assert done["method"] == "m4"  # not m1, although m1 is far better on test
    chosen = max((r for r in result.reps if r.method == "m4"), key=lambda r: r.val_metrics["spearman_rho"])
    version = next(v for v in list_versions(done["model"], tracking_uri=uri) if v["version"] == done["version"])
    assert version["metrics"]["val_spearman_rho"] == pytest.approx(chosen.val_metrics["spearman_rho"], abs=1e-5)
    assert version["metrics"]["test_spearman_rho"] == pytest.approx(chosen.metrics["spearman_rho"], abs=1e-5)
    runner_up = register("twosig", rank=1, tracking_uri=uri)
    assert runner_up["method"] == "m1"


def test_genre_figure_takes_the_repetition_chosen_on_validation(trained):
    uri, result, experiment_id = trained
    runs = registry_runs.experiment_runs(uri, experiment_id)
    chosen = dashboard_data.chosen_repetitions(runs)
    for method in ("m1", "m4"):
        reps = [r for r in result.reps if r.method == method]
        want = max(reps, key=lambda r: r.val_metrics["spearman_rho"]).repetition
        assert chosen.set_index("method").at[method, "repetition"] == want
    predictions = dashboard_data.test_predictions(uri, runs)
    shown = predictions.groupby("method")["run_name"].first().to_dict()
    assert shown == {
        m: runlayout.repetition_run_name(m, int(chosen.set_index("method").at[m, "repetition"])) for m in ("m1", "m4")
    }


def test_repetition_choice_ignores_test_figures() -> None:
    """A repetition that is best on test but worse on validation is never the one shown."""
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "run_name": ["m2 rep 0", "m2 rep 1"],
            "kind": runlayout.REPETITION,
            "method": "m2",
            "repetition": [0, 1],
            "status": "FINISHED",
            "val_spearman_rho": [0.4, 0.2],
            "test_spearman_rho": [0.1, 0.9],
        }
    )
    assert dashboard_data.chosen_repetitions(runs)["run_name"].tolist() == ["m2 rep 0"]
