"""m0 trained and logged like m1..m6: its runs, tables and metrics, Table 1's gaps to m0, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.errors import InputError
from hitsong.metrics import spearman_rho
from hitsong.models import ModelConfig
from hitsong.results import ResultsConfig
from hitsong.tracking import LocalRunLogger
from hitsong.training import runlayout
from hitsong.training.config import TrainConfig
from hitsong.training.data import SubsetData, scan_subset
from hitsong.training.experiment import train_subset
from tests.helpers.training import N_ARTISTS, FamousDataset, famous_splits, planted_splits

TINY = ModelConfig.tiny()
FAST = TrainConfig.for_profile("tiny", lr=0.05, max_epochs=3, early_stop_patience=3, repeats=2)


@pytest.fixture(scope="module")
def famous() -> SubsetData:
    return scan_subset(famous_splits(), subset="famous")


def _runs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("run.json"))]


def _train(data: SubsetData, tmp: Path, **kwargs: object):
    args = {
        "subset": "famous",
        "logger": LocalRunLogger(tmp / "runs"),
        "methods": ["m0", "m1"],
        "model_config": TINY,
        "train_config": FAST,
        "results_config": ResultsConfig(n_bootstrap=100),
        "device": "cpu",
        **kwargs,
    }
    return train_subset(data, **args)  # type: ignore[arg-type]


def test_m0_is_logged_like_an_audio_method(famous: SubsetData, tmp_path: Path) -> None:
    result = _train(famous, tmp_path, data_notes={"split_by": "random"})
    # fame dominates the hit score, and the artists leak across the random split: m0 ranks well
    assert result.metric("m0", "spearman_rho").item() > 0.7
    assert result.predictions("m0").shape == (1, 40)  # one deterministic repetition
    runs = _runs(tmp_path / "runs")
    m0_reps = [r for r in runs if r["tags"].get("method") == "m0" and r["tags"]["hitsong.kind"] == "repetition"]
    assert len(m0_reps) == 1 and m0_reps[0]["status"] == "FINISHED"
    assert m0_reps[0]["tags"][runlayout.TAG_SPLIT_BY] == "random"
    folder = next((tmp_path / "runs").rglob(m0_reps[0]["run_id"]))
    for table in (runlayout.PREDICTIONS, runlayout.VAL_PREDICTIONS, *runlayout.BASELINE_TABLES):
        assert (folder / f"{table}.csv").is_file(), table
    assert not (folder / "model").exists()  # m0 cannot score audio: no bundle
    effects = pd.read_csv(folder / f"{runlayout.BASELINE_EFFECTS}.csv")
    assert len(effects) == N_ARTISTS and list(effects.columns) == ["artist", "train_songs", "effect"]
    # the artists' effects follow their planted fame
    fame = [FamousDataset.FAME[int(a.rsplit(" ", 1)[1])] for a in effects["artist"]]
    assert spearman_rho(np.array(fame), effects["effect"].to_numpy()) > 0.8
    params = json.loads((folder / "params.json").read_text())
    assert "m0.shrinkage" in params and "m0.recency_coef" in params and "model.conv1_channels" not in params
    metrics = {json.loads(line)["key"] for line in (folder / "metrics.jsonl").read_text().splitlines()}
    assert {"test_spearman_rho", "val_spearman_rho", "val_artists_seen", "best_val_loss"} <= metrics
    # Table 1: m0 is a row, every method has its gap to m0 and to m1 with intervals
    frame = result.table.frame.set_index(["method", "metric"])
    assert result.table.labels["m0"] == "metadata (artist+recency)"
    row = frame.loc[("m1", "spearman_rho")]
    assert row["diff_m0"] == pytest.approx(row["mean"] - frame.loc[("m0", "spearman_rho"), "mean"])
    assert row["diff_m0_low"] <= row["diff_m0"] <= row["diff_m0_high"]
    summary = next(r for r in runs if r["tags"]["hitsong.kind"] == "summary")
    summary_dir = next((tmp_path / "runs").rglob(summary["run_id"]))
    logged = {
        json.loads(line)["key"]: json.loads(line)["value"]
        for line in (summary_dir / "metrics.jsonl").read_text().splitlines()
    }
    assert logged[runlayout.summary_gap_metric("m1", "spearman_rho", "m0")] == pytest.approx(row["diff_m0"])
    assert runlayout.summary_gap_metric("m1", "spearman_rho", "m0", "low") in logged


def test_split_method_is_part_of_the_data_version(famous: SubsetData) -> None:
    config = {"audio_config": {}, "tagger": None}
    random_v = famous.data_version(**config, split_by="random")
    assert famous.data_version(**config, split_by="artist") != random_v
    assert famous.data_version(**config, split_by="random") == random_v


def test_shuffled_targets_give_m0_one_permutation_per_repetition(famous: SubsetData, tmp_path: Path) -> None:
    result = _train(famous, tmp_path, methods=["m0"], shuffle_targets=True)
    assert result.predictions("m0").shape == (2, 40)
    assert abs(result.metric("m0", "spearman_rho").mean()) < 0.5


def test_m0_without_metadata_is_refused_before_training(tmp_path: Path) -> None:
    data = scan_subset(planted_splits(n_train=8, n_val=4, n_test=4), subset="plain")
    with pytest.raises(InputError, match="artist and release date"):
        _train(data, tmp_path, methods=["m1", "m0"])
    assert not list((tmp_path / "runs").rglob("run.json"))  # refused before any run started
