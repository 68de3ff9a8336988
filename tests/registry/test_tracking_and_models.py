"""MLflow tracking, registry and the audio-scoring model, against one real ``mlflow server``.

One server per module (module-scoped fixture). Covers: parent/child runs, params, stepped
metrics and artifacts; a tiny real training run; runs never left RUNNING (exception, Ctrl-C,
SIGTERM, kill -9); register/promote/aliases/audit tags; the registered pyfunc scoring a WAV
to the same value as the in-process ``SongScorer``; ``hitsong predict`` with a corrupt file
and with the server down.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from hitsong.errors import ConfigError, RegistryError
from hitsong.tracking import run_scope
from hitsong.training.runlayout import experiment_name
from registry.server import ServerConfig, free_port, running_server, start_server
from registry.tracking import TAG_END_REASON, MlflowRunLogger
from tests.helpers.mlflow import mlflow_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("registry")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return mlflow.MlflowClient(server.uri)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """A 6-s WAV with a tone, a corrupt MP3 and an empty file."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("audio")
    sr = 22050
    t = np.arange(6 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    sf.write(d / "tone.wav", y.astype(np.float32), sr)
    (d / "corrupt.mp3").write_bytes(b"\xff\xfb\x90\x00" + bytes(range(256)) * 4)
    (d / "empty.wav").write_bytes(b"")
    return d


# ------------------------------------------------------------------------------- the server


def test_server_reuse_and_pid_file(server):
    info = running_server(server.mlflow_dir)
    assert info is not None and info.pid == server.info.pid and info.uri == server.uri
    again = start_server(ServerConfig(mlflow_dir=server.mlflow_dir, port=server.info.port))
    assert again.pid == server.info.pid  # reused, not a second server


def test_port_in_use_is_refused(server, tmp_path):
    with pytest.raises(RegistryError, match=f"port {server.info.port}.*in use"):
        start_server(ServerConfig(mlflow_dir=tmp_path / "other", port=server.info.port))


def test_bad_store_uri_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a SQL database URI"):
        ServerConfig(mlflow_dir=tmp_path, backend_store_uri=str(tmp_path / "mlruns"))


# ------------------------------------------------------------------------------- run logger


def test_parent_child_params_metrics_artifacts(server, client):
    logger = MlflowRunLogger.for_subset("unit", "alpha", tracking_uri=server.uri)
    with run_scope(logger, "m2 audio+CNN", tags={"method": "m2"}) as parent:
        logger.log_params(parent, {"model.n_mels": 16, "train.lr": 0.005})
        with run_scope(logger, "m2 rep 0", parent=parent, tags={"data_version": "abc123"}) as child:
            for epoch, loss in enumerate([1.0, 0.5, 0.25]):
                logger.log_metrics(child, {"train_loss": loss, "val_loss": 2 * loss}, step=epoch)
            logger.log_metrics(child, {"test_ndcg_at_k": 0.42})
            logger.log_table(
                child, "predictions", pd.DataFrame({"song_id": ["a", "b"], "true": [1.0, 2.0], "predicted": [1.5, 1.7]})
            )
    exp = client.get_experiment_by_name(experiment_name("unit", "alpha"))
    assert exp.tags["hitsong.subset"] == "alpha"
    p, c = client.get_run(parent.run_id), client.get_run(child.run_id)
    assert c.data.tags["mlflow.parentRunId"] == parent.run_id
    assert c.data.tags["data_version"] == "abc123"
    assert p.data.params == {"model.n_mels": "16", "train.lr": "0.005"}
    history = client.get_metric_history(child.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0), (2, 0.5)]
    assert c.data.metrics["test_ndcg_at_k"] == pytest.approx(0.42)
    assert [a.path for a in client.list_artifacts(child.run_id)] == ["predictions.csv"]
    local = client.download_artifacts(child.run_id, "predictions.csv")
    assert pd.read_csv(local)["predicted"].tolist() == [1.5, 1.7]
    assert p.info.status == c.info.status == "FINISHED"


def test_exception_and_ctrl_c_end_runs(server, client):
    logger = MlflowRunLogger.for_subset("unit", "beta", tracking_uri=server.uri)
    with pytest.raises(ZeroDivisionError), run_scope(logger, "parent") as parent:
        with run_scope(logger, "child", parent=parent) as child:
            1 / 0  # noqa: B018
    assert client.get_run(child.run_id).info.status == "FAILED"
    assert client.get_run(parent.run_id).info.status == "FAILED"
    with pytest.raises(KeyboardInterrupt), run_scope(logger, "interrupted") as run:
        raise KeyboardInterrupt
    assert client.get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed once no run is open


_TRAINER = textwrap.dedent(
    """
    import sys, time
    from hitsong.tracking import run_scope
    from registry.tracking import MlflowRunLogger
    logger = MlflowRunLogger.for_subset("unit", "gamma", tracking_uri=sys.argv[1])
    with run_scope(logger, "parent") as parent:
        with run_scope(logger, "child", parent=parent) as child:
            print(parent.run_id, child.run_id, flush=True)
            time.sleep(120)
    """
)


