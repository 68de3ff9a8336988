"""The tracking server's REST API with per-instance credentials, through MLflow's own HTTP client.

MLflow's ``MlflowClient`` reads credentials from process-global environment variables, so a web
app serving several users (the dashboard) cannot act per user with it. :class:`RegistryApi`
takes ``username``/``password`` per instance (default ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``)
and sends every request through MLflow's client machinery (``mlflow.utils.rest_utils.http_request``
with an ``MlflowHostCreds`` of that user): MLflow's retries with exponential back-off on 429 and
5xx answers and dropped connections, its TLS settings (``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``, client certificates), tokens and request headers. Creating
a version or a model is not retried (a retry after a lost answer would register it twice).
Searches page through every result (``next_page_token``). Every refusal becomes a
``RegistryError`` naming the action, the resource and the user.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hitsong.errors import ConfigError, RegistryError
from hitsong.settings import get_settings
from registry.server import INVALID_HOST_MARKER, host_refused_error

API = "/api/2.0/mlflow"
#: Results asked for per page of a search (the server may return fewer; pages continue until done).
PAGE_SIZE = 1000
#: Retries of a request that failed transiently, unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` says
#: otherwise (the dashboard sets 0: a visitor should not wait through back-offs).
DEFAULT_RETRIES = 3
#: Back-off factor, seconds: waits of 0.5, 1, 2 s between the retries.
BACKOFF_SECONDS = 0.5


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
    """The tracking server's REST API as one user, with MLflow's retries and paging through results.

    Parameters
    ----------
    tracking_uri : str or None
        ``http(s)://host:port`` of the server; default ``get_settings().tracking_uri``.
    username, password : str or None
        Basic-auth credentials; default from the environment (see ``Credentials.resolve``).
    timeout : float
        Seconds per request.
    retries : int or None
        Retries of a transient failure (429, 5xx, dropped connection); default
        ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` when set, else :data:`DEFAULT_RETRIES`.
    page_size : int
        Results asked for per search page.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        retries: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        from mlflow.utils.credentials import get_default_host_creds

        self.uri = (tracking_uri or get_settings().tracking_uri).rstrip("/")
        if not self.uri.startswith(("http://", "https://")):
            raise ConfigError(f"tracking URI {self.uri!r} is not an http(s) server; start one with `hitsong server`")
        self.creds = Credentials.resolve(username, password)
        self.timeout = timeout
        env_retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        self.retries = retries if retries is not None else int(env_retries or DEFAULT_RETRIES)
        self.page_size = page_size
        # MLflow's connection settings (TLS, token, auth plugins) with this user's basic-auth pair.
        self.host_creds = get_default_host_creds(self.uri)
        self.host_creds.username = self.creds.username
        self.host_creds.password = self.creds.password if self.creds.username else None

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        action: str,
        resource: str = "",
        retry: bool = True,
        **payload: Any,
    ) -> dict[str, Any]:
        """One REST call; errors become ``RegistryError`` naming ``action`` and ``resource``.

        ``retry=False`` sends the request once (for writes that must not happen twice).
        """
        from mlflow.exceptions import MlflowException
        from mlflow.utils.rest_utils import http_request

        kwargs: dict[str, Any] = {"params": payload} if method == "GET" else {"json": payload}
        try:
            resp = http_request(
                self.host_creds,
                f"{API}/{endpoint}",
                method,
                max_retries=self.retries if retry else 0,
                backoff_factor=BACKOFF_SECONDS,
                backoff_jitter=0.0,
                timeout=self.timeout,
                raise_on_status=False,
                **kwargs,
            )
        except MlflowException as exc:
            raise RegistryError(
                f"the MLflow tracking server at {self.uri} does not answer ({exc.message}); "
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

    def pages(
        self, method: str, endpoint: str, key: str, *, action: str, resource: str = "", **payload: Any
    ) -> Iterator[dict[str, Any]]:
        """Every item under ``key`` of a search, page after page (``page_token``) until the last."""
        token = None
        while True:
            page = dict(payload, max_results=self.page_size)
            if token:
                page["page_token"] = token
            body = self.call(method, endpoint, action=action, resource=resource, **page)
            yield from body.get(key, [])
            token = body.get("next_page_token")
            if not token:
                return

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
        return list(self.pages("POST", "experiments/search", "experiments", action="list experiments"))

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict[str, Any]]:
        pages = self.pages("POST", "runs/search", "runs", action="search runs in experiment",
                           resource=experiment_id, experiment_ids=[experiment_id], filter=filter_string)  # fmt: skip
        return list(pages)

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
        return list(self.pages("GET", "registered-models/search", "registered_models",
                               action="list registered models"))  # fmt: skip

    def search_versions(self, name: str) -> list[dict[str, Any]]:
        return list(self.pages("GET", "model-versions/search", "model_versions", action="list versions of",
                               resource=name, filter=f"name='{name}'"))  # fmt: skip

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
                      retry=False, name=name, description=description)  # fmt: skip

    def create_version(
        self,
        name: str,
        *,
        source: str,
        run_id: str,
        model_id: str | None,
        tags: dict[str, str],
        description: str = "",
    ) -> str:
        payload: dict[str, Any] = {
            "name": name, "source": source, "run_id": run_id, "description": description,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }  # fmt: skip
        if model_id:
            payload["model_id"] = model_id
        body = self.call("POST", "model-versions/create", action="register a version of", resource=name,
                         retry=False, **payload)  # fmt: skip
        return str(body["model_version"]["version"])

    def set_version_description(self, name: str, version: str, description: str) -> None:
        self.call("PATCH", "model-versions/update", action="describe version of", resource=name,
                  name=name, version=str(version), description=description)  # fmt: skip

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.call("POST", "registered-models/alias", action=f"set alias {alias!r} of", resource=name,
                  name=name, alias=alias, version=str(version))  # fmt: skip

    def delete_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", action=f"delete alias {alias!r} of", resource=name,
                  name=name, alias=alias)  # fmt: skip

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.call("POST", "model-versions/set-tag", action="tag version of", resource=name,
                  name=name, version=str(version), key=key, value=value)  # fmt: skip
