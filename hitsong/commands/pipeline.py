"""``hitsong demo run``: the whole pipeline on the embedded demo, then the servers.

demo data (if none) -> ingest -> sample -> features (mel + tags) -> MLflow server ->
training of m1..m6 (demo profile) per subset -> register and promote the best per subset ->
dashboard. Every step reuses what exists: the demo folder is kept, re-ingest of the same files
is skipped by the store, the feature store resumes, a subset whose experiment already holds a
finished training summary is not trained again, and a model with a champion keeps it.

This module is CLI glue (the composition root, see ``hitsong/cli.py``): it calls the library,
``registry`` and ``dashboard``; the library never imports them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import subprocess
import time

from hitsong.settings import get_settings

log = logging.getLogger(__name__)

DATASET = "demo"
SUBSETS = ("mandarin", "western")
DEMO_SPLIT = (0.7, 0.15, 0.15)


def add_run_parser(demo_sub: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Add ``hitsong demo run`` to the ``demo`` group."""
    from hitsong.demo import DEFAULT_SEED, DEFAULT_SONGS_PER_SUBSET, DEFAULT_USERS

    p = demo_sub.add_parser(
        "run",
        help="run the whole pipeline on the synthetic demo and serve MLflow + the dashboard",
        description="demo data (if none) -> ingest -> sample -> features -> training (m1..m6, demo "
        "profile) -> registry (best per subset becomes champion) -> MLflow server + dashboard. "
        "Re-running reuses what exists.",
    )
    p.add_argument("--songs-per-subset", type=int, default=DEFAULT_SONGS_PER_SUBSET,
                   help=f"demo songs per market when the demo is created (default {DEFAULT_SONGS_PER_SUBSET})")
    p.add_argument("--users", type=int, default=DEFAULT_USERS, help=f"simulated users per market (default {DEFAULT_USERS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the demo and the split (default {DEFAULT_SEED})")
    p.add_argument("--sample", type=float, default=0.9,
                   help="share of each market's catalogue in the experiment sample, the top by playcount (default 0.9)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions per method (default 3)")
    p.add_argument("--workers", type=int, default=None, help="processes for synthesis and features (default: all cores)")
    p.add_argument("--retrain", action="store_true", help="train again even if the subsets were trained before")
    p.add_argument("--no-serve", action="store_true", help="stop after the registry step; do not start the dashboard")
    p.add_argument("--host", default="127.0.0.1", help="interface for the MLflow server and dashboard (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="dashboard port (default 8501)")
    p.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server port (default 5000)")
    p.set_defaults(func=run)


def _step(name: str) -> float:
    log.info("== %s", name)
    return time.monotonic()


def run(args: argparse.Namespace) -> int:
    """Run the demo pipeline; serve unless ``--no-serve``."""
    from hitsong.cli import main as cli_main
    from hitsong.demo import WINDOW_END, WINDOW_START, demo_exists, init_demo
    from hitsong.errors import HitsongError
    from hitsong.features import build_features
    from hitsong.store import listening

    server = importlib.import_module("registry.server")
    reg_demo = importlib.import_module("registry.demo")

    settings = get_settings()
    started = time.monotonic()
    log.info("hitsong demo: home %s (the demo data is SYNTHETIC)", settings.home)

    t = _step("1/7 demo data")
    if demo_exists(settings.demo_dir):
        log.info("reusing the demo label in %s", settings.demo_dir)
    else:
        init_demo(settings.demo_dir, songs_per_subset=args.songs_per_subset, users=args.users,
                  seed=args.seed, workers=args.workers)
    demo = settings.demo_dir
    log.info("demo data ready in %.0f s", time.monotonic() - t)

    t = _step("2/7 ingest")
    report = listening.ingest(settings.db_path, demo / "events.parquet", demo / "songs.csv",
                              window_start=WINDOW_START, window_end=WINDOW_END)
    log.info("%s (%.0f s)", report, time.monotonic() - t)

    t = _step("3/7 sample and split")
    per_subset = max(10, int(round(args.sample * args.songs_per_subset)))
    try:
        existing = listening.split_frame(settings.db_path)
    except HitsongError:
        existing = None
    if existing is not None and len(existing):
        log.info("reusing the existing split (%d songs)", len(existing))
    else:
        # 70/15/15 rather than the paper's 80/10/10: at demo size the test split would
        # otherwise hold ~14 songs, and k = 10 % of it a single song.
        listening.sample(settings.db_path, per_subset=per_subset, seed=args.seed, split=DEMO_SPLIT)
    log.info("split ready (%.0f s)", time.monotonic() - t)

    t = _step("4/7 features (log-mel + tags)")
    features = build_features(settings.db_path, settings.store_dir, workers=args.workers)
    log.info("features: %d computed, %d reused, %d failed (%.0f s)",
             features.computed, features.skipped, features.failed, time.monotonic() - t)

    t = _step("5/7 MLflow server")
    info = server.start_server(server.ServerConfig(settings.mlflow_dir, host=args.host, port=args.mlflow_port))
    tracking_uri = info.uri
    log.info("MLflow at %s (%.0f s)", tracking_uri, time.monotonic() - t)

    t = _step("6/7 training m1..m6 (demo profile)")
    for subset in SUBSETS:
        if not args.retrain and reg_demo.trained(DATASET, subset, tracking_uri=tracking_uri):
            log.info("subset %s was trained before; reusing it (--retrain to train again)", subset)
            continue
        code = cli_main(["train", "--db", str(settings.db_path), "--store", str(settings.store_dir),
                         "--subset", subset, "--profile", "demo", "--repeats", str(args.repeats),
                         "--dataset", DATASET])
        if code:
            return code
    log.info("training done (%.0f s)", time.monotonic() - t)

    t = _step("7/7 registry: best per subset becomes champion")
    for subset in SUBSETS:
        version = reg_demo.ensure_champion(subset, tracking_uri=tracking_uri)
        log.info("hitsong-%s@champion = version %s", subset, version)
    log.info("registry done (%.0f s); whole pipeline %.0f s", time.monotonic() - t, time.monotonic() - started)

    if args.no_serve:
        log.info("MLflow UI: %s (still running; `hitsong server --stop` stops it)", tracking_uri)
        return 0
    from dashboard.commands import dashboard_command, dashboard_env, wait_until_ready

    env = dashboard_env(settings)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    url = f"http://{args.host}:{args.port}"
    proc = subprocess.Popen(dashboard_command(port=args.port, host=args.host), env=env)
    try:
        wait_until_ready(url, process=proc)
        log.info("dashboard: %s   MLflow UI: %s   (Ctrl-C stops the dashboard)", url, tracking_uri)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=15)
        return 0
