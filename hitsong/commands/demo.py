"""The ``hitsong demo`` command group: ``demo init`` writes the synthetic demo label.

``register(sub)`` creates the ``demo`` parser; its sub-commands come from the
``hitsong.demo_commands`` entry-point group: ``init`` (here) and ``run``, the whole pipeline,
which the top layer (``dashboard.pipeline``) contributes.
"""

from __future__ import annotations

import argparse

from hitsong.commands import contributed, positive_int
from hitsong.demo import DEFAULT_SEED, DEFAULT_SONGS_PER_SUBSET, DEFAULT_USERS
from hitsong.settings import get_settings

#: The entry-point group of ``hitsong demo``'s sub-commands.
DEMO_GROUP = "hitsong.demo_commands"


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


def add_init(demo_sub: argparse._SubParsersAction) -> None:
    """Add ``hitsong demo init`` to the ``demo`` group."""
    p = demo_sub.add_parser(
        "init",
        help="write the synthetic demo label (songs, listening events, audio, ground truth)",
        description="Synthesise a small label of songs from genre archetypes and simulated "
        "listeners in two markets; the data is synthetic and labelled as such.",
    )
    p.add_argument(
        "--out",
        default=str(get_settings().demo_dir),
        help="target folder (default: the demo folder under HITSONG_HOME)",
    )
    p.add_argument(
        "--songs-per-subset",
        type=positive_int,
        default=DEFAULT_SONGS_PER_SUBSET,
        help=f"songs per market (default {DEFAULT_SONGS_PER_SUBSET})",
    )
    p.add_argument(
        "--users",
        type=positive_int,
        default=DEFAULT_USERS,
        help=f"simulated users per market (default {DEFAULT_USERS})",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--workers", type=positive_int, default=None, help="rendering processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run_init)


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``demo`` group and its sub-commands; returns the group's sub-parsers."""
    demo = sub.add_parser("demo", help="the embedded synthetic demo label")
    demo_sub = demo.add_subparsers(dest="demo_command", metavar="DEMO_COMMAND")
    demo.set_defaults(func=lambda _args: demo.print_help() or 2)
    for add in contributed(DEMO_GROUP):
        add(demo_sub)
    return demo_sub
