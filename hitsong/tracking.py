"""The training output interface: where runs, params, metrics, predictions and models go.

Training talks only to a ``RunLogger``. ``LocalRunLogger`` (here) writes plain files into a
folder, for tests and offline use; ``registry.tracking.MlflowRunLogger`` implements the same
protocol over an MLflow tracking server. Runs nest: a parent run per method, a child run per
repetition, plus a summary run per training command.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

log = logging.getLogger(__name__)

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]


@dataclass(frozen=True)
class RunHandle:
    """A started run: its id, its name and its parent's id (``None`` for a top-level run)."""

    run_id: str
    name: str
    parent_id: str | None = None


class RunLogger(Protocol):
    """What training needs from a tracking backend."""

    def start_run(
        self, name: str, *, parent: RunHandle | None = None, tags: Mapping[str, str] | None = None
    ) -> RunHandle:
        """Start a run (nested under ``parent`` when given)."""
        ...

    def log_params(self, run: RunHandle, params: Mapping[str, Any]) -> None:
        """Record configuration values (flattened ``section.field`` names)."""
        ...

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Record metric values; ``step`` for per-epoch curves."""
        ...

    def log_table(self, run: RunHandle, name: str, frame: pd.DataFrame) -> None:
        """Record a table artifact (``name`` without extension), e.g. ``predictions``."""
        ...

    def log_bundle(self, run: RunHandle, bundle_dir: Path) -> None:
        """Record a model bundle folder (see ``hitsong.bundle``) as the run's model."""
        ...

    def end_run(self, run: RunHandle, status: RunStatus = "FINISHED") -> None:
        """Close the run with its final status."""
        ...


@contextmanager
def run_scope(
    logger: RunLogger, name: str, *, parent: RunHandle | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[RunHandle]:
    """Start a run and always end it: FINISHED, FAILED on an exception, KILLED on Ctrl-C."""
    run = logger.start_run(name, parent=parent, tags=tags)
    status: RunStatus = "FINISHED"
    try:
        yield run
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        logger.end_run(run, status)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``a.b.c`` keys with string values (for params)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


@dataclass
class LocalRunLogger:
    """A ``RunLogger`` that writes each run into ``root/<run_id>/`` as plain files.

    Files per run: ``run.json`` (name, parent, tags, status, times), ``params.json``,
    ``metrics.jsonl`` (one line per logged value with its step), ``<table>.csv``, ``model/``.
    """

    root: Path
    experiment: str = "default"
    _runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _dir(self, run: RunHandle) -> Path:
        return self.root / self.experiment / run.run_id

    def _write_meta(self, run: RunHandle) -> None:
        (self._dir(run) / "run.json").write_text(json.dumps(self._runs[run.run_id], indent=1))

    def start_run(
        self, name: str, *, parent: RunHandle | None = None, tags: Mapping[str, str] | None = None
    ) -> RunHandle:
        run = RunHandle(run_id=uuid.uuid4().hex, name=name, parent_id=parent.run_id if parent else None)
        self._dir(run).mkdir(parents=True, exist_ok=True)
        self._runs[run.run_id] = {
            "run_id": run.run_id,
            "name": name,
            "parent_id": run.parent_id,
            "tags": dict(tags or {}),
            "status": "RUNNING",
            "start_time": time.time(),
        }
        self._write_meta(run)
        return run

    def log_params(self, run: RunHandle, params: Mapping[str, Any]) -> None:
        path = self._dir(run) / "params.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update({k: str(v) for k, v in params.items()})
        path.write_text(json.dumps(current, indent=1, sort_keys=True))

    def log_metrics(self, run: RunHandle, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        with (self._dir(run) / "metrics.jsonl").open("a") as fh:
            for key, value in metrics.items():
                value = float(value)
                fh.write(json.dumps({"key": key, "value": None if math.isnan(value) else value, "step": step}) + "\n")

    def log_table(self, run: RunHandle, name: str, frame: pd.DataFrame) -> None:
        frame.to_csv(self._dir(run) / f"{name}.csv", index=False)

    def log_bundle(self, run: RunHandle, bundle_dir: Path) -> None:
        import shutil

        shutil.copytree(bundle_dir, self._dir(run) / "model", dirs_exist_ok=True)

    def end_run(self, run: RunHandle, status: RunStatus = "FINISHED") -> None:
        meta = self._runs[run.run_id]
        meta["status"] = status
        meta["end_time"] = time.time()
        self._write_meta(run)
