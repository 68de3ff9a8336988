"""Sub-commands over MLflow: ``server``, ``train``, ``register``, ``promote``, ``models``, ``predict``, ``score``.

Heavy imports (mlflow, torch) happen inside the run functions so ``hitsong --help`` stays fast.
Machine-readable output (``predict``'s JSON lines, ``models``'s table) goes to stdout; logs to
stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from hitsong.errors import RegistryError
from hitsong.metrics import METRIC_NAMES
from hitsong.settings import DEFAULT_MLFLOW_PORT, get_settings
from registry.models import CHALLENGER, DEFAULT_SELECTION_METRIC
from registry.score_command import register as register_score
from registry.train_command import register as register_train

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Register the MLflow sub-commands."""
    p = sub.add_parser("server", help="start (or stop) the local MLflow tracking server")
    p.add_argument("--port", type=int, default=DEFAULT_MLFLOW_PORT, help=f"TCP port (default {DEFAULT_MLFLOW_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument(
        "--backend-store-uri",
        default=None,
        help="SQL store URI without its password, e.g. postgresql://mlflow@db:5432/mlflow (default: "
        "MLFLOW_BACKEND_STORE_URI, else SQLite under HITSONG_HOME/mlflow); the password comes from "
        "HITSONG_BACKEND_STORE_PASSWORD or HITSONG_BACKEND_STORE_PASSWORD_FILE, off the command line",
    )
    p.add_argument(
        "--mlflow-dir", type=Path, default=None, help="artifacts, log and pid file (default HITSONG_HOME/mlflow)"
    )
    p.add_argument("--auth", action="store_true", help="run MLflow's basic-auth app (needs MLFLOW_AUTH_ADMIN_PASSWORD)")
    p.add_argument(
        "--allowed-hosts",
        default=None,
        help="comma-separated host names clients reach the server by, e.g. mlflow,mlflow.example "
        "(localhost and the bound address are always accepted; default: MLflow's, localhost and private IPs)",
    )
    p.add_argument(
        "--reader",
        default=None,
        metavar="USER",
        help="with --auth: create (or update) this read-only service user for the dashboard's reads; "
        "its password from HITSONG_READER_PASSWORD or HITSONG_READER_PASSWORD_FILE",
    )
    p.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    p.add_argument("--stop", action="store_true", help="stop the server recorded in the mlflow dir")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true", help="return once the server answers, leave it running")
    mode.add_argument("--foreground", action="store_true", help="stay until Ctrl-C, then stop the server (the default)")
    p.set_defaults(func=run_server)

    register_train(sub)

    p = sub.add_parser("register", help="register a subset's best method (chosen on validation) as a new model version")
    p.add_argument("--subset", required=True, help="subset whose experiment to search")
    p.add_argument(
        "--metric",
        default=DEFAULT_SELECTION_METRIC,
        choices=METRIC_NAMES,
        help="VALIDATION metric that ranks the methods and picks the repetition (default "
        f"{DEFAULT_SELECTION_METRIC}: validation Spearman rho); the test split never chooses, its "
        "figures are recorded as held-out",
    )
    p.add_argument(
        "--rank", type=int, default=1, help="1 registers the best method on validation, 2 the runner-up (default 1)"
    )
    p.add_argument(
        "--alias",
        choices=[CHALLENGER],
        default=None,
        help="give the new version the challenger alias, to compare it with the champion on the Registry page "
        "before promoting it (the champion alias only moves with `hitsong promote`, which records why)",
    )
    p.add_argument("--experiment", default=None, help="experiment name (default: the one tagged with the subset)")
    p.add_argument(
        "--include-baselines",
        action="store_true",
        help="rank the metadata baseline m0 too (it cannot score audio: predict refuses its versions)",
    )
    p.add_argument("--tracking-uri", default=None, help="tracking server (default MLFLOW_TRACKING_URI)")
    p.set_defaults(func=run_register)

    p = sub.add_parser("promote", help="make a model version the champion (previous one becomes challenger)")
    p.add_argument("--model", required=True, help="registered model, e.g. hitsong-western")
    p.add_argument("--version", required=True, type=int, help="version number")
    p.add_argument("--reason", required=True, help="why this version should serve (recorded)")
    p.add_argument("--tracking-uri", default=None, help="tracking server (default MLFLOW_TRACKING_URI)")
    p.set_defaults(func=run_promote)

    p = sub.add_parser("models", help="list registered versions with aliases and metrics")
    p.add_argument("--model", default=None, help="one registered model (default: every hitsong-* model)")
    p.add_argument("--json", action="store_true", help="one JSON line per version instead of a table")
    p.add_argument("--tracking-uri", default=None, help="tracking server (default MLFLOW_TRACKING_URI)")
    p.set_defaults(func=run_models)

    p = sub.add_parser(
        "predict",
        help="score a few audio files with a registered model (one JSON line per file; for folders, list files "
        "or the catalog in parallel, use `hitsong score`)",
        description="Each file's hit score on the scale of the model's training catalogue "
        "(ln(1+plays)·ln(1+listeners)) and its percentile in that catalogue: a rank against the songs "
        "the model learnt from, not a probability or a chance of becoming a hit. The metadata "
        "baseline m0 cannot score audio and is refused.",
    )
    p.add_argument("files", nargs="+", type=Path, help="audio files")
    p.add_argument("--model", default=None, help="model URI (default models:/hitsong-<subset>@champion)")
    p.add_argument("--subset", default=None, help="subset whose champion to use when --model is not given")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--tracking-uri", default=None, help="tracking server (default MLFLOW_TRACKING_URI)")
    p.set_defaults(func=run_predict)

    register_score(sub)


