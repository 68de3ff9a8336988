"""The demo label's two markets, their catalogues and their listeners: the listener model.

Each market (``mandarin``, ``western``) has a catalogue mix of archetypes and a taste. A song's
*appeal* in market ``m`` is a documented mix of three parts of its sound, each visible to a
different family of the paper's methods (DESIGN.md section 4):

(a) ``timbre`` in [-1, 1]: the song's loudness and brightness (mean of the two, each scaled from
    its range, the same for every archetype, to [-1, 1]). Global level and spectral tilt:
    visible to m1's per-band mel means and standard deviations (and to the CNNs).
(b) ``rhythm`` in [-1, 1]: ``2 * on_beat - 1``, the share of bars whose drum accent falls on
    the beat with the kick rather than between kicks (0 for archetypes without drums). Moving a
    hit in time leaves every band's mean and standard deviation unchanged: invisible to m1;
    a CNN's kernels over a few frames see whether the accent and the kick sound together.
(c) ``semantic``: the market's taste for the archetype (its genre and instruments) plus its
    taste for a sung line. What the MagnaTagATune tagger names (genre, instrument, voice tags):
    visible to m4; partly visible to m1 and the CNNs through timbre.

::

    appeal_m(s)  = timbre_weight_m * timbre(s) + rhythm_weight_m * rhythm(s) + semantic_m(s)
    semantic_m(s) = taste_m[archetype(s)] + vocal_m * has_vocal(s)
    log lambda(u, s) = log activity(u) + APPEAL_WEIGHT * (appeal_m(s) + d_u[archetype(s)])
                     + fame(artist(s)) + log exposure(s) + noise(s) + c_m

``activity`` is log-normal (heavy users), ``d_u`` the user's own taste deviation, ``fame`` an
artist effect the audio does not show, ``exposure`` the song's availability in the window
(:func:`exposure`), ``noise`` a per-song normal draw, ``c_m`` sets the mean plays per
user-song pair. Plays are negative-binomial (a gamma-Poisson mixture) around ``lambda``;
a user with at least one play of a song is one of its listeners.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hitsong.demo.archetypes import ARCHETYPE_NAMES, ARCHETYPES
from hitsong.demo.plan import BRIGHTNESS, LOUDNESS_DBFS, SongPlan

#: The observation window (inclusive) and the release-date range around it.
WINDOW_START = dt.date(2016, 1, 1)
WINDOW_END = dt.date(2016, 12, 31)
RELEASE_START = dt.date(2015, 1, 1)
RELEASE_END = dt.date(2016, 12, 31)

APPEAL_WEIGHT = 1.0
FAME_SD = 0.7
SONG_NOISE_SD = 0.45
ACTIVITY_SD = 0.9
USER_TASTE_SD = 0.4
NB_SHAPE = 0.5
MEAN_PLAYS = 0.1
#: Days over which a song's novelty (its pull before the window) decays by e.
NOVELTY_DAYS = 365.0


@dataclass(frozen=True)
class Market:
    """One market's catalogue mix and taste.

    Parameters
    ----------
    name : str
        The subset name written to ``songs.csv``.
    catalogue : dict
        Archetype -> share of the market's songs.
    taste : dict
        Archetype -> additive log-preference (part (c)).
    vocal : float
        Log-preference for a sung line (part (c)).
    timbre_weight : float
        Log-preference per unit of part (a), ``timbre``.
    rhythm_weight : float
        Log-preference per unit of part (b), ``rhythm`` (positive: accents on the beat).
    """

    name: str
    catalogue: dict[str, float]
    taste: dict[str, float]
    vocal: float
    timbre_weight: float
    rhythm_weight: float


MARKETS: dict[str, Market] = {
    m.name: m
    for m in (
        Market(
            name="mandarin",
            catalogue={"pop": 0.40, "ambient": 0.15, "classical": 0.10, "rock": 0.10, "techno": 0.10, "indian": 0.15},
            taste={"pop": 0.5, "ambient": 0.3, "classical": 0.0, "rock": -0.3, "techno": -0.3, "indian": -0.2},
            vocal=0.6,
            timbre_weight=0.4,
            rhythm_weight=2.5,
        ),
        Market(
            name="western",
            catalogue={"rock": 0.25, "techno": 0.20, "pop": 0.20, "classical": 0.10, "ambient": 0.10, "indian": 0.15},
            taste={"rock": 0.4, "techno": 0.3, "pop": 0.1, "classical": -0.3, "ambient": -0.3, "indian": 0.0},
            vocal=0.2,
            timbre_weight=0.4,
            rhythm_weight=-2.5,
        ),
    )
}

#: The parts of a song's appeal, in the order of the listener model (columns of truth.parquet).
PARTS: tuple[str, ...] = ("timbre", "rhythm", "semantic")


def _unit(value: float, bounds: tuple[float, float]) -> float:
    """``value`` scaled from ``bounds`` to [-1, 1] (0 when the range is empty)."""
    lo, hi = bounds
    return 0.0 if hi <= lo else float(np.clip(2.0 * (value - lo) / (hi - lo) - 1.0, -1.0, 1.0))


def song_parts(plan: SongPlan, market: Market) -> dict[str, float]:
    """The three parts of a song's appeal in ``market``, from its synthesis parameters only.

    Returns
    -------
    dict
        ``timbre`` (a), ``rhythm`` (b) and ``semantic`` (c); see the module docstring.
    """
    a = ARCHETYPES[plan.archetype]
    timbre = 0.5 * (_unit(plan.loudness_dbfs, LOUDNESS_DBFS) + _unit(plan.brightness, BRIGHTNESS))
    rhythm = 2.0 * plan.on_beat - 1.0 if a.has_drums else 0.0
    semantic = market.taste[plan.archetype] + market.vocal * (plan.vocal != "none")
    return {"timbre": timbre, "rhythm": rhythm, "semantic": semantic}


def audio_appeal(plan: SongPlan, market: Market) -> float:
    """The market-level appeal of a song: its parts mixed with the market's weights."""
    p = song_parts(plan, market)
    return float(market.timbre_weight * p["timbre"] + market.rhythm_weight * p["rhythm"] + p["semantic"])


