"""Data: paper Fig. 1 (playcount by release quarter), Fig. 2 (hit-score distribution), counts."""

import streamlit as st

from dashboard import data, figures, ui

st.title("Data")
s = ui.page_settings()

with ui.problems(), st.spinner("Reading the listening store…"):
    version = data.db_version(s.db_path)
    counts = data.cached_counts(s.db_path, version)
    quarters = data.cached_quarters(s.db_path, version)
    scores = data.cached_hit_scores(s.db_path, version)

st.header("Songs per subset")
st.dataframe(counts, hide_index=True)

st.header("Mean playcount by release quarter")
st.caption(
    "Whole subset vs the sampled top-N songs; `Q1` is the first quarter of the observation window, "
    "`-Q1` the quarter before it."
)
st.plotly_chart(figures.quarter_playcount_figure(quarters))

st.header("Hit-score distribution")
st.caption("Whole subset vs the test split; hit score = ln(1 + playcount) · ln(1 + listeners).")
st.plotly_chart(figures.hit_score_histogram(scores))
