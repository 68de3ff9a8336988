"""``hitsong demo run``: the whole pipeline on the embedded demo, then the servers.

demo data (if none) -> ingest -> sample -> features (mel + tags) -> MLflow server ->
training of m0..m6 (demo profile) per subset and split -> register the best per subset as
champion and the runner-up as challenger -> each champion scores its market's catalog
(``hitsong score``) -> dashboard. Every step reuses what exists: the demo folder is kept,
re-ingest of the same files is skipped by the store, the feature store resumes, a subset whose
experiment already holds a finished training summary is not trained again, a model with a
champion keeps it, and songs a champion scored before are not scored again.

``--splits random,artist`` (the default) trains each market twice: on the random split and, as
a second experiment per market (``hitsong/demo/<market>/artist``), on the artist-disjoint split,
so the dashboard shows what the audio adds over the metadata baseline m0 when the artist cannot
leak. The sample (the top songs by playcount, hence the features) is the same for every split;
the store is re-split for each and left with the first split, whose experiment is registered.

``--tracking-uri URI`` uses an MLflow server that is already running (a team server) instead of
starting the local one; training, registry and dashboard then all talk to that URI.

This is the top layer: it composes the library (``hitsong``), ``registry`` and the dashboard with
explicit arguments (the tracking URI goes to the run logger, the registry and the dashboard's
environment). ``hitsong demo run`` reaches it through the ``hitsong.demo_commands`` entry point.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from hitsong.errors import RegistryError, StoreError
from hitsong.settings import DEFAULT_DASHBOARD_PORT, DEFAULT_MLFLOW_PORT, Settings, get_settings
from registry import server

log = logging.getLogger(__name__)

DATASET = "demo"
SUBSETS = ("mandarin", "western")
DEMO_SPLIT = (0.7, 0.15, 0.15)
#: Split methods trained by default, the first one registered (``--splits``).
DEFAULT_SPLITS = ("random", "artist")


def _seconds_range(text: str) -> tuple[float, float]:
    """``MIN,MAX`` seconds (``1 <= MIN <= MAX``) for ``--song-seconds``."""
    parts = text.split(",")
    try:
        low, high = (float(x) for x in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in seconds (e.g. 90,200), got {text!r}") from exc
    if not 1.0 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= MAX, got {text!r}")
    return low, high


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {value}")
    return value


def _splits(text: str) -> tuple[str, ...]:
    """``random,artist``: split methods of ``hitsong sample --by``, each once, for ``--splits``."""
    from hitsong.store.sample import SAMPLE_BY

    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    bad = [n for n in names if n not in SAMPLE_BY]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected split methods from {', '.join(SAMPLE_BY)}, got {text!r}")
    return names


def add_run_parser(demo_sub: argparse._SubParsersAction) -> None:
    """Add ``hitsong demo run`` to the ``demo`` group."""
    from hitsong.demo import DEFAULT_SEED, DEFAULT_SONGS_PER_SUBSET, DEFAULT_USERS

    p = demo_sub.add_parser(
        "run",
        help="run the whole pipeline on the synthetic demo and serve MLflow + the dashboard",
        description="demo data (if none) -> ingest -> sample -> features -> training (m1..m6, demo "
        "profile) -> registry (best per subset becomes champion, the runner-up challenger) -> each champion "
        "scores its market's catalog -> MLflow server + dashboard. "
        "Re-running reuses what exists.",
    )
    p.add_argument(
        "--songs-per-subset",
        type=int,
        default=DEFAULT_SONGS_PER_SUBSET,
        help=f"demo songs per market when the demo is created (default {DEFAULT_SONGS_PER_SUBSET})",
    )
    p.add_argument(
        "--users", type=int, default=DEFAULT_USERS, help=f"simulated users per market (default {DEFAULT_USERS})"
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of the demo and the split (default {DEFAULT_SEED})"
    )
    p.add_argument(
        "--song-seconds",
        type=_seconds_range,
        default=None,
        metavar="MIN,MAX",
        help="range of demo song lengths in seconds when the demo is created, e.g. 40,70 for a "
        "quick try (default: the demo's own, minutes-long songs)",
    )
    p.add_argument(
        "--short-share",
        type=_share,
        default=None,
        help="share of demo songs shorter than the models' 60-s window, when the demo is "
        "created (default: the demo's own)",
    )
    p.add_argument(
        "--sample",
        type=float,
        default=0.9,
        help="share of each market's catalogue in the experiment sample, the top by playcount (default 0.9)",
    )
    p.add_argument("--repeats", type=int, default=3, help="repetitions per method (default 3)")
    p.add_argument(
        "--splits",
        type=_splits,
        default=DEFAULT_SPLITS,
        metavar="BY[,BY...]",
        help="split methods to train, each its own experiment per market; the first is registered and "
        f"left in the store (default {','.join(DEFAULT_SPLITS)}; also release_date)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes for synthesis and features (default: all cores)"
    )
    p.add_argument("--retrain", action="store_true", help="train again even if the subsets were trained before")
    p.add_argument("--no-serve", action="store_true", help="stop after the registry step; do not start the dashboard")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface for the MLflow server and dashboard (default 127.0.0.1)"
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_DASHBOARD_PORT, help=f"dashboard port (default {DEFAULT_DASHBOARD_PORT})"
    )
    p.add_argument(
        "--mlflow-port",
        type=int,
        default=DEFAULT_MLFLOW_PORT,
        help=f"MLflow server port (default {DEFAULT_MLFLOW_PORT})",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="use the MLflow server already running at URI (e.g. a team server, "
        '"$MLFLOW_TRACKING_URI") instead of starting the local one',
    )
    p.set_defaults(func=run)


def _step(name: str) -> float:
    log.info("== %s", name)
    return time.monotonic()


def _check_tracking_uri(args: argparse.Namespace) -> None:
    """Fail before any work when ``--tracking-uri`` names a server that does not answer."""
    if args.tracking_uri and not server.health_ok(args.tracking_uri, timeout=5.0):
        raise RegistryError(
            f"--tracking-uri {args.tracking_uri}: no MLflow server answers at {args.tracking_uri}/health; "
            "start it (`hitsong server --port P`) or leave --tracking-uri out to start the local one"
        )


def _tracking_server(args: argparse.Namespace, settings: Settings) -> str:
    """The tracking URI to use: ``--tracking-uri`` if it answers, else the local server (started or reused)."""
    if args.tracking_uri:
        _check_tracking_uri(args)
        log.info("using the running MLflow server at %s", args.tracking_uri)
        return str(args.tracking_uri).rstrip("/")
    info = server.start_server(server.ServerConfig(settings.mlflow_dir, host=args.host, port=args.mlflow_port))
    return info.uri


def _sample(db: Path, split_by: str, *, per_subset: int, seed: int, fractions: Sequence[float] = DEMO_SPLIT) -> None:
    from hitsong.store.sample import sample

    sample(db, per_subset=per_subset, seed=seed, split=fractions, by=split_by)  # type: ignore[arg-type]


def _use_split(db: Path, split_by: str) -> None:
    """Re-split the store's sample by ``split_by`` unless its last sample already is (same size, seed, fractions)."""
    from hitsong.store.read import last_sample

    record = last_sample(db)
    if record is None:
        raise StoreError(f"{db}: splits exist but no sample log; run `hitsong sample --by {split_by}` once")
    if record.by != split_by:
        log.info(
            "re-splitting the sample by %s (%d songs per market, seed %d)", split_by, record.per_subset, record.seed
        )
        _sample(db, split_by, per_subset=record.per_subset, seed=record.seed, fractions=record.fractions)


