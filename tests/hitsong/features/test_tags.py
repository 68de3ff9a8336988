"""Tag vectors in the feature store: the real MTT_musicnn port, no stand-in."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest

from hitsong.audio import AudioConfig, decode_for_features
from hitsong.errors import HitsongWarning
from hitsong.features import MelDataset, build_features, tagger_audio_config
from hitsong.store import connect
from hitsong.tagger import GENRE_TAGS, Tagger, predominant_genre
from tests.helpers.audio import make_db, make_library

pytestmark = pytest.mark.timeout(180)

CFG = AudioConfig(seconds=6.0)


def test_store_keeps_each_songs_tag_vector_and_genre(tmp_path) -> None:
    specs = [("t1", ".mp3", 8.0, 44100, 2), ("t2", ".wav", 7.0, 22050, 1), ("t3", ".flac", 2.0, 44100, 2)]
    songs = make_library(tmp_path / "audio", specs)
    songs["audio_path"] = [str(tmp_path / "audio" / p) for p in songs["audio_path"]]
    db, store = make_db(tmp_path, songs), tmp_path / "store"

    report = build_features(db, store, workers=1, tagger="MTT_musicnn", config=CFG)
    assert (report.computed, report.failed) == (3, 0)
    with connect(db, read_only=True) as con:
        rows = con.execute("SELECT song_id, model, tags, genre FROM song_tags ORDER BY song_id").fetchall()
    assert [r[0] for r in rows] == ["t1", "t2", "t3"]

    # the stored vector is the tagger's output on the same 16 kHz middle segment, in the
    # precision the store records (CFG asks for "auto": "fast" where the CPU has native bfloat16)
    recorded = tagger_audio_config(CFG, "MTT_musicnn").tagger_precision
    tagger = Tagger.from_pretrained("MTT_musicnn", device="cpu", precision=recorded)
    for (song_id, model, tags, genre), path in zip(rows, songs["audio_path"], strict=True):
        assert model == "MTT_musicnn" and len(tags) == 50
        assert genre in GENRE_TAGS
        with (
            pytest.warns(HitsongWarning, match=r"t3\.flac: 2\.00 s of audio is shorter")
            if song_id == "t3"
            else nullcontext()
        ):
            _, wave16, _ = decode_for_features(path, config=CFG)
            want = tagger.tag_batch([wave16], sr=16000)[0].song
        np.testing.assert_allclose(tags, want, atol=1e-5)
        assert genre == predominant_genre(want)

    # a second run skips them
    again = build_features(db, store, workers=1, tagger="MTT_musicnn", config=CFG)
    assert (again.computed, again.skipped) == (0, 3)

    # the loader attaches the vectors
    datasets = [MelDataset(db, store, "western", split) for split in ("train", "val", "test")]
    items = [ds[i] for ds in datasets for i in range(len(ds))]
    assert all(item["has_tags"] for item in items)
    by_id = {r[0]: np.asarray(r[2], dtype=np.float32) for r in rows}
    for item in items:
        np.testing.assert_array_equal(item["tags"], by_id[item["song_id"]])
