"""The registered model serves with MLflow's own tools where hitsong is not installed.

A tiny m6 version is logged through ``registry.pyfunc`` (as training logs it), registered and
made champion on a real ``mlflow server``. Then, as a new user on another machine would:
a fresh virtual environment is created from the model's own ``requirements.txt`` only (pip,
with this machine's package sources, the Makefile's), ``import hitsong`` is shown to fail in it,
``mlflow models serve -m models:/hitsong-western@champion --env-manager local`` is started from
it on a loopback port, a WAV is POSTed to ``/invocations`` as a base64 ``audio_bytes`` column,
and the served score equals the in-process scorer's (built from the version's data files)
within 1e-5.

The venv is created once per test session, under the session's temp folder, keyed by the
requirements' hash; its creation time is written to ``test-artifacts/serving_venv.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import requests

from hitsong.scoring import example_wav
from registry.bundles import load_scorer
from registry.server import free_port
from tests.helpers.dashboard import log_champion
from tests.helpers.mlflow import TestServer, mlflow_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MODEL_URI = "models:/hitsong-western@champion"
#: Seconds the scoring server gives a request (MLflow's default, 60, is too short for the first
#: request on a loaded 2-core CI machine: it pays the decoder's and resampler's warm-up).
REQUEST_TIMEOUT = 600


@pytest.fixture(scope="module")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestServer, dict]]:
    """A real server with a tiny m6 champion logged the way training logs models."""
    home = tmp_path_factory.mktemp("serving")
    with mlflow_server(home) as srv:
        before = list(sys.path)
        done = log_champion(srv.uri, home)
        assert sys.path == before, "logging a model left its code folder on sys.path"
        yield srv, done


def _model_file(uri: str, name: str, dest: Path) -> Path:
    mlflow.set_tracking_uri(uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{MODEL_URI}/{name}", dst_path=str(dest)))


def test_logged_model_carries_its_code_and_pinned_requirements(served_model, tmp_path: Path) -> None:
    srv, _ = served_model
    requirements = _model_file(srv.uri, "requirements.txt", tmp_path).read_text().split()
    assert "torch==2.13.0" in requirements  # exactly: any other torch spec downloads a CUDA build here
    assert all("==" in line for line in requirements), requirements
    assert not any(line.split("==")[0] in ("hitsong", "-e") for line in requirements)
    mlflow.set_tracking_uri(srv.uri)
    code = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{MODEL_URI}/code", dst_path=str(tmp_path)))
    for module in ("hitsong/scoring.py", "hitsong/bundle.py", "registry/pyfunc.py", "registry/pyfunc_model.py"):
        assert (code / module).is_file(), module
    assert not list(code.rglob("*.safetensors")), "the tagger weights travel as an artifact, not as code"
    assert not list(code.rglob("__pycache__"))


@pytest.fixture(scope="session")
def model_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Path], Path]]:
    """``make(requirements_file) -> venv folder``: one fresh venv per requirements hash and session."""
    made: dict[str, Path] = {}

    def make(requirements: Path) -> Path:
        key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
        if key in made:
            return made[key]
        venv = tmp_path_factory.getbasetemp() / f"model-venv-{key}"
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        seconds = time.monotonic() - started
        _record(
            seconds_to_create_venv_from_model_requirements=round(seconds, 1),
            requirements=requirements.read_text().split(),
            load_average=os.getloadavg(),
        )
        made[key] = venv
        return venv

    yield make


def _record(**facts: object) -> None:
    """Add ``facts`` to ``test-artifacts/serving_venv.json``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "serving_venv.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**record, **facts}, indent=1))


def _wait_for_ping(url: str, proc: subprocess.Popen, log: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    pytest.fail(f"mlflow models serve did not answer within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_mlflow_models_serve_in_a_clean_environment_scores_like_the_in_process_scorer(
    served_model, model_venv, tmp_path: Path
) -> None:
    srv, done = served_model
    venv = model_venv(_model_file(srv.uri, "requirements.txt", tmp_path))
    # The clean environment has no hitsong: the served model runs the code it carries.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", MLFLOW_TRACKING_URI=srv.uri)
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import hitsong"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode != 0 and "No module named 'hitsong'" in probe.stderr

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(venv / "bin" / "mlflow"), "models", "serve", "-m", MODEL_URI, "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port), "--timeout", str(REQUEST_TIMEOUT)],
            cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_ping(url, proc, log, timeout=300)
        wav = example_wav(12.0)
        body = {"dataframe_split": {"columns": ["audio_bytes"], "data": [[base64.b64encode(wav).decode()]]}}
        started = time.monotonic()
        resp = requests.post(f"{url}/invocations", json=body, timeout=REQUEST_TIMEOUT)
        first_request = time.monotonic() - started
        assert resp.status_code == 200, resp.text[:2000]
        served = resp.json()["predictions"][0]
        _record(seconds_to_first_answer=round(first_request, 1))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)

    scorer = load_scorer(done["model"], done["version"], tracking_uri=srv.uri, device="cpu")
    local = scorer.score([wav])[0]
    assert served["error"] is None and local["error"] is None
    assert served["score"] == pytest.approx(local["score"], abs=1e-5)
    assert served["percentile"] == pytest.approx(local["percentile"], abs=1e-9)
    assert [t for t, _ in json.loads(served["top_tags"])] == [t for t, _ in local["top_tags"]]
