"""Classify page: many photos at once, and the summary table every drop shares.

A zip of photos (or, only with PAWLAB_ALLOW_LOCAL_PATHS, a folder on the
server) is weighed from its headers, extracted with the archive checks,
classified in batches (core.serving.batch), and kept for the session, so the
"When to answer" sliders re-answer it without calling the model again. A few
photos are classified in the script run under a progress bar; more go to a
BatchJob in the background, which a fragment polls for its progress, with a
Cancel button, so the server's script thread is not held. Out:
the table, its CSV (answer and reason included) and a zip of the photos
sorted into one folder per answer.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import get_settings
from core.data.archive import ArchiveError
from core.data.images import check_drop
from core.serving.batch import (
    BatchJob,
    JobState,
    Photo,
    classify_many,
    photos_in_folder,
    photos_in_zip,
    sorted_zip,
)
from core.serving.inference import Prediction, Thresholds, predictions_csv, summary_rows
from pages._classify.answers import answer_title, reanswered
from pages._classify.views import load_predictor
from pages._common.errors import cannot
from pages._common.text import code, markdown_table, md

BATCH_KEY = "classify_batch"  # session state: the last classified zip or folder (Batch)
# Up to this many photos are classified in the script run (a few seconds); more in a BatchJob.
INLINE_PHOTOS = 64
POLL_SECONDS = 0.5  # how often the page looks at a background job's progress
STOP_WAIT_SECONDS = 10  # a replaced job finishes its batch in hand before its photos are removed
# A drop's static table shows this many rows in full; a longer one scrolls in this many pixels.
STATIC_TABLE_ROWS = 12
STATIC_TABLE_HEIGHT = 460


@dataclass
class Batch:
    key: tuple  # what was classified, by which model
    photos: list[Photo]
    work: tempfile.TemporaryDirectory  # the extracted photos; removed with the session
    predictions: list[Prediction] | None = None  # answered with the run's own thresholds, once classified
    job: BatchJob | None = None  # classifying a large batch in the background

    def finished(self) -> list[Prediction] | None:
        """The predictions once classified (inline, or by a job that is DONE), else None."""
        if self.predictions is None and self.job is not None and self.job.state == JobState.DONE:
            self.predictions, self.job = self.job.predictions, None
        return self.predictions

    def discard(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job.wait(STOP_WAIT_SECONDS)
        self.work.cleanup()


def batch_section(run, mtime: float, thresholds: Thresholds) -> None:
    """The zip uploader (and server folder), then the last classified batch's results."""
    upload = st.file_uploader(
        "Drop a zip of photos",
        type=["zip"],
        key="batch_zip",
        help="Photos in any folders inside the zip; other files are left out.",
    )
    folder = ""
    if get_settings().allow_local_paths:
        folder = st.text_input(
            "…or a folder of photos on the server", key="batch_folder", placeholder="/home/me/photos"
        ).strip()
    if upload is None and not folder:
        return
    key = (upload.file_id if upload is not None else folder, run.path, mtime)
    batch = st.session_state.get(BATCH_KEY)
    if batch is None or batch.key != key:
        batch = classify_batch(key, upload, folder, run.path, mtime)
        if batch is None:
            return
        st.session_state[BATCH_KEY] = batch
    classified = batch.finished()
    if classified is None:
        job_status(batch)
        return
    predictions = reanswered(classified, thresholds)
    counts = Counter(answer_title(p) if p.ok else "unreadable" for p in predictions)
    st.markdown(
        f"**{len(predictions)} photos**: " + " · ".join(f"{md(name)} {count}" for name, count in sorted(counts.items()))
    )
    summary_table(predictions, run.classes, key="batch_table", csv_name="batch-predictions.csv")
    st.download_button(
        "⬇️ Download the photos sorted by answer (.zip)",
        key="batch_sorted_zip",
        data=lambda: sorted_zip_bytes(predictions, batch),
        file_name="sorted-by-answer.zip",
        mime="application/zip",
        on_click="ignore",
        help="One folder per answer: each class, unsure, unknown, and unreadable files.",
    )


def job_status(batch: Batch) -> None:
    """A background job's progress while it runs, or why it stopped."""
    assert batch.job is not None  # not finished: a job holds the batch
    job = batch.job
    if job.running:
        job_progress(job)
        return
    batch.work.cleanup()  # stopped: its photos are not needed any more
    if job.state == JobState.CANCELLED:
        st.info(f"Cancelled after {job.done:,} of {job.total:,} photos; nothing was kept.", icon=":material/cancel:")
        if st.button("Classify this zip again", key="batch_again"):
            st.session_state.pop(BATCH_KEY).discard()
            st.rerun()
    else:
        st.error(cannot("classify the photos", job.error or RuntimeError("it stopped")))


@st.fragment(run_every=POLL_SECONDS)
def job_progress(job: BatchJob) -> None:
    """Reruns on its own every POLL_SECONDS; the whole page reruns once the job has stopped."""
    if not job.running:
        st.rerun()
    bar = st.empty()  # above the button, filled once a click is known
    if st.button("Cancel", key="batch_cancel", disabled=job.cancelling, icon=":material/cancel:"):
        job.cancel()  # the job stops after the batch in hand
    text = "Cancelling…" if job.cancelling else f"Classified {job.done:,} of {job.total:,} photos…"
    bar.progress(job.done / max(job.total, 1), text=text)


