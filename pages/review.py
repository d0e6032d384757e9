"""Review: find what is wrong with the photos before training on them.

The data doctor (core.review.doctor) runs in its own process, never in this
script: "Review this dataset" starts it (core.review.runner.start_review),
a fragment polls its progress, and its report is saved next to the dataset's
other PawLab files, so a reload or another visitor finds the same review.
Fixes are corrections (pages/_common/corrections.py): the photos on disk are never
moved or deleted, and a corrected photo shows its new state at once.

Top to bottom: the review's state and its button; the summary with the class
balance; the corrections (count, Undo, export); one tab per kind of issue,
only the open one drawn.
"""

from __future__ import annotations

import streamlit as st

from core.data.dataset import DatasetError
from pages._common.corrections import corrections_bar
from pages._common.photos import load_dataset
from pages._common.session import session_dataset
from pages._common.shell import ensure_app_shell
from pages._common.text import md
from pages._review.status import read_state, review_status
from pages._review.views import group_list, label_issue_grid, outlier_grid, show_summary

LABELS_TAB = ":material/label_off: Label issues"
DUPLICATES_TAB = ":material/content_copy: Duplicates"
LEAKS_TAB = ":material/call_split: Leaks across splits"
OUTLIERS_TAB = ":material/scatter_plot: Unusual photos"


ensure_app_shell()
st.title(":material/fact_check: Review")

root = session_dataset()
if root is None:
    st.info(
        "Choose a dataset first: download cats vs dogs, upload a zip of photos, or pick a folder on the Dataset page."
    )
    st.page_link("pages/dataset.py", label="Go to the Dataset page", icon="🖼️")
    st.stop()
try:
    info, _ = load_dataset(root)
except DatasetError as error:
    st.error(f"The chosen dataset cannot be used: {md(error)}")
    st.stop()

st.markdown(
    f"Dataset **{md(root.name)}**: {info.num_images:,} photos of {len(info.classes)} classes. "
    "The review finds photos in the wrong class folder, copies of the same photo (and copies "
    "that leak across the train, validation and test splits), and photos unlike the others."
)
review_status(root)
state = read_state(root)
report = state.report if state else None
if report is None:
    st.stop()

show_summary(report)
mapping = corrections_bar(root)
labels, duplicates, leaks, outliers = st.tabs(
    [LABELS_TAB, DUPLICATES_TAB, LEAKS_TAB, OUTLIERS_TAB], key="review_tab", on_change="rerun"
)
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
