"""The team stack of ``compose.yaml``, run outside Docker with the same commands and environment.

Docker cannot run on the development machines, so this module takes ``compose.yaml`` as data:
it checks what the file itself promises (no secret written in it, auth on, allow-listed host
names, health checks, loopback-only ports, a non-root image), writes the secrets with
``scripts/compose-secrets.sh``, starts a throwaway PostgreSQL cluster in place of the
``postgres`` service (same user, database and password file), and then runs the ``mlflow`` and
``dashboard`` services' own ``command`` lines with their own ``environment``; only what Docker
would provide is mapped (``/run/secrets/*`` to the secret files, ``/data`` to a temp folder, the
service names ``postgres`` and ``mlflow`` to loopback addresses, the fixed ports to free ones).

Against those real servers: MLflow answers to ``Host: mlflow:5000`` (the name the dashboard
uses inside compose) and refuses any other name; anonymous requests need auth; no password is
in any file, log or command line the stack writes; a tiny subset is trained, registered,
promoted by an editor and read back through the dashboard's data layer as its read-only service
user, from a store that really is PostgreSQL; the dashboard answers only to its names; and each
service's health-check command passes.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from registry.server import free_port
from tests.helpers.mlflow import as_user
from tests.helpers.postgres import postgres_cluster

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
PUBLIC_NAME = "hitsong.example.org"  # what a team sets in HITSONG_PUBLIC_HOSTS
SECRETLIKE = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|_KEY_", re.IGNORECASE)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}`` / ``${NAME:-default}`` substitution."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or (m[2] or ""), text)


# ------------------------------------------------------------------- what the files promise


def test_compose_writes_no_secret_and_reads_them_as_docker_secrets():
    text = (ROOT / "compose.yaml").read_text()
    assert "mlflow:mlflow@" not in text and "POSTGRES_PASSWORD:" not in text
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URI with a password is written in compose.yaml"
    declared = COMPOSE["secrets"]
    for name, spec in declared.items():
        assert set(spec) == {"file"} and spec["file"].startswith("./secrets/"), name
    for service, spec in SERVICES.items():
        for key, value in (spec.get("environment") or {}).items():
            if SECRETLIKE.search(key):
                assert key.endswith("_FILE"), f"{service}: {key} holds a secret in compose.yaml"
                secret = str(value).removeprefix("/run/secrets/")
                assert str(value).startswith("/run/secrets/") and secret in spec["secrets"], (service, key)
                assert secret in declared


def test_compose_runs_mlflow_with_auth_on_allow_listed_names_and_loopback_ports():
    mlflow = shlex.split(SERVICES["mlflow"]["command"])
    assert "--auth" in mlflow and "--reader" in mlflow
    hosts = mlflow[mlflow.index("--allowed-hosts") + 1].split(",")
    assert "mlflow" in hosts and "${HITSONG_PUBLIC_HOSTS:-localhost}" in hosts
    assert "--backend-store-uri" in mlflow and "@" in mlflow[mlflow.index("--backend-store-uri") + 1]
    dashboard_uri = SERVICES["dashboard"]["environment"]["MLFLOW_TRACKING_URI"]
    assert dashboard_uri.split("//")[1].split(":")[0] in hosts
    for name, spec in SERVICES.items():
        assert "healthcheck" in spec, f"{name} has no health check"
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback"


def test_the_image_runs_unprivileged_with_a_health_check_and_a_dockerignore():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines.index(f"USER {users[-1]}") > max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in ("secrets", ".env", ".git", ".venv", "hitsong-data"):
        assert entry in ignored


# ------------------------------------------------------------------- the stack, outside Docker


def _service_env(service: str, mapping: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """The process environment: ours without client credentials, plus the service's, paths mapped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HITSONG_"))}
    for key, value in (SERVICES[service].get("environment") or {}).items():
        value = str(value)
        for old, new in mapping.items():
            value = value.replace(old, new)
        env[key] = value
    return {**env, **extra}


def _service_argv(service: str, env: dict[str, str], mapping: dict[str, str]) -> list[str]:
    text = _interpolate(" ".join(SERVICES[service]["command"].split()), env)
    for old, new in mapping.items():
        text = text.replace(old, new)
    argv = shlex.split(text)
    assert argv[0] == "hitsong"
    return [sys.executable, "-m", "hitsong", *argv[1:]]


