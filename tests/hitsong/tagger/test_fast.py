"""The tagger's two precisions: ``exact`` is the port's function, ``fast`` stays within its stated bounds.

``exact`` runs :class:`~hitsong.tagger.kernels.MusiCNNKernel` in float32; the parity tests
(``test_parity.py``) compare it with the original TensorFlow outputs. Here: the kernel
against the port (a second implementation), ``fast`` against ``exact`` on the real reference
clips, the ranking of m4 predictions, and which precision is chosen and recorded where.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import hitsong.tagger.precision as precision_mod
from hitsong.audio import AudioConfig
from hitsong.errors import ConfigError, ModelError
from hitsong.tagger import MTT_TAGS, Tagger
from hitsong.tagger.kernels import MusiCNNKernel
from hitsong.tagger.precision import (
    FAST_PATCH_TOLERANCE,
    FAST_SONG_TOLERANCE,
    native_bf16,
    native_int8,
    resolve_audio_config,
    resolve_precision,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "musicnn"
CLIPS = ("lincity_city_blues", "wz2100_ost_track1", "xmoto_speeditup")


@pytest.fixture(scope="module")
def exact() -> Tagger:
    return Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="exact")


@pytest.fixture(scope="module")
def fast(exact: Tagger) -> Tagger:
    """The fast kernel, also on CPUs where ``auto`` would not pick it (int8 and bfloat16 are slow there)."""
    tagger = Tagger(exact.net, exact.name, exact.device)
    tagger.runner = MusiCNNKernel(exact.net, precision="fast").eval()
    return tagger


@pytest.fixture(scope="module")
def patches(exact: Tagger) -> dict[str, np.ndarray]:
    from hitsong.tagger.frontend import load_audio_16k, log_mel, patch

    return {c: patch(log_mel(load_audio_16k(DATA / "audio" / f"{c}.wav")))[0] for c in CLIPS}


def test_exact_kernel_is_the_port(exact: Tagger, patches: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Pooling before the activation (and negated filters) changes nothing beyond float32 rounding."""
    net = exact.net
    # the weights have channels with negative batch-norm scale, so the negated-filter branch runs
    assert all(bool((blk.bn.weight < 0).any()) for blk in (*net.timbral, *net.temporal))
    real = patches["xmoto_speeditup"][:3]
    noise = rng.normal(0.5, 1.0, (2, 187, 96)).astype(np.float32)
    short = rng.normal(0.5, 1.0, (2, 40, 96)).astype(np.float32)  # other lengths work as in the port
    with torch.inference_mode():
        for x in (np.concatenate([real, noise]), short):
            want = net(torch.from_numpy(x)).numpy()
            for chunk in (1, 4):
                got = MusiCNNKernel(net, precision="exact", front_chunk=chunk)(torch.from_numpy(x)).numpy()
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_fast_is_within_its_stated_bounds_on_the_reference_clips(
    exact: Tagger, fast: Tagger, patches: dict[str, np.ndarray]
) -> None:
    for clip in CLIPS:
        want, got = exact.predict_patches(patches[clip]), fast.predict_patches(patches[clip])
        assert float(np.abs(got - want).max()) <= FAST_PATCH_TOLERANCE, clip
        song_want, song_got = want.mean(axis=0), got.mean(axis=0)
        assert float(np.abs(song_got - song_want).max()) <= FAST_SONG_TOLERANCE, clip
        top3 = [MTT_TAGS[i] for i in np.argsort(-song_want, kind="stable")[:3]]
        assert [MTT_TAGS[i] for i in np.argsort(-song_got, kind="stable")[:3]] == top3, clip
        # and the difference is real: fast is not secretly exact
        assert float(np.abs(got - want).max()) > 1e-5, clip


def test_fast_ranks_m4_predictions_like_exact(exact: Tagger, fast: Tagger, patches: dict[str, np.ndarray]) -> None:
    """m4 on fast tags orders songs as m4 on exact tags (Spearman >= 0.999).

    Songs: 80 seeded draws of 5 patches (15 s) from the 37 real patches of the three clips,
    tag vector = mean over the song's patches. m4: the real module, standardised on the exact
    tags, with a seeded random linear layer.
    """
    from hitsong.models import build_model
    from hitsong.models.config import ModelConfig

    all_patches = np.concatenate([patches[c] for c in CLIPS])  # (37, 187, 96)
    p_exact, p_fast = exact.predict_patches(all_patches), fast.predict_patches(all_patches)
    rng = np.random.default_rng(4)
    songs = [rng.choice(len(all_patches), size=5, replace=False) for _ in range(80)]
    tags_exact = torch.from_numpy(np.stack([p_exact[s].mean(axis=0) for s in songs]))
    tags_fast = torch.from_numpy(np.stack([p_fast[s].mean(axis=0) for s in songs]))
    torch.manual_seed(0)
    m4 = build_model("m4", ModelConfig()).eval()
    m4.fit_input_stats(torch.zeros(len(songs), 256), tags_exact)
    mel = torch.zeros(len(songs), 128, 8)
    with torch.inference_mode():
        pred_exact, pred_fast = m4(mel, tags_exact).numpy(), m4(mel, tags_fast).numpy()
    assert np.std(pred_exact) > 0.1  # the head is not flat: the ranking means something
    rho = spearmanr(pred_exact, pred_fast).statistic
    assert rho >= 0.999, rho


