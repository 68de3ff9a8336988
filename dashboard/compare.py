"""The Registry page's comparison of two versions: loaders, figures and the section that draws them.

Each registered version points at a repetition run whose ``predictions`` table holds its
predictions of the held-out test songs (``hitsong.training.runlayout``). Two versions of the same
subset were tested on the same songs, so ``hitsong.compare.compare`` sets them side by side:
metrics with bootstrap intervals and the paired difference, a scatter of their predictions with
their rank agreement, the songs they disagree on most, and each version's model card (its
registered description). The page calls :func:`section`; the figure builders are plain functions.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hitsong.compare import Comparison, compare
from hitsong.errors import HitsongError
from hitsong.metrics import METRIC_LABELS, METRIC_NAMES
from hitsong.results import ResultsConfig, gap_columns
from hitsong.training import runlayout

#: Bootstrap replicates of the intervals (a few hundred songs: well under a second each).
N_BOOTSTRAP = 500
#: Songs listed as the strongest disagreements.
DISAGREEMENTS = 10
COLORS = ("#2980b9", "#e67e22")


# --------------------------------------------------------------------------- loaders
def version_predictions(uri: str, run_id: str) -> pd.DataFrame | None:
    """The version's test predictions (``song_id, true, predicted``) from its run, or ``None``."""
    from registry.runs import predictions

    return predictions(uri, run_id, split=runlayout.TEST)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_version_predictions(uri: str, run_id: str) -> pd.DataFrame | None:
    """``version_predictions``; a run's artifacts never change, so it is cached for good."""
    return version_predictions(uri, run_id)


def model_cards(uri: str, model: str, *, username: str | None, password: str | None) -> dict[str, str]:
    """``version -> description`` (the model card written at registration) of ``model``."""
    from registry.models import list_versions

    rows = list_versions(model, tracking_uri=uri, username=username or None, password=password or None)
    return {row["version"]: row.get("description") or "" for row in rows}


@st.cache_data(show_spinner=False, ttl=30)
def cached_model_cards(uri: str, model: str, username: str, password: str) -> dict[str, str]:
    """``model_cards`` cached for 30 s per user."""
    return model_cards(uri, model, username=username, password=password)


def label(row: pd.Series) -> str:
    """``v3 m6 (champion)``: how a version is named in the comparison."""
    aliases = f" ({row['aliases']})" if row.get("aliases") else ""
    return f"v{row['version']} {row['method']}{aliases}"


# --------------------------------------------------------------------------- figures and tables
def metrics_frame(comparison: Comparison) -> pd.DataFrame:
    """Metric x (A, B, B − A): ``value [low, high]`` cells and the paired test's p-value."""
    a, b = comparison.labels
    m = comparison.metrics.set_index(["method", "metric"])
    gap = gap_columns(a)
    rows = []
    for metric in METRIC_NAMES:
        ra, rb = m.loc[(a, metric)], m.loc[(b, metric)]
        rows.append(
            {
                "metric": METRIC_LABELS[metric],
                a: f"{ra['mean']:.3f} [{ra['ci_low']:.3f}, {ra['ci_high']:.3f}]",
                b: f"{rb['mean']:.3f} [{rb['ci_low']:.3f}, {rb['ci_high']:.3f}]",
                f"{b} − {a}": f"{rb[gap.diff]:+.3f} [{rb[gap.low]:+.3f}, {rb[gap.high]:+.3f}]",
                "p": rb[gap.p_value],
            }
        )
    return pd.DataFrame(rows).set_index("metric")


def metrics_figure(comparison: Comparison) -> go.Figure:
    """The four held-out metrics of both versions as bars with their bootstrap intervals."""
    fig = go.Figure()
    frame = comparison.metrics
    for name, color in zip(comparison.labels, COLORS, strict=True):
        part = frame[frame["method"] == name].set_index("metric").loc[list(METRIC_NAMES)]
        fig.add_bar(
            name=name,
            x=[METRIC_LABELS[m] for m in METRIC_NAMES],
            y=part["mean"],
            marker_color=color,
            error_y={"type": "data", "symmetric": False, "array": part["ci_high"] - part["mean"],
                     "arrayminus": part["mean"] - part["ci_low"]},
        )  # fmt: skip
    fig.update_layout(
        barmode="group",
        title=f"Held-out test metrics on {len(comparison.songs)} songs (bootstrap intervals over songs)",
        yaxis_title="value",
        legend_title="version",
    )
    return fig


