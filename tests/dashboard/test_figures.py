"""Unit tests of the dashboard's figure and table builders (no browser, no server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import figures
from hitsong.errors import InputError


def _summary() -> pd.DataFrame:
    rows = [
        ("m1", "recall_at_k", 0.19, 0.02, 0.17, 0.21),
        ("m6", "recall_at_k", 0.30, 0.01, 0.29, 0.31),
        ("m1", "kendall_tau", 0.17, 0.03, 0.14, 0.20),
        ("m6", "kendall_tau", 0.13, 0.00, 0.13, 0.13),
    ]
    return pd.DataFrame(rows, columns=["method", "metric", "mean", "std", "ci_low", "ci_high"])


def test_table1_marks_the_best_of_each_column_and_formats_cells():
    table = figures.table1_frame(_summary())
    assert list(table.columns) == ["recall@k", "Kendall τ"]  # Table-1 order, only present metrics
    assert list(table.index) == ["m1", "m6"]
    assert table.at["m6", "recall@k"] == "0.300 ± 0.010 [0.290, 0.310] ★"
    assert table.at["m1", "recall@k"] == "0.190 ± 0.020 [0.170, 0.210]"
    assert table.at["m1", "Kendall τ"].endswith(figures.BEST_MARK)
    assert not table.at["m6", "Kendall τ"].endswith(figures.BEST_MARK)
    no_ci = figures.table1_frame(_summary(), with_interval=False)
    assert no_ci.at["m6", "recall@k"] == "0.300 ± 0.010 ★"
    styles = figures.table1_styler(table)._compute().ctx  # {(row, col): [(prop, value)]}
    bold = sorted(cell for cell, props in styles.items() if ("font-weight", "bold") in props)
    assert bold == [(0, 1), (1, 0)]  # m1's tau, m6's recall


def test_table1_marks_every_tied_best():
    summary = _summary()
    summary.loc[summary["metric"] == "recall_at_k", "mean"] = 0.25
    table = figures.table1_frame(summary)
    assert table["recall@k"].str.endswith(figures.BEST_MARK).all()


def test_table1_missing_cell_and_bad_frame():
    summary = _summary().iloc[:3]  # m6 has no Kendall tau
    assert figures.table1_frame(summary).at["m6", "Kendall τ"] == "–"
    with pytest.raises(InputError, match="lacks column"):
        figures.table1_frame(summary.drop(columns="std"))


def test_repetition_spread_has_a_box_per_method_with_every_point():
    reps = pd.DataFrame({"method": ["m1", "m1", "m2"], "repetition": [0, 1, 0], "ndcg_at_k": [0.1, 0.2, 0.4]})
    fig = figures.repetition_spread(reps, metric="ndcg_at_k")
    assert fig.data[0].type == "box" and fig.data[0].boxpoints == "all"
    assert sorted(fig.data[0].y) == [0.1, 0.2, 0.4]
    with pytest.raises(InputError, match="unknown metric"):
        figures.repetition_spread(reps, metric="accuracy")


def test_learning_curves_one_line_per_key():
    history = pd.DataFrame(
        {"key": ["train_loss"] * 3 + ["val_loss"] * 3, "step": [0, 1, 2] * 2, "value": [1.0, 0.5, 0.2, 1.1, 0.8, 0.7]}
    )
    fig = figures.learning_curves(history)
    assert sorted(t.name for t in fig.data) == ["train_loss", "val_loss"]
    val = next(t for t in fig.data if t.name == "val_loss")
    assert list(val.y) == [1.1, 0.8, 0.7]
    assert len(figures.learning_curves(history.iloc[:0]).data) == 0  # a message, no traces


def test_run_comparison_marks_differing_rows():
    runs = [
        {
            "name": "m2-rep0",
            "params": {"lr": "0.005", "seed": "0"},
            "metrics": {"test_ndcg_at_k": 0.3, "val_ndcg_at_k": 0.4},
        },
        {
            "name": "m2-rep1",
            "params": {"lr": "0.005", "seed": "1"},
            "metrics": {"test_ndcg_at_k": 0.2, "val_ndcg_at_k": 0.4},
        },
    ]
    table = figures.run_comparison_table(runs)
    assert list(table.columns) == ["m2-rep0", "m2-rep1", "differs"]
    assert list(table.index) == ["params.lr", "params.seed", "metrics.test_ndcg_at_k", "metrics.val_ndcg_at_k"]
    assert table["differs"].tolist() == [False, True, True, False]
    fig = figures.run_comparison_figure(runs)
    assert [t.name for t in fig.data] == ["m2-rep0", "m2-rep1"]
    assert list(fig.data[0].x) == ["val nDCG@k", "test nDCG@k"]


def test_quarter_figure_log_axis_and_quarter_order():
    frame = pd.DataFrame(
        {
            "subset": ["western"] * 4,
            "release_quarter": ["Q1", "-Q1", "Q1", "-Q1"],
            "quarter_index": [1, -1, 1, -1],
            "scope": ["whole", "whole", "sampled", "sampled"],
            "mean_playcount": [10.0, 100.0, 50.0, 500.0],
        }
    )
    fig = figures.quarter_playcount_figure(frame)
    assert fig.layout.yaxis.type == "log"
    assert {t.name for t in fig.data} == {"whole", "sampled"}
    whole = next(t for t in fig.data if t.name == "whole")
    assert list(whole.x) == ["-Q1", "Q1"] and list(whole.y) == [100.0, 10.0]


def test_hit_score_histogram_is_density_per_scope():
    frame = pd.DataFrame({"subset": ["a"] * 5, "scope": ["whole"] * 4 + ["test"], "hit_score": [1, 2, 3, 4, 2.5]})
    fig = figures.hit_score_histogram(frame)
    assert {t.name for t in fig.data} == {"whole", "test"}
    assert all(t.histnorm == "probability density" for t in fig.data)


def test_top_genre_counts_against_a_hand_counted_case():
    predictions = pd.DataFrame(
        {
            "method": ["m1"] * 4 + ["m2"] * 4,
            "song_id": list("abcd") * 2,
            "true": [4.0, 3.0, 2.0, 1.0] * 2,
            "predicted": [1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 1.0, 2.0],
        }
    )
    genres = pd.DataFrame({"song_id": list("abc"), "genre": ["pop", "rock", "pop"]})
    counts = figures.top_genre_counts(predictions, genres, top=2)
    got = {(r.source, r.genre): r.count for r in counts.itertuples()}
    # m1's top 2 by prediction: d (no genre), c (pop); m2's: a (pop), b (rock); truth: a, b
    assert got == {
        ("m1", "unknown"): 1,
        ("m1", "pop"): 1,
        ("m2", "pop"): 1,
        ("m2", "rock"): 1,
        (figures.TRUTH, "pop"): 1,
        (figures.TRUTH, "rock"): 1,
    }
    assert set(counts["n"]) == {2}
    fig = figures.genre_counts_figure(counts)
    assert fig.layout.annotations[0].text in {figures.TRUTH, "m1", "m2"}
    assert sum(sum(t.x) for t in fig.data) == 6


def test_taggram_and_score_over_time_axes():
    taggram = np.zeros((4, 3))
    taggram[2, 1] = 0.9
    fig = figures.taggram_heatmap(taggram, ["rock", "pop", "jazz"], seconds_per_row=3.0, offset=60.0)
    heat = fig.data[0]
    assert list(heat.y) == ["pop", "rock", "jazz"]  # strongest first (ties keep their order)
    assert np.asarray(heat.z).shape == (3, 4) and np.asarray(heat.z)[0, 2] == 0.9
    assert list(heat.x) == [61.5, 64.5, 67.5, 70.5]
    top = figures.taggram_heatmap(taggram, ["rock", "pop", "jazz"], seconds_per_row=3.0, top=1).data[0]
    assert list(top.y) == ["pop"] and np.asarray(top.z).shape == (1, 4)
    with pytest.raises(InputError, match="shape"):
        figures.taggram_heatmap(taggram, ["rock"], seconds_per_row=3.0)
    line = figures.score_over_time(np.array([0.0, 1.0, 2.0, 3.0]), seconds=60.0, score=1.5).data[0]
    assert list(line.x) == [7.5, 22.5, 37.5, 52.5]
    assert len(figures.score_over_time(np.array([]), seconds=60.0).data) == 0


def test_paired_test_frame_marks_intervals_that_exclude_zero():
    summary = pd.DataFrame(
        {
            "method": ["m1", "m2", "m3"],
            "metric": ["ndcg_at_k"] * 3,
            "mean": [0.2, 0.3, 0.21],
            "std": [0.0] * 3,
            "diff_m1": [0.0, 0.1, 0.01],
            "diff_m1_low": [np.nan, 0.05, -0.02],
            "diff_m1_high": [np.nan, 0.15, 0.04],
            "p_value_m1": [np.nan, 0.004, 0.6],
            "diff_m0": [-0.3, -0.2, -0.29],
            "diff_m0_low": [-0.4, -0.25, -0.35],
            "diff_m0_high": [-0.2, -0.15, 0.01],
            "p_value_m0": [0.001, 0.002, 0.09],
        }
    )
    table = figures.paired_test_frame(summary)  # default: against m1
    assert list(table.index) == ["m2", "m3"]  # the baseline has no interval
    assert table.at["m2", "nDCG@k"] == "+0.100 [+0.050, +0.150] p=0.004 *"
    assert table.at["m3", "nDCG@k"] == "+0.010 [-0.020, +0.040] p=0.600"
    against_m0 = figures.paired_test_frame(summary, baseline="m0")
    assert list(against_m0.index) == ["m1", "m2", "m3"]
    assert against_m0.at["m2", "nDCG@k"] == "-0.200 [-0.250, -0.150] p=0.002 *"
    assert against_m0.at["m3", "nDCG@k"] == "-0.290 [-0.350, +0.010] p=0.090"
    assert figures.paired_test_frame(summary.drop(columns="p_value_m1")) is None
    assert figures.paired_test_frame(summary, baseline="m9") is None


def _table1_frame(seed: int, methods=("m0", "m1", "m2")) -> pd.DataFrame:
    """A real Table-1 frame (``hitsong.results.table1``) of constructed predictions."""
    from hitsong.results import ResultsConfig, table1

    rng = np.random.default_rng(seed)
    y = rng.normal(size=60)
    noise = {"m0": 0.3, "m1": 2.0, "m2": 0.8}
    preds = {m: np.stack([y + rng.normal(scale=noise[m], size=60) for _ in range(2)]) for m in methods}
    return table1(y, preds, subset="s", config=ResultsConfig(n_bootstrap=100)).frame


def test_audio_share_frame_table_and_figure():
    from dashboard import audioshare

    random, artist = _table1_frame(0), _table1_frame(1, methods=("m1", "m2"))  # no m0 under the artist split
    share = audioshare.share_frame({"artist": artist, "random": random})
    assert list(share.columns) == list(audioshare.SHARE_COLUMNS)
    assert share["split"].drop_duplicates().tolist() == ["random", "artist"]  # display order, not input order
    assert set(share["metric"]) == {"spearman_rho", "ndcg_at_k"}
    row = share[(share.split == "random") & (share.method == "m2") & (share.metric == "spearman_rho")]
    expected = random.set_index(["method", "metric"]).loc[("m2", "spearman_rho")]
    got = row.set_index("baseline").loc["m0"]
    assert got["diff"] == expected["diff_m0"]
    assert (got["low"], got["high"]) == (expected["diff_m0_low"], expected["diff_m0_high"])
    assert share[(share.split == "artist") & (share.baseline == "m0")].empty  # m0 was not trained there
    table = audioshare.share_table(share)
    assert list(table.index) == ["m0", "m1", "m2"]
    assert table[("random split", "Spearman ρ", "vs m0")]["m0"] == "–"  # no gap to itself
    assert table[("random split", "Spearman ρ", "vs m0")]["m2"] == figures.gap_text(
        expected["diff_m0"], expected["diff_m0_low"], expected["diff_m0_high"]
    )
    assert table[("random split", "Spearman ρ", "value")]["m2"] == f"{expected['mean']:.3f}"
    assert table[("artist-disjoint split", "nDCG@k", "value")]["m0"] == "–"
    assert ("artist-disjoint split", "nDCG@k", "vs m0") not in table.columns
    fig = audioshare.share_figure(share, baseline="m0")
    assert {t.name for t in fig.data} == {"random split"}  # only the split where m0 exists
    assert all("m0" not in list(t.x) for t in fig.data)
    assert audioshare.share_table(audioshare.share_frame({})).empty
    assert audioshare.share_figure(audioshare.share_frame({}), baseline="m0").layout.annotations


def test_catalogue_histogram_counts_every_finite_score():
    fig = figures.catalogue_histogram(np.array([1.0, 2.0, 2.5, np.nan, 3.0]), subset="western")
    hist = fig.data[0]
    assert list(hist.x) == [1.0, 2.0, 2.5, 3.0] and "western training catalogue (4 songs)" in fig.layout.title.text
    empty = figures.catalogue_histogram(np.array([]), subset="western")
    assert len(empty.data) == 0 and "no percentiles" in empty.layout.annotations[0].text
