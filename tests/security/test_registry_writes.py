"""Registry writes under faults, against a real ``mlflow server`` behind a fault-injecting proxy.

Promotion writes the audit record before it moves any alias: when the record cannot be written
no alias moves, and when the alias cannot be moved the record of the attempt is there. So no
champion is ever without its record, whichever call fails. A server that refuses the client's
Host header (MLflow's DNS-rebinding check, e.g. ``mlflow:5000`` against a server started without
``--allowed-hosts mlflow``) is named as such, not reported as a missing permission.
"""

from __future__ import annotations

import pytest

from hitsong.errors import RegistryError
from registry.models import list_versions, promote, register
from registry.tracking import client_for
from tests.helpers.dashboard import log_champion
from tests.helpers.mlflow import mlflow_server
from tests.helpers.proxy import FaultProxy

MODEL = "hitsong-western"
AUDIT = ("hitsong.promoted_by", "hitsong.promoted_at", "hitsong.promotion_reason", "hitsong.promotion_previous")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Champion v1 and a registered v2, on a server that answers to ``mlflow`` (and localhost)."""
    home = tmp_path_factory.mktemp("writes")
    with mlflow_server(home, allowed_hosts=("mlflow",)) as srv:
        first = log_champion(srv.uri, home)
        second = register("western", experiment="hitsong/champion/western", tracking_uri=srv.uri)
        assert (first["version"], second["version"]) == ("1", "2")
        yield srv


def _versions(uri: str) -> dict[str, dict]:
    return {v["version"]: v for v in list_versions(MODEL, tracking_uri=uri)}


def _every_champion_has_its_record(uri: str) -> None:
    for v in _versions(uri).values():
        if "champion" in v["aliases"]:
            assert all(v["tags"].get(k) is not None for k in AUDIT[:3]), f"champion v{v['version']} has no record"


def test_a_failed_audit_write_moves_no_alias(server):
    with FaultProxy(server.uri, fail={"model-versions/set-tag"}) as proxy:
        with pytest.raises(RegistryError, match="INJECTED_FAULT"):
            promote(MODEL, 2, "v2 is better", tracking_uri=proxy.uri)
        assert proxy.failed  # the fault was hit
    versions = _versions(server.uri)
    assert versions["1"]["aliases"] == ["champion"] and versions["2"]["aliases"] == []
    _every_champion_has_its_record(server.uri)


def test_the_record_is_written_before_the_alias_moves(server):
    with FaultProxy(server.uri, fail={"registered-models/alias"}) as proxy:
        with pytest.raises(RegistryError, match="INJECTED_FAULT"):
            promote(MODEL, 2, "v2 is better, second try", tracking_uri=proxy.uri)
    versions = _versions(server.uri)
    assert versions["1"]["aliases"] == ["champion"]  # nothing served changed ...
    tags = versions["2"]["tags"]  # ... and the attempt is on record
    assert tags["hitsong.promotion_reason"] == "v2 is better, second try"
    assert tags["hitsong.promotion_previous"] == "1"
    _every_champion_has_its_record(server.uri)
    done = promote(MODEL, 2, "v2 is better, third try", tracking_uri=server.uri)  # no fault: it completes
    versions = _versions(server.uri)
    assert done["previous"] == "1" and versions["2"]["aliases"] == ["champion"]
    assert versions["1"]["aliases"] == ["challenger"] and "hitsong.demoted_at" in versions["1"]["tags"]
    _every_champion_has_its_record(server.uri)


def test_a_refused_host_header_is_named_with_its_fix(server):
    with FaultProxy(server.uri, host="mlflow:5000") as proxy:  # the name compose gives the server
        assert _versions(proxy.uri)["1"]["version"] == "1"
        client_for(proxy.uri)
    with FaultProxy(server.uri, host="evil.example") as proxy:  # a name the server was not started with
        for call in (
            lambda: list_versions(MODEL, tracking_uri=proxy.uri),  # the REST client
            lambda: promote(MODEL, 1, "x", tracking_uri=proxy.uri),
            lambda: client_for(proxy.uri),  # what every dashboard read and `hitsong predict` check first
        ):
            with pytest.raises(RegistryError) as refused:
                call()
            message = str(refused.value)
            assert "refused the Host header" in message and "--allowed-hosts" in message
            assert "permission" not in message and "EDIT" not in message
