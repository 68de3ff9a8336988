"""Train a subset from the DuckDB store and the feature store, with the checks a reviewer relies on.

``train_from_store`` is what ``hitsong train`` and ``hitsong demo run`` call. It trains with the
audio config the subset's features were built with (read from the store, strictly), refuses a
method that uses tags when any sampled song lacks a tag vector of the configured tagger (a
model trained on zero tags would quietly become something else), and counts songs left out
for missing features: up to :data:`MAX_MISSING_SHARE` of a split is logged and recorded in
every run's params, more is an error unless ``allow_missing``. The split method of the store's
last ``hitsong sample`` (``random``, ``release_date`` or ``artist``) is recorded in every run
(``data.split_by`` param, ``split_by`` tag) and in the data version.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hitsong.audio import AudioConfig
from hitsong.errors import ConfigError, InputError, StoreError
from hitsong.features import NO_TAGGER, MelDataset
from hitsong.models import ALL_METHODS, check_method, get_method, is_baseline
from hitsong.models.config import ModelConfig
from hitsong.results import ResultsConfig
from hitsong.settings import DEFAULT_TAGGER
from hitsong.store import connect, featureindex
from hitsong.store.read import last_sample
from hitsong.store.schema import SPLITS
from hitsong.tracking import RunLogger
from hitsong.training.config import TrainConfig
from hitsong.training.data import scan_subset
from hitsong.training.experiment import SubsetResult, train_subset

log = logging.getLogger(__name__)

#: Share of a split that may lack features (failed songs) before training refuses.
MAX_MISSING_SHARE = 0.01


def store_audio_config(db_path: str | Path, subset: str) -> AudioConfig:
    """The audio config the features of ``subset`` were built with.

    Raises
    ------
    StoreError
        The subset has no features yet (the message names ``hitsong features``).
    ConfigError
        The stored config was written by a hitsong that computes something else.
    """
    with connect(db_path, read_only=True) as con:
        meta = featureindex.subset_meta_readonly(con, subset)
    if meta is None:
        raise StoreError(f"{db_path}: no features for subset {subset!r}; run `hitsong features --subset {subset}`")
    return AudioConfig.from_dict(meta.config, source=f"{db_path} feature_meta of subset {subset!r}")


def split_method(db_path: str | Path) -> str:
    """How the store's current split was drawn (``hitsong sample --by``); ``unknown`` without a sample log."""
    record = last_sample(db_path)
    return record.by if record is not None else "unknown"


def _check_missing(datasets: dict[str, MelDataset], subset: str, allow_missing: bool) -> dict[str, int]:
    missing = {split: len(ds.missing) for split, ds in datasets.items()}
    for split, n in missing.items():
        total = n + len(datasets[split])
        if not n:
            continue
        share = n / total
        log.warning("subset %s, %s split: %d of %d songs have no features and are left out", subset, split, n, total)
        if share > MAX_MISSING_SHARE and not allow_missing:
            examples = ", ".join(datasets[split].missing[:3])
            raise InputError(
                f"subset {subset!r}, {split} split: {n} of {total} songs ({100 * share:.1f} %, more than "
                f"{100 * MAX_MISSING_SHARE:.0f} %) have no stored features (e.g. {examples}); see the DuckDB table "
                f"feature_failures, fix or drop them and run `hitsong features --subset {subset}` again, "
                "or train without them with --allow-missing"
            )
    return missing


def _check_tags(datasets: dict[str, MelDataset], methods: Sequence[str], subset: str, tagger: str) -> None:
    tag_methods = [m for m in methods if not is_baseline(m) and get_method(m).uses_tags]
    if not tag_methods:
        return
    command = f"`hitsong features --subset {subset} --tagger {DEFAULT_TAGGER if tagger == NO_TAGGER else tagger}`"
    if tagger == NO_TAGGER:
        raise ConfigError(
            f"methods {', '.join(tag_methods)} use tag vectors but the tagger is 'none'; pick a tagger "
            f"(--tagger {DEFAULT_TAGGER}) and compute its tags with {command}"
        )
    for split, ds in datasets.items():
        lacking = [sid for sid, has in zip(ds.song_ids, ds.has_tags, strict=True) if not has]
        if lacking:
            raise ConfigError(
                f"subset {subset!r}, {split} split: {len(lacking)} of {len(ds)} songs have no {tagger} tag vector "
                f"(e.g. {', '.join(lacking[:3])}), so {', '.join(tag_methods)} would train on zeros; "
                f"compute them with {command}"
            )


def train_from_store(
    db_path: str | Path,
    store_dir: str | Path,
    *,
    subset: str,
    logger: RunLogger,
    methods: Sequence[str] = ALL_METHODS,
    train_config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    results_config: ResultsConfig | None = None,
    device: str = "auto",
    tagger: str = DEFAULT_TAGGER,
    shuffle_targets: bool = False,
    allow_missing: bool = False,
    out_dir: Path | None = None,
) -> SubsetResult:
    """Train ``methods`` on ``subset`` of the store and log every run through ``logger``.

    Parameters
    ----------
    db_path, store_dir : path
        The DuckDB file (splits, hit scores, feature index) and the feature store.
    subset : str
    logger : RunLogger
        Where runs go (``registry.tracking.MlflowRunLogger`` or ``hitsong.tracking.LocalRunLogger``).
    methods : sequence of str
        Default: the metadata baseline m0 and m1..m6.
    train_config, model_config, results_config
        Defaults: the paper's profile and sizes, 1,000 bootstrap replicates.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    tagger : str
        Whose tag vectors the tag methods use; ``"none"`` for mel-only methods.
    shuffle_targets : bool
        Negative control (see ``train_subset``).
    allow_missing : bool
        Train even when more than :data:`MAX_MISSING_SHARE` of a split lacks features.
    out_dir : Path or None
        Where Table 1 and the repetitions are written as files.

    Raises
    ------
    StoreError
        No sample or no features for the subset.
    ConfigError
        A tag method without tag vectors for every song, or an unknown method.
    InputError
        Too many songs without features (see ``allow_missing``).
    """
    methods = list(dict.fromkeys(methods))
    for method in methods:
        check_method(method)
    audio = store_audio_config(db_path, subset)
    datasets = {split: MelDataset(db_path, store_dir, subset, split, tagger=tagger) for split in SPLITS}
    missing = _check_missing(datasets, subset, allow_missing)
    _check_tags(datasets, methods, subset, tagger)
    return train_subset(
        scan_subset(datasets, subset=subset),
        subset=subset,
        logger=logger,
        methods=methods,
        model_config=model_config,
        train_config=train_config,
        results_config=results_config,
        device=device,
        audio_config=audio,
        tagger=None if tagger == NO_TAGGER else tagger,
        shuffle_targets=shuffle_targets,
        out_dir=out_dir,
        data_notes={"split_by": split_method(db_path), **{f"missing_{split}": n for split, n in missing.items()}},
    )
