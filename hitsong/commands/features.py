"""``hitsong features``: compute and store log-mels (and tag vectors) of every sampled song."""

from __future__ import annotations

import argparse
import logging

from hitsong.commands import positive_int
from hitsong.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Register ``hitsong features``."""
    settings = get_settings()
    p = sub.add_parser(
        "features",
        help="compute log-mel features and tag vectors of every sampled song (resumable)",
        description=(
            "Decode the middle 60 s of every song in `splits`, store its 128x646 log-mel in "
            "a shard file per song under <store>/<subset>/ and its tag vector in DuckDB. Songs already done are "
            "skipped; failures are recorded in the table feature_failures and reported."
        ),
    )
    p.add_argument("--db", default=str(settings.db_path), help=f"DuckDB file (default {settings.db_path})")
    p.add_argument(
        "--store", default=str(settings.store_dir), help=f"feature store folder (default {settings.store_dir})"
    )
    p.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--subset", default=None, help="only this subset (default: all)")
    p.add_argument(
        "--executor",
        choices=("process", "dask"),
        default="process",
        help="local process pool (default) or dask.distributed (pip install 'hitsong[dask]')",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a running dask scheduler (with --executor dask; default: a local cluster)",
    )
    p.add_argument(
        "--tagger",
        default="MTT_musicnn",
        help="tagger for the 50-d tag vectors: MTT_musicnn (default), MTT_vgg, or none",
    )
    p.add_argument(
        "--tagger-seconds",
        type=_seconds,
        default=None,
        help="how much of the middle of the 60-s segment the tagger hears (default 60: the whole segment, as "
        "the paper; e.g. 15 for latency-bound serving, a recorded departure). Part of the feature config: "
        "a change recomputes the subset, and training and scoring follow what the store was built with",
    )
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the feature job; failed songs are logged and do not change the exit code."""
    from hitsong.audio import AudioConfig
    from hitsong.features import build_features

    config = AudioConfig() if args.tagger_seconds is None else AudioConfig(tagger_seconds=args.tagger_seconds)
    report = build_features(
        args.db,
        args.store,
        subset=args.subset,
        workers=args.workers,
        executor=args.executor,
        tagger=args.tagger,
        scheduler=args.scheduler,
        config=config,
    )
    for rep in report.subsets:
        for f in rep.failures:
            log.warning("failed: %s (%s) %s: %s", f.song_id, f.subset, f.audio_path, f.error)
    log.info(
        "features done in %.1f s: %d computed, %d skipped, %d failed",
        report.seconds,
        report.computed,
        report.skipped,
        report.failed,
    )
    return 0
