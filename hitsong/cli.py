"""The ``hitsong`` command: ``parse_args(argv)`` and a thin ``main``.

Sub-commands come from the ``hitsong.commands`` entry-point group (``pyproject.toml``): each
layer (the library's ``hitsong.commands``, ``registry.commands``, ``dashboard.commands``)
contributes a ``register(subparsers)`` function that adds its parsers and sets ``func`` on
them, so this module never imports the layers above the library. Command modules import heavy
libraries (torch, mlflow, streamlit) inside their ``run`` functions so ``hitsong --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from hitsong import __version__
from hitsong.commands import contributed
from hitsong.errors import HitsongError

#: The entry-point group of sub-command contributors.
COMMAND_GROUP = "hitsong.commands"

log = logging.getLogger("hitsong")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="hitsong",
        description="Audio-based hit song prediction: data, features, training, registry, dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"hitsong {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in contributed(COMMAND_GROUP):
        register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``)."""
    return build_parser().parse_args(argv)


class _Stderr(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is written, not the one at set-up
    (an embedding program or a test harness may replace and close it in between)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str) -> None:
    """Log to stderr with timestamps; stdout is kept for machine-readable output."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[_Stderr()],
        force=True,
    )
    for noisy in ("numba", "matplotlib", "urllib3", "alembic", "git", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the process exit code."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    if not getattr(args, "func", None):
        build_parser().print_help(sys.stderr)
        return 2
    try:
        result = args.func(args)
    except HitsongError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    return int(result or 0)