def _start_trainer(uri: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _TRAINER, uri], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    assert line, "the training subprocess died before starting its runs"
    return proc, line.split()


def test_sigterm_marks_killed_and_kill9_marked_failed_on_next_start(server, client):
    proc, run_ids = _start_trainer(server.uri)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert [client.get_run(r).info.status for r in run_ids] == ["KILLED", "KILLED"]

    proc, run_ids = _start_trainer(server.uri)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    assert [client.get_run(r).info.status for r in run_ids] == ["RUNNING", "RUNNING"]
    MlflowRunLogger.for_subset("unit", "gamma", tracking_uri=server.uri)  # the next training start
    for r in run_ids:
        run = client.get_run(r)
        assert run.info.status == "FAILED"
        assert f"process {proc.pid}" in run.data.tags[TAG_END_REASON]


def test_logger_names_a_down_server():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match=f"{uri}.*hitsong server"):
        MlflowRunLogger("x", tracking_uri=uri)


# ------------------------------------------------------------------- a tiny real training run

N_MELS, SECONDS = 16, 4.0


@pytest.fixture(scope="module")
def trained(server):
    """Tiny m1 and m4 training on planted data with 16 mel bands and 50 tags, logged to MLflow."""
    from hitsong.audio import AudioConfig
    from hitsong.models.config import ModelConfig
    from hitsong.training.config import TrainConfig
    from hitsong.training.experiment import train_subset
    from tests.helpers.training import planted_splits

    audio = AudioConfig(n_mels=N_MELS, seconds=SECONDS)
    data = planted_splits(n_train=40, n_val=10, n_test=20, n_mels=N_MELS, n_frames=audio.n_frames, n_tags=50)
    logger = MlflowRunLogger.for_subset("unit", "delta", tracking_uri=server.uri)
    result = train_subset(
        data, subset="delta", logger=logger, methods=["m1", "m4"],
        model_config=ModelConfig.tiny(n_mels=N_MELS, n_tags=50),
        train_config=TrainConfig.for_profile("tiny", repeats=2), device="cpu",
        audio_config=audio, tagger="MTT_musicnn",
    )  # fmt: skip
    return result


def test_training_run_structure(server, client, trained):
    exp = client.get_experiment_by_name(experiment_name("unit", "delta"))
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert {r.info.status for r in runs} == {"FINISHED"}
    kinds = {}
    for r in runs:
        kinds.setdefault(r.data.tags.get("hitsong.kind"), []).append(r)
    assert len(kinds["summary"]) == 1 and len(kinds["method"]) == 2 and len(kinds["repetition"]) == 4
    parents = {r.info.run_id: r for r in kinds["method"]}
    for child in kinds["repetition"]:
        parent = parents[child.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["method"] == child.data.tags["method"]
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) >= 2  # stepped per epoch
        assert "test_ndcg_at_k" in child.data.metrics
        paths = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "predictions.csv" in paths
    for parent in kinds["method"]:
        values = [c.data.metrics["test_ndcg_at_k"] for c in kinds["repetition"]
                  if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]  # fmt: skip
        assert parent.data.metrics["test_ndcg_at_k_mean"] == pytest.approx(np.mean(values))
    assert "table1.csv" in {a.path for a in client.list_artifacts(kinds["summary"][0].info.run_id)}


# ----------------------------------------------------------------------------------- registry


@pytest.fixture(scope="module")
def registered(server, trained):
    from registry.models import register

    first = register("delta", tracking_uri=server.uri)  # validation Spearman rho, the default
    second = register("delta", metric="kendall_tau", tracking_uri=server.uri)
    return first, second


def test_register_picks_best_method_then_best_repetition_on_validation(server, trained, registered):
    from registry.models import list_versions

    first, _ = registered
    means = {m: np.mean([r.val_metrics["spearman_rho"] for r in trained.reps if r.method == m]) for m in ("m1", "m4")}
    best_method = max(means, key=means.get)
    assert first["method"] == best_method
    # ... and within it the repetition with the best validation figure
    chosen = max((r for r in trained.reps if r.method == best_method), key=lambda r: r.val_metrics["spearman_rho"])
    assert first["value"] == pytest.approx(chosen.val_metrics["spearman_rho"])
    assert first["model"] == "hitsong-delta" and first["version"] == "1"
    tags = {r["version"]: r for r in list_versions("hitsong-delta", tracking_uri=server.uri)}["1"]["tags"]
    assert float(tags["metric.test_ndcg_at_k"]) == pytest.approx(chosen.metrics["ndcg_at_k"], abs=1e-5)
    assert "held-out" in tags["hitsong.selected_by"] and "validation spearman_rho" in tags["hitsong.selected_by"]


