"""``hitsong train`` end to end on a real DuckDB and feature store (local tracking, tiny profile)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers_audio import make_db, make_library

from hitsong.cli import main
from hitsong.features import build_features

pytestmark = pytest.mark.timeout(300)

#: Eight short WAV songs; the store pads them to the paper's 60 s (128 x 646).
SPECS = [(f"t{i}", ".wav", 3.0, 22050, 1) for i in range(8)]


def test_train_command_writes_table_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    songs = make_library(tmp_path / "audio", SPECS)
    songs["audio_path"] = [str(tmp_path / "audio" / p) for p in songs["audio_path"]]
    db = make_db(tmp_path, songs)
    store = tmp_path / "features"
    build_features(db, store, workers=1, tagger="none")  # short songs are zero-padded (logged)
    out = tmp_path / "results"
    code = main([
        "train", "--db", str(db), "--store", str(store), "--subset", "western", "--methods", "m1,m4,m2",
        "--profile", "tiny", "--threads", "1", "--tagger", "none", "--tracker", "local", "--bootstrap", "20",
        "--out", str(out),
    ])
    assert code == 0
    assert "Table 1 - subset western" in capsys.readouterr().out
    table = pd.read_csv(out / "table1.csv")
    assert sorted(set(table["method"])) == ["m1", "m2", "m4"]
    runs = [json.loads(p.read_text()) for p in (out / "runs").rglob("run.json")]
    assert len(runs) == 1 + 3 + 3 and {r["status"] for r in runs} == {"FINISHED"}
    bundle = json.loads(next((out / "runs").rglob("bundle.json")).read_text())
    assert bundle["audio_config"]["n_mels"] == 128 and bundle["subset"] == "western"


def test_train_command_unknown_method_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--db", str(tmp_path / "none.duckdb"), "--subset", "x", "--methods", "m1,m9"]) == 1
    assert "unknown method 'm9'; valid methods: m1, m2, m3, m4, m5, m6" in capsys.readouterr().err
