"""The six methods: shapes, m3's branch lengths, joint-weight limits, overfitting, bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hitsong.audio import AudioConfig
from hitsong.audio import mel_stats as audio_mel_stats
from hitsong.bundle import META_FILE, WEIGHTS_FILE, load_bundle, read_meta, save_bundle
from hitsong.errors import ConfigError, ModelError
from hitsong.models import METHODS, InceptionCNN, ModelConfig, build_model, mel_stats

TINY = ModelConfig.tiny()


def _inputs(batch: int = 3, frames: int = 40, config: ModelConfig = TINY) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, config.n_mels, frames, generator=g), torch.rand(batch, config.n_tags, generator=g)


@pytest.mark.parametrize("name", list(METHODS))
def test_output_shape(name: str) -> None:
    model = build_model(name, TINY).eval()
    mel, tags = _inputs()
    assert model(mel, tags).shape == (3,)
    if model.has_frames:
        frames = model.frame_scores(mel, tags)
        # T=40: conv 4 -> 37, pool -> 18, conv 4 -> 15, pool -> 7
        assert frames.shape == (3, 7)
        torch.testing.assert_close(frames.mean(dim=-1), model(mel, tags))


def test_paper_sizes_give_159_frames() -> None:
    model = build_model("m2").eval()
    mel, tags = _inputs(batch=1, frames=646, config=ModelConfig())
    assert model.frame_scores(mel, tags).shape == (1, 159)


@pytest.mark.parametrize("frames", [20, 33, 646])
def test_inception_branches_have_equal_lengths(frames: int) -> None:
    config = ModelConfig()  # the paper's kernels: 128x4, 132x8 (pad 2), 140x16 (pad 6)
    model = InceptionCNN(config).eval()
    mel = torch.randn(1, config.n_mels, frames)
    outs = model.branch_outputs(mel)
    assert [o.shape[1] for o in outs] == [32, 16, 16]
    assert {o.shape[-1] for o in outs} == {frames - 3}
    assert [b.conv.kernel_size for b in model.branches] == [(132, 8), (140, 16)]


def test_joint_w_limits_equal_parts() -> None:
    mel, tags = _inputs()
    for name in ("m5", "m6"):
        for w, part in ((1.0, "cnn"), (0.0, "tag")):
            torch.manual_seed(0)
            joint = build_model(name, ModelConfig(**{**TINY.to_dict(), "joint_w_fixed": w}))
            joint.fit_input_stats(torch.zeros(5, 2 * TINY.n_mels), torch.rand(5, TINY.n_tags))
            joint.eval()
            expected = getattr(joint, part)(mel, tags)
            torch.testing.assert_close(joint(mel, tags), expected)
            assert "w_logit" not in dict(joint.named_parameters())


def test_joint_w_is_learned_by_default() -> None:
    joint = build_model("m5", TINY)
    assert float(joint.w.detach()) == pytest.approx(TINY.joint_w_init)
    assert "w_logit" in dict(joint.named_parameters())


def test_m1_matches_audio_mel_stats() -> None:
    mel, _ = _inputs(batch=2)
    expected = np.stack([audio_mel_stats(m.numpy()) for m in mel])
    np.testing.assert_allclose(mel_stats(mel).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_linear_models_standardise_with_training_statistics() -> None:
    stats = torch.randn(50, 2 * TINY.n_mels) * 3 + 7
    tags = torch.rand(50, TINY.n_tags)
    m1 = build_model("m1", TINY)
    m1.fit_input_stats(stats, tags)
    z = (stats - m1.regressor.in_mean) / m1.regressor.in_std
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(z.shape[1]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(METHODS))
def test_tiny_model_overfits_twenty_songs(name: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.to_dict(), "dropout": 0.0})
    model = build_model(name, config)
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(20, config.n_mels, 24, generator=g)
    tags = torch.rand(20, config.n_tags, generator=g)
    # targets the model can express exactly: linear models get a linear function of their input
    if name == "m4":
        target = (tags - tags.mean(0)) @ torch.randn(config.n_tags, generator=g)
    elif name == "m1":
        target = mel_stats(mel) @ torch.randn(2 * config.n_mels, generator=g) * 0.1
        # 20 songs, 33 inputs: an exact fit exists
    else:
        target = torch.randn(20, generator=g)
    target = (target - target.mean()) / target.std()
    model.fit_input_stats(mel_stats(mel), tags)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(mel, tags), target)
        loss.backward()
        opt.step()
    assert loss.item() < 0.02, f"{name} did not overfit: loss {loss.item():.4f}"


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="m1, m2, m3, m4, m5, m6"):
        build_model("m7", TINY)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conv1_channels", 0),
        ("dropout", 1.0),
        ("joint_w_fixed", 1.5),
        ("joint_w_init", 0.0),
        ("inception_branches", ((16, 7),)),
    ],
)
def test_bad_model_config(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{field: value})


def test_too_short_input_is_a_model_error() -> None:
    model = build_model("m2", TINY)
    with pytest.raises(ModelError, match="at least 13"):
        model(torch.zeros(1, TINY.n_mels, 12), torch.zeros(1, TINY.n_tags))


def test_config_round_trip() -> None:
    assert ModelConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ConfigError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"n_mel": 3})


# ----------------------------------------------------------------------------- bundles


def _save(tmp_path: Path, name: str = "m6") -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(name, TINY)
    model.fit_input_stats(torch.randn(10, 2 * TINY.n_mels) + 3, torch.rand(10, TINY.n_tags) + 1)
    path = save_bundle(
        tmp_path / "bundle",
        model,
        method=name,
        model_config=TINY,
        target_mean=12.5,
        target_std=2.0,
        catalog=[3.0, 1.0, 2.0, 4.0],
        subset="western",
        audio_config=AudioConfig(tagger_seconds=15.0),
        tagger="MTT_musicnn",
        data_version="abc",
        metrics={"spearman_rho": 0.3, "kendall_tau": float("nan")},
    )
    return path, model


@pytest.mark.parametrize("name", ["m1", "m6"])
def test_bundle_round_trip(tmp_path: Path, name: str) -> None:
    path, model = _save(tmp_path, name)
    assert sorted(p.name for p in path.iterdir()) == [META_FILE, WEIGHTS_FILE]
    bundle = load_bundle(path, device="cpu")
    assert not bundle.model.training
    mel, tags = _inputs()
    model.eval()
    torch.testing.assert_close(bundle.model(mel, tags), model(mel, tags))
    meta = bundle.meta
    assert (meta.method, meta.subset, meta.tagger, meta.catalog) == (
        name,
        "western",
        "MTT_musicnn",
        (1.0, 2.0, 3.0, 4.0),
    )
    assert meta.model_config == TINY
    assert meta.audio_config == AudioConfig(tagger_seconds=15.0)
    assert np.isnan(meta.metrics["kendall_tau"])


def test_bundle_missing_weights_names_the_file(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match=WEIGHTS_FILE):
        load_bundle(path)


def test_bundle_damaged_or_mismatched_weights(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    (path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match=WEIGHTS_FILE):
        load_bundle(path)
    path, _ = _save(tmp_path)
    meta = json.loads((path / META_FILE).read_text())
    meta["method"] = "m5"  # m5's CNN has no inception branches
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unexpected"):
        load_bundle(path)


def test_bundle_missing_or_bad_meta(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=META_FILE):
        read_meta(tmp_path)
    path, _ = _save(tmp_path)
    meta = json.loads((path / META_FILE).read_text())
    (path / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match="format_version"):
        load_bundle(path)
    (path / META_FILE).write_text(json.dumps({**meta, "audio_config": {**meta["audio_config"], "mel_scale": "htk"}}))
    with pytest.raises(ModelError, match="mel_scale"):
        load_bundle(path)
    (path / META_FILE).write_text(json.dumps({**meta, "tagger": "../../evil"}))
    with pytest.raises(ModelError, match="unknown tagger"):
        load_bundle(path)


def test_bundle_weights_of_another_dtype_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path, _ = _save(tmp_path)
    state = load_file(str(path / WEIGHTS_FILE))
    save_file({k: v.double() for k, v in state.items()}, str(path / WEIGHTS_FILE))
    with pytest.raises(ModelError, match="wrong dtype"):
        load_bundle(path)


def test_cnn_band_standardisation_matches_pooled_statistics() -> None:
    g = torch.Generator().manual_seed(3)
    mel = torch.randn(6, TINY.n_mels, 30, generator=g) * 2 + 5
    model = build_model("m3", TINY)
    model.fit_input_stats(mel_stats(mel), torch.zeros(6, TINY.n_tags))
    pooled = mel.transpose(0, 1).reshape(TINY.n_mels, -1)  # (n_mels, songs * frames)
    torch.testing.assert_close(model.mel_mean, pooled.mean(dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.mel_std, pooled.std(dim=1, unbiased=False), rtol=1e-5, atol=1e-5)
    z = model.standardise(mel)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-2


@pytest.mark.parametrize("reduce", [None, 3, 4])
def test_inception_reduce_is_the_option_it_says(reduce: int | None) -> None:
    config = ModelConfig(**{**TINY.to_dict(), "inception_reduce": reduce})
    model = build_model("m3", config)
    mel, tags = _inputs()
    total = TINY.conv1_channels + sum(ch for ch, _ in TINY.inception_branches)
    early = model.early(mel)
    assert early.shape[1] == (total if reduce is None else reduce)
    assert model.body.conv2.in_channels == early.shape[1]
    assert ("reduce.weight" in model.state_dict()) == (reduce is not None)
    assert model(mel, tags).shape == (mel.shape[0],)
    with pytest.raises(ConfigError, match="inception_reduce"):
        ModelConfig(**{**TINY.to_dict(), "inception_reduce": 0})
