"""The audio's share in one view: every method's gap to m0 and to m1, under each split, side by side.

m0 (the metadata baseline: artist and release date, no audio) shows how much of the hit score
the catalogue's metadata already predicts; m1 (mel statistics and a linear layer) is the paper's
simplest audio method. Under a random split an artist's songs sit in train and test, so m0 and
every method can learn the artist; under the artist-disjoint split they cannot. Reading the gaps
to m0 under both splits says what the audio adds over metadata.

Plain functions of Table-1 frames (``hitsong.results.Table1.frame``, one per split): a long
frame (:func:`share_frame`), its display table (:func:`share_table`) and a plotly figure
(:func:`share_figure`). No Streamlit, MLflow or DuckDB here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from dashboard.figures import gap_text
from hitsong.metrics import METRIC_LABELS
from hitsong.results import gap_columns

#: The metrics of the view: Spearman's rho (all songs) and nDCG@k (the top of the list).
SHARE_METRICS = ("spearman_rho", "ndcg_at_k")
#: The baselines of the view: what metadata predicts, and the simplest audio method (paper section 3).
SHARE_BASELINES = ("m0", "m1")
#: Split methods in display order, with their headings.
SPLIT_LABELS = {"random": "random split", "artist": "artist-disjoint split", "release_date": "release-date split"}
#: Columns of :func:`share_frame`.
SHARE_COLUMNS = ("split", "method", "metric", "mean", "baseline", "diff", "low", "high", "p_value")


def _split_order(split: str) -> tuple[int, str]:
    order = list(SPLIT_LABELS)
    return (order.index(split) if split in order else len(order), split)


def share_frame(
    tables: Mapping[str, pd.DataFrame],
    *,
    metrics: Sequence[str] = SHARE_METRICS,
    baselines: Sequence[str] = SHARE_BASELINES,
) -> pd.DataFrame:
    """Every method's gap to each baseline per split, long form.

    Parameters
    ----------
    tables : mapping of split method -> pd.DataFrame
        The Table-1 frame of each split's experiment (long form with the ``diff_<b>`` columns).
    metrics, baselines : sequence of str

    Returns
    -------
    pd.DataFrame
        :data:`SHARE_COLUMNS`, one row per (split, method, metric, baseline) where the baseline
        was trained (the baseline's own row has ``diff`` 0 and no interval); splits in
        :data:`SPLIT_LABELS` order. ``low``/``high``/``p_value`` are NaN without bootstrap replicates.
    """
    rows = []
    for split in sorted(tables, key=_split_order):
        frame = tables[split]
        if frame.empty or not {"method", "metric", "mean"} <= set(frame.columns):
            continue
        for base in baselines:
            cols = gap_columns(base)
            if cols.diff not in frame.columns:
                continue
            part = frame[frame["metric"].isin(metrics)].dropna(subset=[cols.diff])
            for r in part.itertuples(index=False):
                cells = r._asdict()
                rows.append(
                    {
                        "split": split,
                        "method": cells["method"],
                        "metric": cells["metric"],
                        "mean": float(cells["mean"]),
                        "baseline": base,
                        "diff": float(cells[cols.diff]),
                        "low": float(cells.get(cols.low, float("nan"))),
                        "high": float(cells.get(cols.high, float("nan"))),
                        "p_value": float(cells.get(cols.p_value, float("nan"))),
                    }
                )
    return pd.DataFrame(rows, columns=list(SHARE_COLUMNS))


def share_table(share: pd.DataFrame) -> pd.DataFrame:
    """The view's table: one row per method, for each split and metric the value and the gaps.

    Returns
    -------
    pd.DataFrame
        Index ``method``; columns ``(split heading, metric label, "value" | "vs m0" | "vs m1")``
        holding ``0.412`` or ``+0.050 [+0.010, +0.090] *`` (`` *``: the paired interval excludes 0).
        Empty when ``share`` is.
    """
    if share.empty:
        return pd.DataFrame()
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in share.itertuples(index=False):
        head = (SPLIT_LABELS.get(r.split, r.split), METRIC_LABELS.get(r.metric, r.metric))
        cells.setdefault((*head, "value"), {})[r.method] = f"{r.mean:.3f}"
        interval = not (pd.isna(r.low) or pd.isna(r.high))
        text = gap_text(r.diff, r.low, r.high) if interval else f"{r.diff:+.3f}"
        cells.setdefault((*head, f"vs {r.baseline}"), {})[r.method] = "–" if r.method == r.baseline else text
    methods = sorted(share["method"].unique())
    splits = [SPLIT_LABELS.get(s, s) for s in sorted(share["split"].unique(), key=_split_order)]
    metrics = [METRIC_LABELS.get(m, m) for m in SHARE_METRICS if m in set(share["metric"])]
    kinds = ["value", *(f"vs {b}" for b in SHARE_BASELINES if b in set(share["baseline"]))]
    keys = [(s, m, k) for s in splits for m in metrics for k in kinds if (s, m, k) in cells]
    out = pd.DataFrame({key: [cells[key].get(m, "–") for m in methods] for key in keys}, index=methods)
    out.columns = pd.MultiIndex.from_tuples(keys, names=["split", "metric", ""])
    out.index.name = "method"
    return out


def share_figure(share: pd.DataFrame, *, baseline: str = "m0") -> go.Figure:
    """Each method's gap to ``baseline`` with its paired interval, a colour per split, a panel per metric.

    A point above the zero line is a method that beats the baseline on the test songs; an
    interval that crosses it is a gap the test set cannot tell from noise.
    """
    data = share[(share["baseline"] == baseline) & (share["method"] != baseline)].copy()
    if data.empty:
        fig = go.Figure()
        fig.add_annotation(text=f"no gaps to {baseline} yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return fig
    data["split"] = data["split"].map(lambda s: SPLIT_LABELS.get(s, s))
    data["metric"] = data["metric"].map(lambda m: METRIC_LABELS.get(m, m))
    data["above"] = (data["high"] - data["diff"]).fillna(0.0)
    data["below"] = (data["diff"] - data["low"]).fillna(0.0)
    fig = px.scatter(
        data.sort_values(["method", "split"]),
        x="method",
        y="diff",
        color="split",
        facet_col="metric",
        error_y="above",
        error_y_minus="below",
        hover_data={"mean": ":.3f", "p_value": ":.3f", "above": False, "below": False},
        labels={"diff": f"gap to {baseline} (test)", "method": "method"},
        category_orders={
            "metric": [METRIC_LABELS.get(m, m) for m in SHARE_METRICS],
            "split": [label for label in SPLIT_LABELS.values() if label in set(data["split"])],
        },
    )
    fig.update_traces(marker={"size": 9})
    fig.for_each_trace(lambda t: t.update(offsetgroup=t.legendgroup))  # splits side by side per method
    fig.update_layout(scattermode="group", scattergap=0.4)
    fig.add_hline(y=0.0, line_dash="dot", line_color="#7f8c8d")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    fig.update_layout(title=f"What each method adds over {baseline}, by split (95 % paired intervals)")
    return fig
