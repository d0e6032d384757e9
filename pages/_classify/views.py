"""Pieces of the Classify page: model labels, the cached model, one photo's answer.

Widgets and charts only; classifying and Grad-CAM live in
core.serving.inference and core.serving.gradcam. Nothing here imports
TensorFlow: core loads it the first time a model is needed.

A drop's answers are kept in its own session (never shared: another visitor
never sees them) and kept small, since every visitor's tab holds one: the
predictions without the pixels the model saw, and each photo's preview as a
JPEG thumbnail of a few tens of KB, not a 512x512 array. A Grad-CAM heatmap is
computed when its toggle asks for it, from the photo decoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from core.data.images import load_resized
from core.models.zoo import ARCHITECTURES
from core.runs.store import RunSummary
from core.serving.inference import Prediction, Predictor, preview_image
from pages._classify.answers import show_answer
from pages._common.text import md

DROP_KEY = "classify_drop"  # session state: the last drop's answers and thumbnails (ClassifiedDrop)
HEATMAPS_KEY = "classify_heatmaps"  # session state: its Grad-CAM heatmaps, by photo
THUMBNAIL_QUALITY = 85  # JPEG: 20-60 KB for a 512-pixel photo


def run_label(run: RunSummary) -> str:
    """ "Tutorial CNN · test accuracy 71.5% · 28 Nov 2026 14:48"."""
    spec = ARCHITECTURES.get(run.arch)
    title = spec.title if spec else run.arch
    accuracy = f"test accuracy {run.test_accuracy:.1%}" if run.test_accuracy is not None else "not evaluated"
    created = time.strftime("%d %b %Y %H:%M", time.localtime(run.created))
    return f"{title} · {accuracy} · {created}"


def model_mtime(run: RunSummary) -> float:
    """The cache key's second half: a retrained or replaced model.keras is loaded again."""
    return os.stat(Path(run.path) / "model.keras").st_mtime


def keep_tensorflow_caches_between_reruns() -> None:
    """Stop Streamlit from calling keras.backend.clear_session() after every script run.

    Streamlit does that (script_runner._clean_problem_modules) for scripts that
    build a new model on each run. It also empties TensorFlow's kernel cache,
    so the cached model's compiled predict function is instantiated and
    graph-optimized again on its next call: 1-3 s for MobileNetV2 instead of
    about 50 ms, on every upload and every Grad-CAM toggle. This server never
    builds models in a page script (training runs in worker processes), so
    there is nothing to clear; matplotlib figures are still closed as before.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if getattr(script_runner._clean_problem_modules, "keeps_keras", False):
        return

    def close_matplotlib_figures() -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            with contextlib.suppress(Exception):
                pyplot.close("all")

    close_matplotlib_figures.keeps_keras = True
    script_runner._clean_problem_modules = close_matplotlib_figures


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def load_predictor(run_path: str, mtime: float) -> Predictor:
    # ``mtime`` only keys the cache.
    keep_tensorflow_caches_between_reruns()
    return Predictor.from_run(run_path)


@dataclass(frozen=True)
class ClassifiedDrop:
    """One drop's answers as the session's reruns need them."""

    key: str  # which files, by which model
    predictions: list[Prediction]  # without pixels: Grad-CAM decodes its photo again
    thumbnails: list[bytes | None]  # JPEG; None for a file that could not be read


def classify(run_path: str, mtime: float, files: list[tuple[str, bytes]]) -> tuple[list[Prediction], list]:
    """(predictions, JPEG thumbnails) for ``files`` [(name, bytes)]: classified once per session,
    model and files, and kept for this session only (one drop: the last)."""
    key = drop_key(run_path, mtime, files)
    kept = st.session_state.get(DROP_KEY)
    if kept is None or kept.key != key:
        # The last drop's answers go before the new ones are made: one drop per session at a time.
        st.session_state.pop(DROP_KEY, None)
        st.session_state.pop(HEATMAPS_KEY, None)
        predictions = load_predictor(run_path, mtime).predict(files)
        thumbnails = [thumbnail(file) if prediction.ok else None for file, prediction in zip(files, predictions)]
        kept = ClassifiedDrop(key, [replace(p, pixels=None) for p in predictions], thumbnails)
        st.session_state[DROP_KEY] = kept
    return kept.predictions, kept.thumbnails


def drop_key(run_path: str, mtime: float, files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(f"{run_path}\0{mtime}".encode())
    for name, data in files:
        digest.update(hashlib.sha256(name.encode()).digest() + hashlib.sha256(data).digest())
    return digest.hexdigest()


def thumbnail(file: tuple[str, bytes]) -> bytes:
    """The photo shown beside its answer (upright, at most PREVIEW_SIDE pixels a side) as a JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(preview_image(file)).save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def gradcam_heatmap(run_path: str, mtime: float, prediction: Prediction, photo: bytes) -> np.ndarray:
    """The photo's Grad-CAM heatmap, computed when first asked for from its bytes decoded again
    (as the model saw them); kept, a few floats, for the opacity slider's reruns."""
    key = (run_path, mtime, prediction.file, hashlib.sha256(photo).hexdigest())
    kept = st.session_state.setdefault(HEATMAPS_KEY, {})
    if key not in kept:
        predictor = load_predictor(run_path, mtime)
        named = io.BytesIO(photo)
        named.name = prediction.file
        pixels = load_resized(named, predictor.image_size)
        kept[key] = predictor.gradcam(replace(prediction, pixels=pixels))
    return kept[key]


