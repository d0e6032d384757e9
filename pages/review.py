"""Review: find what is wrong with the photos before training on them.

The data doctor (core.review.doctor) runs in its own process, never in this
script: "Review this dataset" starts it (core.review.runner.start_review),
a fragment polls its progress, and its report is saved next to the dataset's
other PawLab files, so a reload or another visitor finds the same review.
Fixes are corrections (pages/_corrections.py): the photos on disk are never
moved or deleted, and a corrected photo shows its new state at once.

Top to bottom: the review's state and its button; the summary with the class
balance; the corrections (count, Undo, export); one tab per kind of issue,
only the open one drawn.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from core.data.dataset import DatasetError
from core.review.runner import LOG_FILE, ReviewState, ReviewStatus, review_dir, review_state, start_review
from pages._corrections import corrections_bar
from pages._errors import cannot
from pages._photos import load_dataset
from pages._review_views import ago, group_list, label_issue_grid, outlier_grid, show_summary
from pages._session import session_dataset
from pages._shell import ensure_app_shell
from pages._text import code, md

POLL_SECONDS = 1.0
START_GRACE_SECONDS = 30.0  # a started doctor takes the review's lock within this time
STARTED_KEY = "review_started"  # {dataset root: when this session started a review}
STAGES = {
    "starting": "Starting the data doctor…",
    "features": "Computing each photo's ImageNet features (cached for next time)",
    "analysis": "Looking for label errors, duplicates and outliers",
}
LABELS_TAB = ":material/label_off: Label issues"
DUPLICATES_TAB = ":material/content_copy: Duplicates"
LEAKS_TAB = ":material/call_split: Leaks across splits"
OUTLIERS_TAB = ":material/scatter_plot: Unusual photos"


def read_state(root: Path) -> ReviewState | None:
    try:
        return review_state(root)
    except OSError as error:
        st.error(cannot("read the last review", error))
        return None


def starting(root: Path, state: ReviewState) -> bool:
    """Started by this session moments ago, and the doctor has not taken over yet."""
    started = st.session_state.get(STARTED_KEY, {}).get(str(root))
    if started is None or state.status in (ReviewStatus.RUNNING, ReviewStatus.FAILED):
        return False
    return (state.finished or 0) < started and time.time() - started < START_GRACE_SECONDS


def running(root: Path, state: ReviewState | None) -> bool:
    return state is not None and (state.status == ReviewStatus.RUNNING or starting(root, state))


def start(root: Path) -> None:
    try:
        started = start_review(root)
    except OSError as error:
        st.error(cannot("start the review", error))
        return
    if not started:
        st.toast("A review of this dataset is already running.", icon=":material/hourglass:")
    st.session_state.setdefault(STARTED_KEY, {})[str(root)] = time.time()
    st.rerun(scope="app")  # the panel polls from now on


def status_panel(root: Path, polling: bool) -> None:
    """The review's progress while it runs; else its button and when it last finished."""
    state = read_state(root)
    if state is None:
        return
    if running(root, state):
        stage = STAGES.get(state.stage or "starting", md(state.stage))
        counts = f": {state.done:,} of {state.total:,} photos" if state.stage == "features" and state.total else ""
        st.progress(state.done / state.total if state.total else 0.0, text=f"{stage}{counts}")
        st.caption("The review runs in its own process: you may leave this page and come back.")
        return
    if polling:
        st.rerun(scope="app")  # finished: the whole page shows the new report
    if state.status == ReviewStatus.FAILED:
        st.error(f"{md(state.error)} The details are in {code(review_dir(root) / LOG_FILE)}.")
    with st.container(horizontal=True, vertical_alignment="center"):
        again = state.report is not None
        if st.button("Review again" if again else "Review this dataset", type="secondary" if again else "primary",
                     icon=":material/fact_check:", key="review_start"):
            start(root)
        if state.report is not None:
            seconds = state.report.seconds.get("total")
            took = f" in {seconds:.0f} s" if seconds else ""
            st.caption(f"Last review {ago(state.finished)}: {state.report.photos:,} photos{took}. "
                       "Review again after adding photos.")


def review_status(root: Path) -> None:
    state = read_state(root)
    polling = running(root, state)
    with st.container(key="review_status"):
        st.fragment(status_panel, run_every=POLL_SECONDS if polling else None)(root, polling)


ensure_app_shell()
st.title(":material/fact_check: Review")

root = session_dataset()
if root is None:
    st.info("Choose a dataset first: download cats vs dogs, upload a zip of photos, "
            "or pick a folder on the Dataset page.")
    st.page_link("pages/dataset.py", label="Go to the Dataset page", icon="🖼️")
    st.stop()
try:
    info, _ = load_dataset(root)
except DatasetError as error:
    st.error(f"The chosen dataset cannot be used: {md(error)}")
    st.stop()

st.markdown(f"Dataset **{md(root.name)}**: {info.num_images:,} photos of {len(info.classes)} classes. "
            "The review finds photos in the wrong class folder, copies of the same photo (and copies "
            "that leak across the train, validation and test splits), and photos unlike the others.")
review_status(root)
state = read_state(root)
report = state.report if state else None
if report is None:
    st.stop()

show_summary(report)
mapping = corrections_bar(root)
labels, duplicates, leaks, outliers = st.tabs(
    [LABELS_TAB, DUPLICATES_TAB, LEAKS_TAB, OUTLIERS_TAB], key="review_tab", on_change="rerun")
if labels.open:
    with labels:
        label_issue_grid(root, report.label_issues, info.classes, mapping)
if duplicates.open:
    with duplicates:
        group_list(root, report.duplicates, info.classes, mapping, tab="duplicates")
if leaks.open:
    with leaks:
        group_list(root, report.leaks, info.classes, mapping, tab="leaks")
if outliers.open:
    with outliers:
        outlier_grid(root, report.outliers, info.classes, mapping)