def run(args: argparse.Namespace) -> int:
    """Run the demo pipeline; serve unless ``--no-serve``."""
    from dashboard.commands import dashboard_command, dashboard_env, local_url, wait_until_ready
    from hitsong.demo import WINDOW_END, WINDOW_START, demo_exists, init_demo
    from hitsong.errors import HitsongError
    from hitsong.features import build_features
    from hitsong.store.ingest import ingest
    from hitsong.store.read import split_frame
    from hitsong.training.config import TrainConfig
    from hitsong.training.from_store import train_from_store
    from hitsong.training.runlayout import experiment_name
    from registry import demo as registry_demo
    from registry.score_command import score_catalog
    from registry.tracking import MlflowRunLogger

    settings = get_settings()
    _check_tracking_uri(args)
    started = time.monotonic()
    log.info("hitsong demo: home %s (the demo data is SYNTHETIC)", settings.home)

    t = _step("1/8 demo data")
    if demo_exists(settings.demo_dir):
        log.info("reusing the demo label in %s", settings.demo_dir)
    else:
        sizes = {"song_seconds": args.song_seconds, "short_share": args.short_share}
        init_demo(
            settings.demo_dir,
            songs_per_subset=args.songs_per_subset,
            users=args.users,
            seed=args.seed,
            workers=args.workers,
            **{k: v for k, v in sizes.items() if v is not None},
        )
    demo = settings.demo_dir
    log.info("demo data ready in %.0f s", time.monotonic() - t)

    t = _step("2/8 ingest")
    report = ingest(
        settings.db_path, demo / "events.parquet", demo / "songs.csv", window_start=WINDOW_START, window_end=WINDOW_END
    )
    log.info("%s (%.0f s)", report, time.monotonic() - t)

    t = _step("3/8 sample and split")
    try:
        existing = split_frame(settings.db_path)
    except HitsongError:
        existing = None
    if existing is not None and len(existing):
        log.info("reusing the existing sample (%d songs)", len(existing))
    else:
        # 70/15/15 rather than the paper's 80/10/10: at demo size the test split would
        # otherwise hold ~14 songs, and k = 10 % of it a single song.
        per_subset = max(10, int(round(args.sample * args.songs_per_subset)))
        _sample(settings.db_path, args.splits[0], per_subset=per_subset, seed=args.seed)
    _use_split(settings.db_path, args.splits[0])
    log.info("split ready (%.0f s)", time.monotonic() - t)

    t = _step("4/8 features (log-mel + tags)")
    features = build_features(settings.db_path, settings.store_dir, workers=args.workers)
    log.info(
        "features: %d computed, %d reused, %d failed (%.0f s)",
        features.computed,
        features.skipped,
        features.failed,
        time.monotonic() - t,
    )

    t = _step("5/8 MLflow server")
    tracking_uri = _tracking_server(args, settings)
    log.info("MLflow at %s (%.0f s)", tracking_uri, time.monotonic() - t)

    t = _step(f"6/8 training m0..m6 (demo profile) on the {' and '.join(args.splits)} split(s)")
    train_config = TrainConfig.for_profile("demo", repeats=args.repeats)
    for split_by in args.splits:
        for subset in SUBSETS:
            if not args.retrain and registry_demo.trained(
                DATASET, subset, tracking_uri=tracking_uri, split_by=split_by
            ):
                log.info(
                    "subset %s (%s split) was trained before; reusing it (--retrain to train again)", subset, split_by
                )
                continue
            _use_split(settings.db_path, split_by)
            logger = MlflowRunLogger.for_subset(DATASET, subset, split_by=split_by, tracking_uri=tracking_uri)
            result = train_from_store(
                settings.db_path,
                settings.store_dir,
                subset=subset,
                logger=logger,
                train_config=train_config,
                out_dir=settings.runs_dir / split_by / subset,
            )
            log.info("subset %s, %s split:\n%s", subset, split_by, result.table.to_text())
    _use_split(settings.db_path, args.splits[0])
    log.info("training done (%.0f s)", time.monotonic() - t)

    t = _step("7/8 registry: best per subset becomes champion, the runner-up challenger")
    for subset in SUBSETS:
        experiment = experiment_name(DATASET, subset, args.splits[0])
        version = registry_demo.ensure_champion(subset, tracking_uri=tracking_uri, experiment=experiment)
        log.info("hitsong-%s@champion = version %s", subset, version)
    log.info("registry done (%.0f s)", time.monotonic() - t)

    t = _step("8/8 catalog: each champion scores its market's songs (the Catalog page)")
    for subset in SUBSETS:
        scores = score_catalog(
            subset, db_path=settings.db_path, store_dir=settings.store_dir, tracking_uri=tracking_uri,
            workers=args.workers,
        )  # fmt: skip
        log.info("%s: %d scored (%d from the feature store), %d before, %d failed", subset, scores.scored,
                 scores.from_store, scores.skipped, scores.failed)  # fmt: skip
    log.info("catalog done (%.0f s); whole pipeline %.0f s", time.monotonic() - t, time.monotonic() - started)

    if args.no_serve:
        if args.tracking_uri:
            log.info("MLflow UI: %s", tracking_uri)
        else:
            log.info("MLflow UI: %s (still running; `hitsong server --stop` stops it)", tracking_uri)
        return 0
    env = dashboard_env(settings, tracking_uri=tracking_uri)
    url = local_url(args.host, args.port)
    proc = subprocess.Popen(dashboard_command(port=args.port, host=args.host), env=env)
    try:
        wait_until_ready(url, process=proc)
        log.info("dashboard: %s   MLflow UI: %s   (Ctrl-C stops the dashboard)", url, tracking_uri)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=15)
        return 0
