"""``hitsong dashboard``: start the Streamlit app against the configured home and tracking server.

``dashboard_command`` and ``dashboard_env`` are public so that ``hitsong demo run`` and the
end-to-end test start exactly the same server as the command does; ``wait_until_ready`` polls
Streamlit's health endpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from hitsong.errors import ConfigError, HitsongError
from hitsong.settings import DEFAULT_DASHBOARD_PORT, Settings, get_settings

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "app.py"
#: Largest upload on the Predict page, MB (a 4-minute 320 kbit/s MP3 is ~10 MB; WAV ~40 MB).
DEFAULT_MAX_UPLOAD_MB = 100
UPLOAD_ENV = "HITSONG_MAX_UPLOAD_MB"


def dashboard_command(
    *,
    port: int = DEFAULT_DASHBOARD_PORT,
    host: str = "127.0.0.1",
    headless: bool = True,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
) -> list[str]:
    """The ``streamlit run`` command line (file watcher off: it trips on torch modules)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is outside 1..65535")
    if max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb {max_upload_mb} must be at least 1")
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true" if headless else "false",
        "--server.fileWatcherType", "none",
        "--server.maxUploadSize", str(max_upload_mb),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def dashboard_env(
    settings: Settings, *, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, tracking_uri: str | None = None
) -> dict[str, str]:
    """The environment of the app: the resolved home, the tracking URI (default the settings'), the upload limit."""
    env = dict(os.environ)
    env["HITSONG_HOME"] = str(settings.home)
    env["MLFLOW_TRACKING_URI"] = tracking_uri or settings.tracking_uri
    env[UPLOAD_ENV] = str(max_upload_mb)
    return env


def wait_until_ready(url: str, *, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``<url>/_stcore/health`` until Streamlit answers; raise ``HitsongError`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise HitsongError(f"the dashboard exited with code {process.returncode} before answering on {url}")
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/_stcore/health", timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise HitsongError(f"the dashboard did not answer on {url} within {timeout:.0f} s")


def run(args: argparse.Namespace) -> int:
    """Start the app in the foreground until Ctrl-C."""
    settings = get_settings()
    cmd = dashboard_command(port=args.port, host=args.host, headless=args.headless, max_upload_mb=args.max_upload_mb)
    log.info(
        "dashboard at http://%s:%d (home %s, tracking %s)", args.host, args.port, settings.home, settings.tracking_uri
    )
    return subprocess.call(cmd, env=dashboard_env(settings, max_upload_mb=args.max_upload_mb))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hitsong dashboard``."""
    p = sub.add_parser(
        "dashboard", help="start the Streamlit dashboard (experiments, data, genres, predict, catalog, registry)"
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_DASHBOARD_PORT, help=f"TCP port (default {DEFAULT_DASHBOARD_PORT})"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, local only)")
    p.add_argument(
        "--headless",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="do not open a browser (default); --no-headless opens one",
    )
    p.add_argument(
        "--max-upload-mb",
        type=int,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest audio upload on the Predict page, MB (default {DEFAULT_MAX_UPLOAD_MB})",
    )
    p.set_defaults(func=run)
