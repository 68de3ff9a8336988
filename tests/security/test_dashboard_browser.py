"""The dashboard attacked in a real browser: MLflow with basic auth + ``hitsong dashboard`` + headless Chromium.

The dashboard is started with the plain ``streamlit run dashboard/app.py`` from the repository
root (``hitsong dashboard`` runs the same, ``test_team_stack.py`` starts it that way), so every
check below also shows that ``dashboard/.streamlit/config.toml`` applies to a plain run (the
Predict page's upload limit is its 100 MB, not Streamlit's default 200 MB).

It runs as a team would run it: it reads runs and models as a read-only service user
whose password is in its environment (``MLFLOW_TRACKING_PASSWORD``); that user even holds EDIT
on the served model, so that a promotion made with it would succeed. ``bob`` has only READ,
which lets him create models of his own: he plants ``hitsong-aaa`` (code that writes a marker
when imported, no bundle; first in the Predict page's list) as a champion, and an experiment
whose summary table crashes the Experiments page. (A bundle beside such code is scored from its
data files: ``test_registry_code.py``.) ``alice`` holds
EDIT on ``hitsong-western``.

Checked in Chromium, with every WebSocket frame the browser receives recorded:

- the service user's name and password never appear in any page's source, any input, or any
  frame; the sign-in fields start empty; without signing in there is no promotion, and bob's and
  alice's promotions are checked by MLflow as theirs;
- a page reached under another name (``evil.example`` resolved to the dashboard, as DNS
  rebinding does) is refused, on HTTP and on the WebSocket; the normal names are served;
- an uncaught error shows a reference, never a traceback; the traceback is in the server log;
- the evil champion selected on Predict is refused by name, and the marker file never appears.

The Predict page's per-session limits are checked with Streamlit's AppTest against the same
server (files per upload, audio per session).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dashboard.commands import wait_until_ready
from registry.server import free_port
from tests.helpers.attacks import register_evil
from tests.helpers.audio import song, write_audio
from tests.helpers.dashboard import log_champion, seed_store
from tests.helpers.mlflow import mlflow_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 120_000
SERVICE_USER = "svc-reader-7f3a"
SERVICE_PASSWORD = f"Svc-Secret-{secrets.token_hex(8)}"
ALICE = ("alice", "alice-password-123")
BOB = ("bob", "bob-password-1234")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (`make deps-browser`)"
    ),
]


def _plant_crashing_experiment(uri: str, tmp: Path) -> None:
    """An experiment whose Table-1 artifact has a mean that is not a number."""
    import mlflow

    from hitsong.training import runlayout

    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("hitsong/aaa/crash", tags={runlayout.EXPERIMENT_TAG_SUBSET: "crash"})
    run = client.create_run(exp, tags={runlayout.TAG_KIND: runlayout.SUMMARY}, run_name="crash summary")
    table = tmp / f"{runlayout.TABLE1}.csv"
    pd.DataFrame({"method": ["m1"], "metric": ["spearman_rho"], "mean": ["not-a-number"], "std": [0.0]}).to_csv(
        table, index=False
    )
    client.log_artifact(run.info.run_id, str(table))
    client.set_terminated(run.info.run_id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("attacked-home")
    seed_store(home)
    marker = home / "marker"
    with mlflow_server(home, auth=True) as srv:
        for user, password in ((SERVICE_USER, SERVICE_PASSWORD), ALICE, BOB):
            srv.create_user(user, password)
        with srv.as_user(*srv.admin):
            log_champion(srv.uri, home, username=srv.admin[0], password=srv.admin[1])  # hitsong-western v1
        srv.grant(ALICE[0], "hitsong-western", "EDIT")
        srv.grant(SERVICE_USER, "hitsong-western", "EDIT")
        with srv.as_user(*BOB):  # a READ user plants champions and an experiment of his own
            register_evil(srv.uri, "hitsong-aaa", home, marker, with_bundle=False)
            _plant_crashing_experiment(srv.uri, home)
        assert not marker.exists()
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "HITSONG_HOME": str(home), "MLFLOW_TRACKING_URI": srv.uri,
            "MLFLOW_TRACKING_USERNAME": SERVICE_USER, "MLFLOW_TRACKING_PASSWORD": SERVICE_PASSWORD,
        }  # fmt: skip
        log_path = home / "dashboard.log"
        with log_path.open("wb") as log_fh:  # the plain command, from the repo root: settings from config.toml
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port)],
                env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, timeout=120, process=proc)
            yield {"url": url, "port": port, "home": home, "log": log_path, "server": srv, "marker": marker}
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(stack):
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--host-resolver-rules=MAP evil.example 127.0.0.1"]  # fmt: skip
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield chromium
        finally:
            chromium.close()


class Frames:
    """Every WebSocket frame a page receives, as bytes."""

    def __init__(self, page) -> None:
        self.received: list[bytes] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._add))

    def _add(self, payload) -> None:
        self.received.append(payload if isinstance(payload, bytes) else str(payload).encode())

    def contain(self, text: str) -> bool:
        return any(text.encode() in frame for frame in self.received)


def _settle(page, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSpinner\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)


def _inputs(page) -> list[str]:
    return page.eval_on_selector_all("input, textarea", "els => els.map(e => e.value)")


def _assert_no_service_credential(page, frames: Frames, where: str) -> None:
    source = page.content()
    for secret in (SERVICE_PASSWORD, SERVICE_USER):
        assert secret not in source, f"{where}: the page source holds the service credential"
        assert not any(secret in value for value in _inputs(page)), f"{where}: an input holds it"
        assert not frames.contain(secret), f"{where}: a WebSocket frame carried it"
    assert page.locator("[data-testid='stException']").count() == 0, where


def _sidebar_link(page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled exactly ``label`` ("Model to compare" is not "Model")."""
    label_el = page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)
    page.get_by_test_id("stSelectbox").filter(has=label_el).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(500)


