"""Registry: registered models, their versions with metrics and aliases, two versions compared, promotion.

Each visitor signs in as themself: the fields start empty, and no credential the server holds
(its read-only service user) ever reaches a page. With the server in auth mode a promotion is
always made with the visitor's own user and password, and MLflow checks them.
"""

import streamlit as st

from dashboard import compare, data, ui
from hitsong.errors import HitsongError

st.title("Model registry")
s = ui.page_settings()
uri = s.tracking_uri

with ui.problems(), st.spinner("Reading the model registry…"):
    auth = data.cached_requires_auth(uri)
username = password = ""
if auth:
    with st.sidebar:
        st.subheader("Sign in")
        username = st.text_input("MLflow user", key="registry_username").strip()
        password = st.text_input("Password", type="password", key="registry_password")
signed_in = bool(username and password)
with ui.problems(), st.spinner("Reading the model registry…"):
    # Signed in: read as the visitor (wrong credentials stop here, named). Otherwise the
    # dashboard's own read-only service user reads, on the server.
    table = data.cached_versions(
        uri, username if signed_in else "", password if signed_in else "", st.session_state.get("registry_nonce", 0)
    )

who = data.signed_in_as(username if signed_in else "")
if auth:
    st.caption(
        f"The server requires sign-in. Signed in as **{username}**; promotions are made as this user."
        if signed_in
        else "The server requires sign-in: enter your own MLflow user and password in the sidebar to promote."
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
may_promote = signed_in or not auth
if st.button("Promote", type="primary", disabled=not (reason.strip() and confirm and may_promote)):
    try:
        done = data.promote(uri, model, version, reason, username=username, password=password, auth=auth)
    except HitsongError as exc:
        st.error(f"The server refused the promotion: {exc}", icon=":material/block:")
    else:
        st.session_state["registry_nonce"] = st.session_state.get("registry_nonce", 0) + 1
        st.session_state["promotion_notice"] = (
            f"{done['model']} version {done['version']} is now champion (promoted by {done['promoted_by']} at "
            f"{done['promoted_at']}; previous champion: {done['previous'] or 'none'})."
        )
        st.rerun()
