"""The TF checkpoint reader, the converter and the committed safetensors weights."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from hitsong.errors import ModelError
from hitsong.tagger.files import WEIGHTS_DIR, weights_path
from hitsong.tagger.nets import build_net
from tests.helpers.tagger import write_bundle
from tools.convert_musicnn import (
    build_all,
    convert_checkpoint,
    is_model_variable,
    same_content,
    variable_map,
)
from tools.musicnn_checkpoint import CheckpointReader, crc32c, read_table

# Known facts of the musicnn 0.1.0 checkpoints (musicnn's models.py, the shared reference README).
N_MODEL_TENSORS = {"MTT_musicnn": 64, "MTT_vgg": 36}
KNOWN_TF_SHAPES = {
    "MTT_musicnn": {
        "conv2d/kernel": (7, 38, 1, 204),
        "conv2d_1/kernel": (7, 67, 1, 204),
        "conv2d_2/kernel": (128, 1, 1, 51),
        "conv2d_5/kernel": (7, 561, 1, 64),
        "batch_normalization_9/moving_variance": (1506,),
        "dense/kernel": (1506, 200),
        "dense_1/kernel": (200, 50),
    },
    "MTT_vgg": {
        "1CNN/kernel": (3, 3, 1, 128),
        "5CNN/kernel": (3, 3, 128, 128),
        "batch_normalization_5/gamma": (128,),
        "dense/kernel": (256, 50),
    },
}


def test_crc32c_check_value() -> None:
    # The standard CRC-32C check value (RFC 3720 / iSCSI).
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.fixture
def bundle(tmp_path: Path, rng: np.random.Generator) -> tuple[str, dict[str, np.ndarray]]:
    tensors = {
        "layer/kernel": rng.standard_normal((3, 4, 1, 5)).astype(np.float32),
        "layer/kernel/Adam": rng.standard_normal((3, 4, 1, 5)).astype(np.float32),
        "layer/bias": rng.standard_normal(5).astype(np.float32),
        "batch_normalization/moving_variance": np.array([1e-36, 2.0], dtype=np.float32),
        "beta1_power": np.array(0.9, dtype=np.float32),
        "counts": np.arange(7, dtype=np.int64),
        "weights_f64": rng.standard_normal((2, 3)),
        "zz/a/long/prefix/shared/name_1": np.ones(2, np.float32),
        "zz/a/long/prefix/shared/name_2": np.zeros(2, np.float32),
    }
    prefix = str(tmp_path / "ckpt" / "")
    (tmp_path / "ckpt").mkdir()
    write_bundle(prefix, tensors, entries_per_block=3)
    return prefix, tensors


def test_reader_lists_every_variable(bundle: tuple[str, dict[str, np.ndarray]]) -> None:
    prefix, tensors = bundle
    reader = CheckpointReader(prefix)
    expected = sorted((n, str(a.dtype), a.shape) for n, a in tensors.items())
    assert reader.list_variables() == expected
    for name, arr in tensors.items():
        out = reader.read(name)
        assert out.dtype == arr.dtype and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)


def test_model_variable_filter() -> None:
    assert is_model_variable("conv2d/kernel")
    assert not is_model_variable("conv2d/kernel/Adam")
    assert not is_model_variable("conv2d/kernel/Adam_1")
    assert not is_model_variable("beta2_power")


def test_truncated_index_is_a_clear_error(bundle: tuple[str, dict[str, np.ndarray]]) -> None:
    prefix, _ = bundle
    index = Path(prefix + ".index")
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"\.index.*(truncated|foreign)"):
        CheckpointReader(prefix)
    index.write_bytes(data[:20])
    with pytest.raises(ModelError, match="too short"):
        CheckpointReader(prefix)


def test_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    foreign = tmp_path / "model.index"
    foreign.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(ModelError, match="not a TensorFlow checkpoint index"):
        read_table(foreign)
    with pytest.raises(ModelError, match="does not exist"):
        CheckpointReader(tmp_path / "missing")


def test_corrupt_block_and_truncated_data(bundle: tuple[str, dict[str, np.ndarray]]) -> None:
    prefix, _ = bundle
    index = Path(prefix + ".index")
    data = bytearray(index.read_bytes())
    data[5] ^= 0xFF  # inside the first data block
    index.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="CRC mismatch"):
        CheckpointReader(prefix)
    data[5] ^= 0xFF
    index.write_bytes(bytes(data))
    shard = Path(prefix + ".data-00000-of-00001")
    shard.write_bytes(shard.read_bytes()[:40])
    reader = CheckpointReader(prefix)
    with pytest.raises(ModelError, match="truncated"):
        reader.read("zz/a/long/prefix/shared/name_2")


def _fake_checkpoint(model: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random TF variables of ``model``'s exact names and shapes, plus Adam slots."""
    net = build_net(model)
    state = net.state_dict()
    tensors: dict[str, np.ndarray] = {}
    for torch_name, (tf_name, _) in variable_map(model).items():
        shape = tuple(state[torch_name].shape)
        if tf_name.endswith("/kernel") and len(shape) == 4:
            shape = (shape[2], shape[3], shape[1], shape[0])  # OIHW -> HWIO
        elif tf_name.endswith("/kernel") and len(shape) == 3:
            shape = (shape[2], shape[1], 1, shape[0])  # (O, F, K) -> (K, F, 1, O)
        elif tf_name.endswith("/kernel"):
            shape = shape[::-1]
        tensors[tf_name] = rng.standard_normal(shape).astype(np.float32)
        tensors[tf_name + "/Adam"] = np.zeros(shape, np.float32)
    tensors["beta1_power"] = np.array(0.9, np.float32)
    return tensors