def scatter_figure(comparison: Comparison) -> go.Figure:
    """Each test song's predicted hit score by both versions, coloured by its true hit score."""
    a, b = comparison.labels
    songs = comparison.songs
    fig = go.Figure(
        go.Scatter(
            x=songs["a"], y=songs["b"], mode="markers", text=songs["song_id"],
            marker={"color": songs["true"], "colorscale": "Viridis", "showscale": True,
                    "colorbar": {"title": "true hit score"}},
            hovertemplate="%{text}<br>" + a + ": %{x:.2f}<br>" + b + ": %{y:.2f}<extra></extra>",
        )
    )  # fmt: skip
    low = float(min(songs["a"].min(), songs["b"].min()))
    high = float(max(songs["a"].max(), songs["b"].max()))
    fig.add_shape(type="line", x0=low, y0=low, x1=high, y1=high, line={"dash": "dot", "color": "grey"})
    fig.update_layout(
        title=f"Predictions on the same test songs: Spearman ρ {comparison.spearman:.3f}, Kendall τ "
        f"{comparison.kendall:.3f}",
        xaxis_title=f"{a}: predicted hit score",
        yaxis_title=f"{b}: predicted hit score",
    )
    return fig


def disagreement_frame(comparison: Comparison, n: int = DISAGREEMENTS) -> pd.DataFrame:
    """The songs whose ranks differ most: both predictions, both ranks and the true rank."""
    a, b = comparison.labels
    top = comparison.disagreements(n)
    return pd.DataFrame(
        {
            "song": top["song_id"],
            f"rank by {a}": top["rank_a"],
            f"rank by {b}": top["rank_b"],
            "true rank": top["rank_true"],
            f"{a} score": top["a"].round(3),
            f"{b} score": top["b"].round(3),
            "true hit score": top["true"].round(3),
        }
    )


# --------------------------------------------------------------------------- the section
def _default(options: list[str], table: pd.DataFrame, alias: str, fallback: int) -> int:
    with_alias = table.index[table["aliases"].str.split(", ").map(lambda a: alias in a)].tolist()
    return options.index(with_alias[0]) if with_alias else min(fallback, len(options) - 1)


def section(uri: str, table: pd.DataFrame, *, username: str, password: str) -> None:
    """Draw the comparison of two versions of one model (the champion and the challenger first)."""
    models = sorted(table["model"].unique())
    model = st.selectbox("Model to compare", models, key="compare_model") if len(models) > 1 else models[0]
    rows = table[table["model"] == model].set_index("version", drop=False)
    versions = rows.index.tolist()
    if len(versions) < 2:
        st.info(f"{model} has one version; register another (`hitsong register --subset S --rank 2 --alias "
                "challenger`) to compare them.")  # fmt: skip
        return
    left, right = st.columns(2)
    va = left.selectbox("Version A", versions, index=_default(versions, rows, "champion", 0), key="compare_a",
                        format_func=lambda v: label(rows.loc[v]))  # fmt: skip
    vb = right.selectbox("Version B", versions, index=_default(versions, rows, "challenger", 1), key="compare_b",
                         format_func=lambda v: label(rows.loc[v]))  # fmt: skip
    if va == vb:
        st.info("Pick two different versions.")
        return
    la, lb = (f"v{v}" for v in (va, vb))
    with st.spinner("Reading both versions' test predictions…"):
        preds = {v: cached_version_predictions(uri, rows.loc[v, "run_id"]) for v in (va, vb)}
    lacking = [f"v{v}" for v, p in preds.items() if p is None]
    if lacking:
        st.warning(f"{', '.join(lacking)}: the training run has no test predictions table; nothing to compare.")
        return
    try:
        result = compare(preds[va], preds[vb], labels=(la, lb), config=ResultsConfig(n_bootstrap=N_BOOTSTRAP))
    except HitsongError as exc:
        st.warning(f"Cannot compare {la} and {lb}: {exc}")
        return
    st.subheader("Held-out test metrics")
    st.dataframe(metrics_frame(result))
    st.caption(
        f"{len(result.songs)} test songs shared by both; 95 % percentile-bootstrap intervals over the songs, "
        f"{lb} − {la} paired on the same resampled songs. Validation {METRIC_LABELS['spearman_rho']} (what chose "
        f"them): {la} {rows.loc[va, 'val_spearman_rho']:.3f}, {lb} {rows.loc[vb, 'val_spearman_rho']:.3f}."
    )
    st.plotly_chart(metrics_figure(result), key="compare-metrics")
    st.subheader("Their predictions, song by song")
    rho, tau, overlap = st.columns(3)
    rho.metric("Rank agreement (Spearman ρ)", f"{result.spearman:.3f}")
    tau.metric("Rank agreement (Kendall τ)", f"{result.kendall:.3f}")
    overlap.metric(f"Shared top-{result.k}", f"{100 * result.top_overlap:.0f} %")
    st.plotly_chart(scatter_figure(result), key="compare-scatter")
    st.subheader("Songs they disagree on most")
    st.dataframe(disagreement_frame(result), hide_index=True)
    cards = cached_model_cards(uri, model, username, password)
    for v in (va, vb):
        with st.expander(f"Model card of {label(rows.loc[v])}"):
            st.markdown(cards.get(v) or "_No description: registered before model cards were written._")
