"""Classify page: take the model elsewhere, as exports proven to agree with it, and its model card.

Each format (SavedModel, TensorFlow Lite, ONNX) is made and checked out of
process (core.serving.export_check): "Prepare" starts it, a fragment polls
its progress, and the zip is offered only once it answered like the Keras
model on the run's test photos, with that agreement said beside it. A zip
that disagrees, or a check that failed, is not offered: the reason is.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.runs.store import RunSummary
from core.serving.export import ExportFormat
from core.serving.export_check import ExportState, ExportStatus, export_status, offered_export, start_export
from core.serving.model_card import card_json, card_markdown, model_card
from pages._common.errors import cannot
from pages._common.text import md

POLL_SECONDS = 1.0
STATE_TEXT = {
    ExportState.STARTING: "Starting (loading TensorFlow)…",
    ExportState.EXPORTING: "Converting…",
    ExportState.CHECKING: "Checking it on the run's test photos",
}


def export_section(run: RunSummary) -> None:
    """The .keras file, the three checked exports, and the model card."""
    run_dir = Path(run.path)
    st.caption(
        "Each export takes float32 images in [0, 255] of shape (batch, "
        f"{run.image_size}, {run.image_size}, 3) and returns calibrated probabilities, one per class "
        f"in this order (labels.txt in the zip): {', '.join(map(md, run.classes))}. The .keras model "
        "returns logits. Every zip carries the model card."
    )
    st.download_button(
        "⬇️ Keras model (.keras)",
        data=(run_dir / "model.keras").read_bytes,
        file_name=f"{run.id}.keras",
        mime="application/octet-stream",
        on_click="ignore",
        key="download_keras",
    )
    polling = any(export_status(run_dir, fmt).state.running for fmt in ExportFormat)
    st.fragment(exports, run_every=POLL_SECONDS if polling else None)(run, polling)
    model_card_section(run)


def exports(run: RunSummary, polling: bool) -> None:
    """One column per format; reruns the page when a check it was polling has ended."""
    run_dir = Path(run.path)
    statuses = {fmt: export_status(run_dir, fmt) for fmt in ExportFormat}
    if polling and not any(status.state.running for status in statuses.values()):
        st.rerun(scope="app")  # stop polling
    for column, (fmt, status) in zip(st.columns(len(statuses)), statuses.items()):
        with column:
            st.markdown(f"**{fmt.display_name}**")
            export_column(run, fmt, status)


def export_column(run: RunSummary, fmt: ExportFormat, status: ExportStatus) -> None:
    run_dir = Path(run.path)
    if status.state.running:
        share = status.done / status.total if status.total else 0.0
        count = f" ({status.done} of {status.total})" if status.total else ""
        st.progress(share, text=STATE_TEXT[status.state] + count)
        return
    archive = offered_export(run_dir, fmt)
    if archive is not None:
        st.download_button(
            f"⬇️ {fmt.archive}",
            data=archive.read_bytes,
            file_name=f"{run.id}-{fmt.archive}",
            mime="application/zip",
            on_click="ignore",
            key=f"download_{fmt}",
        )
        st.caption(f"✅ Checked: {md(status.agreement.describe())}.")
        return
    if status.state in (ExportState.DISAGREES, ExportState.FAILED) or status.offered:
        st.warning(
            md(status.reason or "The checked zip changed since its check; prepare it again."), icon=":material/block:"
        )
    again = status.state != ExportState.NONE
    if st.button(
        "Prepare again" if again else "Prepare",
        key=f"prepare_{fmt}",
        help="Converts the model and checks it on the run's test photos, in the background.",
    ):
        try:
            start_export(run_dir, fmt)
        except OSError as error:
            st.error(cannot(f"prepare the {fmt.display_name} export", error))
            return
        st.rerun(scope="app")  # polls from now on


def model_card_section(run: RunSummary) -> None:
    """The model card alone (Markdown and JSON), and shown on demand (escaped by core)."""
    try:
        card = model_card(run.path)
    except (OSError, ValueError) as error:
        st.error(f"The model card cannot be made: {md(error)}")
        return
    markdown = card_markdown(card)
    st.markdown("**Model card**: what the model is, what it was tested on, how far to trust it.")
    left, right, show = st.columns([1, 1, 2], vertical_alignment="center")
    left.download_button(
        "⬇️ MODEL_CARD.md",
        data=markdown,
        file_name=f"{run.id}-MODEL_CARD.md",
        mime="text/markdown",
        on_click="ignore",
        key="download_card_md",
    )
    right.download_button(
        "⬇️ model_card.json",
        data=card_json(card),
        file_name=f"{run.id}-model_card.json",
        mime="application/json",
        on_click="ignore",
        key="download_card_json",
    )
    if show.toggle("Show the model card", key=f"show_card_{run.id}"):
        with st.container(border=True, key="model_card"):
            st.markdown(markdown)  # core escaped every user string (core.serving.model_card.escape)
