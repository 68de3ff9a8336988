"""A registered version's description: a model card written from its training run, at registration.

The card says what the version is (method, subset, dataset, data and code versions), how it was
trained (the training config, the audio front end and the tagger's window), how it scored (the
validation figures that chose it beside its held-out test figures), where it departs from the
paper (every config value that differs from the paper's, found by comparing the run's params
with the paper defaults serialised the same way), and the commands that reproduce it.

Everything comes from the run's params and tags as training logged them
(:mod:`hitsong.training.runlayout`); nothing is re-derived from files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from hitsong.audio import AudioConfig
from hitsong.metrics import METRIC_NAMES
from hitsong.models import METHODS
from hitsong.models.config import ModelConfig
from hitsong.results import METRIC_LABELS
from hitsong.statements import score_statement
from hitsong.tracking import flatten_params
from hitsong.training import runlayout
from hitsong.training.config import TrainConfig

#: The paper's sample per subset and its split (section 4: 8K/1K/1K of the top 10,000 songs).
PAPER_SONGS = 10_000
PAPER_SPLIT = (0.8, 0.1, 0.1)
#: Params that say how a run was executed, not what it learned: never departures.
EXECUTION_PARAMS = frozenset(
    {"train.profile", "train.seed", "train.num_workers", "train.amp", "train.cpu_threads", "train.eval_batch_size"}
)
#: MLflow keeps at most this many characters of a version description.
MAX_DESCRIPTION = 5000


def paper_params() -> dict[str, str]:
    """The paper's configuration, flattened exactly as training logs its params."""
    return flatten_params(
        {
            "model": ModelConfig().to_dict(),
            "train": asdict(TrainConfig.for_profile("paper")),
            "audio": AudioConfig().to_dict(),
        }
    )


def departures(params: Mapping[str, str]) -> list[str]:
    """How the run's config departs from the paper, one sentence each (the tagger always does).

    Parameters
    ----------
    params : mapping
        The repetition run's params (``model.*``, ``train.*``, ``audio.*``, ``data.*``).
    """
    out = ["auto-tagger: musicnn's pretrained MTT-50 network (the paper's JYnet weights were never published)"]
    paper = paper_params()
    changed = [
        f"{key} {params[key]} (paper {value})"
        for key, value in sorted(paper.items())
        if key in params and key not in EXECUTION_PARAMS and params[key] != value
    ]
    if changed:
        out.append("configuration: " + "; ".join(changed))
    sizes = _split_sizes(params)
    if sizes is not None:
        total = sum(sizes)
        shares = tuple(n / total for n in sizes)
        if total != PAPER_SONGS:
            out.append(f"sample: {total:,} songs of the subset (paper {PAPER_SONGS:,})")
        if any(abs(a - b) > 0.01 for a, b in zip(shares, PAPER_SPLIT, strict=True)):
            got = "/".join(f"{100 * s:.0f}" for s in shares)
            out.append(f"split: {got} train/validation/test (paper 80/10/10)")
    if params.get("data.split_by", "random") != "random":
        out.append(f"split by {params['data.split_by']} (paper: at random)")
    if params.get("data.shuffled_targets", "False") == "True":
        out.append("NEGATIVE CONTROL: trained on shuffled hit scores")
    return out


def _split_sizes(params: Mapping[str, str]) -> tuple[int, int, int] | None:
    try:
        return tuple(int(params[f"data.n_{s}"]) for s in ("train", "val", "test"))  # type: ignore[return-value]
    except (KeyError, ValueError):
        return None


def reproduce_commands(params: Mapping[str, str], tags: Mapping[str, str], *, dataset: str | None) -> list[str]:
    """The ``hitsong features`` and ``hitsong train`` commands that train this run again."""
    subset = tags.get(runlayout.TAG_SUBSET) or params.get("data.subset", "SUBSET")
    method = tags.get(runlayout.TAG_METHOD) or params.get("method", "m1")
    tagger = params.get("data.tagger") or "none"
    features = f"hitsong features --subset {subset} --tagger {tagger}"
    if "audio.tagger_seconds" in params:
        features += f" --tagger-seconds {float(params['audio.tagger_seconds']):g}"
    train = (
        f"hitsong train --subset {subset} --methods {method} --profile {tags.get(runlayout.TAG_PROFILE, 'paper')}"
        f" --repeats {params.get('train.repeats', '1')} --tagger {tagger}"
    )
    if dataset:
        train += f" --dataset {dataset}"
    if params.get("data.shuffled_targets", "False") == "True":
        train += " --shuffle-targets"
    return [features, train]