def _idle(page) -> None:
    """Let the rerun an action started finish."""
    page.wait_for_timeout(1000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSpinner\"]')", timeout=TIMEOUT_MS)


def _promote(page, reason: str) -> None:
    """Choose hitsong-western, give a reason and confirm (the button is then pressed, or not)."""
    _choose(page, "Model", "hitsong-western")
    reason_box = page.get_by_label("Reason (recorded with the promotion)")
    reason_box.fill(reason)
    reason_box.press("Control+Enter")
    _idle(page)
    page.get_by_role("checkbox", name=re.compile("I confirm")).check(force=True)
    _idle(page)


def _sign_in(page, user: str, password: str) -> None:
    for label, value in (("MLflow user", user), ("Password", password)):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        _idle(page)


def test_no_server_credential_reaches_the_browser_and_promotions_are_the_visitors(stack, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    frames = Frames(page)
    page.goto(stack["url"])
    _settle(page, "Experiments")
    for name, text in (("Data", "Mean playcount"), ("Genres", "Genres of the top songs"), ("Predict", "Audio files"),
                       ("Catalog", "No catalog scores yet"), ("Registry", "Versions")):  # fmt: skip
        _sidebar_link(page, name)
        _settle(page, text)
        _assert_no_service_credential(page, frames, name)

    assert page.get_by_label("MLflow user").input_value() == ""  # nothing pre-filled
    assert page.get_by_label("Password", exact=True).input_value() == ""
    assert page.get_by_text("enter your own MLflow user and password").count() == 1
    _promote(page, "anonymous visitor tries")
    assert page.get_by_role("button", name="Promote").is_disabled()  # not signed in: no promotion at all

    _sign_in(page, *BOB)
    _promote(page, "bob tries")
    page.get_by_role("button", name="Promote").click()
    page.get_by_text("bob lacks permission").first.wait_for(timeout=TIMEOUT_MS)
    _idle(page)

    _sign_in(page, *ALICE)
    _promote(page, "alice confirms the champion")
    page.get_by_role("button", name="Promote").click()
    page.get_by_text("promoted by alice").first.wait_for(timeout=TIMEOUT_MS)
    _assert_no_service_credential(page, frames, "Registry after promotions")
    assert frames.received, "no WebSocket frame was recorded: the check above would be empty"

    from registry.models import list_versions

    srv = stack["server"]
    rows = list_versions("hitsong-western", tracking_uri=srv.uri, username=srv.admin[0], password=srv.admin[1])
    assert rows[0]["tags"]["hitsong.promoted_by"] == "alice"
    assert rows[0]["tags"]["hitsong.promotion_reason"] == "alice confirms the champion"


def _upgrade(port: int, host: str) -> int:
    """The status of a WebSocket handshake on Streamlit's stream with this Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    conn.request("GET", "/_stcore/stream", headers={
        "Host": host, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13", "Origin": f"http://{host}",
    })  # fmt: skip
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_page_under_another_host_name_is_refused(stack, browser):
    port = stack["port"]
    page = browser.new_page()
    refused = page.goto(f"http://evil.example:{port}/")  # DNS rebinding: the name resolves to the dashboard
    assert refused is not None and refused.status == 403
    assert "does not answer to that host name" in page.content()
    served = page.goto(f"http://localhost:{port}/")
    assert served is not None and served.status == 200
    assert _upgrade(port, f"evil.example:{port}") == 403
    assert _upgrade(port, f"localhost:{port}") == 101
    assert "refused a websocket request for Host 'evil.example" in stack["log"].read_text()


def test_an_uncaught_error_shows_a_reference_and_logs_the_traceback(stack, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(stack["url"])
    _settle(page, "Experiments")
    _choose(page, "Experiment (dataset / subset)", "hitsong/aaa/crash")  # the planted one
    page.get_by_text("Something went wrong on this page").first.wait_for(timeout=TIMEOUT_MS)
    shown = page.get_by_text("Something went wrong on this page").first.inner_text()
    reference = shown.split("reference")[1].split()[0].strip("*.;")
    source = page.content()
    for leak in ("Traceback", "ValueError", "not-a-number", "site-packages", "figures.py"):
        assert leak not in source, f"the visitor sees {leak!r}"
    assert page.locator("[data-testid='stException']").count() == 0
    log = stack["log"].read_text()
    assert f"reference {reference}" in log and "Traceback" in log and "ValueError" in log


def test_evil_champions_on_the_predict_page_never_run_their_code(stack, browser, tmp_path):
    clip = write_audio(tmp_path / "clip.wav", song(seconds=4.0, sr=22050, seed=2), 22050)
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    page.goto(f"{stack['url']}/predict")
    _settle(page, "Audio files")
    assert page.get_by_text("at most 100 MB each").count() == 1  # config.toml's limit, not Streamlit's 200
    # "aaa", first in the list, is selected, and the page loads it before any upload: refused at once
    refusal = "hitsong-aaa version 1 is not a hitsong model bundle"
    page.get_by_text(refusal).first.wait_for(timeout=TIMEOUT_MS)
    page.locator("input[type=file]").set_input_files(str(clip))  # and refused again with a file chosen
    _settle(page, "clip.wav")
    page.get_by_text(refusal).first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Hit score (training-catalogue scale)").count() == 0
    assert not stack["marker"].exists()  # refused by name, its code never imported


# ----------------------------------------------------------------------------- Predict limits


@pytest.fixture
def predict_app(stack, monkeypatch):
    """The Predict page in AppTest, reading as the service user, with small per-session limits."""
    from streamlit.testing.v1 import AppTest

    for key, value in {"HITSONG_HOME": str(stack["home"]), "MLFLOW_TRACKING_URI": stack["server"].uri,
                       "MLFLOW_TRACKING_USERNAME": SERVICE_USER, "MLFLOW_TRACKING_PASSWORD": SERVICE_PASSWORD,
                       "HITSONG_PREDICT_MAX_FILES": "2", "HITSONG_PREDICT_SESSION_MB": "1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(
        str(Path(__file__).resolve().parents[2] / "dashboard" / "navigation.py"), default_timeout=120
    )
    at.run()
    at.switch_page("views/predict.py")
    at.run()
    at.selectbox[0].set_value("western").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _wav(tmp_path: Path, name: str, seconds: float) -> tuple[str, bytes, str]:
    path = write_audio(tmp_path / name, song(seconds=seconds, sr=22050, seed=4, channels=1), 22050, subtype="PCM_16")
    return (name, path.read_bytes(), "audio/wav")


def test_predict_refuses_too_many_files_at_once(predict_app, tmp_path):
    at = predict_app
    at.file_uploader[0].set_value([_wav(tmp_path, f"f{i}.wav", 1.0) for i in range(3)]).run()
    assert not at.exception
    assert any("3 files chosen" in e.value and "at most 2 at a time" in e.value for e in at.error)
    assert not at.metric  # nothing was scored


def test_predict_stops_scoring_when_the_session_budget_is_spent(predict_app, tmp_path):
    at = predict_app
    big, second = _wav(tmp_path, "first.wav", 16.0), _wav(tmp_path, "second.wav", 16.0)  # ~0.7 MB each
    at.file_uploader[0].set_value([big, second]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.metric if m.label.startswith("Hit score")]  # the first is scored ...
    refused = [w.value for w in at.warning if "second.wav was not scored" in w.value]
    assert refused and "limit is 1 MB per session" in refused[0]  # ... the second is not
