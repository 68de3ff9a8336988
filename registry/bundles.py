"""Build a scorer from a registered version's data files only: never its code.

A registered version's artifacts are untrusted: anyone who may register a model (with basic
auth, MLflow gives a model's creator MANAGE on it) controls them. ``mlflow.pyfunc.load_model``
would import the version's code file; hitsong's own readers (the dashboard, ``hitsong
predict``, catalog scoring) use :func:`load_scorer` instead, which

- reads the version's ``MLmodel`` file as YAML data (``yaml.safe_load``, at most
  :data:`MAX_MLMODEL_BYTES`) to find the ``bundle`` artifact folder, a relative path under
  ``artifacts/``;
- downloads exactly two files from it, ``bundle.json`` and ``weights.safetensors``, refusing any
  larger than :data:`MAX_META_BYTES` / :data:`MAX_WEIGHTS_BYTES`;
- builds the network with ``hitsong.bundle.load_bundle`` (strict JSON, format version, method
  in m1..m6, tensor names, shapes and float32 dtype) and takes the tagger's weights from the
  installed package, never from the artifact store.

A version that is not a hitsong bundle is refused with a ``RegistryError`` naming it; so is a
version of the metadata baseline m0 (registered only on explicit request), which cannot score
audio. The logged pyfunc keeps its code for MLflow-native serving (``registry.pyfunc``);
nothing here runs it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from hitsong.baselines import BASELINES, is_baseline
from hitsong.bundle import META_FILE, WEIGHTS_FILE
from hitsong.errors import HitsongError, RegistryError
from hitsong.scoring import SongScorer

log = logging.getLogger(__name__)

#: Largest ``MLmodel`` file read, bytes.
MAX_MLMODEL_BYTES = 1 << 20
#: Largest ``bundle.json`` (the training catalogue's hit scores dominate: ~20 bytes a song).
MAX_META_BYTES = 64 << 20
#: Largest ``weights.safetensors`` (the paper's m6 is a few MB).
MAX_WEIGHTS_BYTES = 512 << 20
#: The pyfunc artifact that holds the bundle folder (``registry.pyfunc.log_bundle_model``).
BUNDLE_ARTIFACT = "bundle"


def _not_a_bundle(model: str, version: str, why: str) -> RegistryError:
    return RegistryError(
        f"{model} version {version} is not a hitsong model bundle ({why}); hitsong scores only versions "
        "registered from its own training runs (`hitsong register`)"
    )


def _repository(model: str, version: str, tracking_uri: str) -> Any:
    """The version's artifacts on ``tracking_uri``: its download URI asked of that server, then read there.

    Not through ``models:/`` URIs: MLflow resolves those with the process-wide registry client,
    which may name another server than the one asked about.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from registry.api import RegistryApi

    uri = RegistryApi(tracking_uri).call(
        "GET", "model-versions/get-download-uri", action="locate the files of", resource=f"{model} v{version}",
        name=model, version=str(version),
    )["artifact_uri"]  # fmt: skip
    return get_artifact_repository(uri, tracking_uri=tracking_uri)


def _listing(repo: Any, folder: str | None) -> dict[str, Any]:
    return {PurePosixPath(f.path).name: f for f in repo.list_artifacts(folder)}


def _download(repo: Any, path: str, limit: int, files: dict[str, Any], dest: Path, what: str) -> Path:
    name = PurePosixPath(path).name
    entry = files.get(name)
    if entry is None or entry.is_dir:
        raise RegistryError(f"no {name}")
    if entry.file_size is not None and entry.file_size > limit:
        raise RegistryError(f"{name} is {entry.file_size} bytes, more than the {limit}-byte limit for {what}")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        got = Path(repo.download_artifacts(path, dst_path=tmp))
        if not got.is_file():
            raise RegistryError(f"{name} is not a file")
        if got.stat().st_size > limit:
            raise RegistryError(f"{name} is {got.stat().st_size} bytes, more than the {limit}-byte limit for {what}")
        return got.replace(dest / name)