def exposure(release: dt.date) -> float:
    """A song's exposure in the window: mean over window days of its availability.

    Availability on day ``t`` is 0 before release and ``exp(-age_at_window_start / NOVELTY_DAYS)``
    after it, where the age counts only days before the window (older songs have lost novelty).
    So a song released before the window scores ``exp(-age/365)`` (0.37..1), one released in the
    window the share of window days after its release.
    """
    n_days = (WINDOW_END - WINDOW_START).days + 1
    before = max(0, (WINDOW_START - release).days)
    available = n_days - max(0, (release - WINDOW_START).days)
    return float(max(available, 1) / n_days * np.exp(-before / NOVELTY_DAYS))


def simulate_market(
    market: Market,
    songs: pd.DataFrame,
    plans: list[SongPlan],
    *,
    users: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate one market's listening over the window.

    Parameters
    ----------
    market : Market
        The market.
    songs : pd.DataFrame
        The market's songs (``song_id``, ``artist``, ``release_date``), row ``i`` for ``plans[i]``.
    plans : list of SongPlan
        The songs' synthesis parameters.
    users : int
        Number of users.
    rng : np.random.Generator
        Source of every draw.

    Returns
    -------
    events : pd.DataFrame
        Aggregated rows ``user_id, song_id, play_count`` (play_count >= 1).
    truth : pd.DataFrame
        Per song: ``song_id, timbre, rhythm, semantic, appeal, fame, exposure, noise,
        expected_plays``.
    """
    n = len(plans)
    parts = pd.DataFrame([song_parts(p, market) for p in plans], columns=list(PARTS))
    appeal = np.array([audio_appeal(p, market) for p in plans])
    artists = songs["artist"].to_numpy()
    uniq = sorted(set(artists))
    fame_by_artist = dict(zip(uniq, rng.normal(0.0, FAME_SD, len(uniq)), strict=True))
    fame = np.array([fame_by_artist[a] for a in artists])
    expo = np.array([exposure(d) for d in songs["release_date"]])
    noise = rng.normal(0.0, SONG_NOISE_SD, n)
    arch_idx = np.array([ARCHETYPE_NAMES.index(p.archetype) for p in plans])

    activity = rng.lognormal(0.0, ACTIVITY_SD, users)  # (U,)
    deviation = rng.normal(0.0, USER_TASTE_SD, (users, len(ARCHETYPE_NAMES)))  # (U, A)
    song_part = APPEAL_WEIGHT * appeal + fame + np.log(expo) + noise  # (S,)
    log_lam = np.log(activity)[:, None] + APPEAL_WEIGHT * deviation[:, arch_idx] + song_part[None, :]
    lam = np.exp(log_lam)
    lam *= MEAN_PLAYS / lam.mean()  # c_m
    rate = rng.gamma(NB_SHAPE, lam / NB_SHAPE)  # (U, S) gamma-Poisson -> negative binomial
    plays = rng.poisson(rate)

    u_idx, s_idx = np.nonzero(plays)
    prefix = market.name[0]
    events = pd.DataFrame(
        {
            "user_id": [f"{prefix}u{u:05d}" for u in u_idx],
            "song_id": songs["song_id"].to_numpy()[s_idx],
            "play_count": plays[u_idx, s_idx].astype(np.int64),
        }
    )
    truth = pd.DataFrame(
        {
            "song_id": songs["song_id"].to_numpy(),
            **{name: parts[name].to_numpy() for name in PARTS},
            "appeal": appeal,
            "fame": fame,
            "exposure": expo,
            "noise": noise,
            "expected_plays": lam.sum(axis=0),
        }
    )
    return events, truth