def run_server(args: argparse.Namespace) -> int:
    """Start the server (reusing a running one), or stop it with ``--stop``."""
    import time

    from registry.server import ServerConfig, start_server, stop_server

    mlflow_dir = args.mlflow_dir or get_settings().mlflow_dir
    if args.stop:
        if stop_server(mlflow_dir):
            log.info("MLflow server stopped")
        else:
            log.info("no MLflow server recorded in %s", mlflow_dir)
        return 0
    import os

    from registry.secrets import redact

    store_uri = args.backend_store_uri or os.environ.get("MLFLOW_BACKEND_STORE_URI") or None
    if args.backend_store_uri and redact(args.backend_store_uri) != args.backend_store_uri:
        log.warning(
            "the --backend-store-uri on this command line holds a password that anyone on this machine can "
            "list; pass the URI without it and the password in HITSONG_BACKEND_STORE_PASSWORD(_FILE)"
        )
    hosts = tuple(h.strip() for h in (args.allowed_hosts or "").split(",") if h.strip())
    config = ServerConfig(
        mlflow_dir=mlflow_dir,
        host=args.host,
        port=args.port,
        backend_store_uri=store_uri,
        auth=args.auth,
        allowed_hosts=hosts,
        reader=args.reader,
        workers=args.workers,
    )
    info = start_server(config)
    _fail_orphans(info.uri, auth=info.auth)
    print(info.uri)
    sys.stdout.flush()
    if args.detach:
        return 0
    log.info("serving; Ctrl-C or SIGTERM stops the server (or run `hitsong server --stop` elsewhere)")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        from registry.server import pid_alive

        while pid_alive(info.pid):
            time.sleep(1.0)
        log.error("the MLflow server exited; see %s", info.log_path)
        return 1
    except KeyboardInterrupt:
        stop_server(mlflow_dir)
        return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fail_orphans(uri: str, *, auth: bool) -> None:
    """Mark runs of dead training processes FAILED (skipped in auth mode without credentials)."""
    import os

    from registry.tracking import client_for, fail_orphaned_runs

    if auth and not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        log.info("auth mode: orphaned runs are marked when the next training starts")
        return
    fail_orphaned_runs(client_for(uri))