def _bundle_folder(mlmodel: Path) -> str:
    """The bundle artifact's folder, relative to the version's root, from the ``MLmodel`` data."""
    try:
        doc = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        path = doc["flavors"]["python_function"]["artifacts"][BUNDLE_ARTIFACT]["path"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise RegistryError(f"its MLmodel names no {BUNDLE_ARTIFACT!r} artifact ({type(exc).__name__})") from exc
    parts = PurePosixPath(str(path)).parts
    if not parts or parts[0] != "artifacts" or ".." in parts or PurePosixPath(str(path)).is_absolute():
        raise RegistryError(f"its {BUNDLE_ARTIFACT!r} artifact path {path!r} is not a folder under artifacts/")
    return str(PurePosixPath(*parts))


def refuse_baseline(model: str, version: str, *, tracking_uri: str) -> None:
    """Raise ``RegistryError`` when the version is a baseline that sees no audio (its ``hitsong.method`` tag)."""
    from registry.api import RegistryApi
    from registry.models import TAG_PREFIX

    tags = {t["key"]: t.get("value", "") for t in RegistryApi(tracking_uri).get_version(model, version).get("tags", [])}
    method = tags.get(f"{TAG_PREFIX}method", "")
    if is_baseline(method):
        raise RegistryError(
            f"{model} version {version} is {method}, the {BASELINES[method]} baseline: it predicts from an "
            "artist's catalogue and a release date, never from audio, so it cannot score an audio file; "
            "choose a version of an audio method (m1..m6), e.g. the champion"
        )


def fetch_bundle(model: str, version: str, dest: Path, *, tracking_uri: str) -> Path:
    """Download the version's ``bundle.json`` and ``weights.safetensors`` into ``dest/bundle``.

    Raises
    ------
    RegistryError
        The version does not exist, or is not a hitsong bundle (the message names it and why).
    """
    from mlflow.exceptions import MlflowException

    repo = _repository(model, version, tracking_uri)  # an unknown version is refused here, by name
    try:
        mlmodel = _download(repo, "MLmodel", MAX_MLMODEL_BYTES, _listing(repo, None), dest, "MLmodel")
        folder = _bundle_folder(mlmodel)
        files = _listing(repo, folder)
        out = dest / "bundle"
        out.mkdir(parents=True, exist_ok=True)
        for name, limit in ((META_FILE, MAX_META_BYTES), (WEIGHTS_FILE, MAX_WEIGHTS_BYTES)):
            _download(repo, f"{folder}/{name}", limit, files, out, "a bundle file")
    except RegistryError as exc:
        raise _not_a_bundle(model, version, str(exc)) from exc
    except MlflowException as exc:
        raise RegistryError(f"cannot read {model} version {version} on {tracking_uri}: {exc.message}") from exc
    return out


def load_scorer(
    model: str, version: str, *, tracking_uri: str, device: str = "auto", warm_up: bool = True
) -> SongScorer:
    """A ``SongScorer`` of registered ``model`` ``version``, built from its data files only.

    ``warm_up`` scores a generated clip once (decoder, tagger, network) so the first real file
    runs at full speed; catalog scoring, whose decoding happens in worker processes, skips it.

    Raises
    ------
    RegistryError
        Unknown version, a baseline's version, not a hitsong bundle, or a bundle that fails
        validation (named).
    """
    refuse_baseline(model, version, tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="hitsong-bundle-") as tmp:
        folder = fetch_bundle(model, version, Path(tmp), tracking_uri=tracking_uri)
        try:
            scorer = SongScorer.from_bundle(folder, device=device, warm_up=warm_up)
        except HitsongError as exc:
            raise _not_a_bundle(model, version, str(exc)) from exc
    log.info("loaded %s version %s (%s) on %s from its data files", model, version, scorer.method, scorer.device)
    return scorer
