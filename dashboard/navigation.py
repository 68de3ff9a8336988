"""The hitsong dashboard's pages under one navigation; served by ``dashboard/app.py`` (``hitsong dashboard``)."""

import streamlit as st

from dashboard import data, ui

st.set_page_config(page_title="hitsong", page_icon=":material/music_note:", layout="wide")

navigation = st.navigation(
    [
        st.Page("views/experiments.py", title="Experiments", icon=":material/science:", default=True),
        st.Page("views/data.py", title="Data", icon=":material/bar_chart:"),
        st.Page("views/genres.py", title="Genres", icon=":material/category:"),
        st.Page("views/predict.py", title="Predict", icon=":material/upload_file:"),
        st.Page("views/catalog.py", title="Catalog", icon=":material/library_music:"),
        st.Page("views/registry.py", title="Registry", icon=":material/inventory_2:"),
    ]
)
ui.sidebar(data.settings())
navigation.run()
