"""Convert musicnn 0.1.0's TensorFlow MTT checkpoints to safetensors, without TensorFlow.

Usage::

    python -m tools.convert_musicnn              # pip download the wheel, write weights/
    python -m tools.convert_musicnn --wheel musicnn-0.1.0-py3-none-any.whl
    python -m tools.convert_musicnn --check      # rebuild in memory, compare with weights/

The output is reproducible: only the model tensors (no Adam state), already in PyTorch layout
under the tagger's parameter names, with fixed metadata, written by the safetensors library.
The library does not fix the order of the metadata in the file's JSON header, so ``--check``
compares contents (every tensor bit for bit, its dtype and shape, and the metadata), not bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from hitsong.errors import HitsongError, ModelError
from hitsong.tagger.files import MODEL_NAMES, WEIGHTS_DIR
from tools.musicnn_checkpoint import CheckpointReader

log = logging.getLogger(__name__)

WHEEL_SPEC = "musicnn==0.1.0"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"

Transform = Callable[[np.ndarray], np.ndarray]


def _conv2d(w: np.ndarray) -> np.ndarray:
    return w.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def _conv1d(w: np.ndarray) -> np.ndarray:
    return w[:, :, 0, :].transpose(2, 1, 0)  # (K, F, 1, O) -> (O, F, K)


def _dense(w: np.ndarray) -> np.ndarray:
    return w.T  # (in, out) -> (out, in)


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _bn(torch_prefix: str, tf_scope: str) -> dict[str, tuple[str, Transform]]:
    return {
        f"{torch_prefix}.weight": (f"{tf_scope}/gamma", _same),
        f"{torch_prefix}.bias": (f"{tf_scope}/beta", _same),
        f"{torch_prefix}.running_mean": (f"{tf_scope}/moving_mean", _same),
        f"{torch_prefix}.running_var": (f"{tf_scope}/moving_variance", _same),
    }


def _layer(torch_prefix: str, tf_scope: str, kernel: Transform) -> dict[str, tuple[str, Transform]]:
    return {
        f"{torch_prefix}.weight": (f"{tf_scope}/kernel", kernel),
        f"{torch_prefix}.bias": (f"{tf_scope}/bias", _same),
    }


def _bn_name(i: int) -> str:
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


def _conv_name(i: int) -> str:
    return "conv2d" if i == 0 else f"conv2d_{i}"


def variable_map(model: str) -> dict[str, tuple[str, Transform]]:
    """PyTorch parameter name -> (TF variable name, layout transform) for ``model``.

    The TF names follow the order in which musicnn's ``models.py`` creates its layers.
    """
    m: dict[str, tuple[str, Transform]] = {}
    if model == "MTT_musicnn":
        m |= _bn("input_bn", _bn_name(0))
        for i in range(2):  # timbral: conv2d, conv2d_1; bn 1, 2
            m |= _layer(f"timbral.{i}.conv", _conv_name(i), _conv2d) | _bn(f"timbral.{i}.bn", _bn_name(1 + i))
        for i in range(3):  # temporal: conv2d_2..4; bn 3..5
            m |= _layer(f"temporal.{i}.conv", _conv_name(2 + i), _conv2d) | _bn(f"temporal.{i}.bn", _bn_name(3 + i))
        for i in range(3):  # mid end: conv2d_5..7; bn 6..8
            m |= _layer(f"midend.{i}.conv", _conv_name(5 + i), _conv1d) | _bn(f"midend.{i}.bn", _bn_name(6 + i))
        m |= _bn("pool_bn", _bn_name(9)) | _layer("dense", "dense", _dense)
        m |= _bn("dense_bn", _bn_name(10)) | _layer("output", "dense_1", _dense)
    elif model == "MTT_vgg":
        m |= _bn("input_bn", _bn_name(0))
        for i in range(5):
            m |= _layer(f"convs.{i}.conv", f"{i + 1}CNN", _conv2d) | _bn(f"convs.{i}.bn", _bn_name(1 + i))
        m |= _layer("output", "dense", _dense)
    else:
        raise ModelError(f"unknown tagger model {model!r}; valid names: {', '.join(MODEL_NAMES)}")
    return m


def is_model_variable(name: str) -> bool:
    """True for network weights; False for optimizer state (Adam slots, beta powers)."""
    last = name.rsplit("/", 1)[-1]
    return not (last.startswith("Adam") or last in ("beta1_power", "beta2_power"))


def convert_checkpoint(prefix: str | Path, model: str) -> bytes:
    """The safetensors file contents for one musicnn checkpoint.

    Parameters
    ----------
    prefix : str or Path
        Checkpoint prefix (the model folder of the wheel plus ``/``).
    model : str
        ``"MTT_musicnn"`` or ``"MTT_vgg"``.

    Raises
    ------
    ModelError
        A variable is missing, has the wrong shape, or the checkpoint holds model variables the
        mapping does not know (a different architecture).
    """
    reader = CheckpointReader(prefix)
    mapping = variable_map(model)
    wanted = {tf_name for tf_name, _ in mapping.values()}
    present = {n for n in reader.entries if is_model_variable(n)}
    if present != wanted:
        raise ModelError(
            f"{reader.index_path}: model variables do not match {model}: missing "
            f"{sorted(wanted - present)}, unexpected {sorted(present - wanted)}"
        )
    tensors = {name: np.ascontiguousarray(fn(reader.read(tf_name))) for name, (tf_name, fn) in mapping.items()}
    source = {name: tf_name for name, (tf_name, _) in sorted(mapping.items())}
    metadata = {
        "format": "pt",
        "model": model,
        "source": f"{WHEEL_NAME} (PyPI, sha256 {WHEEL_SHA256}), musicnn/{model}/ TensorFlow checkpoint",
        "licence": "ISC, (c) Music Technology Group, Universitat Pompeu Fabra 2019 (Jordi Pons); see PROVENANCE.md",
        "converter": "python -m tools.convert_musicnn",
        "tf_variables": json.dumps(source, sort_keys=True, separators=(",", ":")),
    }
    return safetensors_save(tensors, metadata=metadata)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (the JSON header after its 8-byte length)."""
    size = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + size]).get("__metadata__", {}))


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two safetensors files hold the same tensors (bit for bit) and the same metadata."""
    ta, tb = safetensors_load(a), safetensors_load(b)
    return (
        ta.keys() == tb.keys()
        and all(ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k]) for k in ta)
        and _metadata(a) == _metadata(b)
    )


# --------------------------------------------------------------------------- wheel handling
def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``dest``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL_SPEC, "-d", str(dest)]
    log.info("downloading %s: %s", WHEEL_SPEC, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        raise ModelError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return wheel


def extract_checkpoints(wheel: Path, dest: Path) -> dict[str, Path]:
    """Unzip the MTT checkpoints of ``wheel`` into ``dest``; model name -> checkpoint prefix."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ModelError(
            f"{wheel}: sha256 {digest} is not that of {WHEEL_NAME} on PyPI ({WHEEL_SHA256}); "
            "pass the original wheel or omit --wheel to download it"
        )
    prefixes: dict[str, Path] = {}
    with zipfile.ZipFile(wheel) as zf:
        for model in MODEL_NAMES:
            for member in (f"musicnn/{model}/.index", f"musicnn/{model}/.data-00000-of-00001"):
                zf.extract(member, dest)
            prefixes[model] = dest / "musicnn" / model
    return prefixes


