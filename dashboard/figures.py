"""Plotly figure and table builders for the dashboard: plain functions of plain frames.

Every builder takes pandas frames or numpy arrays (the shapes are stated per function) and
returns a ``plotly.graph_objects.Figure`` or a frame; none of them touches Streamlit, MLflow or
DuckDB, so tests call them directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from pandas.io.formats.style import Styler

from hitsong.errors import InputError
from hitsong.metrics import METRIC_LABELS
from hitsong.results import gap_columns
from hitsong.training import runlayout

BEST_MARK = " ★"
SCOPE_COLORS = {"whole": "#7f8c8d", "sampled": "#e67e22", "test": "#2980b9"}
TRUTH = "ground truth"


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: the frame lacks column(s) {missing}; it has {list(frame.columns)}.")


def _empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _plain_facet_titles(fig: go.Figure) -> go.Figure:
    """Facet titles ``western`` instead of plotly express's ``subset=western``."""
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    return fig


# --------------------------------------------------------------------------- experiments
def table1_frame(summary: pd.DataFrame, *, with_interval: bool = True) -> pd.DataFrame:
    """The paper's Table 1: methods x metrics, ``mean ± std [low, high]``, best marked.

    Parameters
    ----------
    summary : pd.DataFrame
        Long form, one row per (method, metric): ``method, metric, mean, std`` and optionally
        ``ci_low, ci_high`` (a 95 % interval) and ``n`` (repetitions).
    with_interval : bool
        Append the interval when the summary has one.

    Returns
    -------
    pd.DataFrame
        Index ``method``, one string column per metric (display label), in ``METRIC_LABELS``
        order. The highest mean of each column carries ``BEST_MARK`` (every one of them on a tie).
    """
    _require_columns(summary, ["method", "metric", "mean", "std"], "Table 1")
    has_ci = with_interval and {"ci_low", "ci_high"} <= set(summary.columns)
    metrics = [m for m in METRIC_LABELS if m in set(summary["metric"])]
    methods = sorted(summary["method"].unique())
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    for metric in metrics:
        rows = summary[summary["metric"] == metric].set_index("method")
        best = rows["mean"].astype(float).max()
        cells = []
        for method in methods:
            if method not in rows.index or pd.isna(rows.at[method, "mean"]):
                cells.append("–")
                continue
            r = rows.loc[method]
            text = f"{r['mean']:.3f} ± {0.0 if pd.isna(r['std']) else r['std']:.3f}"
            if has_ci and pd.notna(r["ci_low"]) and pd.notna(r["ci_high"]):
                text += f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            if np.isclose(float(r["mean"]), best, rtol=0.0, atol=1e-12):
                text += BEST_MARK
            cells.append(text)
        out[METRIC_LABELS[metric]] = cells
    return out


def paired_test_frame(summary: pd.DataFrame, *, baseline: str = "m1") -> pd.DataFrame | None:
    """Each method minus ``baseline``, with the paired bootstrap interval and p-value.

    Parameters
    ----------
    summary : pd.DataFrame
        A Table-1 summary with the gap columns of ``baseline`` (``diff_<b>, diff_<b>_low,
        diff_<b>_high, p_value_<b>``, :func:`hitsong.results.gap_columns`); ``None`` is returned
        when it has none of them, or the baseline was not trained.
    baseline : str
        ``m0`` (the metadata baseline) or ``m1`` (the paper's).

    Returns
    -------
    pd.DataFrame or None
        Index ``method`` (the baseline's row omitted), one string column per metric:
        ``+0.050 [+0.010, +0.090] p=0.020``, with `` *`` when the interval excludes 0.
    """
    cols = gap_columns(baseline)
    if not {"method", "metric", cols.diff, cols.low, cols.high, cols.p_value} <= set(summary.columns):
        return None
    rows = summary.dropna(subset=[cols.low, cols.high])
    if rows.empty:
        return None
    out = pd.DataFrame(index=pd.Index(sorted(rows["method"].unique()), name="method"))
    for metric in (m for m in METRIC_LABELS if m in set(rows["metric"])):
        cells = rows[rows["metric"] == metric].set_index("method")
        texts = []
        for method in out.index:
            if method not in cells.index:
                texts.append("–")
                continue
            r = cells.loc[method]
            texts.append(gap_text(r[cols.diff], r[cols.low], r[cols.high], r[cols.p_value]))
        out[METRIC_LABELS[metric]] = texts
    return out


