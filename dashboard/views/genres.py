"""Genres: paper Fig. 4, predominant genres of the top songs by each method and by the truth."""

import streamlit as st

from dashboard import data, figures, ui

st.title("Genres of the top songs")
s = ui.page_settings()
uri = s.tracking_uri

experiment, version = ui.choose_experiment(uri, spinner="Reading experiments…")
if not experiment["subset"]:
    st.error(f"Experiment {experiment.name} has no `hitsong.subset` tag, so its songs' genres cannot be looked up.")
    st.stop()
with ui.problems(), st.spinner("Reading test predictions and song tags…"):
    predictions = data.cached_predictions(uri, experiment["experiment_id"], version)
    genres = data.cached_genres(s.db_path, experiment["subset"], data.db_version(s.db_path))
if predictions.empty:
    st.info("This experiment has no finished repetitions with test predictions yet.")
    st.stop()

n_test = int(predictions.groupby("method").size().min())
# The paper counts the top 50 of 1,000 test songs; on a small test split a top 50 would hold
# every song and every column would be the same, so the default is about a third of the split.
top = st.slider(
    "Top songs per ranking", min_value=5, max_value=100, step=5, value=min(50, max(5, 5 * round(n_test / 15)))
)
counts = figures.top_genre_counts(predictions, genres, top=top)
st.caption(
    "Each method's repetition chosen on validation Spearman ρ "
    f"({', '.join(sorted(predictions['run_name'].unique()))}); "
    f"top {min(top, n_test)} of {n_test} test songs by prediction, and by the true hit score. "
    "Genre = the tagger's strongest genre tag for the song."
)
st.plotly_chart(figures.genre_counts_figure(counts))
st.dataframe(counts.pivot_table(index="genre", columns="source", values="count", fill_value=0))
