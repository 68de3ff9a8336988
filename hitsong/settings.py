"""One data home and the tracking server: the single settings object.

``HITSONG_HOME`` (default ``./hitsong-data``) holds the DuckDB file, the feature store, the
demo data and the local MLflow store. ``MLFLOW_TRACKING_URI`` names the tracking server
(default: the local server that ``hitsong server`` starts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "hitsong-data"
#: Ports of the local MLflow server and of the dashboard.
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_DASHBOARD_PORT = 8501
#: The MagnaTagATune tagger whose tags m4..m6 use, the genre plots show and every score's tag
#: profile comes from, unless another is named (the packaged models: ``hitsong.tagger.files``).
DEFAULT_TAGGER = "MTT_musicnn"


@dataclass(frozen=True)
class Settings:
    """Where everything lives.

    Parameters
    ----------
    home : Path
        The data home.
    tracking_uri : str
        URI of the MLflow tracking server.
    """

    home: Path
    tracking_uri: str

    @property
    def db_path(self) -> Path:
        """The DuckDB file with listening aggregates, splits and the feature index."""
        return self.home / "hitsong.duckdb"

    @property
    def store_dir(self) -> Path:
        """The feature store (memory-mapped log-mel arrays)."""
        return self.home / "features"

    @property
    def demo_dir(self) -> Path:
        """Where ``hitsong demo init`` writes the synthetic label."""
        return self.home / "demo"

    @property
    def mlflow_dir(self) -> Path:
        """The local MLflow server's SQLite store and artifacts."""
        return self.home / "mlflow"

    @property
    def runs_dir(self) -> Path:
        """Local training outputs (results tables, local-directory run logs)."""
        return self.home / "runs"


def get_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from the environment (``HITSONG_HOME``, ``MLFLOW_TRACKING_URI``)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HITSONG_HOME") or DEFAULT_HOME).expanduser().resolve()
    uri = env.get("MLFLOW_TRACKING_URI") or f"http://127.0.0.1:{DEFAULT_MLFLOW_PORT}"
    return Settings(home=home, tracking_uri=uri)
