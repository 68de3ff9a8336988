"""The registry client and run context against one real ``mlflow server``.

- Runs carry MLflow's context tags: the user, the source, and the git commit of the checkout
  that holds hitsong's code (compared with ``git rev-parse HEAD`` run here).
- ``RegistryApi`` pages through every result (a page size of 2 over 7 models, 5 experiments,
  5 versions), retries transient failures through MLflow's HTTP client (a proxy in front of the
  real server answers 503 to its first requests) and never retries a version creation.
- ``hitsong register`` gives the ``challenger`` alias on request, and every version's
  description is its model card.
"""

from __future__ import annotations

import getpass
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest
import requests

from hitsong.cli import main
from hitsong.errors import ConfigError, RegistryError
from hitsong.store.read import split_frame
from hitsong.training.config import TrainConfig
from registry.api import RegistryApi
from registry.modelcard import departures, paper_params
from registry.models import list_versions, register
from registry.tracking import MlflowRunLogger
from tests.helpers.catalog import MODEL, log_compared_versions
from tests.helpers.dashboard import seed_store
from tests.helpers.mlflow import mlflow_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("client")) as srv:
        yield srv


# ------------------------------------------------------------------------------ run context
def _head(folder: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_runs_carry_mlflows_context_tags(server, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    logger = MlflowRunLogger("context", tracking_uri=server.uri)
    handle = logger.start_run("a run")
    logger.end_run(handle)
    run = mlflow.MlflowClient(server.uri).get_run(handle.run_id)
    assert run.data.tags["mlflow.user"] == getpass.getuser() == run.info.user_id
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]
    commit = _head(ROOT / "hitsong")
    if commit is None:
        pytest.skip("hitsong's code is not in a git checkout here")
    assert run.data.tags["mlflow.source.git.commit"] == commit


def test_the_tracking_user_is_the_runs_user(server, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")  # the server has no auth: it ignores the header
    logger = MlflowRunLogger("context", tracking_uri=server.uri)
    handle = logger.start_run("ana's run")
    logger.end_run(handle)
    run = mlflow.MlflowClient(server.uri).get_run(handle.run_id)
    assert run.data.tags["mlflow.user"] == "ana" == run.info.user_id


# ------------------------------------------------------------------------------ paging
def test_searches_page_through_everything(server) -> None:
    api = RegistryApi(server.uri, page_size=2)
    for i in range(7):
        api.ensure_model(f"paging-{i}")
    for i in range(5):
        mlflow.MlflowClient(server.uri).create_experiment(f"paging-exp-{i}")
    run = mlflow.MlflowClient(server.uri).create_run(mlflow.MlflowClient(server.uri).create_experiment("paging-runs"))
    for _ in range(5):
        api.create_version("paging-0", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                           model_id=None, tags={})  # fmt: skip
    everything = RegistryApi(server.uri)
    models = {m["name"] for m in api.search_models()}
    assert {f"paging-{i}" for i in range(7)} <= models and models == {m["name"] for m in everything.search_models()}
    experiments = {e["name"] for e in api.search_experiments()}
    assert {f"paging-exp-{i}" for i in range(5)} <= experiments
    assert sorted(int(v["version"]) for v in api.search_versions("paging-0")) == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------------------ retries
class _Flaky(BaseHTTPRequestHandler):
    """Forwards to the real server, after answering 503 to the first ``fail_first`` requests."""

    backend = ""
    fail_first = 0
    seen: list[str] = []  # noqa: RUF012 - one list per test, reset by _proxy

    def _handle(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if len(type(self).seen) <= type(self).fail_first:
            self.send_response(503)
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        resp = requests.request(self.command, self.backend + self.path, data=body, headers=headers, timeout=30)
        self.send_response(resp.status_code)
        self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


def _proxy(backend: str, fail_first: int) -> tuple[ThreadingHTTPServer, str]:
    _Flaky.backend, _Flaky.fail_first, _Flaky.seen = backend, fail_first, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def test_transient_failures_are_retried_and_creations_are_not(server) -> None:
    httpd, uri = _proxy(server.uri, fail_first=2)
    try:
        assert RegistryApi(uri, retries=3).get_model("paging-1")["name"] == "paging-1"
        assert len(_Flaky.seen) == 3  # two 503s, then the answer
        _Flaky.seen, _Flaky.fail_first = [], 1
        with pytest.raises(RegistryError, match="503"):
            RegistryApi(uri, retries=3).create_version("paging-1", source="runs:/x/model", run_id="x",
                                                       model_id=None, tags={})  # fmt: skip
        assert len(_Flaky.seen) == 1  # sent once, never repeated
        _Flaky.seen, _Flaky.fail_first = [], 5
        with pytest.raises(RegistryError, match="503"):
            RegistryApi(uri, retries=0).get_model("paging-1")
    finally:
        httpd.shutdown()
    assert RegistryApi(server.uri).search_versions("paging-1") == []


def test_a_down_server_is_named_without_minutes_of_waiting(server) -> None:
    from registry.server import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match=f"{uri} does not answer.*hitsong server"):
        RegistryApi(uri, retries=0).search_models()


# ------------------------------------------------------------------------------ challenger and model card
@pytest.fixture(scope="module")
def compared(server, tmp_path_factory):
    home = tmp_path_factory.mktemp("card")
    seed_store(home)
    test = split_frame(home / "hitsong.duckdb", "western", "test")
    song_ids, truth = test["song_id"].tolist(), test["hit_score"].to_numpy()
    return log_compared_versions(server.uri, home, song_ids=song_ids, truth=truth)


def test_champion_and_challenger_and_their_model_cards(server, compared) -> None:
    rows = {r["version"]: r for r in list_versions(MODEL, tracking_uri=server.uri)}
    champion, challenger = rows[compared["champion"]], rows[compared["challenger"]]
    assert champion["aliases"] == ["champion"] and champion["method"] == "m6"
    assert challenger["aliases"] == ["challenger"] and challenger["method"] == "m1"
    card = champion["description"]
    test_rho = champion["metrics"]["test_spearman_rho"]
    assert f"| Spearman rho | {champion['metrics']['val_spearman_rho']:.4f} | {test_rho:.4f} |" in card
    assert "method rank 1 of 2" in card and "tagger MTT_musicnn hearing the middle 60.0 s" in card
    demo_epochs = TrainConfig.for_profile("demo").max_epochs
    assert f"train.max_epochs {demo_epochs} (paper 150)" in card and "JYnet" in card
    assert "hitsong train --subset western --methods m6 --profile demo --repeats 3 --tagger MTT_musicnn " in card
    assert "--dataset compare" in card and "hitsong features --subset western --tagger MTT_musicnn" in card
    assert "Predictions: Hit score on the scale of the western training catalogue" in card
    assert "not a probability" in card


def test_register_command_gives_the_challenger_alias(server, compared, capsys) -> None:
    code = main(["register", "--subset", "western", "--rank", "2", "--alias", "challenger", "--experiment",
                 "hitsong/compare/western", "--tracking-uri", server.uri])  # fmt: skip
    assert code == 0
    import json

    new = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["version"]: r for r in list_versions(MODEL, tracking_uri=server.uri)}
    assert rows[new["version"]]["aliases"] == ["challenger"] and rows[compared["challenger"]]["aliases"] == []
    assert rows[compared["champion"]]["aliases"] == ["champion"]
    with pytest.raises(ConfigError, match="hitsong promote"):
        register("western", experiment="hitsong/compare/western", tracking_uri=server.uri, alias="champion")


def test_departures_are_the_params_that_differ_from_the_paper() -> None:
    paper = {**paper_params(), "data.n_train": "8000", "data.n_val": "1000", "data.n_test": "1000"}
    assert len(departures(paper)) == 1 and "JYnet" in departures(paper)[0]  # only the tagger
    changed = {**paper, "train.lr": "0.02", "audio.tagger_seconds": "15.0", "train.cpu_threads": "1"}
    text = " ".join(departures(changed))
    assert "train.lr 0.02 (paper 0.005)" in text and "audio.tagger_seconds 15.0 (paper 60.0)" in text
    assert "cpu_threads" not in text  # how it ran, not what it learned
    small = {**paper, "data.n_train": "70", "data.n_val": "15", "data.n_test": "15"}
    text = " ".join(departures(small))
    assert "100 songs of the subset (paper 10,000)" in text and "70/15/15" in text
