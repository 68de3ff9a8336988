"""Predict: upload tracks, score each with a subset's champion, see where the model hears a hit."""

import time

import numpy as np
import streamlit as st

from dashboard import data, figures, ui
from dashboard.limits import MB, PredictLimits, ResultCache, SessionBudget
from hitsong.statements import score_statement

AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]
TAGGRAM_ROWS = 20

st.title("Predict")
s = ui.page_settings()
uri = s.tracking_uri

with ui.problems(), st.spinner("Reading the model registry…"):
    champions = data.champions(data.cached_versions(uri, "", ""))
if champions.empty:
    st.info(
        "No champion model yet. Register and promote one with `hitsong register --subset S` and "
        "`hitsong promote --model hitsong-S --version V --reason TEXT`, or run `hitsong demo run`."
    )
    st.stop()

left, right = st.columns(2)
subset = left.selectbox("Champion of subset", ["all", *champions["subset"]], index=1)
gpu = data.cuda_available()
use_gpu = right.toggle(
    "Score on GPU",
    value=False,
    disabled=not gpu,
    help=None if gpu else "torch.cuda.is_available() is False on the dashboard's machine",
)
device = "cuda" if use_gpu else "cpu"
right.caption(f"Scoring on **{device.upper()}**" + ("" if gpu else " (no GPU available here)"))

limit = data.max_upload_mb()
with ui.problems():
    limits = PredictLimits.from_env()
files = st.file_uploader(
    f"Audio files: WAV, FLAC, OGG or MP3, at most {limit} MB each, {limits.max_files} at a time",
    type=AUDIO_TYPES,
    accept_multiple_files=True,
    max_upload_size=limit,
)
st.caption(
    f"Upload limit: {limit} MB per file (`hitsong dashboard --max-upload-mb N`), {limits.max_files} files at a "
    f"time, {limits.session_mb} MB of audio per session. The middle of each track is analysed."
)
files = files or []
if len(files) > limits.max_files:
    st.error(
        f"{len(files)} files chosen: the Predict page scores at most {limits.max_files} at a time. "
        "Remove some (×) and the rest are scored.",
        icon=":material/block:",
    )
    st.stop()

chosen = champions if subset == "all" else champions[champions["subset"] == subset]
# Per session and bounded: what this visitor has had scored, and the results kept for redrawing.
budget = st.session_state.setdefault("predict_budget", SessionBudget(limits.session_mb * MB))
results_cache = st.session_state.setdefault("predict_results", ResultCache(limits.cached_results))
admitted = {upload.file_id: budget.admit(upload.file_id, upload.size) for upload in files}  # in upload order
for champion in chosen.itertuples():
    st.header(f"{champion.subset}: {champion.model} v{champion.version} ({champion.method}) on {device.upper()}")
    # Loaded and summarised before any upload, below the uploader: the model loads while the visitor
    # picks a file, and the browser fetches the metric and chart code a card needs (fetched with the
    # first card, they held its score back ~0.5 s).
    with (
        ui.problems(f"Cannot load {champion.model} v{champion.version}"),
        st.spinner(f"Loading {champion.model} v{champion.version} on {device}…"),
    ):
        scorer = data.cached_scorer(uri, champion.model, champion.version, device)
    val_rho = getattr(champion, "val_spearman_rho", None)
    summary = st.columns(3)
    summary[0].metric("Validation Spearman ρ", "—" if val_rho is None or np.isnan(val_rho) else f"{val_rho:.2f}")
    summary[1].metric("Training catalogue", f"{scorer.catalog.size} songs")
    summary[2].metric("Analysed per track", f"middle {scorer.audio_config.seconds:.0f} s")
    st.plotly_chart(
        figures.catalogue_histogram(scorer.catalog, subset=champion.subset), key=f"catalogue-{champion.model}"
    )
    # In upload order: the cards on screen keep their places, so the browser does not draw their charts
    # again (the newest card on top moved them all: 1.0 s from the score to the screen instead of 0.3 s).
    for upload in files:
        key = (upload.file_id, champion.model, champion.version, device)
        result = results_cache.get(key)
        if result is None:
            if not admitted[upload.file_id]:
                st.warning(
                    f"{upload.name} was not scored: this session has had {budget.used_bytes / MB:.0f} MB of audio "
                    f"scored, and the limit is {limits.session_mb} MB per session.",
                    icon=":material/block:",
                )
                continue
            with st.spinner(f"Scoring {upload.name}…"):
                start = time.perf_counter()
                result = scorer.score([upload.getvalue()], names=[upload.name])[0]
                result["seconds"] = time.perf_counter() - start
            results_cache.put(key, result)
        with st.container(border=True):
            st.subheader(upload.name)
            if result["error"]:
                st.error(f"{upload.name} could not be scored: {result['error']}", icon=":material/error:")
                continue
            score, percentile, top = st.columns(3)
            score.metric("Hit score (training-catalogue scale)", f"{result['score']:.2f}")
            percentile.metric(f"Percentile in the {champion.subset} training catalogue", f"{result['percentile']:.0f}")
            st.caption(score_statement(subset=champion.subset, catalogue_size=int(scorer.catalog.size)))
            top.metric("Scored in", f"{result['seconds']:.2f} s")
            for warning in result["warnings"]:
                st.warning(warning)
            st.plotly_chart(figures.top_tags_figure(result["top_tags"]), key=f"tags-{key}")
            if result["taggram"] is not None:
                audio = scorer.audio_config
                st.plotly_chart(
                    figures.taggram_heatmap(
                        np.asarray(result["taggram"]),
                        list(result["tags"]),
                        seconds_per_row=scorer.patch_seconds,
                        offset=scorer.taggram_offset,
                        top=TAGGRAM_ROWS,
                    ),
                    key=f"taggram-{key}",
                )
                st.caption(
                    f"The tagger hears the middle {audio.tagger_span:.0f} s of the analysed {audio.seconds:.0f} s."
                )
            else:
                st.caption(f"{champion.method} does not use tags: no taggram.")
            if result["frame_scores"] is not None:
                st.plotly_chart(
                    figures.score_over_time(
                        np.asarray(result["frame_scores"]),
                        seconds=float(scorer.audio_config.seconds),
                        score=result["score"],
                    ),
                    key=f"frames-{key}",
                )
                st.caption(
                    f"Time axis: seconds into the analysed middle {scorer.audio_config.seconds:.0f} s of the track."
                )
            else:
                st.caption(f"{champion.method} scores the whole track at once: no score over time.")
            st.caption("Stage timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in result["timings"].items()))
