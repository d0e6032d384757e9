"""The review's lifecycle on the page: start the doctor, poll it, show its state.

The data doctor runs in its own process (core.review.runner); this piece only
reads the state it writes and asks for a new review. A review this session
started a moment ago counts as running until the doctor takes the lock.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from core.review import runner
from core.review.runner import LOG_FILE, ReviewState, ReviewStatus, review_dir, review_state
from pages._common.errors import cannot
from pages._common.text import code, md
from pages._review.views import ago

POLL_SECONDS = 1.0
START_GRACE_SECONDS = 30.0  # a started doctor takes the review's lock within this time
STARTED_KEY = "review_started"  # {dataset root: when this session started a review}
STAGES = {
    "starting": "Starting the data doctor…",
    "features": "Computing each photo's ImageNet features (cached for next time)",
    "analysis": "Looking for label errors, duplicates and outliers",
}


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
        started = runner.start_review(root)  # through the module, so a test can stand in for the doctor
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
        if st.button(
            "Review again" if again else "Review this dataset",
            type="secondary" if again else "primary",
            icon=":material/fact_check:",
            key="review_start",
        ):
            start(root)
        if state.report is not None:
            seconds = state.report.seconds.get("total")
            took = f" in {seconds:.0f} s" if seconds else ""
            st.caption(
                f"Last review {ago(state.finished)}: {state.report.photos:,} photos{took}. "
                "Review again after adding photos."
            )


def review_status(root: Path) -> None:
    state = read_state(root)
    polling = running(root, state)
    with st.container(key="review_status"):
        st.fragment(status_panel, run_every=POLL_SECONDS if polling else None)(root, polling)