def classify_batch(key: tuple, upload, folder: str, run_path: str, mtime: float) -> Batch | None:
    """Extract (or list) the photos, then classify them: inline with a progress bar, or in a
    background job when there are many; None after an error shown."""
    previous = st.session_state.pop(BATCH_KEY, None)
    if previous is not None:
        previous.discard()
    if upload is not None and (too_big := check_drop([upload.size])):
        st.error(f"{md(too_big)} Send a smaller zip.", icon=":material/block:")
        return None
    work = tempfile.TemporaryDirectory(prefix="pawlab-batch-")
    try:
        with st.spinner("Unpacking the photos…"):
            photos = (
                photos_in_zip(upload, Path(work.name) / "photos") if upload is not None else photos_in_folder(folder)
            )
    except ArchiveError as error:
        work.cleanup()
        st.error(md(error), icon=":material/block:")
        return None
    except OSError as error:
        work.cleanup()
        st.error(cannot("read the photos" if upload is None else "unpack the zip", error))
        return None
    if not photos:
        work.cleanup()
        where = "in the zip" if upload is not None else f"in {code(folder)}"
        st.warning(f"There are no photos {where} (JPEG, PNG, BMP, GIF or WebP).")
        return None
    predictor = load_predictor(run_path, mtime)
    if len(photos) > INLINE_PHOTOS:
        return Batch(key, photos, work, job=BatchJob.start(predictor, photos))
    bar = st.progress(0.0, text=f"Classifying {len(photos)} photos…")
    predictions = classify_many(
        predictor,
        photos,
        progress=lambda done, total: bar.progress(done / total, text=f"Classified {done} of {total} photos…"),
    )
    bar.empty()
    return Batch(key, photos, work, predictions=predictions)


def sorted_zip_bytes(predictions: list[Prediction], batch: Batch) -> bytes:
    """The sorted zip, made when the download is asked for."""
    target = sorted_zip(predictions, batch.photos, Path(batch.work.name) / "sorted-by-answer.zip")
    try:
        return target.read_bytes()
    finally:
        target.unlink(missing_ok=True)


def summary_table(
    predictions: list[Prediction],
    classes: list[str],
    key: str,
    csv_name: str = "predictions.csv",
    static: bool = False,
) -> None:
    """One row per file (its answer, reason and calibrated probabilities), and the CSV of it.

    ``static``: a Markdown table, for a drop of a few photos, which every
    visitor's browser draws again on each rerun; a zip's many rows keep the
    interactive grid (sorting, search, scrolling). Markdown rather than
    st.table: a tab's first st.table fetches and parses the Arrow reader's code
    (nine script files with the table, seen in benchmarks/bench_class.py's --trace), which
    a class's tabs then all do at the moment of their first drop.
    """
    table = pd.DataFrame(summary_rows(predictions, classes))
    table["prediction"] = table["prediction"].fillna("not classified")
    table["answer"] = [answer_title(p) for p in predictions]
    if static:
        cells = static_summary(table, classes)
        height = "content" if len(table) <= STATIC_TABLE_ROWS else STATIC_TABLE_HEIGHT
        with st.container(height=height, border=False, key=f"{key}_summary"):
            st.markdown(markdown_table(list(cells.columns), cells.values.tolist()))
    else:
        interactive_summary(table, classes, key)
    st.download_button(
        "⬇️ Download as CSV",
        predictions_csv(predictions, classes),
        key=f"{key}_csv",
        file_name=csv_name,
        mime="text/csv",
        on_click="ignore",
    )


def static_summary(table: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The summary as Markdown cells: names escaped, numbers as text."""

    def percent(value) -> str:
        return "" if pd.isna(value) else f"{value:.1%}"

    columns = {
        "File": table["file"].map(md),
        "Most likely": table["prediction"].map(md),
        "Answer": table["answer"].map(md),
        "Confidence": table["confidence"].map(percent),
        "Why not answered": table["reason"].map(md),
        **{f"P({md(name)})": table[f"p_{name}"].map(percent) for name in classes},
        "ms": table["ms"].map(lambda ms: "" if pd.isna(ms) else f"{ms:.0f}"),
        "Problem": table["error"].map(md),
    }
    return pd.DataFrame(columns)


def interactive_summary(table: pd.DataFrame, classes: list[str], key: str) -> None:
    probability_columns = {
        f"p_{name}": st.column_config.NumberColumn(f"P({name})", format="percent") for name in classes
    }
    st.dataframe(
        table,
        hide_index=True,
        key=key,
        column_config={
            "file": "File",
            "prediction": "Most likely",
            "answer": "Answer",
            "reason": st.column_config.TextColumn("Why not answered"),
            "confidence": st.column_config.ProgressColumn("Confidence", format="percent", min_value=0.0, max_value=1.0),
            "ms": st.column_config.NumberColumn("ms", format="%.0f"),
            "error": st.column_config.TextColumn("Problem", width="large"),
            **probability_columns,
        },
    )
