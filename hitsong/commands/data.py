"""Sub-commands over the listening store: ``ingest``, ``sample``, ``stats``.

Options are typed here (dates parsed as dates, split fractions checked); the work is done by
:mod:`hitsong.store.ingest`, :mod:`hitsong.store.sample` and :mod:`hitsong.store.read`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from hitsong.commands import positive_int
from hitsong.settings import get_settings

log = logging.getLogger(__name__)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (expected YYYY-MM-DD)") from None


def _fractions(text: str) -> tuple[float, float, float]:
    from hitsong.errors import ConfigError
    from hitsong.store.sample import check_fractions

    try:
        return check_fractions([float(x) for x in text.split(",")])
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(
            f"--split {text!r}: expected three fractions for train,val,test summing to 1, e.g. 0.8,0.1,0.1"
        ) from exc


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="the DuckDB file (default: $HITSONG_HOME/hitsong.duckdb)",
    )


def _db(args: argparse.Namespace) -> Path:
    return args.db if args.db is not None else get_settings().db_path


def register(sub: argparse._SubParsersAction) -> None:
    """Register the data sub-commands."""
    p = sub.add_parser(
        "ingest",
        help="read listening events (or per-song statistics) and the song catalogue into the database",
        description=(
            "Read events (CSV, gzipped CSV or Parquet; aggregated user_id,song_id,play_count or one "
            "row per play user_id,song_id,played_at) and songs (song_id,title,artist,subset,"
            "release_date,audio_path), and compute playcounts, listeners, hit scores and release "
            "quarters. --events takes a file, a glob, a folder (hive partitions such as "
            "date=2016-01-01/ included) or an s3:// or gs:// URL (DuckDB's httpfs). Only files not "
            "counted before are read; their plays and new listeners are added exactly, the earlier "
            "files are not read again. --song-stats takes per-song song_id,playcount,listeners[,events] "
            "computed elsewhere instead. All or nothing: on an error the database is unchanged."
        ),
    )
    _db_option(p)
    p.add_argument(
        "--events",
        action="append",
        default=None,
        metavar="FILE|GLOB|FOLDER|URL",
        help="events file, glob, folder or URL; repeat for several",
    )
    p.add_argument(
        "--song-stats",
        type=Path,
        default=None,
        metavar="FILE",
        help="per-song statistics for the window (song_id, playcount, listeners[, events]) instead of events",
    )
    p.add_argument("--songs", type=Path, required=True, metavar="FILE", help="songs file")
    p.add_argument(
        "--window-start",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="first day of the observation window (default: first play; required for aggregated events)",
    )
    p.add_argument(
        "--window-end",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="last day of the observation window (default: last play)",
    )
    p.add_argument(
        "--drop-unknown",
        action="store_true",
        help="drop (and count) events of songs not in the songs file instead of failing",
    )
    p.add_argument(
        "--event-shape",
        choices=["auto", "aggregated", "plays"],
        default="auto",
        help="force the events shape instead of detecting it from the columns",
    )
    p.add_argument(
        "--replace", action="store_true", help="forget the events files of earlier ingests instead of adding to them"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another ingest into the same database to finish (default: fail at once)",
    )
    p.set_defaults(func=run_ingest)

    p = sub.add_parser(
        "sample",
        help="pick the top-N songs per subset and split them into train/val/test",
        description="Per subset, the N songs with the highest playcount, split train/val/test. "
        "Same seed, same split. Replaces earlier splits.",
    )
    _db_option(p)
    p.add_argument("--per-subset", type=positive_int, required=True, metavar="N")
    p.add_argument("--seed", type=int, required=True, metavar="S")
    p.add_argument(
        "--split",
        type=_fractions,
        default=(0.8, 0.1, 0.1),
        metavar="TRAIN,VAL,TEST",
        help="fractions summing to 1 (default 0.8,0.1,0.1)",
    )
    p.add_argument(
        "--by",
        # hitsong.store.sample.SAMPLE_BY, not imported so that --help does not load DuckDB (a test checks they agree)
        choices=["random", "release_date", "artist"],
        default="random",
        help="random (seeded); release_date: oldest to train, newest to test; artist (seeded): "
        "no artist in more than one split, sizes as close to the fractions as the artists allow",
    )
    p.set_defaults(func=run_sample)

    p = sub.add_parser("stats", help="print a per-subset summary of the listening data")
    _db_option(p)
    p.set_defaults(func=run_stats)


def run_ingest(args: argparse.Namespace) -> int:
    """``hitsong ingest``."""
    from hitsong.store.ingest import ingest

    if (args.events is None) == (args.song_stats is None):
        from hitsong.errors import ConfigError

        raise ConfigError("hitsong ingest needs --events FILE (repeatable) or --song-stats FILE, not both")
    report = ingest(
        _db(args),
        args.events,
        args.songs,
        song_stats=args.song_stats,
        wait_seconds=args.wait,
        window_start=args.window_start,
        window_end=args.window_end,
        unknown_songs="drop" if args.drop_unknown else "error",
        event_shape=args.event_shape,
        replace=args.replace,
    )
    sys.stdout.write(report.message + "\n")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """``hitsong sample``."""
    from hitsong.store.sample import sample

    summary = sample(_db(args), per_subset=args.per_subset, seed=args.seed, split=args.split, by=args.by)
    table = summary.pivot(index="subset", columns="split", values="songs").fillna(0).astype(int)
    table = table.reindex(columns=[c for c in ("train", "val", "test") if c in table.columns])
    sys.stdout.write(table.to_string() + "\n")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """``hitsong stats``."""
    from hitsong.store.read import stats, window

    frame = stats(_db(args))
    start, end = window(_db(args))
    sys.stdout.write(f"observation window {start} to {end or '?'}\n")
    sys.stdout.write(frame.to_string(index=False, float_format=lambda x: f"{x:.3f}") + "\n")
    return 0
