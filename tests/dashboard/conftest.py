"""Show the browser test's timings at the end of the run (they are also in test-artifacts/)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

TIMING = Path(__file__).resolve().parents[2] / "test-artifacts" / "predict_timing.json"
_SESSION_START = time.time()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The upload-to-score times of ``test_browser.py``, when it wrote them in this run."""
    if not TIMING.is_file() or TIMING.stat().st_mtime < _SESSION_START:
        return
    record = json.loads(TIMING.read_text())
    on_screen, in_scorer = record["seconds_to_score_on_screen"], record["seconds_in_scorer"]
    terminalreporter.section("Predict page timings (test-artifacts/predict_timing.json)")
    new = on_screen.get("warm, new session")
    terminalreporter.write_line(
        f"dashboard start to ready {record.get('dashboard_start_seconds', float('nan')):.2f} s; "
        f"Predict page ready (champion loaded) {record.get('predict_page_ready_seconds', float('nan')):.2f} s; "
        f"cold first score on screen {on_screen['cold']:.2f} s (scorer {in_scorer['cold']:.2f} s); "
        f"warm {on_screen['warm']:.2f} s (scorer {in_scorer['warm']:.2f} s); "
        + (
            ""
            if new is None
            else f"warm in a new session {new:.2f} s (scorer {in_scorer['warm, new session']:.2f} s); "
        )
        + "(by the browser's clock; seen by the test driver: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in record.get("seconds_seen_by_test_driver", {}).items())
        + f"); {record['method']}, {record['file']}; "
        f"load average {', '.join(f'{v:.1f}' for v in record['load_average'])}"
    )
