"""The artist-disjoint split: no artist in two splits, sizes within the stated bound, seeded, recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hitsong.cli import main
from hitsong.store.ingest import ingest
from hitsong.store.read import last_sample, split_frame
from hitsong.store.sample import artist_key, group_split, sample, split_counts
from hitsong.store.schema import SPLITS
from tests.helpers.store import WINDOW_START, write_events, write_songs

#: Songs per subset in the store below, and the largest artist's share of its catalogue.
N_SONGS = 240


def _artist_store(folder: Path, rng: np.random.Generator) -> Path:
    """Two subsets of 240 songs by ~70 artists of Zipf-like sizes (1 to ~15 songs), some names
    written in other case and spacing, and a few songs without an artist; every song played."""
    songs, events = [], []
    for subset in ("m", "w"):
        weights = 1.0 / np.arange(1, 71) ** 0.8
        artists = rng.choice(70, size=N_SONGS, p=weights / weights.sum())
        for i, a in enumerate(artists):
            name = f"Artist {subset}{a}"
            if i % 7 == 0:
                name = f"  artist   {subset}{a} ".upper()  # the same artist, spelled differently
            if i % 41 == 0:
                name = ""  # unknown artist
            day = WINDOW_START - timedelta(days=int(rng.integers(0, 500)))
            song_id = f"{subset}{i:04d}"
            songs.append((song_id, f"t{i}", name, subset, day.isoformat(), f"{subset}/{i}.mp3"))
            events.append(("u1", song_id, int(rng.integers(1, 50))))
    db = folder / "db.duckdb"
    ingest(db, write_events(folder, events), write_songs(folder, songs), window_start=WINDOW_START)
    return db


@pytest.fixture
def artist_db(tmp_path: Path, rng: np.random.Generator) -> Path:
    return _artist_store(tmp_path, rng)


def _largest_artist(frame: pd.DataFrame) -> int:
    keys = frame["artist"].map(artist_key).dropna()
    return int(keys.value_counts().max())


def test_no_artist_crosses_splits_and_sizes_keep_the_bound(artist_db: Path) -> None:
    fractions = (0.7, 0.15, 0.15)
    sample(artist_db, per_subset=N_SONGS, seed=3, split=fractions, by="artist")
    frame = split_frame(artist_db)
    for subset, grp in frame.groupby("subset"):
        keyed = grp.assign(key=grp["artist"].map(artist_key))
        known = keyed.dropna(subset=["key"])
        per_artist = known.groupby("key")["split"].nunique()
        assert (per_artist == 1).all(), per_artist[per_artist > 1]
        # different spellings of one artist are one artist
        assert known["artist"].nunique() > known["key"].nunique()
        sizes = grp["split"].value_counts().reindex(list(SPLITS), fill_value=0).to_numpy()
        target = np.array(split_counts(len(grp), fractions))
        g = _largest_artist(grp)
        assert (sizes - target).max() <= g - 1, (subset, sizes, target, g)
        assert (target - sizes).max() <= (len(SPLITS) - 1) * (g - 1), (subset, sizes, target, g)
        # in practice far closer than the bound: within 3 percentage points of each fraction
        assert np.abs(sizes / len(grp) - np.array(fractions)).max() <= 0.03, (subset, sizes)


def test_artist_split_is_seeded_and_recorded(artist_db: Path) -> None:
    sample(artist_db, per_subset=N_SONGS, seed=3, by="artist")
    first = split_frame(artist_db)
    sample(artist_db, per_subset=N_SONGS, seed=4, by="artist")
    other = split_frame(artist_db)
    record = last_sample(artist_db)
    assert record is not None and (record.by, record.seed, record.per_subset) == ("artist", 4, N_SONGS)
    assert record.fractions == (0.8, 0.1, 0.1)
    sample(artist_db, per_subset=N_SONGS, seed=3, by="artist")
    pd.testing.assert_frame_equal(first, split_frame(artist_db))
    pairs = {(a, b) for a, b in zip(first["song_id"], first["split"], strict=True)}
    assert pairs != {(a, b) for a, b in zip(other["song_id"], other["split"], strict=True)}
    sample(artist_db, per_subset=N_SONGS, seed=3)  # back to random: the log says so
    assert last_sample(artist_db).by == "random"  # type: ignore[union-attr]


def test_random_split_leaks_artists(artist_db: Path) -> None:
    """The reason for the artist split: a random split shares most artists between train and test."""
    sample(artist_db, per_subset=N_SONGS, seed=3)
    frame = split_frame(artist_db).assign(key=lambda f: f["artist"].map(artist_key))
    train = set(frame.loc[frame["split"] == "train", "key"].dropna())
    test = frame.loc[frame["split"] == "test", "key"].dropna()
    assert test.isin(train).mean() > 0.5


def test_group_split_bound_holds_for_any_group_sizes() -> None:
    """The documented bound, on 100 random catalogues: over by at most g-1, under by at most (S-1)(g-1)."""
    for trial in range(100):
        rng = np.random.default_rng(trial)
        n = int(rng.integers(5, 120))
        n_groups = int(rng.integers(1, n + 1))
        groups = [f"a{k}" for k in rng.integers(0, n_groups, size=n)]
        fractions = rng.dirichlet(np.ones(3))
        counts = split_counts(n, fractions)
        labels = group_split([f"s{i}" for i in range(n)], groups, counts, rng=rng)
        sizes = np.bincount(labels, minlength=3)
        g = pd.Series(groups).value_counts().max()
        assert sizes.sum() == n
        assert (sizes - np.array(counts)).max() <= g - 1, (trial, sizes, counts, g)
        assert (np.array(counts) - sizes).max() <= 2 * (g - 1), (trial, sizes, counts, g)
        assert pd.DataFrame({"g": groups, "s": labels}).groupby("g")["s"].nunique().max() == 1


def test_songs_without_an_artist_are_groups_of_their_own() -> None:
    labels = group_split([f"s{i}" for i in range(10)], [None] * 10, (8, 1, 1), rng=np.random.default_rng(0))
    assert np.bincount(labels, minlength=3).tolist() == [8, 1, 1]
    assert artist_key(None) is None and artist_key("  ") is None and artist_key(float("nan")) is None
    assert artist_key(" The  Band ") == artist_key("the band") == "the band"


#: ``hitsong demo run``'s split fractions (``dashboard.pipeline.DEMO_SPLIT``).
DEMO_SPLIT = (0.7, 0.15, 0.15)


def test_demo_catalogue_splits_close_to_its_fractions() -> None:
    """On the default demo's catalogue (160 songs per market by 40 artists), the demo's 70/15/15."""
    from hitsong.demo.writer import DemoConfig, build_catalogue

    songs, _ = build_catalogue(DemoConfig())
    for subset, grp in songs.groupby("subset"):
        counts = split_counts(len(grp), DEMO_SPLIT)
        labels = group_split(
            grp["song_id"].tolist(), [artist_key(a) for a in grp["artist"]], counts, rng=np.random.default_rng(2017)
        )
        shares = np.bincount(labels, minlength=3) / len(grp)
        assert np.abs(shares - np.array(DEMO_SPLIT)).max() <= 0.01, (subset, shares)


def test_cli_sample_by_artist(artist_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--db", str(artist_db), "--per-subset", "100", "--seed", "1", "--by", "artist"]) == 0
    assert "train" in capsys.readouterr().out
    assert last_sample(artist_db).by == "artist"  # type: ignore[union-attr]


def test_the_sample_command_offers_exactly_the_split_methods_of_the_store() -> None:
    import argparse

    from hitsong.commands import data as data_commands
    from hitsong.store.sample import SAMPLE_BY

    sub = argparse.ArgumentParser().add_subparsers()
    data_commands.register(sub)
    by = next(a for a in sub.choices["sample"]._actions if a.dest == "by")
    assert tuple(by.choices) == SAMPLE_BY
