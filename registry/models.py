"""The model registry: register the best run, promote with aliases, list versions.

One registered model per subset, ``hitsong-<subset>``. Promotion moves the ``champion`` alias
(the previous champion becomes ``challenger``) and records who, when, why and the metrics at
the time as version tags; stages are deprecated and never used (DESIGN.md section 7).

Every call here goes through the tracking server's REST API with explicit credentials
(``username``/``password``; default ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``). MLflow's own
client reads credentials from process-global environment variables, so a web app serving
several users (the dashboard) cannot use it per user; this module can. With the server in
basic-auth mode, a user without EDIT (or MANAGE) on the registered model gets a
``RegistryError`` that names the user, the model and what to ask an admin for.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import requests

from hitsong.errors import ConfigError, RegistryError
from hitsong.settings import get_settings
from registry.tracking import PARENT_TAG, TAG_SUBSET

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
METRICS = ("recall_at_k", "ndcg_at_k", "kendall_tau", "spearman_rho")
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae")
TAG_PREFIX = "hitsong."
API = "/api/2.0/mlflow"


def model_name(subset: str) -> str:
    """The registered model of a subset: ``hitsong-<subset>``."""
    if not subset or "/" in subset or " " in subset:
        raise ConfigError(f"subset name {subset!r} must be non-empty without '/' or spaces")
    return f"hitsong-{subset}"


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
    def _get_or_none(self, endpoint: str, key: str, *, action: str, resource: str, **payload: Any) -> dict[str, Any] | None:
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
        return self.call("POST", "experiments/search", action="list experiments", max_results=1000).get("experiments", [])

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        token = None
        while True:
            payload: dict[str, Any] = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
            if token:
                payload["page_token"] = token
            body = self.call("POST", "runs/search", action="search runs in experiment", resource=experiment_id, **payload)
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


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in entity.get("tags", []) or []}


def _run_tags(run: dict[str, Any]) -> dict[str, str]:
    return _tags(run.get("data", {}))


def _run_metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", []) or []}


def _run_params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p.get("value", "") for p in run.get("data", {}).get("params", []) or []}


def _metric_key(metrics: dict[str, float], name: str) -> str | None:
    """``name`` itself, or training's ``test_<name>``, when the run has it."""
    for key in (name, f"test_{name}"):
        if key in metrics:
            return key
    return None


def _short_metric(key: str) -> str:
    return key.removeprefix("test_").removeprefix("test.")


def _better(metric: str) -> int:
    return -1 if any(word in metric.lower() for word in LOWER_IS_BETTER) else 1


@dataclass(frozen=True)
class Candidate:
    """The run chosen by ``register``: its method, metrics and the model logged with it."""

    run_id: str
    parent_run_id: str
    method: str
    metric: str
    value: float
    method_mean: float
    metrics: dict[str, float]
    tags: dict[str, str]
    model_id: str | None
    experiment_id: str


def _find_experiment(api: RegistryApi, subset: str, experiment: str | None) -> dict[str, Any]:
    if experiment:
        found = api.get_experiment_by_name(experiment)
        if found is None:
            raise RegistryError(f"experiment {experiment!r} does not exist on {api.uri}; train first or check --experiment")
        return found
    matches = [e for e in api.search_experiments() if _tags(e).get(TAG_SUBSET) == subset]
    if not matches:
        raise RegistryError(f"no experiment for subset {subset!r} on {api.uri}; train it first (`hitsong train`)")
    if len(matches) > 1:
        names = ", ".join(sorted(e["name"] for e in matches))
        raise RegistryError(f"several experiments hold subset {subset!r} ({names}); pick one with --experiment")
    return matches[0]


def _method_of(child: dict[str, Any], parent: dict[str, Any] | None) -> str:
    for source in (child, parent or {}):
        tags, params = _run_tags(source), _run_params(source)
        for key in ("hitsong.method", "method"):
            if tags.get(key):
                return tags[key]
        for key in ("method", "train.method", "model.method"):
            if params.get(key):
                return params[key]
    return (parent or child).get("info", {}).get("run_name", "?")


