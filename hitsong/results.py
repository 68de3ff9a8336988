"""The paper's Table 1 for one subset, with bootstrap intervals and paired tests against baselines.

Input: the true hit scores of the test songs and, per method, the predictions of every
repetition on those songs. Output (:class:`Table1`), per method and metric:

- ``mean`` and ``std`` over repetitions (std with ddof 1; 0 for one repetition): the paper's cell.
- ``ci_low``/``ci_high``: a percentile bootstrap interval (default 95 %) of that mean, resampling
  the *test songs* with replacement (``n_bootstrap`` times). Each bootstrap replicate draws one
  set of song indices, recomputes the metric for every repetition on it and averages over the
  repetitions, so the interval shows how much the cell would move on another test set of the
  same size. Training noise is what ``std`` shows.
- per baseline ``b`` of ``ResultsConfig.baselines`` (default the metadata baseline ``m0`` and the
  paper's ``m1``), the columns of :func:`gap_columns`: ``diff_<b>``, the cell's mean minus the
  baseline's, with a paired bootstrap interval (``diff_<b>_low``/``diff_<b>_high``; both methods
  scored on the same resampled songs in each replicate) and a two-sided bootstrap p-value
  ``p_value_<b> = min(1, 2 min(P(d <= 0), P(d >= 0)))``. An interval that excludes 0 marks a gap
  that is unlikely to be test-set noise. A baseline that was not trained leaves its columns NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hitsong.errors import ConfigError, InputError
from hitsong.metrics import METRIC_NAMES, check_scores, default_k, evaluate

#: Column headings of the metrics in the printed table.
METRIC_LABELS: dict[str, str] = {
    "recall_at_k": "recall@k",
    "ndcg_at_k": "nDCG@k",
    "kendall_tau": "Kendall tau",
    "spearman_rho": "Spearman rho",
}


@dataclass(frozen=True)
class ResultsConfig:
    """How the table's uncertainty is estimated.

    Parameters
    ----------
    n_bootstrap : int
        Bootstrap replicates over test songs (0 disables intervals and tests).
    confidence : float
        Coverage of the intervals, e.g. 0.95.
    baselines : tuple of str
        Methods the paired tests compare every method against (:func:`gap_columns`).
    seed : int
        Seed of the bootstrap's random generator.
    k : int or None
        Top-list size for recall and nDCG (default 10 % of the test songs).
    """

    n_bootstrap: int = 1000
    confidence: float = 0.95
    baselines: tuple[str, ...] = ("m0", "m1")
    seed: int = 0
    k: int | None = None

    def __post_init__(self) -> None:
        if self.n_bootstrap < 0:
            raise ConfigError(f"n_bootstrap must be >= 0, got {self.n_bootstrap}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")
        if isinstance(self.baselines, str) or not all(isinstance(b, str) and b for b in self.baselines):
            raise ConfigError(f"baselines must be a tuple of method names, got {self.baselines!r}")


@dataclass(frozen=True)
class GapColumns:
    """The long frame's columns of the gap to one baseline (see :func:`gap_columns`)."""

    diff: str
    low: str
    high: str
    p_value: str


def gap_columns(baseline: str) -> GapColumns:
    """Column names of the gap to ``baseline``: ``diff_m0``, ``diff_m0_low``, ``diff_m0_high``, ``p_value_m0``."""
    return GapColumns(f"diff_{baseline}", f"diff_{baseline}_low", f"diff_{baseline}_high", f"p_value_{baseline}")


def gap_baselines(frame: pd.DataFrame) -> list[str]:
    """The baselines a Table-1 frame holds gap columns for, in column order."""
    return [
        c.removeprefix("diff_")
        for c in frame.columns
        if c.startswith("diff_") and not c.endswith(("_low", "_high")) and f"{c}_low" in frame.columns
    ]


