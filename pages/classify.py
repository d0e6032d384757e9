"""Classify: drop photos, see what a trained model answers, and why.

Top to bottom: pick a completed run (best test accuracy first); "When to
answer" (the run's thresholds, adjustable); then three tabs: photos (drop or
camera: a summary and each photo's answer, calibrated probabilities and a
Grad-CAM heatmap), many photos (a zip, sorted by answer) and the model to
take elsewhere (checked exports, model card; drawn only while open). The model is loaded once per
run and model file (st.cache_resource) and every drop is classified in one
batched call (core.serving.inference); moving a threshold re-answers the
predictions already made.
"""

import streamlit as st

from core.data.images import IMAGE_EXTENSIONS, check_drop
from core.serving.inference import RunNotReadyError, Thresholds, classifiable_runs
from pages._classify.answers import calibration_caption, reanswered, when_to_answer
from pages._classify.batch import batch_section, summary_table
from pages._classify.export import EXPORT_TAB, export_section
from pages._classify.views import classify, load_predictor, model_mtime, run_label, show_prediction
from pages._common.shell import ensure_app_shell
from pages._common.text import code, md


def photos_section(run, mtime: float, thresholds: Thresholds, calibration: str) -> None:
    """Drop or take photos; a summary of the drop, then each photo's answer."""
    uploads = st.file_uploader(
        "Drop photos here",
        type=[ext.lstrip(".") for ext in IMAGE_EXTENSIONS],
        accept_multiple_files=True,
        help="JPEG, PNG, BMP, GIF or WebP; as many as you like.",
    )
    with st.expander("📷 Take a photo with the camera"):
        # The camera (and the browser's permission prompt) only starts when asked for.
        camera_photo = st.camera_input("Take a photo") if st.toggle("Use my camera") else None
    files = [(upload.name, upload.getvalue()) for upload in uploads or []]
    if camera_photo is not None:
        files.append(("camera photo.jpg", camera_photo.getvalue()))
    if not files:
        return
    # Over the limits (PAWLAB_MAX_DROP_*): one sentence, nothing classified.
    too_much = check_drop([len(data) for _, data in files])
    if too_much:
        st.error(f"{md(too_much)} Drop fewer or smaller photos.", icon=":material/block:")
        return
    with st.spinner(f"Classifying {len(files)} photo{'s' if len(files) > 1 else ''}…"):
        predictions, previews = classify(run.path, mtime, files)
    predictions = reanswered(predictions, thresholds)
    st.caption(calibration)
    if len(predictions) > 1:
        st.subheader("Summary", anchor=False)
        summary_table(predictions, run.classes, key="drop_table", static=True)
    for index, (prediction, preview, (_, photo)) in enumerate(zip(predictions, previews, files)):
        if not prediction.ok:
            st.error(md(prediction.error), icon="🚫")
            continue
        with st.container(border=True):
            show_prediction(index, prediction, preview, photo, run.path, mtime)


ensure_app_shell()
st.title(":material/image_search: Classify")

runs = classifiable_runs()
if not runs:
    st.info("There is no trained model yet. Train one first, then come back to classify photos.", icon="🐣")
    st.page_link("pages/train.py", label="Train a model", icon="📈")
    st.stop()

by_id = {run.id: run for run in runs}
run_id = st.selectbox(
    "Model",
    list(by_id),
    format_func=lambda i: run_label(by_id[i]),
    help="Completed training runs, best test accuracy first.",
)
run = by_id[run_id]
mtime = model_mtime(run)
try:
    predictor = load_predictor(run.path, mtime)
except (RunNotReadyError, OSError, ValueError) as error:
    st.error(f"This model cannot be loaded: {md(error)}", icon="⚠️")
    st.stop()
st.caption(
    f"Run {code(run.id)} · knows {len(run.classes)} classes: {', '.join(map(md, run.classes))}. "
    "It answers with one of them, “Not sure”, or (when it can tell) “None of these”."
)
thresholds = when_to_answer(predictor, run)

# The two uploaders are drawn in every run, open or not, so a drop survives a look
# at another tab; the exports and model card only while their tab is open (every
# rerun of every visitor's page draws what it contains).
photos_tab, many_tab, export_tab = st.tabs(
    ["🖼️ Photos", "🗂️ Many photos (zip)", EXPORT_TAB], key="classify_tab", on_change="rerun"
)
with photos_tab:
    photos_section(run, mtime, thresholds, calibration_caption(predictor))
with many_tab:
    batch_section(run, mtime, thresholds)
if export_tab.open:
    with export_tab:
        export_section(run)