def best_candidate(api: RegistryApi, subset: str, *, metric: str = "ndcg_at_k", experiment: str | None = None) -> Candidate:
    """The best repetition of the best method of ``subset``'s experiment.

    Methods are ranked by the mean of ``metric`` over their finished child runs that logged a
    model (per parent run): the Table-1 comparison. Within the best method the repetition is
    chosen on validation data, the child with the lowest ``best_val_loss`` (falling back to the
    best ``metric`` for runs that did not log it), so that the test songs do not also pick the
    weights whose test metrics the version then reports. Metric names containing
    ``loss``/``mse``/``mae`` count lower as better, others higher.

    Raises
    ------
    RegistryError
        No experiment, no finished child run with ``metric`` and a logged model.
    """
    exp = _find_experiment(api, subset, experiment)
    runs = api.search_runs(exp["experiment_id"])
    by_id = {r["info"]["run_id"]: r for r in runs}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    requested = metric
    for run in runs:
        parent = _run_tags(run).get(PARENT_TAG)
        if not parent or run["info"].get("status") != "FINISHED":
            continue
        found = _metric_key(_run_metrics(run), requested)
        if found is not None:
            metric = found
            groups[parent].append(run)
    sign = _better(metric)
    ranked: list[tuple[float, str, list[dict[str, Any]]]] = []
    for parent_id, children in groups.items():
        values = [_run_metrics(c)[metric] for c in children]
        ranked.append((sign * statistics.fmean(values), parent_id, children))
    ranked.sort(key=lambda x: x[0], reverse=True)
    for mean_value, parent_id, children in ranked:
        def choice(c: dict[str, Any]) -> tuple[float, float]:
            m = _run_metrics(c)
            return (-m.get("best_val_loss", math.inf), sign * m[metric])

        for child in sorted(children, key=choice, reverse=True):
            model_id = api.logged_model_id(child)
            if model_id is None:
                continue
            return Candidate(
                run_id=child["info"]["run_id"],
                parent_run_id=parent_id,
                method=_method_of(child, by_id.get(parent_id)),
                metric=metric,
                value=_run_metrics(child)[metric],
                method_mean=sign * mean_value,
                metrics=_run_metrics(child),
                tags=_run_tags(child),
                model_id=model_id,
                experiment_id=exp["experiment_id"],
            )
    raise RegistryError(
        f"experiment {exp['name']!r} has no finished child run with metric {metric!r} and a logged model; "
        "train (with MLflow tracking) first, or pick another --metric"
    )