def test_promote_moves_aliases_and_writes_audit_tags(server, registered):
    from registry.models import list_versions, promote

    with pytest.raises(ConfigError, match="reason"):
        promote("hitsong-delta", 1, "   ", tracking_uri=server.uri)
    with pytest.raises(RegistryError, match="hitsong-delta v9"):
        promote("hitsong-delta", 9, "nope", tracking_uri=server.uri)
    out = promote("hitsong-delta", 1, "first model", tracking_uri=server.uri)
    assert out["previous"] is None
    out = promote("hitsong-delta", 2, "better tau", tracking_uri=server.uri)
    assert out["previous"] == "1"
    rows = {r["version"]: r for r in list_versions("hitsong-delta", tracking_uri=server.uri)}
    assert rows["2"]["aliases"] == ["champion"] and rows["1"]["aliases"] == ["challenger"]
    tags = rows["2"]["tags"]
    assert tags["hitsong.promotion_reason"] == "better tau"
    assert tags["hitsong.promoted_by"] == (os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser())
    assert tags["hitsong.promoted_at"].endswith("+00:00")
    assert json.loads(tags["hitsong.promotion_metrics"]).keys() >= {"metric.test_ndcg_at_k", "metric.val_kendall_tau"}
    assert "hitsong.demoted_at" in rows["1"]["tags"]
    assert set(rows["2"]["metrics"]) == {
        f"{s}_{m}" for s in ("val", "test") for m in ("recall_at_k", "ndcg_at_k", "kendall_tau", "spearman_rho")
    }
    assert rows["2"]["method"] in ("m1", "m4") and rows["2"]["run_id"]


def test_champion_pyfunc_scores_like_in_process_scorer(server, registered, audio_dir, tmp_path):
    from hitsong.scoring import SongScorer
    from registry.pyfunc import load_model

    model = load_model("models:/hitsong-delta@champion", device="cpu", tracking_uri=server.uri)
    wav = audio_dir / "tone.wav"
    out = model.predict(pd.DataFrame({"path": [str(wav), str(audio_dir / "corrupt.mp3")]}))
    assert list(out["name"]) == [str(wav), str(audio_dir / "corrupt.mp3")]
    assert pd.isna(out["error"].iloc[0]) and "corrupt.mp3" in out["error"].iloc[1]
    by_bytes = model.predict(pd.DataFrame({"audio_bytes": [wav.read_bytes()]}))

    wrapped = model.unwrap_python_model()  # the artifacts as downloaded from the registry
    bundle = wrapped.bundle_dir
    assert (bundle / "weights.safetensors").is_file() and Path(wrapped.tagger_weights).name == "MTT_musicnn.safetensors"
    local = SongScorer.from_bundle(bundle, device="cpu").score([wav])[0]
    assert out["score"].iloc[0] == pytest.approx(local["score"], rel=1e-6)
    assert by_bytes["score"].iloc[0] == pytest.approx(local["score"], rel=1e-6)
    assert out["percentile"].iloc[0] == pytest.approx(local["percentile"])
    assert [t for t, _ in json.loads(out["top_tags"].iloc[0])] == [t for t, _ in local["top_tags"]]
    uses_tags = model.unwrap_python_model().scorer.uses_tags
    assert pd.notna(out["tags"].iloc[0]) == uses_tags
    if uses_tags:
        assert len(json.loads(out["tags"].iloc[0])) == 50


def _run(argv: list[str]) -> int:
    """Run a sub-command in process without re-configuring logging (keeps pytest's capture)."""
    from hitsong.cli import parse_args

    args = parse_args(argv)
    return int(args.func(args) or 0)


def test_predict_cli_corrupt_file_in_batch(server, registered, audio_dir, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    files = [audio_dir / "tone.wav", audio_dir / "corrupt.mp3", audio_dir / "empty.wav"]
    code = _run(["predict", *map(str, files), "--subset", "delta", "--device", "cpu"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # some files failed
    assert [line["file"] for line in lines] == [str(f) for f in files]
    good, bad, empty = lines
    assert good["model"] == "hitsong-delta" and good["version"] == "2" and good["device"] == "cpu"
    assert 0.0 <= good["catalogue_percentile"] <= 100.0 and len(good["top_tags"]) == 5
    assert np.isfinite(good["hit_score"]) and good["catalogue"] == "delta"  # a hit score, not a probability
    assert "corrupt.mp3" in bad["error"] and "hit_score" not in bad
    assert "empty" in empty["error"]


def test_predict_cli_server_down(audio_dir):
    uri = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "hitsong", "predict", str(audio_dir / "tone.wav"), "--tracking-uri", uri],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert uri in proc.stderr and "hitsong server" in proc.stderr


def test_models_command_lists_aliases(server, registered, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    assert _run(["models", "--model", "hitsong-delta", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["version"] for r in rows] == ["2", "1"]
    assert rows[0]["aliases"] == ["champion"]
