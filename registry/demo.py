"""What the demo pipeline asks the tracking server: is a subset trained, does it have a champion.

``hitsong demo run`` reuses what exists: a subset whose experiment already holds a finished
training summary is not trained again, and a registered model that already has a champion is
not re-registered. These two questions are MLflow questions, so they live here.
"""

from __future__ import annotations

import logging

from hitsong.errors import RegistryError
from hitsong.training.runlayout import experiment_name, summary_run_name
from registry.models import CHALLENGER, DEFAULT_SELECTION_METRIC, list_versions, model_name, promote, register
from registry.tracking import client_for

log = logging.getLogger(__name__)


def trained(dataset: str, subset: str, *, tracking_uri: str, split_by: str | None = None) -> bool:
    """True when the experiment of the subset and split method has a FINISHED ``<subset> summary`` run."""
    client = client_for(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name(dataset, subset, split_by))
    if exp is None:
        return False
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.status = 'FINISHED' and attributes.run_name = '{summary_run_name(subset)}'",
        max_results=1,
    )
    return bool(runs)


def ensure_champion(
    subset: str, *, tracking_uri: str, metric: str = DEFAULT_SELECTION_METRIC, experiment: str | None = None
) -> str:
    """Register the subset's two best methods on validation unless ``hitsong-<subset>`` has a champion.

    The best becomes ``champion`` (through the audited promotion), the runner-up ``challenger``,
    so the Registry page has two versions to compare from the start. ``experiment`` names the
    experiment to rank (needed when the subset was trained under several splits). The
    metadata baseline m0 is never among them (``registry.models.rank_candidates``).

    Returns
    -------
    str
        The champion's version.
    """
    name = model_name(subset)
    try:
        versions = list_versions(name, tracking_uri=tracking_uri)
    except RegistryError:  # the model does not exist yet: the normal first run
        versions = []
    for v in versions:
        if "champion" in v["aliases"]:
            log.info("%s: version %s is already the champion; keeping it", name, v["version"])
            return str(v["version"])
    champion = str(register(subset, metric=metric, rank=0, experiment=experiment, tracking_uri=tracking_uri)["version"])
    promote(name, champion, f"demo run: best method on validation {metric}", tracking_uri=tracking_uri)
    try:
        challenger = register(
            subset, metric=metric, rank=1, alias=CHALLENGER, experiment=experiment, tracking_uri=tracking_uri
        )["version"]
    except RegistryError as exc:  # a subset trained with a single method has no runner-up
        log.info("%s: no challenger (%s)", name, exc)
    else:
        log.info("%s: version %s (runner-up on validation) is the challenger", name, challenger)
    log.info("%s: registered version %s and made it the champion", name, champion)
    return champion