def register(
    subset: str,
    *,
    metric: str = "ndcg_at_k",
    experiment: str | None = None,
    tracking_uri: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Register the best run of ``subset`` as a new version of ``hitsong-<subset>``.

    Returns
    -------
    dict
        ``model``, ``version``, ``run_id``, ``method``, ``metric``, ``value``.
    """
    api = RegistryApi(tracking_uri, username=username, password=password)
    cand = best_candidate(api, subset, metric=metric, experiment=experiment)
    name = model_name(subset)
    api.ensure_model(name, description=f"Hit-song scorer for subset {subset} (Yang et al. 2017 methods m1..m6)")
    tags = {
        f"{TAG_PREFIX}method": cand.method,
        f"{TAG_PREFIX}run_id": cand.run_id,
        f"{TAG_PREFIX}parent_run_id": cand.parent_run_id,
        f"{TAG_PREFIX}selected_by": f"{metric} (method mean {cand.method_mean:.4f}, run {cand.value:.4f})",
        f"{TAG_PREFIX}registered_by": api.creds.who,
        f"{TAG_PREFIX}registered_at": _now(),
    }
    for key in ("data_version", "code_version", f"{TAG_PREFIX}data_version", f"{TAG_PREFIX}code_version"):
        if key in cand.tags:
            tags[f"{TAG_PREFIX}{key.removeprefix(TAG_PREFIX)}"] = cand.tags[key]
    for key, value in cand.metrics.items():
        if _short_metric(key) in METRICS:
            tags[f"metric.{_short_metric(key)}"] = f"{value:.6g}"
    source = f"models:/{cand.model_id}" if cand.model_id else f"runs:/{cand.run_id}/model"
    version = api.create_version(name, source=source, run_id=cand.run_id, model_id=cand.model_id, tags=tags)
    log.info("registered %s version %s: method %s, run %s, %s=%.4f", name, version, cand.method, cand.run_id, metric, cand.value)
    return {"model": name, "version": version, "run_id": cand.run_id, "method": cand.method, "metric": metric, "value": cand.value}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def promote(
    model: str,
    version: str | int,
    reason: str,
    *,
    tracking_uri: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Make ``version`` the ``champion`` of ``model``; the previous champion becomes ``challenger``.

    Records ``hitsong.promoted_by`` (basic-auth user or OS user), ``hitsong.promoted_at``
    (UTC ISO 8601), ``hitsong.promotion_reason`` and ``hitsong.promotion_metrics`` (JSON of the
    version's metric tags at that moment) as version tags, and ``hitsong.demoted_at`` /
    ``hitsong.demoted_by`` on the previous champion.

    Parameters
    ----------
    model : str
        Registered model name, e.g. ``hitsong-western``.
    version : str or int
        The version to promote.
    reason : str
        Why (required, non-empty).
    tracking_uri, username, password :
        The server and the acting user (default: settings and environment).

    Returns
    -------
    dict
        ``model``, ``version``, ``previous`` (former champion or None), ``promoted_by``, ``promoted_at``.

    Raises
    ------
    RegistryError
        Unknown model or version, server down, or the user lacks EDIT on the model (nothing is
        changed then: the champion alias is the first write).
    ConfigError
        Empty reason.
    """
    if not reason or not reason.strip():
        raise ConfigError("promotion needs a reason (--reason TEXT): say why this version should serve")
    version = str(version)
    api = RegistryApi(tracking_uri, username=username, password=password)
    current = api.get_version(model, version)
    previous = api.alias_version(model, CHAMPION)
    metrics = {k: v for k, v in _tags(current).items() if k.startswith("metric.")}
    when = _now()
    api.set_alias(model, CHAMPION, version)
    if previous is not None and previous != version:
        api.set_alias(model, CHALLENGER, previous)
        api.set_version_tag(model, previous, f"{TAG_PREFIX}demoted_at", when)
        api.set_version_tag(model, previous, f"{TAG_PREFIX}demoted_by", api.creds.who)
    elif api.alias_version(model, CHALLENGER) == version:
        api.delete_alias(model, CHALLENGER)
    audit = {
        f"{TAG_PREFIX}promoted_by": api.creds.who,
        f"{TAG_PREFIX}promoted_at": when,
        f"{TAG_PREFIX}promotion_reason": reason.strip(),
        f"{TAG_PREFIX}promotion_metrics": json.dumps(metrics, sort_keys=True),
    }
    for key, value in audit.items():
        api.set_version_tag(model, version, key, value)
    log.info("%s v%s is now %s (previous: %s) by %s: %s", model, version, CHAMPION, previous, api.creds.who, reason)
    return {"model": model, "version": version, "previous": previous, "promoted_by": api.creds.who, "promoted_at": when}


def list_versions(
    model: str | None = None,
    *,
    tracking_uri: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> list[dict[str, Any]]:
    """Versions of ``model`` (default: every ``hitsong-*`` model) with aliases, method and metrics.

    Returns
    -------
    list of dict
        Newest first per model: ``model``, ``version``, ``aliases`` (list), ``method``,
        ``metrics`` (dict name -> float), ``run_id``, ``created`` (UTC ISO), ``tags`` (all).
    """
    api = RegistryApi(tracking_uri, username=username, password=password)
    if model:
        registered = api.get_model(model)
        if registered is None:
            raise RegistryError(f"registered model {model!r} does not exist on {api.uri}; `hitsong register` creates it")
        models = [registered]
    else:
        models = [m for m in api.search_models() if m["name"].startswith("hitsong-")]
    out: list[dict[str, Any]] = []
    for reg in models:
        aliases: dict[str, list[str]] = defaultdict(list)
        for entry in reg.get("aliases", []) or []:
            aliases[str(entry["version"])].append(entry["alias"])
        versions = sorted(api.search_versions(reg["name"]), key=lambda v: int(v["version"]), reverse=True)
        for v in versions:
            tags = _tags(v)
            created = dt.datetime.fromtimestamp(int(v.get("creation_timestamp", 0)) / 1000, tz=dt.timezone.utc)
            out.append(
                {
                    "model": reg["name"],
                    "version": str(v["version"]),
                    "aliases": sorted(aliases.get(str(v["version"]), [])),
                    "method": tags.get(f"{TAG_PREFIX}method", ""),
                    "metrics": {k.removeprefix("metric."): float(val) for k, val in tags.items() if k.startswith("metric.")},
                    "run_id": v.get("run_id", ""),
                    "created": created.replace(microsecond=0).isoformat(),
                    "tags": tags,
                }
            )
    return out


def resolve_model_uri(uri: str, *, tracking_uri: str | None = None) -> tuple[str, str | None]:
    """For ``models:/NAME@ALIAS`` or ``models:/NAME/V``: ``(NAME, version)``; else ``(uri, None)``."""
    if not uri.startswith("models:/"):
        return uri, None
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = RegistryApi(tracking_uri).alias_version(name, alias)
        if version is None:
            raise RegistryError(
                f"model {name!r} has no alias {alias!r}; register and promote a version first "
                f"(`hitsong register`, `hitsong promote --model {name} --version V --reason ...`)"
            )
        return name, version
    if "/" in rest:
        name, version = rest.split("/", 1)
        return name, version
    return rest, None