# Bars drawn per photo; the rest of an N-class model's classes are summed in one line.
TOP_CLASSES_SHOWN = 5


def ranked_probabilities(probabilities: dict[str, float]) -> tuple[list[tuple[str, float]], float]:
    """The classes drawn as bars, most likely first, and the probability of those left out."""
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    return ranked[:TOP_CLASSES_SHOWN], sum(value for _, value in ranked[TOP_CLASSES_SHOWN:])


def show_probabilities(probabilities: dict[str, float]) -> None:
    """A bar for each of the TOP_CLASSES_SHOWN most likely classes, then the rest summed.

    Progress bars, not a Plotly chart: with a chart per photo the browser spent
    2.4 s of CPU on a drop of three, with bars 1.2-1.4 s (benchmarks/bench_class.py,
    2026-12-03).
    """
    shown, rest = ranked_probabilities(probabilities)
    for name, value in shown:
        st.progress(min(max(value, 0.0), 1.0), text=f"{md(name)} · {value:.1%}")
    if len(probabilities) > len(shown):
        st.caption(f"{len(probabilities) - len(shown)} more classes: {rest:.1%} together")


@st.fragment
def show_prediction(
    index: int, prediction: Prediction, preview: bytes, photo: bytes, run_path: str, mtime: float
) -> None:
    """One photo: its thumbnail (optionally with its Grad-CAM heatmap) beside the answer.

    A fragment: the heatmap toggle and opacity slider rerun only this photo.
    ``photo``: the dropped file's bytes, decoded again for the heatmap.
    """
    picture, answer = st.columns([2, 3], gap="medium")
    with answer:
        show_answer(prediction)
        show_probabilities(prediction.probabilities)
        st.caption(f"⏱️ {prediction.ms:.0f} ms (decode + model)")
        show_heatmap = st.toggle(
            "Grad-CAM heatmap",
            key=f"gradcam_{index}",
            help="Where the model looked to choose its class: red counts most.",
        )
        # Drawn once asked for: every photo's slider costs the browser a widget on every rerun.
        opacity = 0.45
        if show_heatmap:
            opacity = st.slider("Heatmap opacity", 0.0, 1.0, opacity, 0.05, key=f"opacity_{index}")
    with picture:
        image: bytes | np.ndarray = preview
        if show_heatmap:
            from core.serving.gradcam import overlay

            with st.spinner("Computing the heatmap…"):
                heatmap = gradcam_heatmap(run_path, mtime, prediction, photo)
            image = overlay(np.asarray(Image.open(io.BytesIO(preview)).convert("RGB")), heatmap, opacity)
        st.image(image, caption=md(prediction.file), width="stretch")
