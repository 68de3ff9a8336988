"""MLflow's basic-auth app as hitsong runs it: its config file, and the dashboard's read-only service user.

``hitsong server --auth`` writes :func:`write_auth_config` (users in ``basic_auth.db`` next to the
run store, default permission READ, admin ``admin``) unless ``MLFLOW_AUTH_CONFIG_PATH`` names
another; with ``--reader NAME`` it calls :func:`ensure_reader` once the server answers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hitsong.errors import RegistryError

log = logging.getLogger(__name__)

AUTH_DB = "basic_auth.db"
AUTH_INI = "basic_auth.ini"
ADMIN = "admin"


def write_auth_config(mlflow_dir: Path) -> Path:
    """The basic-auth config: its user database next to the run store, default READ."""
    ini = Path(mlflow_dir) / AUTH_INI
    db = (Path(mlflow_dir) / AUTH_DB).resolve()
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{db}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return ini


def ensure_reader(uri: str, *, admin_password: str, username: str, password: str, timeout: float = 10.0) -> None:
    """Create the read-only service user ``username``, or set its password when it exists.

    It gets the server's default permission (READ in hitsong's auth config). Called as the
    basic-auth admin.

    Raises
    ------
    RegistryError
        The server refused (the message names the user and the HTTP status, never a password).
    """
    import requests

    base = f"{uri.rstrip('/')}/api/2.0/mlflow/users"
    auth = (ADMIN, admin_password)
    body = {"username": username, "password": password}
    try:
        found = requests.get(f"{base}/get", params={"username": username}, auth=auth, timeout=timeout)
        if found.status_code == 200:
            resp = requests.patch(f"{base}/update-password", json=body, auth=auth, timeout=timeout)
        else:
            resp = requests.post(f"{base}/create", json=body, auth=auth, timeout=timeout)
    except requests.RequestException as exc:
        raise RegistryError(
            f"cannot reach {uri} to set up the reader user {username!r} ({exc.__class__.__name__})"
        ) from exc
    if resp.status_code != 200:
        raise RegistryError(
            f"the MLflow server at {uri} refused to set up the reader user {username!r} (HTTP {resp.status_code}); "
            "check MLFLOW_AUTH_ADMIN_PASSWORD"
        )
    log.info("reader user %r ready (READ by default)", username)
