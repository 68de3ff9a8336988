"""The rules behind the attack tests, checked case by case without servers.

Secrets from files, the store URI's password kept out of what is written, MLflow's host
patterns, the dashboard's Host matching, and the Predict page's per-session bounds.
"""

from __future__ import annotations

import pytest

from dashboard.guard import host_allowed, host_name
from dashboard.limits import PredictLimits, ResultCache, SessionBudget
from hitsong.errors import ConfigError
from registry.secrets import redact, resolve_secret_files, with_password
from registry.server import ServerConfig, _server_env, server_command

# ----------------------------------------------------------------------------- secrets


def test_secret_files_become_environment_values(tmp_path):
    (tmp_path / "admin").write_text("s3cret-admin\n")
    env = resolve_secret_files({"MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "admin"), "OTHER": "x"})
    assert env == {"MLFLOW_AUTH_ADMIN_PASSWORD": "s3cret-admin", "OTHER": "x"}  # one newline dropped, _FILE gone


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, {}, "cannot read the secret file"),
        ("", {}, "is empty"),
        ("x" * 5000, {}, "more than 4096 bytes"),
        ("pw", {"MLFLOW_TRACKING_PASSWORD": "also"}, "both MLFLOW_TRACKING_PASSWORD and"),
    ],
)
def test_bad_secret_files_are_named_without_their_content(tmp_path, content, extra, message):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        resolve_secret_files({"MLFLOW_TRACKING_PASSWORD_FILE": str(path), **extra})
    assert str(path) in str(err.value) and "xxxx" not in str(err.value)


def test_the_store_password_goes_into_the_servers_environment_only(tmp_path):
    config = ServerConfig(mlflow_dir=tmp_path, backend_store_uri="postgresql://mlflow@db:5432/mlflow")
    env = _server_env(config, {"HITSONG_BACKEND_STORE_PASSWORD": "p@ss:w/rd", "MLFLOW_TRACKING_PASSWORD": "client"})
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://mlflow:p%40ss%3Aw%2Frd@db:5432/mlflow"
    assert "HITSONG_BACKEND_STORE_PASSWORD" not in env and "MLFLOW_TRACKING_PASSWORD" not in env
    cmd = " ".join(server_command(config))
    assert "postgresql" not in cmd and "p@ss" not in cmd  # the URI is not on the command line at all


def test_uris_are_redacted_and_a_password_is_given_once():
    assert redact("postgresql://mlflow:pw@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert redact("sqlite:////data/mlflow.db") == "sqlite:////data/mlflow.db"
    with pytest.raises(ConfigError, match="already holds a password"):
        with_password("postgresql://mlflow:pw@db/mlflow", "other")
    with pytest.raises(ConfigError, match="names no user"):
        with_password("postgresql://db/mlflow", "pw")


# ----------------------------------------------------------------------------- host names


def test_mlflow_host_patterns_accept_any_port_of_the_named_hosts(tmp_path):
    assert ServerConfig(mlflow_dir=tmp_path).host_patterns() == []  # MLflow's own default
    patterns = ServerConfig(mlflow_dir=tmp_path, host="10.0.0.5", allowed_hosts=("mlflow", "mlflow.example:443"))
    assert patterns.host_patterns() == [
        "mlflow", "mlflow:*", "mlflow.example:443", "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*",
        "[::1]", "[[]::1]:*", "10.0.0.5", "10.0.0.5:*",
    ]  # fmt: skip
    assert ServerConfig(mlflow_dir=tmp_path, host="0.0.0.0").uri == f"http://127.0.0.1:{5000}"
    with pytest.raises(ConfigError, match="not a host name"):
        ServerConfig(mlflow_dir=tmp_path, allowed_hosts=("a,b",))
    with pytest.raises(ConfigError, match="needs the authenticated server"):
        ServerConfig(mlflow_dir=tmp_path, reader="dashboard")


@pytest.mark.parametrize(
    ("header", "allowed", "ok"),
    [
        ("localhost:8501", ["localhost"], True),
        ("LOCALHOST.", ["localhost"], True),
        ("[::1]:8501", ["::1"], True),
        ("evil.example", ["localhost", "127.0.0.1"], False),
        ("localhost.evil.example", ["localhost"], False),
        ("a.hits.example", ["*.hits.example"], True),
        ("hits.example", ["*.hits.example"], False),
        ("evilhits.example", ["*.hits.example"], False),
        ("anything", ["*"], True),
        ("127.0.0.1:8501", [], True),  # an empty list means the local names only
        ("evil.example", [], False),
        (None, ["*"], False),
        ("user@localhost", ["localhost"], False),
        ("localhost/path", ["localhost"], False),
        ("localhost:99999", ["localhost"], False),
    ],
)
def test_dashboard_host_matching(header, allowed, ok):
    assert host_allowed(header, allowed) is ok


def test_host_names_are_normalised():
    assert host_name("Hits.Example.:443") == "hits.example"
    assert host_name("x" * 300) is None


# ----------------------------------------------------------------------------- Predict limits


def test_predict_limits_from_the_environment():
    assert PredictLimits.from_env({}) == PredictLimits()
    assert PredictLimits.from_env({"HITSONG_PREDICT_MAX_FILES": "3", "HITSONG_PREDICT_SESSION_MB": "50"}) == (
        PredictLimits(max_files=3, session_mb=50)
    )
    with pytest.raises(ConfigError, match="HITSONG_PREDICT_MAX_FILES='many'"):
        PredictLimits.from_env({"HITSONG_PREDICT_MAX_FILES": "many"})
    with pytest.raises(ConfigError, match="at least 1"):
        PredictLimits(max_files=0)


def test_the_session_budget_counts_each_file_once():
    budget = SessionBudget(limit_bytes=100)
    assert budget.admit("a", 60) and budget.admit("a", 60)  # the same file again: no new cost
    assert not budget.admit("b", 50)  # 110 > 100
    assert budget.admit("c", 40) and budget.used_bytes == 100
    assert not budget.admit("d", 1)


def test_the_result_cache_keeps_the_most_recently_used():
    cache = ResultCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
