"""A real ``mlflow server`` for tests: started on a free loopback port, stopped afterwards.

Use it as a context manager or through a module-scoped fixture (starting takes ~10 s)::

    from tests.helpers.mlflow import mlflow_server

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with mlflow_server(tmp_path_factory.mktemp("mlflow")) as srv:
            yield srv

``srv.uri`` is the tracking URI; in auth mode ``srv.admin`` holds the admin's credentials and
``srv.create_user(name, password)`` / ``srv.grant(user, model, "EDIT")`` manage users.
``srv.as_user(name, password)`` sets the process-global MLflow client credentials for a block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from registry.server import (
    ServerConfig,
    ServerInfo,
    free_port,
    start_server,
    stop_server,
)

ADMIN_USER = "admin"
ADMIN_PASSWORD = "hitsong-test-admin-pw"  # >= 12 characters, not MLflow's old default


@contextmanager
def as_user(username: str, password: str) -> Iterator[None]:
    """MLflow's process-global client credentials (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) for a block."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict(zip(keys, (username, password), strict=True)))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class TestServer:
    """A running test server."""

    __test__ = False  # not a test class for pytest

    info: ServerInfo
    mlflow_dir: Path
    auth: bool

    @property
    def uri(self) -> str:
        return self.info.uri

    @property
    def admin(self) -> tuple[str, str]:
        return ADMIN_USER, ADMIN_PASSWORD

    def as_user(self, username: str, password: str) -> AbstractContextManager[None]:
        """Set ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (process-global) for the block."""
        return as_user(username, password)

    def _auth_client(self):
        from mlflow.server import get_app_client

        return get_app_client("basic-auth", tracking_uri=self.uri)

    def create_user(self, username: str, password: str) -> None:
        """Create a basic-auth user (as the admin)."""
        with self.as_user(*self.admin):
            self._auth_client().create_user(username=username, password=password)

    def grant(self, username: str, model: str, permission: str = "EDIT") -> None:
        """Give ``username`` ``permission`` (READ/USE/EDIT/MANAGE) on registered model ``model``."""
        with self.as_user(*self.admin):
            self._auth_client().grant_user_permission(username, "registered_model", model, permission)


@contextmanager
def mlflow_server(tmp_path: Path, *, auth: bool = False, allowed_hosts: tuple[str, ...] = ()) -> Iterator[TestServer]:
    """Start a real ``mlflow server`` (SQLite under ``tmp_path``) and stop it on exit.

    ``allowed_hosts``: names besides localhost the server answers to (``hitsong server --allowed-hosts``).
    """
    mlflow_dir = Path(tmp_path) / "mlflow"
    config = ServerConfig(mlflow_dir=mlflow_dir, port=free_port(), auth=auth, allowed_hosts=allowed_hosts, workers=1)
    extra = {"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD} if auth else None
    info = start_server(config, reuse=False, extra_env=extra)
    try:
        yield TestServer(info=info, mlflow_dir=mlflow_dir, auth=auth)
    finally:
        stop_server(mlflow_dir)
