"""The command line's logging set-up."""

from __future__ import annotations


def test_cli_logging_follows_stderr_when_it_is_replaced(capsys) -> None:
    """A CLI run in a longer-lived process (a test, a notebook) must not log into a closed stream later."""
    import io
    import logging
    import sys

    from hitsong.cli import setup_logging

    before, sys.stderr = sys.stderr, io.StringIO()
    try:
        setup_logging("INFO")
        sys.stderr.close()
    finally:
        sys.stderr = before
    logging.getLogger("hitsong.test").info("still heard")
    assert "INFO hitsong.test: still heard" in capsys.readouterr().err
    logging.getLogger().setLevel(logging.WARNING)
