"""The dashboard's server: ``streamlit run dashboard/app.py``, which is what ``hitsong dashboard`` runs.

Streamlit finds ``app`` below, an ``st.App`` that serves ``navigation.py`` (the six pages)
behind the Host allow-list and with the error screen of ``dashboard.guard``. Its server
settings (allowed hosts, upload limit, error details, file watcher) are in
``dashboard/.streamlit/config.toml``, which Streamlit reads beside this file from whatever folder
it is started in. Secrets given as files (``MLFLOW_TRACKING_PASSWORD_FILE``, the read-only
service user's password, ``registry.secrets``) are read into this process's environment here,
so a plain ``streamlit run`` gets them as ``hitsong dashboard`` does; they are only ever used
server-side.
"""

import logging
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from dashboard.guard import HostAllowList, report_script_error
from registry.secrets import apply_secret_files

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
apply_secret_files()

app = st.App(
    Path(__file__).resolve().parent / "navigation.py",
    middleware=[Middleware(HostAllowList)],
    on_script_error=report_script_error,
)