def _metric_table(metrics: Mapping[str, float]) -> list[str]:
    lines = ["| metric | validation | held-out test |", "|---|---|---|"]
    for name in METRIC_NAMES:
        cells = [metrics.get(runlayout.split_metric(split, name)) for split in (runlayout.VAL, runlayout.TEST)]
        lines.append(f"| {METRIC_LABELS[name]} | " + " | ".join("–" if v is None else f"{v:.4f}" for v in cells) + " |")
    return lines


def model_card(
    *,
    model: str,
    method: str,
    selected_by: str,
    metrics: Mapping[str, float],
    params: Mapping[str, str],
    tags: Mapping[str, str],
    dataset: str | None,
    run_id: str,
    evaluation: str | None = None,
) -> str:
    """The version's description (Markdown, at most :data:`MAX_DESCRIPTION` characters).

    Parameters
    ----------
    model, method : str
        Registered model name and the method (``m1``..``m6``).
    selected_by : str
        How it was chosen (the ``hitsong.selected_by`` version tag).
    metrics, params, tags : mapping
        The repetition run's final metrics, params and tags.
    dataset : str or None
        The experiment's dataset (``hitsong.dataset`` experiment tag).
    run_id : str
        The repetition run.
    evaluation : str, optional
        The split and the gap to the metadata baseline in one sentence (``hitsong.evaluation`` tag).
    """
    label = METHODS[method].label if method in METHODS else method
    sizes = _split_sizes(params)
    split = f"{sizes[0]}/{sizes[1]}/{sizes[2]} train/validation/test songs" if sizes else "split sizes not logged"
    window = params.get("audio.tagger_seconds", "?")
    lines = [
        f"**{model}: {method} {label}** (Yang et al., ICASSP 2017, section 3), repetition "
        f"{tags.get(runlayout.TAG_REPETITION, '?')} of run `{run_id}`.",
        "",
        f"Chosen by {selected_by}.",
        "",
        *([evaluation, ""] if evaluation else []),
        f"Predictions: {score_statement(subset=tags.get(runlayout.TAG_SUBSET, '?'))}",
        "",
        *_metric_table(metrics),
        "",
        f"- Data: dataset {dataset or '?'}, subset {tags.get(runlayout.TAG_SUBSET, '?')}, data version "
        f"`{tags.get(runlayout.TAG_DATA_VERSION, '?')}`, {split}, split {tags.get(runlayout.TAG_SPLIT_BY, 'random')}.",
        f"- Features: middle {params.get('audio.seconds', '?')} s at {params.get('audio.sr', '?')} Hz, "
        f"{params.get('audio.n_mels', '?')} mel bands, STFT {params.get('audio.n_fft', '?')}/"
        f"{params.get('audio.hop_length', '?')}; tagger {params.get('data.tagger') or 'none'} hearing the middle "
        f"{window} s (tagger window).",
        f"- Training: profile {tags.get(runlayout.TAG_PROFILE, '?')}: {params.get('train.optimizer', '?')} "
        f"lr {params.get('train.lr', '?')} (x{params.get('train.lr_decay', '?')} on a plateau), batch "
        f"{params.get('train.batch_size', '?')}, at most {params.get('train.max_epochs', '?')} epochs "
        f"(early stop after {params.get('train.early_stop_patience', '?')}), seed {params.get('seed', '?')}; "
        f"best epoch {metrics.get('best_epoch', float('nan')):.0f}.",
        f"- Code: {tags.get(runlayout.TAG_CODE_VERSION, '?')}.",
        "",
        "Departures from the paper:",
        *(f"- {d}" for d in departures(params)),
        "",
        "Reproduce (repetition r trains with seed train.seed + r):",
        "",
        *(f"    {c}" for c in reproduce_commands(params, tags, dataset=dataset)),
    ]
    text = "\n".join(lines)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"
