"""Who may register and promote, against a real ``mlflow server --app-name basic-auth``.

The admin trains a tiny run and registers ``hitsong-auth``. ``alice`` is granted EDIT on the
model, ``bob`` only has the default READ: alice can promote, bob gets a clear refusal and
nothing changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hitsong.errors import ConfigError, RegistryError
from hitsong.tracking import run_scope
from hitsong.training import runlayout
from registry.models import list_versions, promote, register
from registry.tracking import MlflowRunLogger
from tests.helpers.mlflow import mlflow_server

ALICE = ("alice", "alice-password-123")
BOB = ("bob", "bob-password-1234")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("auth"), auth=True) as srv:
        srv.create_user(*ALICE)
        srv.create_user(*BOB)
        yield srv


@pytest.fixture(scope="module")
def model(server, tmp_path_factory):
    """Admin logs one child run with a tiny m4 bundle and registers it as version 1."""
    from hitsong.audio import AudioConfig
    from hitsong.bundle import save_bundle
    from hitsong.models import build_model
    from hitsong.models.config import ModelConfig

    config = ModelConfig.tiny(n_mels=16, n_tags=50)
    bundle = save_bundle(
        tmp_path_factory.mktemp("bundle") / "model", build_model("m4", config), method="m4", model_config=config,
        target_mean=10.0, target_std=2.0, catalog=np.linspace(5, 15, 11), subset="auth",
        audio_config=AudioConfig(n_mels=16, seconds=4.0), tagger="MTT_musicnn",
    )  # fmt: skip
    with server.as_user(*server.admin):
        logger = MlflowRunLogger.for_subset("unit", "auth", tracking_uri=server.uri)
        with run_scope(logger, "m4 tag+LR", tags={runlayout.TAG_KIND: runlayout.METHOD, "method": "m4"}) as parent:
            with run_scope(
                logger,
                "m4 rep 0",
                parent=parent,
                tags={runlayout.TAG_KIND: runlayout.REPETITION, "method": "m4", "repetition": "0"},
            ) as child:
                logger.log_metrics(child, {"test_ndcg_at_k": 0.5, "test_kendall_tau": 0.2, "val_spearman_rho": 0.3})
                logger.log_bundle(child, Path(bundle))
    admin_user, admin_pw = server.admin
    first = register("auth", tracking_uri=server.uri, username=admin_user, password=admin_pw)
    server.grant(ALICE[0], first["model"], "EDIT")
    return first["model"]


def test_reader_cannot_register_a_version(server, model):
    with pytest.raises(RegistryError, match=rf"user bob lacks permission.*{model}.*ask an admin to grant EDIT"):
        register("auth", tracking_uri=server.uri, username=BOB[0], password=BOB[1])


def test_reader_cannot_promote_and_nothing_changes(server, model):
    with pytest.raises(RegistryError, match=rf"user bob lacks permission to tag version of {model}"):
        promote(model, 1, "bob wants it", tracking_uri=server.uri, username=BOB[0], password=BOB[1])
    rows = list_versions(model, tracking_uri=server.uri, username=BOB[0], password=BOB[1])  # READ may list
    assert rows[0]["aliases"] == [] and "hitsong.promoted_by" not in rows[0]["tags"]


def test_wrong_password_is_named(server, model):
    with pytest.raises(RegistryError, match="refused the credentials of user alice"):
        promote(model, 1, "x", tracking_uri=server.uri, username="alice", password="wrong-password-000")


def test_editor_promotes_with_audit_trail(server, model):
    with pytest.raises(ConfigError, match="reason"):
        promote(model, 1, "", tracking_uri=server.uri, username=ALICE[0], password=ALICE[1])
    out = promote(model, 1, "first champion", tracking_uri=server.uri, username=ALICE[0], password=ALICE[1])
    assert out["promoted_by"] == "alice"
    rows = list_versions(model, tracking_uri=server.uri, username=ALICE[0], password=ALICE[1])
    assert rows[0]["aliases"] == ["champion"]
    assert rows[0]["tags"]["hitsong.promoted_by"] == "alice"
    assert rows[0]["tags"]["hitsong.promotion_reason"] == "first champion"
