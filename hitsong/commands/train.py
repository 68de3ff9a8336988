"""``hitsong train``: train m1..m6 with repetitions on each subset and print Table 1."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hitsong.commands import positive_int
from hitsong.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Register ``hitsong train``."""
    settings = get_settings()
    p = sub.add_parser(
        "train",
        help="train the six methods with repetitions and write Table 1",
        description="Train methods m1..m6 (Yang et al. 2017, section 3) on one or more subsets, "
        "log every run, and print/write the Table-1 results with bootstrap intervals.",
    )
    p.add_argument("--db", type=Path, default=settings.db_path, help=f"DuckDB file (default {settings.db_path})")
    p.add_argument("--store", type=Path, default=settings.store_dir, help=f"feature store (default {settings.store_dir})")
    p.add_argument("--subset", required=True, help="subset name, or several separated by commas")
    p.add_argument("--methods", default="m1,m2,m3,m4,m5,m6", help="comma-separated methods (default all six)")
    p.add_argument("--repeats", type=positive_int, default=None, help="repetitions per method (default: the profile's)")
    p.add_argument("--profile", choices=["paper", "demo", "tiny"], default="paper",
                   help="training preset: paper (lab defaults, 150 epochs), demo (CPU minutes), tiny (smoke test)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads while training (default: the profile's; demo uses 1, paper torch's default)")
    p.add_argument("--tagger", default="MTT_musicnn", help="tagger whose tag vectors m4-m6 use (default MTT_musicnn)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for intervals/tests (0: none)")
    p.add_argument("--shuffle-targets", action="store_true",
                   help="negative control: train on permuted hit scores (test scores stay true)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default <runs_dir>/<subset>)")
    p.add_argument("--tracker", choices=["mlflow", "local"], default="mlflow",
                   help="where runs go: the MLflow server (default) or plain files under --out")
    p.add_argument("--dataset", default=None, help="dataset name for the MLflow experiment (default: the DB file name)")
    p.set_defaults(func=run)


def _logger(args: argparse.Namespace, subset: str, out_dir: Path):
    from hitsong.tracking import LocalRunLogger

    if args.tracker == "local":
        return LocalRunLogger(out_dir / "runs", experiment=subset)
    # The CLI is the composition root (see hitsong/cli.py): the MLflow implementation of the
    # RunLogger protocol lives in registry/, which the library itself never imports.
    import importlib

    tracking = importlib.import_module("registry.tracking")
    dataset = args.dataset or args.db.stem
    return tracking.MlflowRunLogger.for_subset(dataset, subset, tracking_uri=get_settings().tracking_uri)


def run(args: argparse.Namespace) -> int:
    """Run ``hitsong train``."""
    from hitsong.audio import AudioConfig
    from hitsong.errors import ConfigError
    from hitsong.features import MelDataset, tagger_audio_config
    from hitsong.models import get_method
    from hitsong.results import ResultsConfig
    from hitsong.store import connect, featureindex
    from hitsong.training import SPLITS, TrainConfig, scan_subset, train_subset

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        get_method(method)  # fail before any data is read
    subsets = [s.strip() for s in args.subset.split(",") if s.strip()]
    overrides: dict[str, int] = {}
    if args.repeats:
        overrides["repeats"] = args.repeats
    if args.threads:
        overrides["cpu_threads"] = args.threads
    train_config = TrainConfig.for_profile(args.profile, **overrides)
    results_config = ResultsConfig(n_bootstrap=args.bootstrap)
    audio = tagger_audio_config(AudioConfig(), args.tagger)  # as `hitsong features` records it
    settings = get_settings()
    for subset in subsets:
        with connect(args.db, read_only=True) as con:
            meta = featureindex.subset_meta_readonly(con, subset)
        if meta is not None and meta.config_hash != audio.config_hash():
            raise ConfigError(
                f"{args.db}: the features of subset {subset!r} were computed with another audio config "
                f"(hash {meta.config_hash}, this hitsong uses {audio.config_hash()}); recompute them with "
                f"`hitsong features --subset {subset}`"
            )
        out_dir = args.out / subset if args.out and len(subsets) > 1 else (args.out or settings.runs_dir / subset)
        datasets = {s: MelDataset(args.db, args.store, subset, s, tagger=args.tagger) for s in SPLITS}
        data = scan_subset(datasets, subset=subset)
        result = train_subset(
            data,
            subset=subset,
            logger=_logger(args, subset, out_dir),
            methods=methods,
            train_config=train_config,
            results_config=results_config,
            device=args.device,
            audio_config=audio.to_dict(),
            tagger=None if args.tagger == "none" else args.tagger,
            shuffle_targets=args.shuffle_targets,
            out_dir=out_dir,
        )
        sys.stdout.write(result.table.to_text() + "\n\n")
        log.info("subset %s: results written to %s", subset, out_dir)
    return 0
