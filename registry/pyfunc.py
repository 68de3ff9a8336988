"""The logged model: an MLflow pyfunc, written as "models from code", that scores audio.

It wraps ``hitsong.scoring.SongScorer``. The logged model carries the bundle (``bundle.json``
with the method, model and audio config, tagger name, target mean/std and catalog hit scores,
plus ``weights.safetensors``) and the tagger's own safetensors weights as artifacts; no pickles
and no torch.export (ECOSYSTEM.md: that freezes shapes and devices). ``load_context`` builds
the network and the tagger on the device chosen at load time, and scores a generated clip once
when ``warm_up`` is set (``load_model`` below sets it; the logged default is off so that MLflow's
input-example check at logging time stays cheap)::

    mlflow.pyfunc.load_model("models:/hitsong-western@champion", model_config={"device": "cpu", "warm_up": True})

The model is self-contained: the Python sources of ``hitsong`` and ``registry`` travel with it
as ``code_paths`` (:func:`stage_code`) and its ``requirements.txt`` pins every distribution they
import (:func:`pip_requirements`), so ``mlflow models serve``, ``mlflow models build-docker`` and
``mlflow.pyfunc.spark_udf`` work where hitsong is not installed::

    mlflow models serve -m models:/hitsong-western@champion --env-manager local -p 5001
    curl -X POST localhost:5001/invocations -H 'Content-Type: application/json' \
         -d '{"dataframe_split": {"columns": ["audio_bytes"], "data": [["<base64 of the file>"]]}}'

hitsong's own readers never load this pyfunc (``registry.bundles`` builds the scorer from the
version's data files); it is for MLflow's serving tools.

``predict`` takes a DataFrame with a ``path`` column (files readable where the model runs) or
an ``audio_bytes`` column (the file's bytes), and returns one row per input with ``name``,
``score``, ``percentile``, ``top_tags`` (JSON), ``tags`` (JSON, the 50-d tag vector, where the
method uses tags) and ``error``.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from hitsong.errors import InputError, ModelError

log = logging.getLogger(__name__)

MODEL_NAME = "model"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
OUTPUT_COLUMNS = ("name", "score", "percentile", "top_tags", "tags", "error")
#: Distributions the model's code imports at load time (hitsong's scoring path and this module);
#: versions pinned to the ones that logged it. hitsong itself is not among them: its code travels
#: with the model (:data:`CODE_PACKAGES`).
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "soundfile", "soxr", "librosa", "safetensors", "scipy")
#: The packages copied beside the model (``code_paths``, Python sources only): the model code
#: file imports ``registry.pyfunc``, which builds ``hitsong.scoring.SongScorer``.
CODE_PACKAGES = ("hitsong", "registry")


def pip_requirements() -> list[str]:
    """Explicit ``name==version`` pins of :data:`REQUIREMENTS` as installed here.

    Inference is skipped (it cost ~12 s per model, ECOSYSTEM.md). A local version label is
    dropped (``torch==2.13.0`` for ``2.13.0+cpu``): the pin then names the release, and pip picks
    the build its package sources offer.
    """
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in REQUIREMENTS:
        try:
            v = version(dist)
        except PackageNotFoundError:
            out.append(dist)
            continue
        out.append(f"{dist}=={v.split('+')[0]}")
    return out


def _python_sources(folder: str, names: list[str]) -> set[str]:
    """``shutil.copytree`` ignore rule: keep sub-folders and ``.py`` files, drop caches and data."""
    base = Path(folder)
    return {n for n in names if n == "__pycache__" or (not (base / n).is_dir() and not n.endswith(".py"))}


def stage_code(dest: Path) -> list[str]:
    """Copy the Python sources of :data:`CODE_PACKAGES` into ``dest``; return the package folders.

    They become the logged model's ``code_paths``: MLflow puts them on ``sys.path`` before it runs
    the model code file, so the model loads where hitsong is not installed (``mlflow models
    serve``, ``build-docker``, ``spark_udf``). Data files stay behind: the tagger's weights travel
    as the ``tagger`` artifact.
    """
    import shutil

    import hitsong
    import registry

    out = []
    for name, package in zip(CODE_PACKAGES, (hitsong, registry), strict=True):
        source = Path(str(package.__file__)).resolve().parent
        target = dest / name
        shutil.copytree(source, target, ignore=_python_sources)
        out.append(str(target))
    return out


def signature():
    """Input: ``path`` (string) or ``audio_bytes`` (binary); output: the score columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("binary", "audio_bytes", required=False)])
    outputs = Schema(
        [
            ColSpec("string", "name"),
            ColSpec("double", "score", required=False),
            ColSpec("double", "percentile", required=False),
            ColSpec("string", "top_tags", required=False),
            ColSpec("string", "tags", required=False),
            ColSpec("string", "error", required=False),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example() -> pd.DataFrame:
    """A 3-s generated WAV as bytes: MLflow scores it once when the model is logged."""
    from hitsong.scoring import example_wav

    return pd.DataFrame({"audio_bytes": [example_wav(3.0)]})


def _inputs(frame: pd.DataFrame) -> tuple[list[Any], list[str]]:
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    has_path = "path" in frame.columns
    has_bytes = "audio_bytes" in frame.columns
    if not (has_path or has_bytes):
        raise InputError(f"the model needs a 'path' or an 'audio_bytes' column, got columns {list(frame.columns)}")
    items: list[Any] = []
    names: list[str] = []
    for i in range(len(frame)):
        data = frame["audio_bytes"].iloc[i] if has_bytes else None
        path = frame["path"].iloc[i] if has_path else None
        if isinstance(data, (bytes, bytearray)) and len(data) > 0:
            items.append(bytes(data))
            names.append(str(path) if isinstance(path, str) and path else f"upload-{i}")
        elif isinstance(path, str) and path:
            items.append(path)
            names.append(path)
        else:
            raise InputError(f"row {i}: neither a non-empty 'path' nor 'audio_bytes'")
    return items, names


def results_frame(results: list[dict[str, Any]], *, include_tags: bool) -> pd.DataFrame:
    """The scorer's per-file dicts as the pyfunc's output DataFrame."""
    rows = []
    for r in results:
        rows.append(
            {
                "name": r["name"],
                "score": r["score"],
                "percentile": r["percentile"],
                "top_tags": json.dumps(r["top_tags"]) if r["top_tags"] is not None else None,
                "tags": json.dumps(r["tags"]) if include_tags and r["tags"] is not None else None,
                "error": r["error"],
            }
        )
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


class HitsongAudioModel(PythonModel):
    """Pyfunc around ``SongScorer``: audio in, hit score, percentile and tags out."""

    def load_context(self, context) -> None:
        from hitsong.scoring import SongScorer

        config = context.model_config or {}
        device = str(config.get("device", "auto"))
        warm_up = str(config.get("warm_up", "true")).lower() in ("true", "1", "yes")
        bundle = context.artifacts.get("bundle")
        if not bundle:
            raise ModelError(
                "the logged model has no 'bundle' artifact; re-log it with registry.pyfunc.log_bundle_model"
            )
        self.bundle_dir = Path(bundle)
        self.tagger_weights = context.artifacts.get("tagger")
        self.scorer = SongScorer.from_bundle(
            self.bundle_dir, device=device, tagger_weights=self.tagger_weights, warm_up=warm_up
        )
        log.info("loaded %s model on %s", self.scorer.method, self.scorer.device)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        items, names = _inputs(model_input)
        results = self.scorer.score(items, names=names)
        return results_frame(results, include_tags=self.scorer.uses_tags)


def log_bundle_model(bundle_dir: Path, *, run_id: str, tracking_uri: str) -> str:
    """Log ``bundle_dir`` as the pyfunc model ``model`` of run ``run_id``; return its model URI.

    Raises
    ------
    ModelError
        The folder has no ``bundle.json`` or the tagger weights it names are missing.
    """
    import json as _json

    from hitsong.settings import DEFAULT_TAGGER
    from hitsong.tagger.files import WEIGHTS_DIR

    bundle_dir = Path(bundle_dir)
    meta_path = bundle_dir / "bundle.json"
    if not meta_path.is_file():
        raise ModelError(
            f"{bundle_dir} is not a model bundle (no bundle.json); write it with hitsong.bundle.save_bundle"
        )
    tagger = _json.loads(meta_path.read_text()).get("tagger") or DEFAULT_TAGGER
    tagger_weights = WEIGHTS_DIR / f"{tagger}.safetensors"
    if not tagger_weights.is_file():
        raise ModelError(f"tagger weights {tagger_weights} for bundle {bundle_dir} are missing")
    mlflow.set_tracking_uri(tracking_uri)
    # The logged model belongs to the run's experiment (MLflow would otherwise file it under the
    # process's active experiment, where `hitsong register` does not look).
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient(tracking_uri).get_run(run_id).info.experiment_id)
    # MLflow loads the model once to check the input example, and that puts the model's code
    # folder in front of this process's sys.path: restored below so nothing imports from it.
    saved_path = list(sys.path)
    try:
        with tempfile.TemporaryDirectory(prefix="hitsong-code-") as code_dir:
            info = mlflow.models.Model.log(
                None,
                mlflow.pyfunc,
                name=MODEL_NAME,
                run_id=run_id,
                python_model=str(MODEL_CODE),
                code_paths=stage_code(Path(code_dir)),
                artifacts={"bundle": str(bundle_dir), "tagger": str(tagger_weights)},
                # No warm-up for MLflow's own check of the input example at logging time (it would
                # cost seconds per repetition); ``load_model`` below asks for it.
                model_config={"device": "auto", "warm_up": False},
                signature=signature(),
                input_example=input_example(),
                pip_requirements=pip_requirements(),
            )
    finally:
        sys.path[:] = saved_path
    return info.model_uri


def load_model(uri: str, *, device: str = "auto", tracking_uri: str | None = None, warm_up: bool = True):
    """Load a hitsong pyfunc (e.g. ``models:/hitsong-western@champion``) on ``device``, warmed up.

    ``model.unwrap_python_model().scorer`` is the warm ``SongScorer`` behind it.

    Raises
    ------
    RegistryError
        The URI does not resolve or the model cannot be loaded.
    """
    from mlflow.exceptions import MlflowException

    from hitsong.errors import RegistryError

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri, model_config={"device": device, "warm_up": warm_up})
    except MlflowException as exc:
        raise RegistryError(f"cannot load model {uri} from {mlflow.get_tracking_uri()}: {exc.message}") from exc
