"""The ``hitsong demo`` command group: ``demo init`` writes the synthetic demo label.

``register(sub)`` creates the ``demo`` parser with its own sub-commands. Further demo
sub-commands (``demo run``) are added with :func:`add_demo_subcommand` or by extending
:data:`DEMO_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hitsong.commands import positive_int
from hitsong.demo import DEFAULT_SEED, DEFAULT_SONGS_PER_SUBSET, DEFAULT_USERS
from hitsong.settings import get_settings

#: Functions that each add one sub-command to the ``demo`` group's sub-parsers.
DEMO_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []  # noqa: SLF001


def add_demo_subcommand(adder: Callable[[argparse._SubParsersAction], None]) -> Callable:  # noqa: SLF001
    """Register a function that adds a sub-command to ``hitsong demo`` (usable as a decorator)."""
    DEMO_SUBCOMMANDS.append(adder)
    return adder


def run_init(args: argparse.Namespace) -> int:
    """``hitsong demo init``: write songs.csv, events.parquet, truth.parquet, audio/, README.md."""
    from hitsong.demo import init_demo

    summary = init_demo(
        args.out,
        songs_per_subset=args.songs_per_subset,
        users=args.users,
        seed=args.seed,
        workers=args.workers,
        force=args.force,
    )
    print(summary.out_dir)
    return 0


@add_demo_subcommand
def _add_init(demo_sub: argparse._SubParsersAction) -> None:  # noqa: SLF001
    p = demo_sub.add_parser(
        "init",
        help="write the synthetic demo label (songs, listening events, audio, ground truth)",
        description="Synthesise a small label of songs from genre archetypes and simulated "
        "listeners in two markets; the data is synthetic and labelled as such.",
    )
    p.add_argument("--out", default=str(get_settings().demo_dir),
                   help="target folder (default: the demo folder under HITSONG_HOME)")
    p.add_argument("--songs-per-subset", type=positive_int, default=DEFAULT_SONGS_PER_SUBSET,
                   help=f"songs per market (default {DEFAULT_SONGS_PER_SUBSET})")
    p.add_argument("--users", type=positive_int, default=DEFAULT_USERS,
                   help=f"simulated users per market (default {DEFAULT_USERS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--workers", type=positive_int, default=None, help="rendering processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run_init)


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # noqa: SLF001
    """Add the ``demo`` group and its sub-commands; returns the group's sub-parsers."""
    demo = sub.add_parser("demo", help="the embedded synthetic demo label")
    demo_sub = demo.add_subparsers(dest="demo_command", metavar="DEMO_COMMAND")
    demo.set_defaults(func=lambda _args: demo.print_help() or 2)
    for adder in DEMO_SUBCOMMANDS:
        adder(demo_sub)
    return demo_sub


# ``demo run`` (the whole pipeline) lives in its own module; it is added to the group here.
from hitsong.commands.pipeline import add_run_parser  # noqa: E402

add_demo_subcommand(add_run_parser)