def test_convert_maps_and_transposes(tmp_path: Path, rng: np.random.Generator) -> None:
    tf = _fake_checkpoint("MTT_vgg", rng)
    write_bundle(str(tmp_path / "vgg"), tf)
    data = convert_checkpoint(str(tmp_path / "vgg"), "MTT_vgg")
    assert same_content(data, convert_checkpoint(str(tmp_path / "vgg"), "MTT_vgg"))  # deterministic
    out = tmp_path / "vgg.safetensors"
    out.write_bytes(data)
    with safe_open(str(out), "np") as f:
        assert len(f.keys()) == N_MODEL_TENSORS["MTT_vgg"]
        np.testing.assert_array_equal(f.get_tensor("convs.1.conv.weight"), tf["2CNN/kernel"].transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(f.get_tensor("output.weight"), tf["dense/kernel"].T)
        np.testing.assert_array_equal(f.get_tensor("input_bn.running_var"), tf["batch_normalization/moving_variance"])
        assert f.metadata()["model"] == "MTT_vgg"
    del tf["3CNN/bias"]
    write_bundle(str(tmp_path / "broken"), tf)
    with pytest.raises(ModelError, match=r"missing \['3CNN/bias'\]"):
        convert_checkpoint(str(tmp_path / "broken"), "MTT_vgg")


def test_content_check_sees_one_changed_bit_and_changed_metadata() -> None:
    from safetensors.numpy import save

    tensors = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), np.float32)}
    data = save(tensors, metadata={"z": "1", "a": "2"})
    assert same_content(data, save(dict(reversed(tensors.items())), metadata={"a": "2", "z": "1"}))
    flipped = {**tensors, "b": tensors["b"].copy()}
    flipped["b"].view(np.uint32)[1] ^= 1  # one bit of one float
    assert not same_content(data, save(flipped, metadata={"z": "1", "a": "2"}))
    assert not same_content(data, save(tensors, metadata={"z": "1", "a": "3"}))
    assert not same_content(
        data, save({**tensors, "b": tensors["b"].astype(np.float64)}, metadata={"z": "1", "a": "2"})
    )


@pytest.mark.parametrize("model", ["MTT_musicnn", "MTT_vgg"])
def test_committed_weights_have_expected_names_and_shapes(model: str) -> None:
    net = build_net(model)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    with safe_open(str(weights_path(model)), "np") as f:
        got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
        meta = f.metadata()
    assert got == expected
    assert len(got) == N_MODEL_TENSORS[model]
    source = json.loads(meta["tf_variables"])
    assert len(source) == N_MODEL_TENSORS[model]
    assert not any("Adam" in v or v.endswith("_power") for v in source.values())
    transforms = {tf_name: (torch_name, fn) for torch_name, (tf_name, fn) in variable_map(model).items()}
    for tf_name, tf_shape in KNOWN_TF_SHAPES[model].items():
        torch_name, fn = transforms[tf_name]
        assert source[torch_name] == tf_name
        assert got[torch_name] == fn(np.zeros(tf_shape, np.float32)).shape


def test_provenance_lists_the_committed_hashes() -> None:
    text = (WEIGHTS_DIR / "PROVENANCE.md").read_text()
    assert "ISC" in text and "Permission to use, copy, modify" in text
    for model in N_MODEL_TENSORS:
        digest = hashlib.sha256(weights_path(model).read_bytes()).hexdigest()
        assert re.search(rf"{model}\.safetensors \| \d+ \| {digest}", text), f"{model}: sha256 not in PROVENANCE.md"


@pytest.mark.slow
def test_committed_weights_reproduce_from_the_wheel() -> None:
    """Rebuild both files from musicnn 0.1.0's wheel (``HITSONG_MUSICNN_WHEEL``, else pip downloads it)."""
    wheel = os.environ.get("HITSONG_MUSICNN_WHEEL")
    built = build_all(Path(wheel) if wheel else None)
    for model, data in built.items():
        assert same_content(data, weights_path(model).read_bytes()), (
            f"{model}: conversion differs from the committed file"
        )
