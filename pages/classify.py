"""Classify: drop photos, see what a trained model thinks they are, and why.

Top to bottom: pick a completed run (best test accuracy first); download it;
drop photos or take one with the camera; a summary of the drop; then each
photo with its class probabilities and a Grad-CAM heatmap. The model is
loaded once per run and model file (st.cache_resource) and every drop is
classified in one batched call (core.serving.inference).
"""

import pandas as pd
import streamlit as st

from core.data.images import IMAGE_EXTENSIONS, check_drop
from core.serving.inference import RunNotReadyError, classifiable_runs, predictions_csv, summary_rows
from pages._classify_views import (
    classify, export_section, load_predictor, model_mtime, run_label, show_prediction,
)
from pages._shell import ensure_app_shell
from pages._text import code, md

ensure_app_shell()

st.title(":material/image_search: Classify")

runs = classifiable_runs()
if not runs:
    st.info("There is no trained model yet. Train one first, then come back to classify photos.",
            icon="🐣")
    st.page_link("pages/train.py", label="Train a model", icon="📈")
    st.stop()

by_id = {run.id: run for run in runs}
run_id = st.selectbox("Model", list(by_id), format_func=lambda i: run_label(by_id[i]),
                      help="Completed training runs, best test accuracy first.")
run = by_id[run_id]
mtime = model_mtime(run)
try:
    load_predictor(run.path, mtime)
except (RunNotReadyError, OSError, ValueError) as error:
    st.error(f"This model cannot be loaded: {md(error)}", icon="⚠️")
    st.stop()
st.caption(f"Run {code(run.id)} · knows {len(run.classes)} classes: {', '.join(map(md, run.classes))}")

with st.expander("⬇️ Download this model"):
    export_section(run)

uploads = st.file_uploader(
    "Drop photos here", type=[ext.lstrip(".") for ext in IMAGE_EXTENSIONS],
    accept_multiple_files=True, help="JPEG, PNG, BMP, GIF or WebP; as many as you like.",
)
with st.expander("📷 Take a photo with the camera"):
    # The camera (and the browser's permission prompt) only starts when asked for.
    camera_photo = st.camera_input("Take a photo") if st.toggle("Use my camera") else None

files = [(upload.name, upload.getvalue()) for upload in uploads or []]
if camera_photo is not None:
    files.append(("camera photo.jpg", camera_photo.getvalue()))
if not files:
    st.stop()
# Over the limits (PAWLAB_MAX_DROP_*): one sentence, nothing classified.
too_much = check_drop([len(data) for _, data in files])
if too_much:
    st.error(f"{md(too_much)} Drop fewer or smaller photos.", icon=":material/block:")
    st.stop()

with st.spinner(f"Classifying {len(files)} photo{'s' if len(files) > 1 else ''}…"):
    predictions, previews = classify(run.path, mtime, files)
st.caption(
    f"The model picks one of {', '.join(map(md, run.classes))} for every photo, "
    "even for a photo of something else."
)

if len(predictions) > 1:
    st.subheader("Summary", anchor=False)
    table = pd.DataFrame(summary_rows(predictions, run.classes))
    table["prediction"] = table["prediction"].fillna("not classified")
    probability_columns = {f"p_{name}": st.column_config.NumberColumn(f"P({name})", format="percent")
                           for name in run.classes}
    st.dataframe(table, hide_index=True, column_config={
        "file": "File", "prediction": "Prediction",
        "confidence": st.column_config.ProgressColumn("Confidence", format="percent",
                                                      min_value=0.0, max_value=1.0),
        "ms": st.column_config.NumberColumn("ms", format="%.0f"),
        "error": st.column_config.TextColumn("Problem", width="large"), **probability_columns,
    })
    st.download_button("⬇️ Download as CSV", predictions_csv(predictions, run.classes),
                       file_name="predictions.csv", mime="text/csv", on_click="ignore")

for index, (prediction, preview) in enumerate(zip(predictions, previews)):
    if not prediction.ok:
        st.error(md(prediction.error), icon="🚫")
        continue
    with st.container(border=True):
        show_prediction(index, prediction, preview, run.path, mtime)
