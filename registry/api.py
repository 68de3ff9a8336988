"""A small client of the MLflow tracking server's REST API with per-instance credentials.

MLflow's own client reads credentials from process-global environment variables, so a web app
serving several users (the dashboard) cannot act per user with it; :class:`RegistryApi` takes
``username``/``password`` per instance (default ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) and
turns every refusal into a ``RegistryError`` naming the action, the resource and the user.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

import requests

from hitsong.errors import ConfigError, RegistryError
from hitsong.settings import get_settings
from registry.server import INVALID_HOST_MARKER, host_refused_error

API = "/api/2.0/mlflow"


@dataclass(frozen=True)
class Credentials:
    """Who calls the server: basic-auth user and password (both ``None`` without auth)."""

    username: str | None = None
    password: str | None = None

    @classmethod
    def resolve(cls, username: str | None = None, password: str | None = None) -> Credentials:
        """Explicit values, else ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``."""
        return cls(
            username=username if username is not None else os.environ.get("MLFLOW_TRACKING_USERNAME"),
            password=password if password is not None else os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        )

    @property
    def who(self) -> str:
        """The name recorded as the actor: the basic-auth user, else the OS user."""
        return self.username or getpass.getuser()


class RegistryApi:
    """A small client of the tracking server's REST API with per-instance credentials.

    Parameters
    ----------
    tracking_uri : str or None
        ``http(s)://host:port`` of the server; default ``get_settings().tracking_uri``.
    username, password : str or None
        Basic-auth credentials; default from the environment (see ``Credentials.resolve``).
    timeout : float
        Seconds per request.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.uri = (tracking_uri or get_settings().tracking_uri).rstrip("/")
        if not self.uri.startswith(("http://", "https://")):
            raise ConfigError(f"tracking URI {self.uri!r} is not an http(s) server; start one with `hitsong server`")
        self.creds = Credentials.resolve(username, password)
        self.timeout = timeout
        self.session = requests.Session()
        if self.creds.username:
            self.session.auth = (self.creds.username, self.creds.password or "")

    def call(self, method: str, endpoint: str, *, action: str, resource: str = "", **payload: Any) -> dict[str, Any]:
        """One REST call; errors become ``RegistryError`` naming ``action`` and ``resource``."""
        url = f"{self.uri}{API}/{endpoint}"
        kwargs: dict[str, Any] = {"timeout": self.timeout}
        if method == "GET":
            kwargs["params"] = payload
        else:
            kwargs["json"] = payload
        try:
            resp = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise RegistryError(
                f"the MLflow tracking server at {self.uri} does not answer ({exc.__class__.__name__}); "
                "start it with `hitsong server` or set MLFLOW_TRACKING_URI"
            ) from exc
        if resp.status_code == 401:
            raise RegistryError(
                f"the server at {self.uri} refused the credentials of user {self.creds.username or '(none)'}; "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        if resp.status_code == 403 and INVALID_HOST_MARKER in resp.text:
            raise host_refused_error(self.uri)
        if resp.status_code == 403:
            raise RegistryError(
                f"user {self.creds.who} lacks permission to {action}{' ' + resource if resource else ''}; "
                f"ask an admin to grant EDIT on {resource or 'it'}"
            )
        if resp.status_code >= 400:
            try:
                body = resp.json()
                detail = f"{body.get('error_code', resp.status_code)}: {body.get('message', resp.text)}"
            except ValueError:
                detail = f"HTTP {resp.status_code}: {resp.text[:200]}"
            raise RegistryError(f"cannot {action}{' ' + resource if resource else ''} on {self.uri}: {detail}")
        return resp.json() if resp.content else {}

    # --- reads ------------------------------------------------------------------------------
    def _get_or_none(
        self, endpoint: str, key: str, *, action: str, resource: str, **payload: Any
    ) -> dict[str, Any] | None:
        """GET one entity; ``None`` when the server says it does not exist."""
        try:
            return self.call("GET", endpoint, action=action, resource=resource, **payload)[key]
        except RegistryError as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc):
                return None
            raise

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        return self._get_or_none("experiments/get-by-name", "experiment", action="read experiment", resource=name,
                                 experiment_name=name)  # fmt: skip

    def search_experiments(self) -> list[dict[str, Any]]:
        return self.call("POST", "experiments/search", action="list experiments", max_results=1000).get(
            "experiments", []
        )

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        token = None
        while True:
            payload: dict[str, Any] = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
            if token:
                payload["page_token"] = token
            body = self.call(
                "POST", "runs/search", action="search runs in experiment", resource=experiment_id, **payload
            )
            runs.extend(body.get("runs", []))
            token = body.get("next_page_token")
            if not token:
                return runs

    @staticmethod
    def logged_model_id(run: dict[str, Any]) -> str | None:
        """The id of the last model a run logged (MLflow 3 ``LoggedModel``), from its outputs."""
        outputs = (run.get("outputs") or {}).get("model_outputs") or []
        if not outputs:
            return None
        return max(outputs, key=lambda o: int(o.get("step", 0)))["model_id"]

    def get_version(self, name: str, version: str) -> dict[str, Any]:
        return self.call("GET", "model-versions/get", action="read version", resource=f"{name} v{version}",
                         name=name, version=str(version))["model_version"]  # fmt: skip

    def get_model(self, name: str) -> dict[str, Any] | None:
        return self._get_or_none("registered-models/get", "registered_model", action="read registered model",
                                 resource=name, name=name)  # fmt: skip

    def search_models(self) -> list[dict[str, Any]]:
        return self.call("GET", "registered-models/search", action="list registered models",
                         max_results=1000).get("registered_models", [])  # fmt: skip

    def search_versions(self, name: str) -> list[dict[str, Any]]:
        return self.call("GET", "model-versions/search", action="list versions of", resource=name,
                         filter=f"name='{name}'", max_results=1000).get("model_versions", [])  # fmt: skip

    def alias_version(self, name: str, alias: str) -> str | None:
        model = self.get_model(name)
        for entry in (model or {}).get("aliases", []):
            if entry["alias"] == alias:
                return str(entry["version"])
        return None

    # --- writes -----------------------------------------------------------------------------
    def ensure_model(self, name: str, description: str = "") -> None:
        if self.get_model(name) is None:
            self.call("POST", "registered-models/create", action="create registered model", resource=name,
                      name=name, description=description)  # fmt: skip

    def create_version(self, name: str, *, source: str, run_id: str, model_id: str | None, tags: dict[str, str]) -> str:
        payload: dict[str, Any] = {
            "name": name, "source": source, "run_id": run_id,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }  # fmt: skip
        if model_id:
            payload["model_id"] = model_id
        body = self.call("POST", "model-versions/create", action="register a version of", resource=name, **payload)
        return str(body["model_version"]["version"])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.call("POST", "registered-models/alias", action=f"set alias {alias!r} of", resource=name,
                  name=name, alias=alias, version=str(version))  # fmt: skip

    def delete_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", action=f"delete alias {alias!r} of", resource=name,
                  name=name, alias=alias)  # fmt: skip

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.call("POST", "model-versions/set-tag", action="tag version of", resource=name,
                  name=name, version=str(version), key=key, value=value)  # fmt: skip
