"""The ``hitsong`` command: ``parse_args(argv)`` and a thin ``main``.

The CLI is the composition root: each sub-command lives in its own module that exposes
``register(subparsers)`` and sets ``func`` on its parser. Modules import heavy libraries
(torch, mlflow, streamlit) inside their ``run`` function so ``hitsong --help`` stays fast.
The library modules of ``hitsong`` never import ``registry`` or ``dashboard``; only this
table names them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hitsong import __version__
from hitsong.errors import HitsongError

#: Modules that contribute sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "hitsong.commands.data",
    "hitsong.commands.features",
    "hitsong.commands.demo",
    "hitsong.commands.train",
    "registry.commands",
    "dashboard.commands",
)

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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``)."""
    return build_parser().parse_args(argv)


def setup_logging(level: str) -> None:
    """Log to stderr with timestamps; stdout is kept for machine-readable output."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
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