def gap_text(diff: float, low: float, high: float, p_value: float | None = None) -> str:
    """``+0.100 [+0.050, +0.150] p=0.004 *``: a gap, its interval, its p-value, ``*`` when the interval excludes 0."""
    real = low > 0 or high < 0
    p = "" if p_value is None or pd.isna(p_value) else f" p={p_value:.3f}"
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]{p}" + (" *" if real else "")


def table1_styler(table: pd.DataFrame) -> Styler:
    """Bold the best cell of each column of a ``table1_frame`` (the ones ending in ★)."""
    return table.style.map(lambda v: "font-weight: bold" if str(v).endswith(BEST_MARK) else "")


def repetition_spread(reps: pd.DataFrame, *, metric: str) -> go.Figure:
    """Per-repetition spread of one metric: a box per method with every repetition as a dot.

    Parameters
    ----------
    reps : pd.DataFrame
        One row per repetition: ``method``, ``repetition`` and the metric column.
    metric : str
        A key of ``METRIC_LABELS``.
    """
    if metric not in METRIC_LABELS:
        raise InputError(f"unknown metric {metric!r}; choose one of {list(METRIC_LABELS)}.")
    _require_columns(reps, ["method", metric], "per-repetition spread")
    data = reps.dropna(subset=[metric]).sort_values("method")
    if data.empty:
        return _empty_figure(f"no finished repetitions with {METRIC_LABELS[metric]}")
    fig = px.box(
        data,
        x="method",
        y=metric,
        points="all",
        hover_data=[c for c in ("repetition", "run_name") if c in data],
        labels={metric: METRIC_LABELS[metric]},
    )
    fig.update_layout(title=f"{METRIC_LABELS[metric]} per repetition", showlegend=False)
    return fig


def learning_curves(history: pd.DataFrame, *, title: str = "Learning curves") -> go.Figure:
    """Stepped metrics of one run (train/validation loss per epoch).

    Parameters
    ----------
    history : pd.DataFrame
        Long form ``key, step, value`` (e.g. key ``train_loss``/``val_loss``, step = epoch).
    """
    _require_columns(history, ["key", "step", "value"], "learning curves")
    if history.empty:
        return _empty_figure("this run logged no stepped metrics")
    fig = px.line(history.sort_values(["key", "step"]), x="step", y="value", color="key", markers=True)
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="loss (standardised MSE)")
    return fig


def run_comparison_table(runs: Sequence[Mapping]) -> pd.DataFrame:
    """Params and metrics of several runs side by side.

    Parameters
    ----------
    runs : sequence of mappings
        Each with ``name`` (str), ``params`` (mapping) and ``metrics`` (mapping).

    Returns
    -------
    pd.DataFrame
        Rows ``params.<key>`` then ``metrics.<key>``, one string column per run (metrics to
        4 significant digits; empty where a run lacks the key), and a boolean column
        ``differs`` (the runs disagree on that row).
    """
    if len(runs) == 0:
        return pd.DataFrame(columns=["differs"])
    columns: dict[str, dict[str, object]] = {}
    for i, run in enumerate(runs):
        name = str(run["name"])
        if name in columns:
            name = f"{name} ({i + 1})"
        cells: dict[str, object] = {f"params.{k}": str(v) for k, v in sorted(run.get("params", {}).items())}
        cells.update({f"metrics.{k}": f"{float(v):.4g}" for k, v in sorted(run.get("metrics", {}).items())})
        columns[name] = cells
    table = pd.DataFrame(columns).fillna("")
    table = table.loc[sorted(table.index, key=lambda k: (not k.startswith("params."), k))]
    table["differs"] = table.nunique(axis=1) > 1
    return table


def run_comparison_figure(runs: Sequence[Mapping]) -> go.Figure:
    """The evaluation metrics of several runs, validation and test, as grouped bars."""
    rows = [
        (str(run["name"]), f"{split} {METRIC_LABELS[m]}", float(run["metrics"][key]))
        for run in runs
        for split in (runlayout.VAL, runlayout.TEST)
        for m in METRIC_LABELS
        if (key := runlayout.split_metric(split, m)) in run.get("metrics", {})
    ]
    if not rows:
        return _empty_figure("the selected runs have no final metrics")
    frame = pd.DataFrame(rows, columns=["run", "metric", "value"])
    fig = px.bar(frame, x="metric", y="value", color="run", barmode="group")
    fig.update_layout(title="Metrics of the selected runs")
    return fig


