"""``hitsong dashboard``: the command line it runs and its environment (no server started)."""

from __future__ import annotations

import pytest

from dashboard.commands import APP, allowed_hosts, dashboard_command, dashboard_env, server_config
from hitsong.cli import parse_args
from hitsong.errors import ConfigError
from hitsong.settings import get_settings


def _flags(cmd: list[str]) -> list[tuple[str, str]]:
    return list(zip(cmd[5::2], cmd[6::2]))


def test_cli_parses_and_builds_the_streamlit_command(tmp_path):
    args = parse_args(["dashboard", "--port", "8601", "--max-upload-mb", "25", "--allowed-hosts", "hits.example"])
    assert (args.port, args.host, args.headless, args.max_upload_mb) == (8601, "127.0.0.1", True, 25)
    cmd = dashboard_command(
        port=args.port, host=args.host, headless=args.headless, max_upload_mb=args.max_upload_mb,
        extra_hosts=args.allowed_hosts.split(","),
    )  # fmt: skip
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP)]
    flags = _flags(cmd)
    single = dict(flags)
    assert single["--server.port"] == "8601" and single["--server.address"] == "127.0.0.1"
    assert single["--server.maxUploadSize"] == "25" and single["--server.headless"] == "true"
    hosts = [v for k, v in flags if k == "--server.allowedHosts"]
    assert hosts == ["localhost", "127.0.0.1", "::1", "hits.example"]  # the bound address is already local
    env = dashboard_env(get_settings({"HITSONG_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:5999"}))
    assert (env["HITSONG_HOME"], env["MLFLOW_TRACKING_URI"]) == (str(tmp_path), "http://127.0.0.1:5999")


def test_the_config_file_holds_the_defaults_the_command_does_not_repeat():
    """One place for the server settings: plain ``streamlit run dashboard/app.py`` reads the same file."""
    config = server_config()
    assert config["fileWatcherType"] == "none"  # the watcher trips on torch modules
    assert config["maxUploadSize"] == 100 and config["enableAgentApi"] is False
    cmd = dashboard_command()
    assert "--server.maxUploadSize" not in cmd and "--server.fileWatcherType" not in cmd
    assert allowed_hosts("10.1.2.3", ["a.example"]) == [*config["allowedHosts"], "10.1.2.3", "a.example"]
    assert allowed_hosts("0.0.0.0") == config["allowedHosts"]  # a wildcard bind is no host name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"port": 0}, "--port 0"), ({"max_upload_mb": 0}, "--max-upload-mb 0"), ({"extra_hosts": ["a b"]}, "not a host")],
)
def test_bad_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        dashboard_command(**kwargs)