def _healthcheck(service: str, port_map: dict[str, str]) -> list[str]:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python"
    code = test[3]
    for old, new in port_map.items():
        code = code.replace(old, new)
    return [sys.executable, test[2], code]


def _wait_healthy(cmd: list[str], proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the service exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0:
            return
        time.sleep(1.0)
    raise AssertionError(f"the health check never passed:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """compose.yaml's postgres (a throwaway cluster), mlflow and dashboard, started outside Docker."""
    tmp = tmp_path_factory.mktemp("stack")
    secrets_dir = tmp / "secrets"
    subprocess.run(["bash", str(ROOT / "scripts" / "compose-secrets.sh"), str(secrets_dir)], check=True, timeout=60)
    secret_files = {name: secrets_dir / Path(spec["file"]).name for name, spec in COMPOSE["secrets"].items()}
    secrets = {name: path.read_text().strip() for name, path in secret_files.items()}
    pg_env = SERVICES["postgres"]["environment"]
    with postgres_cluster(
        role=pg_env["POSTGRES_USER"], password=secrets["postgres_password"], database=pg_env["POSTGRES_DB"]
    ) as pg:
        mlflow_port, dashboard_port = free_port(), free_port()
        mapping = {f"/run/secrets/{name}": str(path) for name, path in secret_files.items()}
        mapping |= {"/data": str(tmp / "data"), "postgres:5432": f"127.0.0.1:{pg.port}",
                    "mlflow:5000": f"127.0.0.1:{mlflow_port}"}  # fmt: skip
        compose_vars = {"HITSONG_PUBLIC_HOSTS": PUBLIC_NAME}
        logs, procs = {}, {}
        try:
            for service, port, old in (("mlflow", mlflow_port, "5000"), ("dashboard", dashboard_port, "8501")):
                env = _service_env(service, mapping, compose_vars)
                argv = _service_argv(service, compose_vars, {**mapping, f"--port {old}": f"--port {port}"})
                logs[service] = tmp / f"{service}.out"
                with logs[service].open("wb") as out:
                    procs[service] = subprocess.Popen(
                        argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True
                    )
                _wait_healthy(_healthcheck(service, {f"127.0.0.1:{old}": f"127.0.0.1:{port}"}), procs[service],
                              logs[service])  # fmt: skip
            yield {
                "pg": pg, "secrets": secrets, "procs": procs, "logs": logs, "home": tmp / "data",
                "mlflow": f"http://127.0.0.1:{mlflow_port}", "mlflow_port": mlflow_port,
                "dashboard": f"http://127.0.0.1:{dashboard_port}", "dashboard_port": dashboard_port,
            }  # fmt: skip
        finally:
            for proc in reversed(list(procs.values())):
                _stop(proc)


def _api(stack, path: str, *, host: str, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.get(f"{stack['mlflow']}/api/2.0/mlflow/{path}", headers={"Host": host}, auth=auth, timeout=30)


def test_mlflow_answers_its_compose_name_and_refuses_others(stack):
    port = stack["mlflow_port"]
    reader = ("dashboard", stack["secrets"]["dashboard_password"])
    assert _api(stack, "experiments/search?max_results=1", host="mlflow:5000").status_code == 401  # auth is on
    for name in ("mlflow:5000", f"{PUBLIC_NAME}:443", f"localhost:{port}"):
        assert _api(stack, "experiments/search?max_results=1", host=name, auth=reader).status_code == 200, name
    refused = _api(stack, "experiments/search?max_results=1", host="evil.example", auth=reader)
    assert refused.status_code == 403 and "Invalid Host header" in refused.text


def test_no_password_in_any_file_log_or_command_line_of_the_stack(stack):
    secrets = [s.encode() for s in stack["secrets"].values()]
    mlflow_dir = stack["home"] / "mlflow"
    written = [p for p in mlflow_dir.rglob("*") if p.is_file()] + list(stack["logs"].values())
    assert any(p.name == "server.json" for p in written) and any(p.name == "server.log" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"a password is written in {path}"
    info = yaml.safe_load((mlflow_dir / "server.json").read_text())
    assert info["store_uri"] == stack["pg"].uri() and info["auth"] is True
    pids = [p for proc in stack["procs"].values() for p in _descendants(proc.pid)]
    assert len(pids) >= 4  # hitsong server, mlflow server, its uvicorn worker, the dashboard
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        for secret in secrets:
            assert secret not in cmdline, f"a password is on the command line of pid {pid}"


@pytest.fixture(scope="module")
def champion(stack):
    """As admin: train a tiny subset and register it; alice (EDIT) promotes it."""
    from hitsong.audio import AudioConfig
    from hitsong.models.config import ModelConfig
    from hitsong.training.config import TrainConfig
    from hitsong.training.experiment import train_subset
    from registry.models import promote, register
    from registry.tracking import MlflowRunLogger
    from tests.helpers.training import planted_splits

    uri, admin = stack["mlflow"], ("admin", stack["secrets"]["mlflow_admin_password"])
    audio = AudioConfig(n_mels=16, seconds=4.0)
    data = planted_splits(n_train=30, n_val=10, n_test=10, n_mels=16, n_frames=audio.n_frames, n_tags=50)
    with as_user(*admin):
        logger = MlflowRunLogger.for_subset("team", "pg", tracking_uri=uri)
        train_subset(
            data, subset="pg", logger=logger, methods=["m1"], model_config=ModelConfig.tiny(n_mels=16, n_tags=50),
            train_config=TrainConfig.for_profile("tiny", repeats=1), device="cpu", audio_config=audio,
            tagger="MTT_musicnn",
        )  # fmt: skip
    done = register("pg", tracking_uri=uri, username=admin[0], password=admin[1])
    for user in ("alice", "bob"):
        body = {"username": user, "password": f"{user}-pw-12345"}
        resp = requests.post(f"{uri}/api/2.0/mlflow/users/create", json=body, auth=admin, timeout=30)
        assert resp.status_code == 200, resp.text
    grant = {
        "username": "alice",
        "resource_type": "registered_model",
        "resource_id": done["model"],
        "permission": "EDIT",
    }
    resp = requests.post(f"{uri}/api/3.0/mlflow/users/permissions/grant", json=grant, auth=admin, timeout=30)
    assert resp.status_code == 200, resp.text
    promote(done["model"], done["version"], "first team champion", tracking_uri=uri, username="alice",
            password="alice-pw-12345")  # fmt: skip
    return done


def test_a_team_trains_promotes_and_the_dashboard_reads_it_from_postgres(stack, champion):
    from dashboard import data
    from hitsong.errors import RegistryError
    from registry.models import promote

    uri = stack["mlflow"]
    with pytest.raises(RegistryError, match="user bob lacks permission"):
        promote(
            champion["model"], champion["version"], "bob", tracking_uri=uri, username="bob", password="bob-pw-12345"
        )
    with as_user("dashboard", stack["secrets"]["dashboard_password"]):  # the dashboard's read-only service user
        table = data.versions(uri)
        row = table[table["model"] == champion["model"]].iloc[0]
        assert row["aliases"] == "champion" and row["promoted_by"] == "alice"
        assert row["promotion_reason"] == "first team champion"
        scorer = data.load_scorer(uri, champion["model"], champion["version"], "cpu")  # artifacts through MLflow
        assert scorer.method == "m1"
        with pytest.raises(RegistryError, match="user dashboard lacks permission"):
            promote(champion["model"], champion["version"], "the service user tries", tracking_uri=uri)
    stored = stack["pg"].sql("SELECT name FROM registered_models;", database="mlflow").split()
    assert champion["model"] in stored  # the registry really lives in PostgreSQL


def test_the_dashboard_service_answers_its_names_only(stack):
    url, port = stack["dashboard"], stack["dashboard_port"]
    for host in (f"localhost:{port}", f"{PUBLIC_NAME}", f"127.0.0.1:{port}"):
        assert requests.get(url, headers={"Host": host}, timeout=30).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "mlflow"):
        resp = requests.get(f"{url}/_stcore/health", headers={"Host": host}, timeout=30)
        assert resp.status_code == 403, host