# --------------------------------------------------------------------------- data
def quarter_playcount_figure(frame: pd.DataFrame) -> go.Figure:
    """Paper Fig. 1: mean playcount by release quarter, whole subset vs sampled, per subset.

    Parameters
    ----------
    frame : pd.DataFrame
        ``subset, release_quarter, quarter_index, scope, mean_playcount``; ``scope`` is
        ``whole`` or ``sampled``; ``quarter_index`` orders the quarters (-2, -1, 1, 2, ...).
    """
    _require_columns(frame, ["subset", "release_quarter", "quarter_index", "scope", "mean_playcount"], "Fig. 1")
    if frame.empty:
        return _empty_figure("no songs with a release date")
    data = frame.sort_values(["subset", "quarter_index"])
    order = list(dict.fromkeys(data.sort_values("quarter_index")["release_quarter"]))
    fig = px.line(
        data,
        x="release_quarter",
        y="mean_playcount",
        color="scope",
        facet_col="subset",
        markers=True,
        log_y=True,
        color_discrete_map=SCOPE_COLORS,
        category_orders={"release_quarter": order},
        labels={"mean_playcount": "mean playcount (log)", "release_quarter": "release quarter"},
    )
    fig.update_layout(title="Mean playcount by release quarter (paper Fig. 1)")
    return _plain_facet_titles(fig)


def hit_score_histogram(frame: pd.DataFrame, *, bins: int = 40) -> go.Figure:
    """Paper Fig. 2: the hit-score distribution, whole subset vs test split, per subset.

    Parameters
    ----------
    frame : pd.DataFrame
        ``subset, scope, hit_score`` with ``scope`` ``whole`` or ``test``; one row per song.
    bins : int
        Histogram bins per trace.
    """
    _require_columns(frame, ["subset", "scope", "hit_score"], "Fig. 2")
    if frame.empty:
        return _empty_figure("no hit scores")
    fig = px.histogram(
        frame,
        x="hit_score",
        color="scope",
        facet_col="subset",
        histnorm="probability density",
        barmode="overlay",
        nbins=bins,
        opacity=0.6,
        color_discrete_map=SCOPE_COLORS,
        labels={"hit_score": "hit score = ln(1+playcount)·ln(1+listeners)"},
    )
    fig.update_layout(title="Hit-score distribution, whole vs test (paper Fig. 2)")
    return _plain_facet_titles(fig)


# --------------------------------------------------------------------------- genres
def top_genre_counts(predictions: pd.DataFrame, genres: pd.DataFrame, *, top: int = 50) -> pd.DataFrame:
    """Count predominant genres among the top songs by each method and by the ground truth.

    Parameters
    ----------
    predictions : pd.DataFrame
        ``method, song_id, true, predicted`` (test songs; one prediction per song and method).
    genres : pd.DataFrame
        ``song_id, genre`` (the tagger's predominant genre per song).
    top : int
        How many songs to take (paper: 50); fewer when a method has fewer test songs.

    Returns
    -------
    pd.DataFrame
        ``source, genre, count, n`` with ``source`` a method or ``TRUTH`` and ``n`` the number
        of top songs counted for that source. Songs without a genre count as ``unknown``.
    """
    _require_columns(predictions, ["method", "song_id", "true", "predicted"], "genre counts")
    _require_columns(genres, ["song_id", "genre"], "genre counts")
    genre_of = genres.drop_duplicates("song_id").set_index("song_id")["genre"]
    parts = []
    truth_ids: list = []
    for method, group in predictions.groupby("method", sort=True):
        ids = group.nlargest(top, "predicted")["song_id"]
        parts.append((str(method), ids))
        if len(group) > len(truth_ids):
            truth_ids = list(group.nlargest(top, "true")["song_id"])
    if truth_ids:
        parts.append((TRUTH, pd.Series(truth_ids)))
    rows = []
    for source, ids in parts:
        labels = ids.map(genre_of).fillna("unknown")
        for genre, count in labels.value_counts().items():
            rows.append((source, genre, int(count), len(ids)))
    return pd.DataFrame(rows, columns=["source", "genre", "count", "n"])


def genre_counts_figure(counts: pd.DataFrame) -> go.Figure:
    """Paper Fig. 4: genre counts among the top songs, each method beside the ground truth.

    Parameters
    ----------
    counts : pd.DataFrame
        ``source, genre, count`` as from ``top_genre_counts``.
    """
    _require_columns(counts, ["source", "genre", "count"], "Fig. 4")
    if counts.empty:
        return _empty_figure("no test predictions to count")
    truth = counts[counts["source"] == TRUTH].sort_values("count", ascending=False)
    genre_order = list(truth["genre"]) + sorted(set(counts["genre"]) - set(truth["genre"]))
    sources = [TRUTH] + sorted(s for s in counts["source"].unique() if s != TRUTH)
    fig = px.bar(
        counts,
        x="count",
        y="genre",
        facet_col="source",
        orientation="h",
        color="source",
        category_orders={"genre": genre_order, "source": sources},
    )
    fig.update_layout(title="Predominant genre of the top songs (paper Fig. 4)", showlegend=False)
    return _plain_facet_titles(fig)


