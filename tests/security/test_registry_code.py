"""A registered model's code never runs in hitsong's readers.

An attacker registers ``hitsong-aaa`` (first in the Predict page's list) whose pyfunc code file
writes a marker file when imported, and makes it ``champion``: once with a valid hitsong bundle
beside the code, once with no bundle at all. ``hitsong predict --model`` and the dashboard's
scorer (``dashboard.data.load_scorer``, what the Predict page calls) either score from the
bundle's data files or refuse the version by name; the marker never appears. A control run
through ``mlflow.pyfunc.load_model`` (what MLflow-native serving does) shows the marker *would*
be written by code loading, so the test can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from dashboard import data as dashboard_data
from hitsong.bundle import save_bundle
from hitsong.errors import RegistryError
from hitsong.models import build_model
from hitsong.models.config import ModelConfig
from hitsong.settings import DEFAULT_TAGGER
from registry.api import RegistryApi
from tests.helpers.audio import song, write_audio
from tests.helpers.mlflow import mlflow_server

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]


def _evil_code(marker: Path) -> str:
    return (
        "import pathlib\n"
        "import mlflow\n"
        f"pathlib.Path({str(marker)!r}).write_text('pwned')\n"
        "class Evil(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n"
        "mlflow.models.set_model(Evil())\n"
    )


def _register_evil(uri: str, name: str, tmp: Path, marker: Path, *, with_bundle: bool) -> str:
    code = tmp / f"{name}_code.py"
    code.write_text(_evil_code(marker))
    artifacts = {}
    if with_bundle:
        config = ModelConfig.tiny(n_mels=128, n_tags=50)
        artifacts["bundle"] = str(
            save_bundle(
                tmp / f"{name}-bundle", build_model("m4", config), method="m4", model_config=config,
                target_mean=20.0, target_std=5.0, catalog=np.linspace(5.0, 35.0, 11), subset="aaa",
                tagger=DEFAULT_TAGGER,
            )
        )  # fmt: skip
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("attacker")
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code), artifacts=artifacts or None)
    marker.unlink(missing_ok=True)  # MLflow imported the code while logging it: the attacker's machine
    api = RegistryApi(uri)
    api.ensure_model(name)
    version = api.create_version(name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags={})
    api.set_alias(name, "champion", version)
    return version


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("evil")) as srv:
        yield srv


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    write_audio(path, song(seconds=6.0, sr=22050, seed=3), 22050)
    return path


@pytest.mark.parametrize("with_bundle", [True, False])
def test_readers_never_import_a_registered_models_code(server, tmp_path, clip, with_bundle: bool) -> None:
    marker = tmp_path / "marker"
    name = "hitsong-aaa" if with_bundle else "hitsong-aab"
    version = _register_evil(server.uri, name, tmp_path, marker, with_bundle=with_bundle)
    proc = subprocess.run(
        [sys.executable, "-m", "hitsong", "predict", str(clip), "--model", f"models:/{name}@champion",
         "--tracking-uri", server.uri, "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    if with_bundle:  # scored from the data files, the code untouched
        assert proc.returncode == 0, proc.stderr
        line = json.loads(proc.stdout.strip().splitlines()[-1])
        assert line["method"] == "m4" and np.isfinite(line["hit_score"])
        scorer = dashboard_data.load_scorer(server.uri, name, version, "cpu")
        assert scorer.method == "m4"
    else:  # refused, by name
        assert proc.returncode == 1
        assert f"{name} version {version} is not a hitsong model bundle" in proc.stderr
        with pytest.raises(RegistryError, match=f"{name} version {version} is not a hitsong model bundle"):
            dashboard_data.load_scorer(server.uri, name, version, "cpu")
    assert not marker.exists()


def test_the_attack_is_real_pyfunc_loading_runs_the_code(server, tmp_path) -> None:
    """The control: MLflow's own loader imports the code file, so the marker test can fail."""
    marker = tmp_path / "marker"
    _register_evil(server.uri, "hitsong-control", tmp_path, marker, with_bundle=False)
    mlflow.set_tracking_uri(server.uri)
    mlflow.pyfunc.load_model("models:/hitsong-control@champion")
    assert marker.read_text() == "pwned"
