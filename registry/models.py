"""The model registry: register the best run, promote with aliases, list versions.

One registered model per subset, ``hitsong-<subset>``. Promotion moves the ``champion`` alias
(the previous champion becomes ``challenger``) and records who, when, why and the metrics at
the time as version tags; stages are deprecated and never used (DESIGN.md section 7).

Every call here goes through :class:`registry.api.RegistryApi`, the tracking server's REST API
with explicit per-user credentials (a web app serving several users cannot use MLflow's
process-global credentials). With the server in basic-auth mode, a user without EDIT (or
MANAGE) on the registered model gets a ``RegistryError`` that names the user, the model and
what to ask an admin for.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hitsong.baselines import is_baseline
from hitsong.errors import ConfigError, RegistryError
from hitsong.statements import METADATA_BASELINE, evaluation_note
from hitsong.training import runlayout
from registry.api import RegistryApi
from registry.tracking import PARENT_TAG

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Registered models are named ``<MODEL_PREFIX><subset>``.
MODEL_PREFIX = "hitsong-"
#: The validation metric that ranks methods for registration unless another is asked for:
#: Spearman's rho uses every validation song (nDCG@k only the top tenth), so it is the steadier.
DEFAULT_SELECTION_METRIC = "spearman_rho"
TAG_PREFIX = "hitsong."
#: Version tags ``metric.val_<name>`` / ``metric.test_<name>`` hold the chosen repetition's figures.
METRIC_TAG_PREFIX = "metric."
#: Version tag with the evaluation sentence: the split and the gap to m0 (``hitsong.statements``).
EVALUATION_TAG = f"{TAG_PREFIX}evaluation"
#: Metrics whose gap to m0 the evaluation sentence states.
EVALUATION_METRICS = ("spearman_rho", "ndcg_at_k")


def model_name(subset: str) -> str:
    """The registered model of a subset: ``hitsong-<subset>``."""
    if not subset or "/" in subset or " " in subset:
        raise ConfigError(f"subset name {subset!r} must be non-empty without '/' or spaces")
    return f"{MODEL_PREFIX}{subset}"


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in entity.get("tags", []) or []}


def _run_tags(run: dict[str, Any]) -> dict[str, str]:
    return _tags(run.get("data", {}))


def _run_metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", []) or []}


def _run_params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p.get("value", "") for p in run.get("data", {}).get("params", []) or []}


@dataclass(frozen=True)
class Candidate:
    """One method's registrable repetition, chosen on validation: its run, metrics and logged model.

    ``value`` is the repetition's ``val_<metric>``, ``method_mean`` the method's mean of it over
    its repetitions (the ranking key); ``metrics`` are every final metric of the repetition run,
    its held-out ``test_<metric>`` included.
    """

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
    params: dict[str, str]
    dataset: str | None


def _find_experiment(api: RegistryApi, subset: str, experiment: str | None) -> dict[str, Any]:
    if experiment:
        found = api.get_experiment_by_name(experiment)
        if found is None:
            raise RegistryError(
                f"experiment {experiment!r} does not exist on {api.uri}; train first or check --experiment"
            )
        return found
    matches = [e for e in api.search_experiments() if _tags(e).get(runlayout.EXPERIMENT_TAG_SUBSET) == subset]
    if not matches:
        raise RegistryError(f"no experiment for subset {subset!r} on {api.uri}; train it first (`hitsong train`)")
    if len(matches) > 1:
        names = ", ".join(sorted(e["name"] for e in matches))
        raise RegistryError(f"several experiments hold subset {subset!r} ({names}); pick one with --experiment")
    return matches[0]


def rank_candidates(
    api: RegistryApi,
    subset: str,
    *,
    metric: str = DEFAULT_SELECTION_METRIC,
    experiment: str | None = None,
    include_baselines: bool = False,
) -> list[Candidate]:
    """One candidate per method of ``subset``'s experiment, best first, all chosen on validation.

    Methods are ranked by the mean of their repetitions' ``val_<metric>`` (finished repetition
    runs that logged a model); within a method, the repetition with the highest ``val_<metric>``
    (ties: the lower ``best_val_loss``) is its candidate. The test split never chooses: its
    metrics are only carried along, to be reported as held-out figures. Baselines that see no
    audio (m0) are left out unless ``include_baselines``: they log no model and cannot score
    audio, so they are never registered by accident.

    Raises
    ------
    ConfigError
        ``metric`` is not one of the evaluation metrics.
    RegistryError
        No experiment, or no finished repetition with a validation metric and a logged model.
    """
    key = runlayout.split_metric(runlayout.VAL, metric)
    exp = _find_experiment(api, subset, experiment)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in api.search_runs(exp["experiment_id"]):
        tags = _run_tags(run)
        baseline = is_baseline(tags.get(runlayout.TAG_METHOD, ""))
        if baseline and not include_baselines:
            continue
        if (
            tags.get(runlayout.TAG_KIND) == runlayout.REPETITION
            and run["info"].get("status") == "FINISHED"
            and key in _run_metrics(run)
            and (baseline or api.logged_model_id(run) is not None)
        ):
            groups[tags[runlayout.TAG_METHOD]].append(run)
    out = []
    for method, reps in groups.items():
        mean = statistics.fmean(_run_metrics(r)[key] for r in reps)
        best = max(reps, key=lambda r: (_run_metrics(r)[key], -_run_metrics(r).get("best_val_loss", math.inf)))
        tags = _run_tags(best)
        out.append(
            Candidate(
                run_id=best["info"]["run_id"],
                parent_run_id=tags.get(PARENT_TAG, ""),
                method=method,
                metric=key,
                value=_run_metrics(best)[key],
                method_mean=mean,
                metrics=_run_metrics(best),
                tags=tags,
                model_id=api.logged_model_id(best),
                experiment_id=exp["experiment_id"],
                params=_run_params(best),
                dataset=_tags(exp).get(runlayout.EXPERIMENT_TAG_DATASET),
            )
        )
    if not out:
        raise RegistryError(
            f"experiment {exp['name']!r} has no finished repetition run with {key!r} and a logged model; "
            "train (with MLflow tracking) first"
        )
    return sorted(out, key=lambda c: c.method_mean, reverse=True)


def register(
    subset: str,
    *,
    metric: str = DEFAULT_SELECTION_METRIC,
    rank: int = 0,
    alias: str | None = None,
    experiment: str | None = None,
    include_baselines: bool = False,
    tracking_uri: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Register a method of ``subset`` chosen on validation as a new version of ``hitsong-<subset>``.

    Parameters
    ----------
    metric : str
        The validation metric that ranks methods and picks the repetition (``val_<metric>``).
    rank : int
        0 registers the best method on validation, 1 the runner-up, ...
    alias : {None, "challenger"}
        ``challenger`` gives the new version that alias (a version to compare with the champion
        before promoting it). The ``champion`` alias is only ever given by :func:`promote`,
        which records who, when and why.
    include_baselines : bool
        Rank the metadata baseline m0 too (asked explicitly: its version records the baseline's
        fitted numbers, and ``hitsong predict`` and the Predict page refuse it).

    Returns
    -------
    dict
        ``model``, ``version``, ``run_id``, ``method``, ``metric``, ``value`` (the repetition's
        validation figure), ``alias`` (or None).

    Version tags: ``hitsong.method``, ``hitsong.run_id``, ``hitsong.selected_by``, data and code
    versions, the split method, per metric ``metric.val_<name>`` and ``metric.test_<name>``: the
    chosen repetition's validation figures and its held-out test figures, and
    :data:`EVALUATION_TAG`: the split and the gap to m0 in one sentence (:func:`evaluation_text`).
    The version's description is its model card (``registry.modelcard``).
    """
    from registry.modelcard import model_card

    if alias not in (None, CHALLENGER):
        raise ConfigError(
            f"register gives only the {CHALLENGER!r} alias, not {alias!r}; a champion is made with `hitsong promote`, "
            "which records who promoted it and why"
        )
    api = RegistryApi(tracking_uri, username=username, password=password)
    ranked = rank_candidates(api, subset, metric=metric, experiment=experiment, include_baselines=include_baselines)
    if not 0 <= rank < len(ranked):
        raise RegistryError(f"subset {subset!r} has {len(ranked)} trained method(s); there is no rank {rank}")
    cand = ranked[rank]
    name = model_name(subset)
    api.ensure_model(name, description=f"Hit-song scorer for subset {subset} (Yang et al. 2017 methods m1..m6)")
    tags = {
        f"{TAG_PREFIX}method": cand.method,
        f"{TAG_PREFIX}run_id": cand.run_id,
        f"{TAG_PREFIX}parent_run_id": cand.parent_run_id,
        f"{TAG_PREFIX}selected_by": (
            f"validation {metric}: method rank {rank + 1} of {len(ranked)} (mean {cand.method_mean:.4f}), "
            f"repetition {cand.tags.get(runlayout.TAG_REPETITION, '?')} ({cand.value:.4f}); test figures are held-out"
        ),
        f"{TAG_PREFIX}registered_by": api.creds.who,
        f"{TAG_PREFIX}registered_at": _now(),
    }
    for key in (runlayout.TAG_DATA_VERSION, runlayout.TAG_CODE_VERSION, runlayout.TAG_SPLIT_BY):
        if key in cand.tags:
            tags[f"{TAG_PREFIX}{key}"] = cand.tags[key]
    for key, value in cand.metrics.items():
        if runlayout.parse_split_metric(key):
            tags[f"{METRIC_TAG_PREFIX}{key}"] = f"{value:.6g}"
    tags[EVALUATION_TAG] = evaluation_text(api, cand)
    description = model_card(
        model=name,
        method=cand.method,
        selected_by=tags[f"{TAG_PREFIX}selected_by"],
        metrics=cand.metrics,
        params=cand.params,
        tags=cand.tags,
        dataset=cand.dataset,
        run_id=cand.run_id,
        evaluation=tags[EVALUATION_TAG],
    )
    if cand.model_id:
        source = f"models:/{cand.model_id}"
    elif is_baseline(cand.method):
        source = f"runs:/{cand.run_id}/{runlayout.BASELINE_EFFECTS}.csv"
    else:
        source = f"runs:/{cand.run_id}/model"
    version = api.create_version(
        name, source=source, run_id=cand.run_id, model_id=cand.model_id, tags=tags, description=description
    )
    if alias:
        api.set_alias(name, alias, version)
    log.info(
        "registered %s version %s%s: method %s (validation rank %d), run %s, %s=%.4f",
        name,
        version,
        f" as {alias}" if alias else "",
        cand.method,
        rank + 1,
        cand.run_id,
        cand.metric,
        cand.value,
    )
    return {
        "model": name,
        "version": version,
        "run_id": cand.run_id,
        "method": cand.method,
        "metric": cand.metric,
        "value": cand.value,
        "alias": alias,
    }


