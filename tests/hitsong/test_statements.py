"""How predictions and evaluations are worded: a hit score on the catalogue's scale, the split, the gap to m0."""

from __future__ import annotations

import math

from hitsong.statements import evaluation_note, percentile_phrase, score_statement, split_description


def test_a_prediction_is_a_hit_score_not_a_probability() -> None:
    text = score_statement(subset="western", catalogue_size=112)
    assert text.startswith("Hit score on the scale of the western training catalogue")
    assert "112 training songs" in text and "not a probability or a chance of becoming a hit" in text
    assert "probability of" not in text.replace("not a probability or a chance", "")
    assert percentile_phrase(83.4, subset="western") == "at or above 83 % of the western training catalogue"
    assert percentile_phrase(math.nan, subset="western").startswith("no percentile")


def test_evaluation_note_names_the_split_and_the_gap_to_m0() -> None:
    gaps = {"spearman_rho": (0.05, -0.02, 0.12), "ndcg_at_k": (-0.1, math.nan, math.nan)}
    note = evaluation_note(method="m5", split_by="artist", gaps=gaps)
    assert note.startswith("Evaluated on an artist-disjoint split (no artist has songs in more than one")
    assert "Gap to m0, the metadata (artist+recency) baseline that hears no audio, on the test songs" in note
    assert "Spearman ρ +0.050 [-0.020, +0.120]" in note and "nDCG@k -0.100." in note  # no interval, none shown
    assert "is the baseline itself" in evaluation_note(method="m0", split_by="random", gaps={})
    assert "No gap to m0 is known" in evaluation_note(method="m1", split_by="random", gaps={})
    assert split_description(None).startswith("a split made by an unrecorded method")
    assert "leak" in split_description("random") and "older songs train" in split_description("release_date")
