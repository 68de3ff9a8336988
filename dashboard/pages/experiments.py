"""Experiments: Table 1, per-repetition spread, learning curves, run comparison, MLflow links."""

import streamlit as st

from dashboard import data, figures, ui
from hitsong.metrics import METRIC_LABELS, METRIC_NAMES
from hitsong.training import runlayout

st.title("Experiments")
s = ui.page_settings()
uri = s.tracking_uri

experiment, version = ui.choose_experiment(uri, spinner="Reading experiments from the tracking server…")
experiment_id = experiment["experiment_id"]
with ui.problems(), st.spinner("Reading runs…"):
    runs = data.cached_runs(uri, experiment_id, version)
    table = data.cached_table1(uri, experiment_id, version)
reps = data.repetitions(runs)

st.header("Table 1: methods × metrics")
st.caption(f"mean ± std [95 % interval] over repetitions; ★ marks the best of each column. Source: {table.source}.")
if table.summary.empty:
    st.info("No finished repetitions in this experiment yet.")
else:
    st.dataframe(figures.table1_styler(figures.table1_frame(table.summary)))
    paired = figures.paired_test_frame(table.summary)
    if paired is not None:
        st.subheader("Gaps to the baseline")
        st.caption(
            "Each method minus the baseline (the method missing from this table), paired bootstrap "
            "interval over test songs and p-value; * marks an interval that excludes 0: a real gap."
        )
        st.dataframe(paired)

st.header("Per-repetition spread")
metric = st.selectbox("Metric (test split)", METRIC_NAMES, format_func=lambda m: METRIC_LABELS[m]) or METRIC_NAMES[0]
st.plotly_chart(figures.repetition_spread(reps, metric=metric))

st.header("Learning curves")
trained = runs[runs["kind"] == runlayout.REPETITION].sort_values(["method", "repetition"])
choices = data.run_choices(trained)  # label -> run id
if trained.empty:
    st.info("No repetition runs in this experiment.")
else:
    label = st.selectbox("Run", list(choices))
    with ui.problems(), st.spinner("Reading metric history…"):
        history = data.cached_history(uri, choices[label], version)
    st.plotly_chart(figures.learning_curves(history, title=f"Learning curves of {label}"))

st.header("Compare runs")
chosen = st.multiselect("Runs to compare (two or more)", list(choices), default=list(choices)[:2])
if len(chosen) >= 2:
    with ui.problems(), st.spinner("Reading runs…"):
        details = data.run_details(uri, [choices[c] for c in chosen])
    st.dataframe(figures.run_comparison_table(details))
    st.plotly_chart(figures.run_comparison_figure(details))
else:
    st.caption("Pick at least two runs.")

st.header("All runs")
st.dataframe(
    runs.assign(link=[data.run_url(uri, experiment_id, r) for r in runs["run_id"]])[
        [
            "link",
            "run_name",
            "kind",
            "method",
            "repetition",
            "status",
            "start_time",
            *[k for k in data.VERSION_METRICS if k in runs.columns],
        ]
    ],
    column_config={"link": st.column_config.LinkColumn("MLflow UI", display_text="open")},
    hide_index=True,
)
