"""The demo label's two markets, their catalogues and their listeners.

Each market (``mandarin``, ``western``) has a catalogue mix of archetypes and a taste. A song's
expected plays by user ``u`` follow a log-linear model (documented in the demo README)::

    appeal_m(s) = taste_m[archetype]                         # genre preference of the market
                + vocal_m * has_vocal                         # sung line
                - tempo_m * log2(tempo / preferred_tempo_m)**2 # tempo near the market's favourite
                + loud * (loudness_dbfs + 14) / 6             # louder masters
                + bright_m * (brightness - 0.5)               # spectral tilt
                + catchy * (catchiness - 0.5)                 # chorus repeats its hook
    log lambda(u, s) = log activity(u) + APPEAL_WEIGHT * (appeal_m(s) + d_u[archetype])
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

from hitsong.demo.archetypes import ARCHETYPE_NAMES
from hitsong.demo.plan import SongPlan

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
LOUDNESS_WEIGHT = 0.35
CATCHY_WEIGHT = 1.5
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
        Archetype -> additive log-preference.
    vocal : float
        Log-preference for a sung line.
    tempo_bpm : float
        Preferred tempo.
    tempo_weight : float
        Penalty per squared octave away from the preferred tempo.
    brightness_weight : float
        Log-preference per unit of brightness above 0.5.
    """

    name: str
    catalogue: dict[str, float]
    taste: dict[str, float]
    vocal: float
    tempo_bpm: float
    tempo_weight: float
    brightness_weight: float


MARKETS: dict[str, Market] = {
    m.name: m
    for m in (
        Market(
            name="mandarin",
            catalogue={
                "pop": 0.38,
                "ballad": 0.30,
                "hiphop": 0.08,
                "electronic": 0.08,
                "rock": 0.08,
                "jazz": 0.03,
                "classical": 0.03,
                "metal": 0.02,
            },
            taste={
                "pop": 0.6,
                "ballad": 0.6,
                "hiphop": -0.2,
                "electronic": -0.1,
                "rock": -0.3,
                "jazz": -0.6,
                "classical": -0.6,
                "metal": -1.0,
            },
            vocal=0.8,
            tempo_bpm=88.0,
            tempo_weight=2.0,
            brightness_weight=0.4,
        ),
        Market(
            name="western",
            catalogue={
                "pop": 0.18,
                "rock": 0.16,
                "electronic": 0.15,
                "hiphop": 0.16,
                "ballad": 0.09,
                "metal": 0.09,
                "jazz": 0.08,
                "classical": 0.09,
            },
            taste={
                "pop": 0.3,
                "rock": 0.3,
                "electronic": 0.3,
                "hiphop": 0.4,
                "ballad": -0.2,
                "metal": -0.1,
                "jazz": -0.5,
                "classical": -0.6,
            },
            vocal=0.4,
            tempo_bpm=120.0,
            tempo_weight=1.5,
            brightness_weight=0.8,
        ),
    )
}


def audio_appeal(plan: SongPlan, market: Market) -> float:
    """The market-level appeal of a song, computed from its synthesis parameters only."""
    return float(
        market.taste[plan.archetype]
        + market.vocal * (plan.vocal != "none")
        - market.tempo_weight * np.log2(plan.tempo_bpm / market.tempo_bpm) ** 2
        + LOUDNESS_WEIGHT * (plan.loudness_dbfs + 14.0) / 6.0
        + market.brightness_weight * (plan.brightness - 0.5)
        + CATCHY_WEIGHT * (plan.catchiness - 0.5)
    )


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
        Per song: ``song_id, appeal, fame, exposure, noise, expected_plays``.
    """
    n = len(plans)
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
            "appeal": appeal,
            "fame": fame,
            "exposure": expo,
            "noise": noise,
            "expected_plays": lam.sum(axis=0),
        }
    )
    return events, truth
