"""Start, reuse and stop a real ``mlflow server`` on the loopback interface.

The server keeps runs and the model registry in a SQL store (a SQLite file under
``Settings.mlflow_dir`` by default, or a PostgreSQL URI for a team) and serves artifacts from
``<mlflow_dir>/artifacts`` (``--artifacts-destination``): clients only ever talk HTTP to it
(DESIGN.md section 7). Its job runner is switched off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``;
it costs ~2 GB otherwise). With ``auth=True`` the server runs MLflow's ``basic-auth`` app.

A JSON pid file, ``<mlflow_dir>/server.json``, lets ``hitsong server --stop`` and the demo find
and reuse a server that is already running.

Secrets stay out of files, logs and command lines (docs/SECURITY.md): the backend store URI
reaches MLflow through its ``MLFLOW_BACKEND_STORE_URI`` environment variable, never its argv;
a password for it may come separately (``HITSONG_BACKEND_STORE_PASSWORD`` or its ``_FILE``
form, ``registry.secrets``) and is put into the URI in the server's environment only; the pid
file and every log line carry the URI with its password replaced by ``***``.

MLflow refuses requests whose ``Host`` header is not on its allow-list (DNS-rebinding
protection; by default localhost and private IP addresses): a server reached by a name, such
as ``mlflow`` inside a compose network, is started with ``allowed_hosts`` naming it, and a
client refused for its Host header gets a ``RegistryError`` that says so
(:func:`host_refused_error`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from hitsong.errors import ConfigError, RegistryError
from hitsong.settings import DEFAULT_MLFLOW_PORT
from registry.auth import ensure_reader, write_auth_config
from registry.secrets import BACKEND_PASSWORD, READER_PASSWORD, redact, resolve_secret_files, with_password

log = logging.getLogger(__name__)

PID_FILE = "server.json"
LOG_FILE = "server.log"

#: What MLflow 3.17 answers (403) to a request whose Host header is not on its allow-list.
INVALID_HOST_MARKER = "Invalid Host header"
#: Host names every server accepts besides the ones asked for: the machine itself.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Bind addresses that mean "every interface": clients on the machine use the loopback address.
WILDCARD_BINDS = ("0.0.0.0", "::", "")

#: Child processes this interpreter started, so that stopping one also reaps it.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class ServerConfig:
    """How to run the tracking server.

    Parameters
    ----------
    mlflow_dir : Path
        Folder for the SQLite store, the served artifacts, the log and the pid file.
    host : str
        Interface to bind; ``127.0.0.1`` keeps the server local.
    port : int
        TCP port, 1..65535.
    backend_store_uri : str or None
        SQLAlchemy URI of the run and registry store; ``None`` means
        ``sqlite:///<mlflow_dir>/mlflow.db``. A team passes ``postgresql://...``.
    auth : bool
        Run MLflow's ``basic-auth`` app (needs ``MLFLOW_AUTH_ADMIN_PASSWORD``).
    allowed_hosts : tuple of str
        Host names (or ``name:port``, MLflow's ``*`` patterns) clients may reach the server by,
        on top of :data:`LOCAL_HOSTS` and the bound address; empty keeps MLflow's default
        (localhost and private IP addresses). A name without a port is accepted on any port.
    reader : str or None
        Auth mode only: a read-only service user (the dashboard's reads) created, or given its
        password again, on every start; its password comes from ``HITSONG_READER_PASSWORD``
        (or ``HITSONG_READER_PASSWORD_FILE``). It gets the server's default permission, READ.
    workers : int
        Server worker processes (uvicorn); 1 is plenty for one team on one machine.
    startup_timeout : float
        Seconds to wait for ``/health`` before giving up.
    """

    mlflow_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_MLFLOW_PORT
    backend_store_uri: str | None = None
    auth: bool = False
    allowed_hosts: tuple[str, ...] = ()
    reader: str | None = None
    workers: int = 1
    startup_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not 1 <= int(self.port) <= 65535:
            raise ConfigError(f"port {self.port} is outside 1..65535; pick another --port")
        if int(self.workers) < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")
        if self.backend_store_uri is not None and not self.backend_store_uri.startswith(
            ("sqlite:", "postgresql", "mysql", "mssql")
        ):
            raise ConfigError(
                f"backend store URI {self.backend_store_uri!r} is not a SQL database URI; "
                "use sqlite:///PATH or postgresql://USER@HOST/DB (the file store is refused)"
            )
        for name in self.allowed_hosts:
            if not name or any(c in name for c in " ,/@"):
                raise ConfigError(f"allowed host {name!r} is not a host name (give names like mlflow, mlflow.example)")
        if self.reader is not None and not self.auth:
            raise ConfigError("a reader service user needs the authenticated server (--auth)")

    @property
    def store_uri(self) -> str:
        """The backend store URI actually used."""
        if self.backend_store_uri:
            return self.backend_store_uri
        return f"sqlite:///{(Path(self.mlflow_dir) / 'mlflow.db').resolve()}"

    @property
    def uri(self) -> str:
        """The tracking URI clients on this machine use (the loopback address for a wildcard bind)."""
        host = "127.0.0.1" if self.host in WILDCARD_BINDS else self.host
        return f"http://{host}:{self.port}"

    def host_patterns(self) -> list[str]:
        """MLflow's ``--allowed-hosts`` list (empty: MLflow's default).

        Each name without a port is accepted with any port (MLflow compares the whole Host
        header); the local names and the bound address are always added.
        """
        if not self.allowed_hosts:
            return []
        names = [*self.allowed_hosts, *LOCAL_HOSTS]
        if self.host not in WILDCARD_BINDS:
            names.append(f"[{self.host}]" if ":" in self.host else self.host)
        out: list[str] = []
        for name in names:
            has_port = name.rsplit("]", 1)[-1].count(":") == 1
            patterns = [name] if has_port or name == "*" else [name, f"{name.replace('[', '[[]', 1)}:*"]
            out.extend(p for p in patterns if p not in out)
        return out


@dataclass(frozen=True)
class ServerInfo:
    """A running server, as recorded in the pid file (``store_uri`` with its password as ``***``)."""

    pid: int
    uri: str
    host: str
    port: int
    store_uri: str
    auth: bool
    log_path: str
    started_at: float


def host_refused_error(uri: str) -> RegistryError:
    """The error for MLflow's 403 "Invalid Host header": the server does not accept the name we used."""
    host = urllib.parse.urlsplit(uri).hostname or uri
    return RegistryError(
        f"the MLflow server at {uri} refused the Host header {host!r} (403 {INVALID_HOST_MARKER}: its "
        f"DNS-rebinding protection accepts only the names it was started with); start it with "
        f"`hitsong server --allowed-hosts {host}` (or add {host} to MLFLOW_SERVER_ALLOWED_HOSTS where it runs)"
    )


def check_api(uri: str, *, timeout: float = 5.0) -> None:
    """Raise ``RegistryError`` unless the server's REST API answers this client's Host header.

    ``/health`` answers even a refused Host header, so this asks the API itself (an anonymous
    search: 200 without auth, 401 with it; both mean "reachable").

    Raises
    ------
    RegistryError
        Nothing answers (naming ``hitsong server``), or the server refuses the Host header
        (:func:`host_refused_error`).
    """
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace")
        if exc.code == 403 and INVALID_HOST_MARKER in body:
            raise host_refused_error(uri) from None
        if exc.code < 500:
            return  # 401/403 of the auth app: reachable, the caller's credentials decide later
    except (urllib.error.URLError, OSError, ValueError):
        pass
    raise RegistryError(
        f"the MLflow tracking server at {uri} does not answer; start it with `hitsong server` "
        "(or set MLFLOW_TRACKING_URI to a running server)"
    )


def health_ok(uri: str, *, timeout: float = 2.0) -> bool:
    """``True`` when ``<uri>/health`` answers 200 (no credentials are needed for it)."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (for tests and ad-hoc servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def read_server_info(mlflow_dir: Path) -> ServerInfo | None:
    """The server recorded in ``mlflow_dir``'s pid file, or ``None`` (no file, unreadable)."""
    path = Path(mlflow_dir) / PID_FILE
    if not path.exists():
        return None
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable server pid file %s (%s)", path, exc)
        return None


def running_server(mlflow_dir: Path) -> ServerInfo | None:
    """The recorded server if its process is alive and it answers ``/health``; else ``None``.

    A stale pid file (process gone) is removed.
    """
    info = read_server_info(mlflow_dir)
    if info is None:
        return None
    if not pid_alive(info.pid):
        log.info("removing stale pid file for dead server pid %d", info.pid)
        (Path(mlflow_dir) / PID_FILE).unlink(missing_ok=True)
        return None
    return info if health_ok(info.uri) else None


def _server_env(config: ServerConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The MLflow server's environment from ``env`` (secrets already read from their files).

    The backend store URI (with its password, when one is given separately) goes here, as
    ``MLFLOW_BACKEND_STORE_URI``, so that it never appears on a command line; client
    credentials and hitsong's own secrets are dropped (the server needs none of them).
    """
    env = dict(env)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # The server never reports to itself; a client URI or client credentials are irrelevant to it.
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", READER_PASSWORD):
        env.pop(name, None)
    env["MLFLOW_BACKEND_STORE_URI"] = with_password(config.store_uri, env.pop(BACKEND_PASSWORD, None))
    env.pop("MLFLOW_SERVER_ALLOWED_HOSTS", None)  # the command line's --allowed-hosts decides
    if config.auth:
        if not env.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
            raise ConfigError(
                "the authenticated server needs an admin password: set MLFLOW_AUTH_ADMIN_PASSWORD "
                "(or MLFLOW_AUTH_ADMIN_PASSWORD_FILE; at least 12 characters) before `hitsong server --auth`"
            )
        # Signs login sessions only; a fresh one per start is fine for a local server. A team
        # server sets MLFLOW_FLASK_SERVER_SECRET_KEY itself so sessions survive restarts.
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        env.setdefault("MLFLOW_AUTH_CONFIG_PATH", str(write_auth_config(config.mlflow_dir)))
    return env


def server_command(config: ServerConfig) -> list[str]:
    """The ``mlflow server`` command line for ``config`` (no store URI: it is in the environment)."""
    artifacts = (Path(config.mlflow_dir) / "artifacts").resolve()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", config.host,
        "--port", str(config.port),
        "--workers", str(config.workers),
        "--serve-artifacts",
        "--artifacts-destination", artifacts.as_uri(),
    ]  # fmt: skip
    if patterns := config.host_patterns():
        cmd += ["--allowed-hosts", ",".join(patterns)]
    if config.auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def start_server(config: ServerConfig, *, reuse: bool = True, extra_env: Mapping[str, str] | None = None) -> ServerInfo:
    """Start ``mlflow server`` in its own process group and wait until ``/health`` answers.

    Parameters
    ----------
    config : ServerConfig
        Where and how to run.
    reuse : bool
        Return the server already recorded in ``config.mlflow_dir`` when it is alive.
    extra_env : Mapping, optional
        Environment for the server on top of ``os.environ`` (e.g. ``MLFLOW_AUTH_ADMIN_PASSWORD``).

    Returns
    -------
    ServerInfo
        The pid, URI and log file of the running server (also written to the pid file).

    Raises
    ------
    RegistryError
        The port is taken by something else, or the server died or did not answer in time
        (the message quotes the end of its log).
    ConfigError
        Auth mode without ``MLFLOW_AUTH_ADMIN_PASSWORD``, a reader without its password, or an
        unreadable secret file (``registry.secrets``).
    """
    mlflow_dir = Path(config.mlflow_dir)
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    if reuse and (info := running_server(mlflow_dir)) is not None:
        log.info("MLflow server already running (pid %d); UI at %s", info.pid, info.uri)
        return info
    if _port_in_use(config.host, config.port):
        raise RegistryError(
            f"port {config.port} on {config.host} is already in use by another process; stop it or pass another --port"
        )
    given = resolve_secret_files({**os.environ, **(extra_env or {})})
    env = _server_env(config, given)
    reader_password = given.get(READER_PASSWORD)
    if config.reader and not reader_password:
        raise ConfigError(
            f"the reader user {config.reader!r} needs a password: set {READER_PASSWORD} (or {READER_PASSWORD}_FILE)"
        )
    log_path = mlflow_dir / LOG_FILE
    cmd = server_command(config)
    log.info("starting MLflow server on %s (store %s)", config.uri, redact(config.store_uri))
    with log_path.open("ab") as log_fh:
        proc = subprocess.Popen(
            cmd,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=mlflow_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + config.startup_timeout
    while not health_ok(config.uri, timeout=1.0):
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            raise RegistryError(
                f"mlflow server exited with code {proc.returncode} before answering on {config.uri}; "
                f"end of {log_path}:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            _terminate(proc.pid)
            raise RegistryError(
                f"mlflow server did not answer {config.uri}/health within {config.startup_timeout:.0f} s; "
                f"end of {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.25)
    if config.reader and reader_password:
        try:
            ensure_reader(
                config.uri, admin_password=env["MLFLOW_AUTH_ADMIN_PASSWORD"], username=config.reader,
                password=reader_password,
            )  # fmt: skip
        except RegistryError:
            _terminate(proc.pid)
            raise
    info = ServerInfo(
        pid=proc.pid,
        uri=config.uri,
        host=config.host,
        port=config.port,
        store_uri=redact(config.store_uri),
        auth=config.auth,
        log_path=str(log_path),
        started_at=time.time(),
    )
    (mlflow_dir / PID_FILE).write_text(json.dumps(asdict(info), indent=1))
    log.info("MLflow server ready (pid %d): UI at %s, log %s", proc.pid, config.uri, log_path)
    return info


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _terminate(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``timeout`` s, reap our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if not pid_alive(pid):
            break
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("server process %d did not exit", pid)


def stop_server(mlflow_dir: Path) -> bool:
    """Stop the server recorded in ``mlflow_dir``; ``False`` when none was running."""
    mlflow_dir = Path(mlflow_dir)
    info = read_server_info(mlflow_dir)
    if info is None:
        return False
    alive = pid_alive(info.pid)
    if alive:
        log.info("stopping MLflow server pid %d (%s)", info.pid, info.uri)
        _terminate(info.pid)
    (mlflow_dir / PID_FILE).unlink(missing_ok=True)
    return alive
