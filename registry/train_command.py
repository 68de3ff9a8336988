"""``hitsong train``: train m0..m6 with repetitions on each subset, log every run, print Table 1.

It lives in ``registry`` because its default tracker is the MLflow server
(``registry.tracking.MlflowRunLogger``); ``--tracker local`` writes plain files instead. The
work is the library's ``hitsong.training.from_store.train_from_store``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hitsong.commands import positive_int
from hitsong.settings import DEFAULT_TAGGER, get_settings

log = logging.getLogger(__name__)

PROFILE_NAMES = ("paper", "demo", "tiny")


def register(sub: argparse._SubParsersAction) -> None:
    """Register ``hitsong train``."""
    settings = get_settings()
    p = sub.add_parser(
        "train",
        help="train the six methods with repetitions and write Table 1",
        description="Train methods m1..m6 (Yang et al. 2017, section 3) on one or more subsets, "
        "log every run, and print/write the Table-1 results with bootstrap intervals. The audio config "
        "(including the tagger's window) is the one the subset's features were built with.",
    )
    p.add_argument("--db", type=Path, default=settings.db_path, help=f"DuckDB file (default {settings.db_path})")
    p.add_argument(
        "--store", type=Path, default=settings.store_dir, help=f"feature store (default {settings.store_dir})"
    )
    p.add_argument("--subset", required=True, help="subset name, or several separated by commas")
    p.add_argument(
        "--methods",
        default="m0,m1,m2,m3,m4,m5,m6",
        help="comma-separated methods (default the metadata baseline m0 and the six audio methods)",
    )
    p.add_argument("--repeats", type=positive_int, default=None, help="repetitions per method (default: the profile's)")
    p.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default="paper",
        help="training preset: paper (lab defaults, 150 epochs), demo (CPU minutes), tiny (smoke test)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads while training (default: the profile's; demo uses 1, paper torch's default)",
    )
    p.add_argument(
        "--tagger",
        default=DEFAULT_TAGGER,
        help=f"tagger whose tag vectors m4-m6 use (default {DEFAULT_TAGGER}; none for mel-only methods)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="train even when more than 1 %% of a split has no features (they are left out and counted)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for intervals/tests (0: none)")
    p.add_argument(
        "--shuffle-targets",
        action="store_true",
        help="negative control: train on permuted hit scores (test scores stay true)",
    )
    p.add_argument("--out", type=Path, default=None, help="results folder (default <runs_dir>/<subset>)")
    p.add_argument(
        "--tracker",
        choices=["mlflow", "local"],
        default="mlflow",
        help="where runs go: the MLflow server (default) or plain files under --out",
    )
    p.add_argument("--tracking-uri", default=None, help="tracking server (default MLFLOW_TRACKING_URI)")
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset name for the MLflow experiment (default: the DB file name); the experiment is "
        "hitsong/DATASET/SUBSET, with /artist or /release_date appended for those splits",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``hitsong train``."""
    from hitsong.models import check_method
    from hitsong.results import ResultsConfig
    from hitsong.tracking import LocalRunLogger, RunLogger
    from hitsong.training.config import TrainConfig
    from hitsong.training.from_store import split_method, train_from_store
    from registry.tracking import MlflowRunLogger

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        check_method(method)  # fail before any data is read
    subsets = [s.strip() for s in args.subset.split(",") if s.strip()]
    overrides: dict[str, int] = {}
    if args.repeats:
        overrides["repeats"] = args.repeats
    if args.threads:
        overrides["cpu_threads"] = args.threads
    train_config = TrainConfig.for_profile(args.profile, **overrides)
    settings = get_settings()
    tracking_uri = args.tracking_uri or settings.tracking_uri
    for subset in subsets:
        out_dir = args.out / subset if args.out and len(subsets) > 1 else (args.out or settings.runs_dir / subset)
        logger: RunLogger
        if args.tracker == "local":
            logger = LocalRunLogger(out_dir / "runs", experiment=subset)
        else:
            dataset = args.dataset or args.db.stem
            logger = MlflowRunLogger.for_subset(
                dataset, subset, split_by=split_method(args.db), tracking_uri=tracking_uri
            )
        result = train_from_store(
            args.db,
            args.store,
            subset=subset,
            logger=logger,
            methods=methods,
            train_config=train_config,
            results_config=ResultsConfig(n_bootstrap=args.bootstrap),
            device=args.device,
            tagger=args.tagger,
            shuffle_targets=args.shuffle_targets,
            allow_missing=args.allow_missing,
            out_dir=out_dir,
        )
        sys.stdout.write(result.table.to_text() + "\n\n")
        log.info("subset %s: results written to %s", subset, out_dir)
    return 0
