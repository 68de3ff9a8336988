"""``hitsong dashboard``: start the Streamlit app against the configured home and tracking server.

``dashboard_command`` and ``dashboard_env`` are public so that ``hitsong demo run`` and the
end-to-end tests start exactly the same server as the command does; ``wait_until_ready`` polls
Streamlit's health endpoint. The server's settings live in ``dashboard/.streamlit/config.toml``
(:data:`CONFIG`), which ``streamlit run dashboard/app.py`` reads too; the command passes only
what differs per start: port, address, the host allow-list and, when asked, the upload limit.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from hitsong.errors import ConfigError, HitsongError
from hitsong.settings import DEFAULT_DASHBOARD_PORT, Settings, get_settings

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "app.py"
#: The server settings, read by Streamlit beside ``APP`` whatever the working folder.
CONFIG = APP.parent / ".streamlit" / "config.toml"
#: Bind addresses that mean "every interface": local clients use the loopback address.
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def server_config() -> dict:
    """The ``[server]`` table of :data:`CONFIG`."""
    with CONFIG.open("rb") as fh:
        return dict(tomllib.load(fh)["server"])


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The host allow-list for a server bound to ``host``: the config's local names, ``host``, ``extra``."""
    names = [*server_config()["allowedHosts"]]
    if host not in WILDCARD_BINDS:
        names.append(host.strip("[]"))
    names.extend(h.strip() for h in extra if h.strip())
    return list(dict.fromkeys(names))


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine opens (the loopback address for a wildcard bind)."""
    return f"http://{'127.0.0.1' if host in WILDCARD_BINDS else host}:{port}"


def dashboard_command(
    *,
    port: int = DEFAULT_DASHBOARD_PORT,
    host: str = "127.0.0.1",
    headless: bool = True,
    max_upload_mb: int | None = None,
    extra_hosts: Sequence[str] = (),
) -> list[str]:
    """The ``streamlit run dashboard/app.py`` command line.

    Parameters
    ----------
    port, host : int, str
        Where to listen.
    headless : bool
        ``False`` opens a browser.
    max_upload_mb : int or None
        Largest upload on the Predict page, MB; ``None`` keeps the config file's.
    extra_hosts : sequence of str
        Host names to accept besides the local ones and ``host`` (:func:`allowed_hosts`).
    """
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is outside 1..65535")
    if max_upload_mb is not None and max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb {max_upload_mb} must be at least 1")
    for name in extra_hosts:
        if not name.strip() or any(c in name for c in " /@"):
            raise ConfigError(f"--allowed-hosts {name!r} is not a host name (e.g. dashboard.example.org)")
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true" if headless else "false",
    ]  # fmt: skip
    for name in allowed_hosts(host, extra_hosts):
        cmd += ["--server.allowedHosts", name]
    if max_upload_mb is not None:
        cmd += ["--server.maxUploadSize", str(max_upload_mb)]
    return cmd


def dashboard_env(settings: Settings, *, tracking_uri: str | None = None) -> dict[str, str]:
    """The environment of the app: the resolved home and the tracking URI (default the settings')."""
    env = dict(os.environ)
    env["HITSONG_HOME"] = str(settings.home)
    env["MLFLOW_TRACKING_URI"] = tracking_uri or settings.tracking_uri
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
    extra = [h for h in (args.allowed_hosts or "").split(",") if h.strip()]
    cmd = dashboard_command(
        port=args.port, host=args.host, headless=args.headless, max_upload_mb=args.max_upload_mb, extra_hosts=extra
    )
    log.info(
        "dashboard at %s (home %s, tracking %s; answers to %s)",
        local_url(args.host, args.port),
        settings.home,
        settings.tracking_uri,
        ", ".join(allowed_hosts(args.host, extra)),
    )
    return subprocess.call(cmd, env=dashboard_env(settings))


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
        "--allowed-hosts",
        default=None,
        help="comma-separated host names visitors reach the dashboard by, e.g. hitsong.example.org "
        "(localhost and the bound address are always accepted; any other Host header is refused)",
    )
    p.add_argument(
        "--headless",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="do not open a browser (default); --no-headless opens one",
    )
    p.add_argument(
        "--max-upload-mb",
        type=int,
        default=None,
        help="largest audio upload on the Predict page, MB (default: server.maxUploadSize in "
        "dashboard/.streamlit/config.toml, 100)",
    )
    p.set_defaults(func=run)