# --------------------------------------------------------------------------- predict
def taggram_heatmap(
    taggram: np.ndarray,
    tags: Sequence[str],
    *,
    seconds_per_row: float,
    offset: float = 0.0,
    top: int | None = None,
) -> go.Figure:
    """The tagger's activations over time.

    Parameters
    ----------
    taggram : np.ndarray [shape=(n_patches, n_tags)]
        Tag probabilities per patch, in [0, 1].
    tags : sequence of str [length n_tags]
        Tag names in column order.
    seconds_per_row : float
        Duration of one patch in seconds (the time axis).
    offset : float
        Time of the first patch in the file, seconds.
    top : int, optional
        Show only the ``top`` tags with the highest mean activation; rows are always ordered
        strongest first.
    """
    taggram = np.asarray(taggram, dtype=float)
    if taggram.ndim != 2 or taggram.shape[1] != len(tags):
        raise InputError(f"taggram must have shape (n_patches, {len(tags)}); got {taggram.shape}.")
    order = np.argsort(-taggram.mean(axis=0), kind="stable")[: top or len(tags)]
    times = offset + seconds_per_row * (np.arange(taggram.shape[0]) + 0.5)
    fig = go.Figure(
        go.Heatmap(
            z=taggram[:, order].T,
            x=times,
            y=[tags[i] for i in order],
            colorscale="Viridis",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": "p"},
        )
    )
    title = "Taggram" if top is None or top >= len(tags) else f"Taggram: the {len(order)} strongest of {len(tags)} tags"
    fig.update_layout(
        title=title,
        xaxis_title="time (s)",
        height=max(400, 18 * len(order)),
        yaxis={"autorange": "reversed", "dtick": 1},
    )
    return fig


def score_over_time(
    frame_scores: np.ndarray, *, seconds: float, offset: float = 0.0, score: float | None = None
) -> go.Figure:
    """A CNN's per-time-step score before its global average: where the model hears a hit.

    Parameters
    ----------
    frame_scores : np.ndarray [shape=(n_steps,)]
        Score per time step, in the same units as the song's score.
    seconds : float
        Duration the steps span (the analysed segment), seconds.
    offset : float
        Start of the analysed segment in the file, seconds.
    score : float, optional
        The song's score, drawn as a horizontal reference line.
    """
    values = np.asarray(frame_scores, dtype=float).ravel()
    if values.size == 0:
        return _empty_figure("this method gives no score over time")
    times = offset + seconds * (np.arange(values.size) + 0.5) / values.size
    fig = go.Figure(go.Scatter(x=times, y=values, mode="lines", name="score at time t"))
    if score is not None:
        fig.add_hline(y=score, line_dash="dash", annotation_text="song score")
    fig.update_layout(title="Score over time", xaxis_title="time (s)", yaxis_title="score")
    return fig


def top_tags_figure(top_tags: Sequence[tuple[str, float]]) -> go.Figure:
    """The strongest tags of one song as horizontal bars (probabilities in [0, 1])."""
    if len(top_tags) == 0:
        return _empty_figure("no tags")
    names = [str(t) for t, _ in top_tags][::-1]
    values = [float(p) for _, p in top_tags][::-1]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h"))
    fig.update_layout(title="Top tags", xaxis={"range": [0, 1], "title": "probability"}, height=300)
    return fig


def catalogue_histogram(catalogue: np.ndarray, *, subset: str, bins: int = 40) -> go.Figure:
    """The hit scores of a champion's training catalogue: the scale an upload's percentile is read on.

    Parameters
    ----------
    catalogue : np.ndarray [shape=(n_songs,)]
        The catalogue's hit scores (the scorer's ``catalog``).
    subset : str
        The champion's subset, for the title.
    bins : int
        Histogram bins.
    """
    values = np.asarray(catalogue, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return _empty_figure("this champion has no training catalogue: no percentiles")
    fig = go.Figure(go.Histogram(x=values, nbinsx=bins, name="training songs"))
    fig.update_layout(
        title=(
            f"Hit scores of the {subset} training catalogue ({values.size} songs): "
            "an upload's percentile is its place here"
        ),
        xaxis_title="hit score",
        yaxis_title="songs",
        height=260,
        margin={"t": 50, "b": 40},
    )
    return fig
