"""Training on a planted signal, the shuffled-label control, reproducibility, run logging, Table 1."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hitsong.audio import AudioConfig
from hitsong.cli import parse_args
from hitsong.errors import ConfigError
from hitsong.metrics import evaluate
from hitsong.models import METHODS, ModelConfig
from hitsong.results import ResultsConfig, table1
from hitsong.tracking import LocalRunLogger
from hitsong.training.config import TrainConfig
from hitsong.training.data import SubsetData, scan_subset
from hitsong.training.experiment import RunContext, train_method, train_subset
from tests.helpers.training import PlantedDataset, planted_splits

TINY = ModelConfig.tiny()
# Adagrad as in the paper, with a step size that moves weights within a few tiny epochs
FAST = TrainConfig.for_profile("tiny", lr=0.05, max_epochs=6, early_stop_patience=6, repeats=2)


@pytest.fixture(scope="module")
def planted() -> SubsetData:
    return scan_subset(planted_splits(n_train=60, n_val=20, n_test=40), subset="synthetic")


def _runs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("run.json"))]


def _train(data: SubsetData, tmp: Path, **kwargs: object):
    args = {
        "subset": "synthetic",
        "logger": LocalRunLogger(tmp / "runs"),
        "model_config": TINY,
        "train_config": FAST,
        "results_config": ResultsConfig(n_bootstrap=100),
        "device": "cpu",
        **kwargs,
    }
    return train_subset(data, **args)  # type: ignore[arg-type]


def test_every_method_learns_the_planted_signal_and_not_shuffled_labels(planted: SubsetData, tmp_path: Path) -> None:
    real = _train(planted, tmp_path / "real", out_dir=tmp_path / "real" / "out")
    null = _train(planted, tmp_path / "null", shuffle_targets=True)
    real_rho = {m: real.metric(m, "spearman_rho").mean() for m in METHODS}
    null_rho = {m: null.metric(m, "spearman_rho").mean() for m in METHODS}
    # a constant predictor has rho 0 (metrics' definition); the planted signal gives ~0.7-0.9
    for m in METHODS:
        assert real_rho[m] > 0.4, f"{m} did not learn the planted signal: rho {real_rho[m]:.3f}"
        assert real_rho[m] - null_rho[m] > 0.3, f"{m}: real {real_rho[m]:.3f} vs shuffled {null_rho[m]:.3f}"
    assert abs(np.mean(list(null_rho.values()))) < 0.2, f"shuffled labels still rank songs: {null_rho}"

    # outputs: Table 1 files and the run tree of the local logger
    table = pd.read_csv(tmp_path / "real" / "out" / "table1.csv")
    assert set(table["method"]) == set(METHODS) and len(table) == 24
    row = table[(table.method == "m2") & (table.metric == "spearman_rho")].iloc[0]
    assert row["mean"] == pytest.approx(real_rho["m2"])
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    runs = _runs(tmp_path / "real" / "runs")
    kinds = [r["tags"]["hitsong.kind"] for r in runs]
    assert kinds.count("summary") == 1 and kinds.count("method") == 6 and kinds.count("repetition") == 12
    assert all(r["status"] == "FINISHED" for r in runs)
    child = next(r for r in runs if r["tags"]["hitsong.kind"] == "repetition" and r["tags"]["method"] == "m6")
    folder = next((tmp_path / "real" / "runs").rglob(child["run_id"]))
    params = json.loads((folder / "params.json").read_text())
    assert params["model.conv1_channels"] == "4" and params["train.optimizer"] == "adagrad"
    assert child["tags"]["data_version"] == real.data_version
    steps = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["key"] == "val_loss"][:2] == [1, 2]
    assert {"test_spearman_rho", "joint_w", "best_epoch"} <= {s["key"] for s in steps}
    preds = pd.read_csv(folder / "predictions.csv")
    assert list(preds.columns) == ["song_id", "true", "predicted"] and len(preds) == 40
    assert (folder / "model" / "bundle.json").is_file() and (folder / "model" / "weights.safetensors").is_file()


def test_repetition_is_reproducible(planted: SubsetData, tmp_path: Path) -> None:
    ctx = RunContext("synthetic", "v", "c", AudioConfig(), None, torch.device("cpu"))
    logger = LocalRunLogger(tmp_path)
    config = TrainConfig.for_profile("tiny", lr=0.05, max_epochs=2)

    def once(rep: int) -> np.ndarray:
        return train_method(
            "m5", planted, repetition=rep, model_config=TINY, train_config=config, ctx=ctx, logger=logger
        ).predictions

    first, again, other = once(0), once(0), once(1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


class _FailingDataset(PlantedDataset):
    """Raises on the ``fail_at``-th item read, like a store file that vanishes mid-training."""

    def __init__(self, *args: object, fail_at: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads = 0
        self.fail_at = fail_at

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        if self.reads == self.fail_at:
            raise OSError("feature store went away")
        return super().__getitem__(i)


def test_crash_mid_training_marks_runs_failed(tmp_path: Path) -> None:
    splits = planted_splits(n_train=12, n_val=4, n_test=4)
    # the scan reads 12 items, epoch 1 reads 12 more: fail inside epoch 2
    splits["train"] = _FailingDataset(12, seed=1, fail_at=12 + 12 + 5)
    with pytest.raises(OSError, match="went away"):
        _train(splits, tmp_path, methods=["m2"])  # type: ignore[arg-type]
    status = {r["tags"]["hitsong.kind"]: r["status"] for r in _runs(tmp_path / "runs")}
    assert status == {"summary": "FAILED", "method": "FAILED", "repetition": "FAILED"}


def test_table1_statistics_and_paired_test(rng: np.random.Generator) -> None:
    y = rng.normal(size=200)
    good = np.stack([y + rng.normal(scale=0.3, size=200) for _ in range(3)])
    weak = np.stack([y + rng.normal(scale=3.0, size=200) for _ in range(3)])
    meta = np.stack([y + rng.normal(scale=0.1, size=200)])  # one deterministic repetition, like m0
    preds = {"m0": meta, "m1": weak, "m6": good, "m2": weak.copy()}
    t = table1(y, preds, subset="s", config=ResultsConfig(n_bootstrap=300))
    f = t.frame.set_index(["method", "metric"])
    per_rep = np.array([evaluate(y, p)["spearman_rho"] for p in good])
    assert f.loc[("m6", "spearman_rho"), "mean"] == pytest.approx(per_rep.mean())
    assert f.loc[("m6", "spearman_rho"), "std"] == pytest.approx(per_rep.std(ddof=1))
    assert f.loc[("m6", "spearman_rho"), "p_value_m1"] < 0.01  # a real gap
    assert f.loc[("m6", "spearman_rho"), "diff_m1_low"] > 0
    assert f.loc[("m2", "spearman_rho"), "p_value_m1"] == 1.0  # identical to the baseline
    assert f.loc[("m2", "spearman_rho"), "diff_m1"] == 0.0
    # the gap to the metadata baseline, in the same frame: m6 is worse than m0, m0 has no gap to itself
    gap = f.loc[("m6", "spearman_rho"), ["diff_m0", "diff_m0_low", "diff_m0_high", "p_value_m0"]]
    assert gap["diff_m0"] == pytest.approx(per_rep.mean() - evaluate(y, meta[0])["spearman_rho"])
    assert gap["diff_m0_low"] < gap["diff_m0"] < gap["diff_m0_high"] < 0 and gap["p_value_m0"] < 0.01
    assert np.isnan(f.loc[("m0", "spearman_rho"), "p_value_m0"]) and f.loc[("m0", "spearman_rho"), "diff_m0"] == 0
    without_m0 = table1(y, {"m1": weak, "m6": good}, subset="s", config=ResultsConfig(n_bootstrap=50)).frame
    assert without_m0["diff_m0"].isna().all() and without_m0["diff_m1"].notna().all()
    for m in ("m1", "m6"):
        lo, hi = f.loc[(m, "kendall_tau"), ["ci_low", "ci_high"]]
        assert lo < f.loc[(m, "kendall_tau"), "mean"] < hi
    assert t.k == 20
    text = t.to_text()
    assert "(m6) m6" in text and "vs m1" in text and "vs m0" in text
    assert t.wide().shape == (4, 4)
    json.dumps(t.to_json())


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="paper, demo, tiny"):
        TrainConfig.for_profile("fast")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    data = scan_subset(planted_splits(n_train=4, n_val=2, n_test=4), subset="x")
    with pytest.raises(ConfigError, match="valid methods"):
        train_subset(data, subset="x", logger=LocalRunLogger(Path("unused")), methods=["m9"])
    with pytest.raises(ConfigError, match="n_mels=128"):
        train_subset(data, subset="x", logger=LocalRunLogger(Path("unused")), methods=["m1"])


def test_cli_parses_train() -> None:
    args = parse_args(
        [
            "train",
            "--subset",
            "mandarin,western",
            "--methods",
            "m1,m6",
            "--profile",
            "demo",
            "--repeats",
            "3",
            "--tracker",
            "local",
        ]
    )
    assert (args.subset, args.methods, args.profile, args.repeats) == ("mandarin,western", "m1,m6", "demo", 3)
    assert args.func.__module__ == "registry.train_command"


def test_parallel_processes_give_the_sequential_results(planted: SubsetData, tmp_path: Path) -> None:
    """Two worker processes, one thread each: every repetition's predictions bit for bit as in turn."""
    config = TrainConfig.for_profile("tiny", lr=0.05, max_epochs=3, repeats=2, cpu_threads=1)

    def train(processes: int, folder: str):
        return train_subset(
            planted, subset="synthetic", logger=LocalRunLogger(tmp_path / folder), methods=["m1", "m2", "m5"],
            model_config=TINY, train_config=replace(config, processes=processes), device="cpu",
            results_config=ResultsConfig(n_bootstrap=0),
        )  # fmt: skip

    sequential, parallel = train(1, "one"), train(2, "two")
    for method in ("m1", "m2", "m5"):
        np.testing.assert_array_equal(parallel.predictions(method), sequential.predictions(method))
    runs = _runs(tmp_path / "two")
    assert len(runs) == 1 + 3 + 3 * 2 and {r["status"] for r in runs} == {"FINISHED"}


