"""The Streamlit dashboard (DESIGN.md section 8).

``app.py`` is the Streamlit entry point (``st.navigation`` over ``views/``; not a folder
named ``pages/``, which a fresh Streamlit server would list in the sidebar by itself for a
moment, with deep links to its scripts); the pages only draw. Data loading lives in
``dashboard.data`` and plotly figure builders in
``dashboard.figures``: plain functions that tests call without a browser.
``hitsong dashboard`` (``dashboard.commands``) starts the app.
"""