def test_precision_resolution() -> None:
    assert resolve_precision("exact", device="cpu") == "exact"
    assert resolve_precision("fast", device="cpu", model="MTT_vgg") == "exact"  # no fast kernel
    assert resolve_precision("auto", device="cuda") == "exact"  # measured on CPUs only
    want = "fast" if native_bf16() and native_int8() else "exact"
    assert resolve_precision("auto", device="cpu") == want
    assert resolve_precision("fast", device="cpu", model="MTT_musicnn") == want
    with pytest.raises(ConfigError, match="auto, exact, fast"):
        resolve_precision("bf16")
    with pytest.raises(ConfigError, match="tagger_precision"):
        AudioConfig(tagger_precision="half")
    with pytest.raises(ModelError, match="resolved precision"):
        MusiCNNKernel(Tagger.from_pretrained(device="cpu").net, precision="auto")


@pytest.mark.parametrize("missing", ["native_bf16", "native_int8"])
def test_unsupported_cpu_falls_back_to_exact_and_records_it(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setattr(precision_mod, missing, lambda: False)
    tagger = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="fast")
    assert tagger.precision == "exact" and tagger.runner.precision == "exact"
    for requested in ("auto", "fast"):
        resolved = resolve_audio_config(AudioConfig(tagger_precision=requested), device="cpu")
        assert resolved.tagger_precision == "exact"
        assert resolved.to_dict()["tagger_precision"] == "exact"
        assert resolved.config_hash() == AudioConfig(tagger_precision="exact").config_hash()


@pytest.mark.skipif(
    not (native_bf16() and native_int8()), reason="no native bfloat16 and int8 here: auto resolves to exact"
)
def test_supported_cpu_runs_fast_and_records_it() -> None:
    tagger = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision="auto")
    assert tagger.precision == "fast" and tagger.runner.precision == "fast"
    resolved = resolve_audio_config(AudioConfig(), device="cpu", model="MTT_musicnn")
    assert resolved.tagger_precision == "fast"
    assert resolved.config_hash() != AudioConfig(tagger_precision="exact").config_hash()


def test_feature_store_records_the_precision_that_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hitsong.features import build_features
    from hitsong.store import connect, featureindex
    from tests.helpers.audio import make_db, make_library

    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)  # an unsupported CPU
    songs = make_library(tmp_path / "audio", [("t1", ".wav", 4.0, 22050, 1)])
    songs["audio_path"] = [str(tmp_path / "audio" / p) for p in songs["audio_path"]]
    db = make_db(tmp_path, songs)
    config = AudioConfig(seconds=4.0, tagger_precision="fast")
    report = build_features(db, tmp_path / "store", workers=1, tagger="MTT_musicnn", config=config)
    assert report.computed == 1
    with connect(db, read_only=True) as con:
        meta = featureindex.subset_meta(con, "western")
        (config_json,) = con.execute("SELECT config_json FROM feature_meta WHERE subset = 'western'").fetchone()
    assert json.loads(config_json)["tagger_precision"] == "exact"
    assert meta is not None and meta.config_hash == AudioConfig(seconds=4.0, tagger_precision="exact").config_hash()


def test_bundles_from_before_the_setting_score_with_exact_tags() -> None:
    from hitsong.bundle import BundleMeta

    doc = {"format_version": 1, "method": "m4", "model_config": {}, "target_mean": 1.0, "target_std": 1.0,
           "catalog": [1.0], "subset": "s", "audio_config": {"sr": 22050, "tagger_seconds": 15.0}}  # fmt: skip
    assert BundleMeta.from_json(doc, source=Path("old")).audio_config.tagger_precision == "exact"
    doc["audio_config"] = {"tagger_precision": "fast"}
    assert BundleMeta.from_json(doc, source=Path("new")).audio_config.tagger_precision == "fast"


def test_patches_in_parallel_threads_give_the_same_tags(exact: Tagger, patches: dict[str, np.ndarray]) -> None:
    """Worker threads (one torch thread each) compute the front end; the caller's threads are unchanged."""
    from hitsong.tagger.kernels import patch_pool

    x = torch.from_numpy(patches["wz2100_ost_track1"])
    kernel = MusiCNNKernel(exact.net, precision="exact")
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            sequential = kernel(x)
            torch.set_num_threads(2)
            parallel = kernel(x)
        assert torch.get_num_threads() == 2
        assert patch_pool(2).submit(torch.get_num_threads).result() == 1
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(parallel.numpy(), sequential.numpy(), rtol=0, atol=1e-5)