def build_all(wheel: Path | None) -> dict[str, bytes]:
    """Safetensors bytes of every model, from ``wheel`` (downloaded when None)."""
    with tempfile.TemporaryDirectory(prefix="hitsong-musicnn-") as tmp:
        tmp_path = Path(tmp)
        wheel = download_wheel(tmp_path) if wheel is None else wheel
        prefixes = extract_checkpoints(wheel, tmp_path / "unzipped")
        return {model: convert_checkpoint(f"{prefix}/", model) for model, prefix in prefixes.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.convert_musicnn", description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, default=None, help=f"a local {WHEEL_NAME} (default: pip download it)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output folder (default: the package's weights/)")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (1 when --check finds a difference)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        built = build_all(args.wheel)
    except HitsongError as exc:
        log.error("%s", exc)
        return 1
    status = 0
    for model, data in built.items():
        path = args.out / f"{model}.safetensors"
        digest = hashlib.sha256(data).hexdigest()
        if args.check:
            same = path.is_file() and same_content(path.read_bytes(), data)
            log.info("%s: %s (built sha256 %s)", path, "identical" if same else "DIFFERS", digest)
            status |= 0 if same else 1
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            log.info("wrote %s (%d bytes, sha256 %s)", path, len(data), digest)
    return status


if __name__ == "__main__":
    sys.exit(main())
