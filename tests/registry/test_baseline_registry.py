"""The metadata baseline m0 in the registry, against a real ``mlflow server``.

On data where artist fame outweighs the audio, m0 is the best method on validation; still it
is never registered unless asked (``include_baselines``), every registered version states its
split and its gap to m0, and a registered m0 version is refused by the audio readers
(``hitsong predict``, the Predict page's loader) with a message that says why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hitsong.audio import AudioConfig
from hitsong.errors import RegistryError
from hitsong.metrics import METRIC_LABELS
from hitsong.models.config import ModelConfig
from hitsong.training import runlayout
from hitsong.training.config import TrainConfig
from hitsong.training.experiment import train_subset
from registry.api import RegistryApi
from registry.models import EVALUATION_TAG, list_versions, rank_candidates, register
from registry.tracking import MlflowRunLogger
from tests.helpers.mlflow import mlflow_server
from tests.helpers.training import famous_splits

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
N_MELS, SECONDS = 16, 4.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("baseline-registry")) as srv:
        yield srv


@pytest.fixture(scope="module")
def trained(server):
    """m0 and m1 on songs whose hit score is mostly their artist's fame (a random split)."""
    audio = AudioConfig(n_mels=N_MELS, seconds=SECONDS)
    data = famous_splits(n_mels=N_MELS, n_frames=audio.n_frames, n_tags=50)
    logger = MlflowRunLogger.for_subset("unit", "famous", split_by="random", tracking_uri=server.uri)
    return train_subset(
        data, subset="famous", logger=logger, methods=["m0", "m1"],
        model_config=ModelConfig.tiny(n_mels=N_MELS, n_tags=50),
        train_config=TrainConfig.for_profile("tiny", repeats=1), device="cpu",
        audio_config=audio, data_notes={"split_by": "random"},
    )  # fmt: skip


def test_m0_is_ranked_only_when_asked(server, trained) -> None:
    val = {m: np.mean([r.val_metrics["spearman_rho"] for r in trained.reps if r.method == m]) for m in ("m0", "m1")}
    assert val["m0"] > val["m1"]  # the planted fame makes m0 the best on validation
    api = RegistryApi(server.uri)
    assert [c.method for c in rank_candidates(api, "famous")] == ["m1"]
    ranked = rank_candidates(api, "famous", include_baselines=True)
    assert [c.method for c in ranked] == ["m0", "m1"] and ranked[0].model_id is None


def test_registered_versions_state_their_split_and_gap_to_m0(server, trained) -> None:
    first = register("famous", tracking_uri=server.uri)
    assert first["method"] == "m1"  # the best audio method, not m0
    tags = {v["version"]: v for v in list_versions("hitsong-famous", tracking_uri=server.uri)}[first["version"]]["tags"]
    note = tags[EVALUATION_TAG]
    assert note.startswith("Evaluated on a random split")
    row = trained.table.frame.set_index(["method", "metric"]).loc[("m1", "spearman_rho")]
    label = METRIC_LABELS["spearman_rho"]
    assert f"{label} {row['diff_m0']:+.3f} [{row['diff_m0_low']:+.3f}, {row['diff_m0_high']:+.3f}]" in note
    assert tags[f"hitsong.{runlayout.TAG_SPLIT_BY}"] == "random"


def test_a_registered_m0_version_is_refused_by_the_audio_readers(server, trained, tmp_path) -> None:
    from dashboard import data as dashboard_data

    baseline = register("famous", include_baselines=True, tracking_uri=server.uri)
    assert baseline["method"] == "m0"
    version = baseline["version"]
    tags = {v["version"]: v for v in list_versions("hitsong-famous", tracking_uri=server.uri)}[version]["tags"]
    assert "is the baseline itself" in tags[EVALUATION_TAG]
    with pytest.raises(RegistryError, match=f"hitsong-famous version {version} is m0.*cannot score an audio file"):
        dashboard_data.load_scorer(server.uri, "hitsong-famous", version, "cpu")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")  # never read: the version is refused first
    proc = subprocess.run(
        [sys.executable, "-m", "hitsong", "predict", str(clip), "--model", f"models:/hitsong-famous/{version}",
         "--tracking-uri", server.uri, "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"hitsong-famous version {version} is m0" in proc.stderr and proc.stdout == ""
