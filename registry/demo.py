"""What the demo pipeline asks the tracking server: is a subset trained, does it have a champion.

``hitsong demo run`` reuses what exists: a subset whose experiment already holds a finished
training summary is not trained again, and a registered model that already has a champion is
not re-registered. These two questions are MLflow questions, so they live here.
"""

from __future__ import annotations

import logging

from hitsong.errors import RegistryError
from registry.models import list_versions, model_name, promote, register
from registry.tracking import client_for, experiment_name

log = logging.getLogger(__name__)


def trained(dataset: str, subset: str, *, tracking_uri: str) -> bool:
    """True when the subset's experiment has a FINISHED ``<subset> summary`` run."""
    client = client_for(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name(dataset, subset))
    if exp is None:
        return False
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.status = 'FINISHED' and attributes.run_name = '{subset} summary'",
        max_results=1,
    )
    return bool(runs)


def ensure_champion(subset: str, *, tracking_uri: str, metric: str = "ndcg_at_k") -> str:
    """Register and promote the subset's best model unless ``hitsong-<subset>`` has a champion.

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
    version_id = str(register(subset, metric=metric, tracking_uri=tracking_uri)["version"])
    promote(name, version_id, f"demo run: best method by mean test {metric}",
            tracking_uri=tracking_uri)
    log.info("%s: registered version %s and made it the champion", name, version_id)
    return version_id
