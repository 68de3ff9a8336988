"""Registry: registered models, their versions with metrics and aliases, two versions compared, promotion."""

import os

import streamlit as st

from dashboard import compare, data, ui
from hitsong.errors import HitsongError

st.title("Model registry")
s = ui.page_settings()
uri = s.tracking_uri

with ui.problems(), st.spinner("Reading the model registry…"):
    auth = data.cached_requires_auth(uri)
username = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
if auth:
    with st.sidebar:
        st.subheader("Sign in")
        username = st.text_input("MLflow user", value=username)
        password = st.text_input("Password", value=password, type="password")
with ui.problems(), st.spinner("Reading the model registry…"):
    table = data.cached_versions(uri, username, password, st.session_state.get("registry_nonce", 0))

who = data.signed_in_as(username, password)
if auth:
    st.caption(
        f"The server requires sign-in. Signed in as **{username}**."
        if username
        else "The server requires sign-in: enter a user and password in the sidebar."
    )
else:
    st.caption(f"The server has no authentication; actions are recorded as **{who}**.")

if table.empty:
    st.info(
        "No registered models yet. Register the best run of a subset with `hitsong register --subset S` "
        "(or run `hitsong demo run`)."
    )
    st.stop()

st.header("Versions")
st.dataframe(table, hide_index=True)

st.header("Compare two versions")
compare.section(uri, table, username=username, password=password)

st.header("Promote a version to champion")
if notice := st.session_state.pop("promotion_notice", None):
    st.success(notice)
model = st.selectbox("Model", sorted(table["model"].unique()))
version = st.selectbox("Version", table.loc[table["model"] == model, "version"].tolist())
current = data.champions(table)
holder = current.loc[current["model"] == model, "version"].tolist()
if not holder:
    st.caption("No champion yet.")
elif holder[0] == version:
    st.caption(f"Version {version} is already the champion; promoting it again records a new reason.")
else:
    st.caption(f"Current champion: version {holder[0]}; it becomes the challenger.")
reason = st.text_area("Reason (recorded with the promotion)")
confirm = st.checkbox(f"I confirm: make {model} version {version} the champion, as {who}")
if st.button("Promote", type="primary", disabled=not (reason.strip() and confirm)):
    try:
        done = data.promote(uri, model, version, reason, username=username, password=password)
    except HitsongError as exc:
        st.error(f"The server refused the promotion: {exc}", icon=":material/block:")
    else:
        st.session_state["registry_nonce"] = st.session_state.get("registry_nonce", 0) + 1
        st.session_state["promotion_notice"] = (
            f"{done['model']} version {done['version']} is now champion (promoted by {done['promoted_by']} at "
            f"{done['promoted_at']}; previous champion: {done['previous'] or 'none'})."
        )
        st.rerun()
