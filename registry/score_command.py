"""``hitsong score``: score a folder, a list of files or the DuckDB catalog with a registered version.

``hitsong predict`` stays the quick look at a few files (JSON lines on stdout, one process);
``hitsong score`` is for many songs: worker processes or a dask cluster, resumable, a progress
bar, results streamed into the DuckDB table ``predictions`` (and optionally a CSV or Parquet
file). The version's scorer is built from its data files (``registry.bundles``), never from its
pyfunc code; the work is the library's ``hitsong.catalog.run.score_items``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hitsong.commands import positive_int
from hitsong.settings import get_settings
from hitsong.statements import score_statement

if TYPE_CHECKING:
    from hitsong.catalog.run import ScoreReport

log = logging.getLogger(__name__)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from exc


def register(sub: argparse._SubParsersAction) -> None:
    """Register ``hitsong score``."""
    settings = get_settings()
    p = sub.add_parser(
        "score",
        help="score folders, a list of files or the DuckDB catalog with a registered version (parallel, resumable)",
        description="Score many songs with one registered version into the DuckDB table predictions(song_id, path, "
        "model, version, method, score, percentile, genre, top_tags, error, scored_at): score is the hit score on the "
        "scale of the version's training catalogue (ln(1+plays)·ln(1+listeners)) and percentile its rank in that "
        "catalogue, not a probability or a chance of becoming a hit. Audio files and folders "
        "(recursive), a --list file, and/or the catalog's songs (--catalog). Features are computed as training "
        "computed them (or taken from the feature store, where it holds them), in worker processes (--workers) or on "
        "a dask cluster (--executor dask). Songs this "
        "version already scored are skipped, so an interrupted run continues where it stopped. A file that "
        "cannot be read gets a row with its error; the others go on. For a quick look at a few files, "
        "`hitsong predict` prints JSON lines instead.",
    )
    p.add_argument("paths", nargs="*", type=Path, help="audio files and folders (scanned recursively)")
    p.add_argument("--list", dest="list_file", type=Path, default=None, help="a file listing audio paths, one a line")
    p.add_argument("--catalog", action="store_true", help="score the songs of the DuckDB catalog (table songs)")
    p.add_argument(
        "--subset", default=None, help="with --catalog: only this market; and the champion of hitsong-<subset> "
        "scores when --model is not given",
    )  # fmt: skip
    p.add_argument("--released-after", type=_date, default=None, help="with --catalog: only songs released on or "
                   "after this day (YYYY-MM-DD)")  # fmt: skip
    p.add_argument("--model", default=None, help="model URI, models:/NAME@ALIAS or models:/NAME/VERSION "
                   "(default models:/hitsong-<subset>@champion)")  # fmt: skip
    p.add_argument("--db", type=Path, default=settings.db_path, help=f"DuckDB file (default {settings.db_path})")
    p.add_argument(
        "--store",
        type=Path,
        default=settings.store_dir,
        help="feature store: sampled songs whose "
        f"features it holds for the version's audio config are not decoded again (default {settings.store_dir})",
    )
    p.add_argument("--recompute", action="store_true", help="decode every song, even those the feature store holds")
    p.add_argument("--out", type=Path, default=None, help="also write the rows to this .csv or .parquet file")
    p.add_argument("--workers", type=positive_int, default=None, help="feature worker processes (default: all cores)")
    p.add_argument("--executor", choices=("process", "dask"), default="process",
                   help="local process pool (default) or dask.distributed, as `hitsong features`")  # fmt: skip
    p.add_argument("--scheduler", default=None, help="address of a running dask scheduler (with --executor dask; "
                   "default: a local cluster); the audio paths must be readable on its workers")  # fmt: skip
    p.add_argument("--retry-failed", action="store_true", help="score again the songs that failed before")
    p.add_argument("--device", default="cpu", help="where the network runs: cpu (default), cuda[:N] or auto")
    p.add_argument("--tracking-uri", default=None, help="tracking server (default MLFLOW_TRACKING_URI)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="rows per DuckDB transaction (default 16)")
    p.set_defaults(func=run)


def score_catalog(
    subset: str,
    *,
    db_path: Path,
    store_dir: Path | None,
    tracking_uri: str,
    workers: int | None = None,
    device: str = "cpu",
) -> ScoreReport:
    """Score the catalog songs of ``subset`` with ``hitsong-<subset>@champion`` (what ``hitsong demo run`` does).

    Equivalent to ``hitsong score --catalog --subset S``: songs scored before are skipped, songs the
    feature store holds are scored from it.
    """
    from hitsong.catalog.items import gather
    from hitsong.catalog.run import score_items
    from registry.bundles import load_scorer
    from registry.models import CHAMPION, model_name, resolve_model_uri

    name, version = resolve_model_uri(f"models:/{model_name(subset)}@{CHAMPION}", tracking_uri=tracking_uri)
    items = gather(catalog=True, db_path=db_path, subset=subset)
    scorer = load_scorer(name, str(version), tracking_uri=tracking_uri, device=device, warm_up=False)
    return score_items(
        items, scorer=scorer, model=name, version=str(version), db_path=db_path, workers=workers, store_dir=store_dir
    )


def run(args: argparse.Namespace) -> int:
    """Resolve the version, gather the songs, score them; print a JSON summary line on stdout."""
    from hitsong.catalog.items import gather
    from hitsong.catalog.run import score_items
    from hitsong.errors import RegistryError
    from registry.bundles import load_scorer
    from registry.commands import default_model_uri
    from registry.models import resolve_model_uri
    from registry.tracking import client_for

    items = gather(
        paths=args.paths,
        list_file=args.list_file,
        catalog=args.catalog,
        db_path=args.db,
        subset=args.subset,
        released_after=args.released_after,
    )
    tracking_uri = args.tracking_uri or get_settings().tracking_uri
    client_for(tracking_uri)  # a clear error naming the URI when the server is down
    uri = args.model or default_model_uri(args.subset, tracking_uri)
    name, version = resolve_model_uri(uri, tracking_uri=tracking_uri)
    if version is None:
        raise RegistryError(f"--model {uri}: name a registered version, models:/NAME/VERSION or models:/NAME@ALIAS")
    scorer = load_scorer(name, version, tracking_uri=tracking_uri, device=args.device, warm_up=False)
    log.info("%s", score_statement(subset=scorer.meta.subset, catalogue_size=int(scorer.catalog.size)))
    report = score_items(
        items,
        scorer=scorer,
        model=name,
        version=version,
        db_path=args.db,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        retry_failed=args.retry_failed,
        store_dir=None if args.recompute else args.store,
        out=args.out,
        batch_size=args.batch_size,
    )
    print(json.dumps(report.as_dict()))
    sys.stdout.flush()
    return 1 if report.failed else 0
