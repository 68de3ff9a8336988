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
from hitsong.errors import RegistryError
from tests.helpers.attacks import register_evil
from tests.helpers.audio import song, write_audio
from tests.helpers.mlflow import mlflow_server

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]


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
    version = register_evil(server.uri, name, tmp_path, marker, with_bundle=with_bundle)
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
    register_evil(server.uri, "hitsong-control", tmp_path, marker, with_bundle=False)
    mlflow.set_tracking_uri(server.uri)
    mlflow.pyfunc.load_model("models:/hitsong-control@champion")
    assert marker.read_text() == "pwned"


def test_a_version_tag_that_is_not_a_number_does_not_break_the_listing(server, tmp_path) -> None:
    """Anyone who may edit a model can write its tags; the pages that list versions must still load."""
    from registry.api import RegistryApi
    from registry.models import list_versions

    version = register_evil(server.uri, "hitsong-tagged", tmp_path, tmp_path / "marker", with_bundle=False)
    RegistryApi(server.uri).set_version_tag("hitsong-tagged", version, "metric.val_spearman_rho", "not a number")
    rows = list_versions("hitsong-tagged", tracking_uri=server.uri)
    assert np.isnan(rows[0]["metrics"]["val_spearman_rho"])
    assert dashboard_data.versions(server.uri)["model"].tolist().count("hitsong-tagged") == 1


def test_a_version_is_read_from_the_server_named_not_the_process_wide_one(server, tmp_path, monkeypatch) -> None:
    """MLflow's helpers fall back to the process-wide tracking and registry URIs; a reader names its server."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    version = register_evil(server.uri, "hitsong-named", tmp_path, tmp_path / "marker", with_bundle=True)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(registry_utils, "_registry_uri", "http://127.0.0.1:9")
    assert dashboard_data.load_scorer(server.uri, "hitsong-named", version, "cpu").method == "m4"
