"""How hitsong states its numbers to people: a score as a score, an evaluation with its split and baseline.

A prediction is a *hit score* on the training catalogue's scale (``ln(1+plays) * ln(1+listeners)``
of the catalogue's training songs in their observation window) with its percentile in that
catalogue: it ranks songs against the catalogue the model learnt from, and is never a
probability or a chance of becoming a hit. An evaluation states the split it was made on (a
random split lets a model learn the artist, not the song) and the gap to m0, the metadata
baseline that sees no audio. Everything that shows a prediction or describes a model
(``hitsong predict``, the Predict page, catalogue scoring, model cards) takes its wording from
here, so the product says the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hitsong.baselines import BASELINES, M0
from hitsong.metrics import METRIC_LABELS

#: What a prediction is called.
SCORE_NAME = "hit score"
#: One sentence on what the number is not.
NOT_A_PROBABILITY = "It ranks songs against that catalogue; it is not a probability or a chance of becoming a hit."
#: The baseline every evaluation is stated against.
METADATA_BASELINE = M0

#: How each split method of ``hitsong sample --by`` is described.
SPLIT_DESCRIPTIONS: dict[str, str] = {
    "random": "a random split (an artist's songs can sit in train and test, so artist identity can leak)",
    "artist": "an artist-disjoint split (no artist has songs in more than one of train, validation and test)",
    "release_date": "a release-date split (older songs train, newer songs validate and test)",
}


def split_description(split_by: str | None) -> str:
    """``"an artist-disjoint split (...)"``; an unknown or missing method is said to be unknown."""
    if not split_by or split_by not in SPLIT_DESCRIPTIONS:
        return f"a split made by an unrecorded method ({split_by or 'unknown'})"
    return SPLIT_DESCRIPTIONS[split_by]


def score_statement(*, subset: str, catalogue_size: int | None = None) -> str:
    """What a shown prediction means, for a caption or a card.

    >>> score_statement(subset="western", catalogue_size=112)[:46]
    'Hit score on the scale of the western training'
    """
    songs = f"the {catalogue_size} training songs" if catalogue_size else "the training songs"
    return (
        f"Hit score on the scale of the {subset} training catalogue (ln(1+plays)·ln(1+listeners) of "
        f"{songs} in their observation window), with its percentile among those songs. {NOT_A_PROBABILITY}"
    )


def percentile_phrase(percentile: float, *, subset: str) -> str:
    """``"above 83 % of the western training catalogue"`` (``"no percentile"`` when NaN)."""
    if not math.isfinite(percentile):
        return "no percentile (empty catalogue)"
    return f"at or above {percentile:.0f} % of the {subset} training catalogue"


def evaluation_note(
    *,
    method: str,
    split_by: str | None,
    gaps: Mapping[str, tuple[float, float, float]],
    baseline: str = METADATA_BASELINE,
    confidence: float = 0.95,
) -> str:
    """The model card's evaluation sentence: the split, and the gap to the metadata baseline.

    Parameters
    ----------
    method : str
        The evaluated method, e.g. ``m5``.
    split_by : str or None
        ``random``, ``artist`` or ``release_date`` (the data's ``split_by``).
    gaps : mapping of metric -> (diff, low, high)
        The method's test-split mean minus the baseline's, with the paired bootstrap interval
        (``hitsong.results`` ``diff_<b>`` columns or the summary run's gap metrics); empty when
        the baseline was not trained.
    baseline : str
    confidence : float
        Coverage of the intervals.

    Returns
    -------
    str
        E.g. ``Evaluated on an artist-disjoint split (...). Gap to m0, the metadata (artist+recency)
        baseline that hears no audio, on the test songs, with 95 % paired bootstrap intervals:
        Spearman ρ +0.050 [-0.020, +0.120], ...``.
    """
    first = f"Evaluated on {split_description(split_by)}."
    if method == baseline:
        return f"{first} {baseline} is the baseline itself: {BASELINES.get(baseline, baseline)}, no audio."
    if not gaps:
        return f"{first} No gap to {baseline} is known ({baseline} was not trained with it)."
    level = int(round(100 * confidence))
    parts = []
    for metric, (diff, low, high) in gaps.items():
        label = METRIC_LABELS.get(metric, metric)
        interval = f" [{low:+.3f}, {high:+.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
        parts.append(f"{label} {diff:+.3f}{interval}")
    return (
        f"{first} Gap to {baseline}, the {BASELINES.get(baseline, baseline)} baseline that hears no audio, "
        f"on the test songs, with {level} % paired bootstrap intervals: " + ", ".join(parts) + "."
    )
