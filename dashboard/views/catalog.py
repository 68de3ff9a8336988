"""Catalog: a version's top predicted songs, filtered by market, genre and release quarter, with audio."""

import streamlit as st

from dashboard import catalog, data, ui
from hitsong.errors import HitsongError
from hitsong.statements import score_statement

st.title("Catalog")
s = ui.page_settings()

with ui.problems(), st.spinner("Reading the catalog scores…"):
    db_version = data.db_version(s.db_path)
    versions = catalog.cached_scored_versions(s.db_path, db_version)
if versions.empty:
    st.info(
        "No catalog scores yet. Score the catalog with a registered version: "
        "`hitsong score --catalog --subset S` (the champion of hitsong-S), or `hitsong demo run`."
    )
    st.stop()

choices = {f"{r.model} v{r.version} ({r.method}, {r.songs} songs)": (r.model, r.version) for r in versions.itertuples()}
newest = versions["last_scored"].idxmax()
picked = st.selectbox("Scores of", list(choices), index=list(choices).index(list(choices)[newest]))
model, version = choices[picked]
with ui.problems():
    table = catalog.cached_catalog_table(s.db_path, model, version, db_version)

markets, genres, quarters = st.columns(3)
chosen_markets = markets.multiselect("Market", sorted(table["subset"].dropna().unique()))
chosen_genres = genres.multiselect("Genre", sorted(table["genre"].dropna().unique()))
chosen_quarters = quarters.multiselect("Release quarter", catalog.quarter_order(table))
shown = catalog.filter_table(table, markets=chosen_markets, genres=chosen_genres, quarters=chosen_quarters)
top = st.slider("Songs shown", min_value=1, max_value=max(1, len(shown)), value=min(50, max(1, len(shown))))

st.header(f"Top {min(top, len(shown))} of {len(shown)} songs by predicted hit score")
st.dataframe(shown.head(top)[list(catalog.TABLE_COLUMNS)], hide_index=True)
st.caption(
    f"Score: {score_statement(subset=model.removeprefix('hitsong-'))} Percentile: share of the version's "
    "training songs at or below it. Release quarter: relative to the start of the listening window."
)
st.download_button(
    "Download the table (CSV)",
    data=catalog.csv_bytes(shown),
    file_name=f"{model}-v{version}-catalog.csv",
    mime="text/csv",
)

st.header("Listen")
st.caption(f"The middle {catalog.SEGMENT_SECONDS:.0f} s of each song: the segment the models hear.")
for row in shown.head(min(top, catalog.PLAYERS)).itertuples():
    with st.container(border=True):
        who = f"{row.title} – {row.artist}" if isinstance(row.title, str) else row.path
        st.markdown(f"**{row.rank}. {who}** · {row.genre or 'no genre'} · hit score {row.score:.2f}")
        try:
            wave, sr = catalog.cached_middle_segment(row.path, catalog.file_mtime(row.path))
        except HitsongError as exc:
            st.warning(f"Cannot play it: {exc}")
            continue
        st.audio(wave, sample_rate=sr)
