"""``hitsong dashboard``: the command line it runs and its environment (no server started)."""

from __future__ import annotations

import pytest

from dashboard.commands import APP, UPLOAD_ENV, dashboard_command, dashboard_env
from hitsong.cli import parse_args
from hitsong.errors import ConfigError
from hitsong.settings import get_settings


def test_cli_parses_and_builds_the_streamlit_command(tmp_path):
    args = parse_args(["dashboard", "--port", "8601", "--max-upload-mb", "25"])
    assert (args.port, args.host, args.headless, args.max_upload_mb) == (8601, "127.0.0.1", True, 25)
    cmd = dashboard_command(port=args.port, host=args.host, headless=args.headless, max_upload_mb=args.max_upload_mb)
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP)]
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags["--server.port"] == "8601" and flags["--server.address"] == "127.0.0.1"
    assert flags["--server.fileWatcherType"] == "none"  # the watcher trips on torch modules
    assert flags["--server.maxUploadSize"] == "25" and flags["--server.headless"] == "true"
    env = dashboard_env(
        get_settings({"HITSONG_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:5999"}), max_upload_mb=25
    )
    assert (env["HITSONG_HOME"], env["MLFLOW_TRACKING_URI"], env[UPLOAD_ENV]) == (
        str(tmp_path),
        "http://127.0.0.1:5999",
        "25",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"port": 0}, "--port 0"), ({"max_upload_mb": 0}, "--max-upload-mb 0")]
)
def test_bad_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        dashboard_command(**kwargs)