def run_register(args: argparse.Namespace) -> int:
    from registry.models import register as register_best

    result = register_best(
        args.subset,
        metric=args.metric,
        rank=args.rank - 1,
        alias=args.alias,
        experiment=args.experiment,
        include_baselines=args.include_baselines,
        tracking_uri=args.tracking_uri,
    )
    print(json.dumps(result))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from registry.models import promote

    print(json.dumps(promote(args.model, args.version, args.reason, tracking_uri=args.tracking_uri)))
    return 0


def run_models(args: argparse.Namespace) -> int:
    from hitsong.training import runlayout
    from registry.models import list_versions

    rows = list_versions(args.model, tracking_uri=args.tracking_uri)
    if args.json:
        for row in rows:
            print(json.dumps({k: v for k, v in row.items() if k != "tags"}))
        return 0
    if not rows:
        log.info("no registered hitsong models yet; `hitsong register --subset S` creates one")
        return 0
    metrics = [
        runlayout.split_metric(runlayout.VAL, "spearman_rho"),
        *(runlayout.split_metric(runlayout.TEST, m) for m in METRIC_NAMES),
    ]
    header = ["model", "version", "aliases", "method", *metrics, "created"]
    table = [header]
    for r in rows:
        table.append(
            [r["model"], r["version"], ",".join(r["aliases"]), r["method"],
             *(f"{r['metrics'][m]:.3f}" if m in r["metrics"] else "" for m in metrics), r["created"]]
        )  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    return 0


def default_model_uri(subset: str | None, tracking_uri: str | None) -> str:
    """``models:/hitsong-<subset>@champion``; without a subset, the only model with a champion."""
    from hitsong.errors import RegistryError
    from registry.api import RegistryApi
    from registry.models import CHAMPION, MODEL_PREFIX, model_name

    if subset:
        return f"models:/{model_name(subset)}@{CHAMPION}"
    api = RegistryApi(tracking_uri)
    names = [m["name"] for m in api.search_models() if m["name"].startswith(MODEL_PREFIX)
             and any(a["alias"] == CHAMPION for a in m.get("aliases", []) or [])]  # fmt: skip
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise RegistryError(f"pass --model or --subset: registered models with a champion on {api.uri}: {found}")
    return f"models:/{names[0]}@{CHAMPION}"


def run_predict(args: argparse.Namespace) -> int:
    """Load the version once (its data files only); print one JSON line per file as it is scored (errors too)."""
    from registry.bundles import load_scorer
    from registry.models import resolve_model_uri
    from registry.tracking import client_for

    tracking_uri = args.tracking_uri or get_settings().tracking_uri
    client_for(tracking_uri)  # a clear error naming the URI when the server is down
    uri = args.model or default_model_uri(args.subset, tracking_uri)
    name, version = resolve_model_uri(uri, tracking_uri=tracking_uri)
    if version is None:
        raise RegistryError(f"--model {uri}: name a registered version, models:/NAME/VERSION or models:/NAME@ALIAS")
    from hitsong.statements import score_statement

    scorer = load_scorer(name, version, tracking_uri=tracking_uri, device=args.device)
    log.info("%s", score_statement(subset=scorer.meta.subset, catalogue_size=int(scorer.catalog.size)))
    failed = 0
    for path in args.files:  # each line is printed as soon as its file is scored
        r = scorer.score([str(path)])[0]
        if r["error"]:
            failed += 1
            line = {"file": str(path), "error": r["error"]}
        else:
            line = {
                "file": str(path),
                "hit_score": r["score"],
                "catalogue_percentile": r["percentile"],
                "catalogue": scorer.meta.subset,
                "top_tags": r["top_tags"],
                "method": scorer.method,
                "model": name,
                "version": version,
                "device": str(scorer.device),
            }
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