def _tag_metrics(tags: dict[str, str]) -> dict[str, float]:
    """A version's ``metric.*`` tags as numbers; a tag that is not one (anyone with EDIT can write
    tags) reads as NaN rather than breaking every page that lists versions."""
    out = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                out[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
            except (TypeError, ValueError):
                log.warning("version tag %s=%r is not a number; read as NaN", key, str(value)[:40])
                out[key.removeprefix(METRIC_TAG_PREFIX)] = math.nan
    return out


def evaluation_text(api: RegistryApi, cand: Candidate) -> str:
    """The candidate's evaluation sentence: its split and its test gap to m0 from the newest summary run.

    Reads the gap metrics (``runlayout.summary_gap_metric``) of the experiment's newest finished
    summary run; the model card and the :data:`EVALUATION_TAG` version tag carry it.
    """
    summaries = [
        r
        for r in api.search_runs(cand.experiment_id)
        if _run_tags(r).get(runlayout.TAG_KIND) == runlayout.SUMMARY and r["info"].get("status") == "FINISHED"
    ]
    gaps: dict[str, tuple[float, float, float]] = {}
    if summaries:
        newest = _run_metrics(max(summaries, key=lambda r: int(r["info"].get("start_time") or 0)))
        for name in EVALUATION_METRICS:
            keys = [
                runlayout.summary_gap_metric(cand.method, name, METADATA_BASELINE, b) for b in ("diff", "low", "high")
            ]
            if keys[0] in newest:
                gaps[name] = (newest[keys[0]], newest.get(keys[1], math.nan), newest.get(keys[2], math.nan))
    return evaluation_note(method=cand.method, split_by=cand.tags.get(runlayout.TAG_SPLIT_BY), gaps=gaps)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


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
    (UTC ISO 8601), ``hitsong.promotion_reason``, ``hitsong.promotion_metrics`` (JSON of the
    version's metric tags at that moment) and ``hitsong.promotion_previous`` (the champion it
    replaces, or empty) as version tags *before* any alias moves, so that every champion has its
    record; then moves the aliases and tags the previous champion ``hitsong.demoted_at`` /
    ``hitsong.demoted_by``.

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
        changed then: every write needs EDIT, and the first is refused).
    ConfigError
        Empty reason.
    """
    if not reason or not reason.strip():
        raise ConfigError("promotion needs a reason (--reason TEXT): say why this version should serve")
    version = str(version)
    api = RegistryApi(tracking_uri, username=username, password=password)
    current = api.get_version(model, version)
    previous = api.alias_version(model, CHAMPION)
    metrics = {k: v for k, v in _tags(current).items() if k.startswith(METRIC_TAG_PREFIX)}
    when = _now()
    # The record first, the aliases after: a failure in between leaves a record of a promotion
    # that did not happen (the aliases say who serves), never a champion without a record.
    audit = {
        f"{TAG_PREFIX}promoted_by": api.creds.who,
        f"{TAG_PREFIX}promoted_at": when,
        f"{TAG_PREFIX}promotion_reason": reason.strip(),
        f"{TAG_PREFIX}promotion_metrics": json.dumps(metrics, sort_keys=True),
        f"{TAG_PREFIX}promotion_previous": previous or "",
    }
    for key, value in audit.items():
        api.set_version_tag(model, version, key, value)
    api.set_alias(model, CHAMPION, version)
    if previous is not None and previous != version:
        api.set_alias(model, CHALLENGER, previous)
        api.set_version_tag(model, previous, f"{TAG_PREFIX}demoted_at", when)
        api.set_version_tag(model, previous, f"{TAG_PREFIX}demoted_by", api.creds.who)
    elif api.alias_version(model, CHALLENGER) == version:
        api.delete_alias(model, CHALLENGER)
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
        ``metrics`` (dict name -> float), ``run_id``, ``created`` (UTC ISO), ``description`` (the
        model card), ``tags`` (all).
    """
    api = RegistryApi(tracking_uri, username=username, password=password)
    if model:
        registered = api.get_model(model)
        if registered is None:
            raise RegistryError(
                f"registered model {model!r} does not exist on {api.uri}; `hitsong register` creates it"
            )
        models = [registered]
    else:
        models = [m for m in api.search_models() if m["name"].startswith(MODEL_PREFIX)]
    out: list[dict[str, Any]] = []
    for reg in models:
        aliases: dict[str, list[str]] = defaultdict(list)
        for entry in reg.get("aliases", []) or []:
            aliases[str(entry["version"])].append(entry["alias"])
        versions = sorted(api.search_versions(reg["name"]), key=lambda v: int(v["version"]), reverse=True)
        for v in versions:
            tags = _tags(v)
            created = dt.datetime.fromtimestamp(int(v.get("creation_timestamp", 0)) / 1000, tz=dt.UTC)
            out.append(
                {
                    "model": reg["name"],
                    "version": str(v["version"]),
                    "aliases": sorted(aliases.get(str(v["version"]), [])),
                    "method": tags.get(f"{TAG_PREFIX}method", ""),
                    "metrics": _tag_metrics(tags),
                    "run_id": v.get("run_id", ""),
                    "created": created.replace(microsecond=0).isoformat(),
                    "description": v.get("description", ""),
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
