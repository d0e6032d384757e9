"""Classify page: take the model elsewhere, as exports proven to agree with it, and its model card.

Each format (SavedModel, TensorFlow Lite float32 and int8, ONNX) is made and
checked out of process (core.serving.export_check): "Prepare" starts it, a
fragment polls its progress, and the zip is offered only once it answered
like the Keras model on the run's test photos, with that agreement and the
model's size said beside it (for int8: its accuracy, the float model's, and
their share of same labels). A zip that disagrees, or a check that failed, is
not offered: the reason is.
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
# Checked 2026-12-02; the README's export section says the same.
NO_CORE_ML = (
    "No Core ML export: coremltools 9.0, the newest release, converts TensorFlow only up to 2.12 and "
    "Keras 2 (this model is TensorFlow 2.21, Keras 3), and runs Core ML models only on macOS, so an "
    "export could not be checked here against the model."
)
STATE_TEXT = {
    ExportState.STARTING: "Starting (loading TensorFlow)…",
    ExportState.EXPORTING: "Converting…",
    ExportState.CHECKING: "Checking it on the run's test photos",
}


EXPORT_TAB = "⬇️ Take the model with you"  # its tab's label (and session-state value)


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
    web_page_section(run)
    st.caption(NO_CORE_ML)
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
        st.caption(f"✅ Checked: {md(status.agreement.describe())}.{size_text(status)}")
        return
    if status.state in (ExportState.DISAGREES, ExportState.FAILED) or status.offered:
        st.warning(
            md(status.reason or "The checked zip changed since its check; prepare it again.") + size_text(status),
            icon=":material/block:",
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


def size_text(status: ExportStatus) -> str:
    """The model's size, a sentence to append, once the export was made (older statuses have none)."""
    return f" Model: {status.model_bytes / 1e6:.2f} MB." if status.model_bytes else ""


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


# --- the web page (core.serving.web_export): its own check, in headless Chromium ------------

WEB_STATE_TEXT = {
    ExportState.STARTING: "Starting (loading TensorFlow)…",
    ExportState.EXPORTING: "Writing the page…",
    ExportState.CHECKING: "Checking it in Chromium on the run's test photos",
}


def web_page_section(run: RunSummary) -> None:
    """The offline web page: prepared out of process, offered as a zip only once it was checked."""
    from core.serving.web_export import web_export_status

    polling = web_export_status(run.path).state.running
    st.fragment(web_page, run_every=POLL_SECONDS if polling else None)(run, polling)


def web_page(run: RunSummary, polling: bool) -> None:
    from core.serving.web_export import offered_web_export, start_web_export, web_export_status

    run_dir = Path(run.path)
    status = web_export_status(run_dir)
    if polling and not status.state.running:
        st.rerun(scope="app")  # stop polling
    st.markdown("**Web page**")
    st.caption(
        "A folder any static server serves (`python3 -m http.server` in it): the model runs in the "
        "browser, offline, on photos and a live camera, with the same calibrated probabilities, "
        '"Not sure" and "None of these". README.md in the zip says how.'
    )
    if status.state.running:
        share = status.done / status.total if status.total else 0.0
        count = f" ({status.done} of {status.total})" if status.total else ""
        st.progress(share, text=status.detail or WEB_STATE_TEXT[status.state] + count)
        return
    archive = offered_web_export(run_dir)
    if archive is not None and status.check is not None:
        st.download_button(
            "⬇️ web.zip",
            data=archive.read_bytes,
            file_name=f"{run.id}-web.zip",
            mime="application/zip",
            on_click="ignore",
            key="download_web",
        )
        st.caption(f"✅ Checked {md(status.check.describe())}. Size: {archive.stat().st_size / 1e6:.1f} MB.")
        return
    if status.state in (ExportState.DISAGREES, ExportState.FAILED) or status.offered:
        st.warning(
            md(status.reason or "The checked zip changed since its check; prepare it again."), icon=":material/block:"
        )
    again = status.state != ExportState.NONE
    if st.button(
        "Prepare again" if again else "Prepare",
        key="web_page_prepare",  # not "prepare_<format>": those are the format columns
        help="Writes the page and checks it in headless Chromium on the run's test photos, in the background.",
    ):
        try:
            start_web_export(run_dir)
        except OSError as error:
            st.error(cannot("prepare the web page", error))
            return
        st.rerun(scope="app")  # polls from now on