@dataclass(frozen=True)
class Table1:
    """Table 1 of one subset: ``frame`` has one row per (method, metric)."""

    subset: str
    frame: pd.DataFrame
    n_test: int
    k: int
    repeats: dict[str, int]
    config: ResultsConfig
    labels: dict[str, str]

    def wide(self) -> pd.DataFrame:
        """Methods x metrics of ``"mean ± std"`` strings, the paper's layout."""
        f = self.frame
        cells = f.assign(cell=[f"{m:.4f} ± {s:.4f}" for m, s in zip(f["mean"], f["std"], strict=True)])
        table = cells.pivot(index="method", columns="metric", values="cell")[list(METRIC_NAMES)]
        table.index = [f"({m}) {self.labels.get(m, m)}" for m in table.index]
        return table.rename(columns=METRIC_LABELS)

    def to_text(self) -> str:
        """A plain-text rendering with intervals and the paired tests, for the terminal."""
        lines = [
            f"Table 1 - subset {self.subset}: {self.n_test} test songs, k={self.k}, "
            f"mean ± std over repetitions {sorted(set(self.repeats.values()))}",
        ]
        header = f"{'method':<28}" + "".join(f"{METRIC_LABELS[m]:>26}" for m in METRIC_NAMES)
        lines.append(header)
        level = int(round(100 * self.config.confidence))
        for method, group in self.frame.groupby("method", sort=False):
            rows = group.set_index("metric").loc[list(METRIC_NAMES)]
            name = f"({method}) {self.labels.get(method, method)}"
            lines.append(f"{name:<28}" + "".join(f"{r.mean:>14.4f} ± {r.std:<9.4f}" for r in rows.itertuples()))
            if self.config.n_bootstrap:
                lines.append(
                    f"{f'  {level}% CI':<28}"
                    + "".join(f"{f'[{r.ci_low:.3f}, {r.ci_high:.3f}]':>26}" for r in rows.itertuples())
                )
                for baseline in self.config.baselines:
                    cols = gap_columns(baseline)
                    if method == baseline or math.isnan(rows[cols.p_value].iloc[0]):
                        continue
                    lines.append(
                        f"{f'  vs {baseline}: diff (p)':<28}"
                        + "".join(
                            f"{f'{d:+.3f} (p={p:.3f})':>26}"
                            for d, p in zip(rows[cols.diff], rows[cols.p_value], strict=True)
                        )
                    )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """All numbers, JSON-able (NaN -> null)."""
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in self.frame.to_dict(orient="records")
        ]
        return {
            "subset": self.subset,
            "n_test": self.n_test,
            "k": self.k,
            "repeats": self.repeats,
            "labels": self.labels,
            "results_config": asdict(self.config),
            "cells": records,
        }

    def write(self, out_dir: Path) -> dict[str, Path]:
        """Write ``table1.csv`` (long form), ``table1_wide.csv`` and ``table1.json`` into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "csv": out_dir / "table1.csv",
            "wide": out_dir / "table1_wide.csv",
            "json": out_dir / "table1.json",
        }
        self.frame.to_csv(paths["csv"], index=False)
        self.wide().to_csv(paths["wide"], index_label="method")
        paths["json"].write_text(json.dumps(self.to_json(), indent=1))
        return paths


def _metric_matrix(y_true: np.ndarray, preds: np.ndarray, idx: np.ndarray | None, k: int) -> np.ndarray:
    """Metrics of each repetition's predictions (R, n) on songs ``idx``: -> (R, 4)."""
    t = y_true if idx is None else y_true[idx]
    out = np.empty((preds.shape[0], len(METRIC_NAMES)))
    for r, p in enumerate(preds):
        scores = evaluate(t, p if idx is None else p[idx], k=k)
        out[r] = [scores[m] for m in METRIC_NAMES]
    return out


def table1(
    y_true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    *,
    subset: str,
    labels: Mapping[str, str] | None = None,
    config: ResultsConfig = ResultsConfig(),
) -> Table1:
    """Build Table 1 for one subset.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n,)]
        True hit scores of the test songs.
    predictions : mapping of method -> np.ndarray [shape=(R, n)]
        Each repetition's predicted hit scores for the same songs, in the same order.
    subset : str
        Name shown in the table.
    labels : mapping or None
        Method labels (``m1 -> "audio+LR"``).
    config : ResultsConfig
        Bootstrap settings and baselines.
    """
    if not predictions:
        raise InputError("no predictions to tabulate")
    y = np.asarray(y_true, dtype=np.float64)
    preds = {}
    for method, p in predictions.items():
        p = np.atleast_2d(np.asarray(p, dtype=np.float64))
        if p.shape[1] != y.size:
            raise InputError(f"predictions of {method} cover {p.shape[1]} songs, y_true has {y.size}")
        for row in p:
            check_scores(y, row)
        preds[method] = p
    k = min(config.k, y.size) if config.k else default_k(y.size)
    point = {m: _metric_matrix(y, p, None, k) for m, p in preds.items()}  # (R, 4)
    means = {m: v.mean(axis=0) for m, v in point.items()}

    boot: dict[str, np.ndarray] = {}
    if config.n_bootstrap:
        rng = np.random.default_rng(config.seed)
        boot = {m: np.empty((config.n_bootstrap, len(METRIC_NAMES))) for m in preds}
        for b in range(config.n_bootstrap):
            idx = rng.integers(0, y.size, size=y.size)
            for m, p in preds.items():
                boot[m][b] = _metric_matrix(y, p, idx, k).mean(axis=0)
    alpha = (1.0 - config.confidence) / 2.0

    rows = []
    for m in preds:
        vals = point[m]
        std = vals.std(axis=0, ddof=1) if vals.shape[0] > 1 else np.zeros(len(METRIC_NAMES))
        for j, metric in enumerate(METRIC_NAMES):
            cells: dict[str, Any] = {
                "method": m,
                "label": (labels or {}).get(m, m),
                "metric": metric,
                "mean": float(means[m][j]),
                "std": float(std[j]),
                "n_reps": int(vals.shape[0]),
                "ci_low": math.nan,
                "ci_high": math.nan,
            }
            if boot:
                cells["ci_low"], cells["ci_high"] = (float(q) for q in np.quantile(boot[m][:, j], [alpha, 1 - alpha]))
            for base in config.baselines:
                cols = gap_columns(base)
                cells.update({cols.diff: math.nan, cols.low: math.nan, cols.high: math.nan, cols.p_value: math.nan})
                if base not in preds:
                    continue
                cells[cols.diff] = float(means[m][j] - means[base][j])
                if boot and m != base:
                    d = boot[m][:, j] - boot[base][:, j]
                    cells[cols.low], cells[cols.high] = (float(q) for q in np.quantile(d, [alpha, 1 - alpha]))
                    cells[cols.p_value] = float(min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))))
            rows.append(cells)
    return Table1(
        subset=subset,
        frame=pd.DataFrame(rows),
        n_test=int(y.size),
        k=k,
        repeats={m: int(p.shape[0]) for m, p in preds.items()},
        config=config,
        labels={m: (labels or {}).get(m, m) for m in preds},
    )