@pytest.mark.parametrize("select_by", ["val_loss", "val_spearman"])
def test_the_weights_kept_are_those_of_the_selected_validation_epoch(planted: SubsetData, select_by: str) -> None:
    """The epoch kept is the best by the chosen criterion (first of ties), and the model left in
    place predicts the validation songs exactly as it did at that epoch."""
    from hitsong.metrics import spearman_rho
    from hitsong.models import build_model
    from hitsong.training.loop import fit, predict_standardised, seed_everything

    config = replace(FAST, max_epochs=8, early_stop_patience=8, select_by=select_by)
    seed_everything(0)
    model = build_model("m1", TINY)
    model.fit_input_stats(planted.train.stats, planted.train.tags)
    result = fit(model, planted, config, seed=0, device=torch.device("cpu"))
    history = pd.DataFrame(result.history)
    assert len(history) == 8 and {"val_loss", "val_spearman"} <= set(history.columns)
    best = int(history["val_loss"].idxmin() if select_by == "val_loss" else history["val_spearman"].idxmax())
    assert result.best_epoch == history["epoch"][best]
    assert result.best_val_loss == history["val_loss"][best]
    z_val = planted.z(planted.val).numpy()
    kept = predict_standardised(model, planted.val, device=torch.device("cpu"))
    assert float(np.mean((kept - z_val) ** 2)) == pytest.approx(result.best_val_loss, rel=1e-6)
    assert spearman_rho(z_val, kept) == pytest.approx(history["val_spearman"][best], abs=1e-12)
    # the two criteria disagree on this run (epochs 5 and 3): the test tells them apart
    assert history["val_loss"].idxmin() != history["val_spearman"].idxmax()


def test_select_by_must_be_a_known_criterion() -> None:
    with pytest.raises(ConfigError, match="select_by"):
        TrainConfig(select_by="test_spearman")
