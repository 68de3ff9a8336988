"""Experiments: Table 1, gaps to m0 and m1, the audio's share by split, spread, curves, comparison, links."""

import streamlit as st

from dashboard import audioshare, data, figures, ui
from hitsong.metrics import METRIC_LABELS, METRIC_NAMES
from hitsong.statements import split_description
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
split_by = experiment.get("split_by")
st.caption(f"Evaluated on {split_description(split_by if isinstance(split_by, str) else None)}.")
if table.summary.empty:
    st.info("No finished repetitions in this experiment yet.")
else:
    st.dataframe(figures.table1_styler(figures.table1_frame(table.summary)))
    gaps = {b: figures.paired_test_frame(table.summary, baseline=b) for b in audioshare.SHARE_BASELINES}
    if any(g is not None for g in gaps.values()):
        st.subheader("Gaps to the baselines")
        st.caption(
            "Each method minus the baseline on the test songs, with the paired bootstrap interval and "
            "p-value; * marks an interval that excludes 0: a real gap. m0 sees no audio (artist and "
            "release date only): a gap above it is what the audio adds."
        )
        for baseline, paired in gaps.items():
            if paired is not None:
                label = table.summary.loc[table.summary["method"] == baseline, "label"].head(1).tolist()
                st.markdown(f"**vs {baseline}**" + (f" ({label[0]})" if label else ""))
                st.dataframe(paired)

st.header("What the audio adds, by split")
with ui.problems(), st.spinner("Reading the same data's other splits…"):
    experiments = data.cached_experiments(uri, version)
    share = audioshare.share_frame(data.cached_split_tables(uri, experiment, experiments, version))
missing = [split for split in audioshare.SPLIT_LABELS if split not in set(share["split"])]
if share.empty:
    st.info("No gaps yet: train m0 beside the audio methods (`hitsong train`, the default methods).")
else:
    st.caption(
        "Spearman ρ and nDCG@k of each method and its gap to m0 (metadata) and m1 (the simplest audio "
        "method), per split of the same songs. Under a random split an artist's songs sit in train and "
        "test, so metadata and audio models can learn the artist; under the artist-disjoint split they cannot."
    )
    st.dataframe(audioshare.share_table(share))
    if (share["baseline"] == "m0").any():
        st.plotly_chart(audioshare.share_figure(share, baseline="m0"))
    else:
        st.caption("m0 was not trained in these experiments: its gaps (and their figure) appear once it is.")
if missing:
    st.caption(
        "No trained experiment for the "
        + ", ".join(audioshare.SPLIT_LABELS[split] for split in missing)
        + " of these songs yet: `hitsong sample --by artist` (or `release_date`) then `hitsong train`, "
        "or `hitsong demo run --splits random,artist`."
    )

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
