"""Pieces of the Classify page: model labels, the cached model, one photo's answer.

Widgets and charts only; classifying and Grad-CAM live in
core.serving.inference and core.serving.gradcam. Nothing here imports
TensorFlow: core loads it the first time a model is needed.
"""

from __future__ import annotations

import contextlib
import html
import os
import sys
import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.models.zoo import ARCHITECTURES
from core.runs.store import RunSummary
from core.serving.inference import Prediction, Predictor, preview_image
from pages._classify.answers import show_answer
from pages._common.text import md

BAR_COLOUR, TOP_COLOUR = "#9AA5B1", "#E4572E"


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


@st.cache_data(show_spinner=False, max_entries=32)
def classify(run_path: str, mtime: float, files: list[tuple[str, bytes]]) -> tuple[list[Prediction], list]:
    """(predictions, display images) for ``files`` [(name, bytes)], cached per model and files."""
    predictions = load_predictor(run_path, mtime).predict(files)
    previews = [preview_image(file) if prediction.ok else None for file, prediction in zip(files, predictions)]
    return predictions, previews


MIN_BAR = 0.002  # the narrowest bar drawn, as a fraction of the axis


def probability_chart(probabilities: dict[str, float]) -> go.Figure:
    """Horizontal bars, most likely class on top and highlighted."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1])
    # Plotly reads labels as HTML (links included): class names are folder names.
    names, values = [html.escape(n) for n, _ in ranked], [v for _, v in ranked]
    colours = [BAR_COLOUR] * (len(values) - 1) + [TOP_COLOUR]
    figure = go.Figure(
        go.Bar(
            # Plotly draws no label on a bar of zero width: a class at 0.0% keeps a sliver,
            # so its measured value is still written beside it.
            x=[max(v, MIN_BAR) for v in values],
            y=names,
            orientation="h",
            marker_color=colours,
            text=[f"{v:.1%}" for v in values],
            textposition="auto",
            customdata=values,
            hovertemplate="%{y}: %{customdata:.2%}<extra></extra>",
        )
    )
    figure.update_layout(
        height=70 + 28 * len(names),
        margin=dict(l=0, r=30, t=10, b=30),
        xaxis=dict(range=[0, 1], tickformat=".0%", title=None),
        yaxis=dict(title=None),
        showlegend=False,
    )
    return figure


@st.fragment
def show_prediction(index: int, prediction: Prediction, preview, run_path: str, mtime: float) -> None:
    """One photo: the image (optionally with its Grad-CAM heatmap) beside the answer.

    A fragment: the heatmap toggle and opacity slider rerun only this photo.
    """
    picture, answer = st.columns([2, 3], gap="medium")
    with answer:
        show_answer(prediction)
        st.plotly_chart(
            probability_chart(prediction.probabilities), key=f"probabilities_{index}", config={"displayModeBar": False}
        )
        st.caption(f"⏱️ {prediction.ms:.0f} ms (decode + model)")
        show_heatmap = st.toggle(
            "Grad-CAM heatmap",
            key=f"gradcam_{index}",
            help="Where the model looked to choose its class: red counts most.",
        )
        opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key=f"opacity_{index}", disabled=not show_heatmap)
    with picture:
        image = preview
        if show_heatmap:
            from core.serving.gradcam import overlay

            with st.spinner("Computing the heatmap…"):
                heatmap = load_predictor(run_path, mtime).gradcam(prediction)
            image = overlay(preview, heatmap, opacity)
        st.image(image, caption=md(prediction.file), width="stretch")
