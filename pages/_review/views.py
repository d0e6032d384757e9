"""Review page: the report's summary and its ranked photo grids.

Everything comes from a saved DoctorReport (core.review.doctor; ranked most
suspicious first) and the dataset's corrections (pages/_common/corrections.py), so
a correction shows on its photo at once, without running the doctor again.
"""

from __future__ import annotations

import hashlib
import html
import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.review.doctor import DoctorReport, DuplicateGroup, LabelIssue, Outlier
from pages._common.corrections import photo_fixes
from pages._common.photos import thumbnail
from pages._common.text import md

PHOTOS_PER_PAGE = 10
GROUPS_PER_PAGE = 5
MEMBERS_SHOWN = 5  # photos of one duplicate group side by side
COLUMNS = 5
CARD_WIDTH = 150  # px, the narrowest a photo card gets
LEAK_WHY = (
    "A photo in both train and test makes the test score a lie: the model is graded on "
    "photos it learnt. Exclude the copies outside train, or all but one."
)


# --- Summary ------------------------------------------------------------------------------


def ago(finished: float | None) -> str:
    if finished is None:
        return "never"
    minutes = (time.time() - finished) / 60
    when = time.strftime("%d %b %Y %H:%M", time.localtime(finished))
    if minutes < 1:
        return f"just now ({when})"
    if minutes < 120:
        return f"{minutes:.0f} minutes ago ({when})"
    return when


def show_summary(report: DoctorReport) -> None:
    """Four counts and the leak warning beside the class balance chart."""
    left, right = st.columns([1, 1], gap="medium")
    with left:
        _counts(report)
    with right:
        st.plotly_chart(balance_figure(report.class_balance), key="review_balance", config={"displayModeBar": False})
        st.caption(balance_note(report))
    if report.leaks:
        count = len(report.leaks)
        st.warning(
            f"**{count} duplicate group{'s cross' if count != 1 else ' crosses'} splits.** {LEAK_WHY} "
            f"{report.leak_advice}",
            icon=":material/warning:",
        )


def _counts(report: DoctorReport) -> None:
    first, second = st.columns(2)
    first.metric(
        "Suspected label errors",
        len(report.label_issues),
        border=True,
        help="Photos whose class folder disagrees with a model that never saw them.",
    )
    second.metric(
        "Duplicate groups", len(report.duplicates), border=True, help="Byte-identical files and near-identical photos."
    )
    first.metric(
        "Leaks across splits",
        len(report.leaks),
        border=True,
        help="Duplicate groups whose photos fall in different splits. " + LEAK_WHY,
    )
    flagged = sum(outlier.flagged for outlier in report.outliers)
    second.metric(
        "Unusual photos",
        flagged,
        border=True,
        help="Photos cleanlab calls outliers: unlike the others, often photos of something "
        f"else, blank or broken pictures. The tab ranks the first {len(report.outliers)} "
        "by how unusual they are; most of the rest of the list is usually fine.",
    )


def balance_note(report: DoctorReport) -> str:
    """Under the chart: what training will do about uneven classes, and the switch that changes it."""
    balance = report.training_balance()
    note = md(balance.describe())  # names classes, which are folder names
    if balance.weighted:
        note += " Switch off **Balance classes** on the Train page to count every photo the same."
    return note


def balance_figure(balance: dict[str, dict[str, int]]) -> go.Figure:
    """Photos per class, one group of bars per split."""
    classes = list(next(iter(balance.values()), {}))
    figure = go.Figure(
        [
            # Plotly reads names as HTML: class names are folder names.
            go.Bar(
                name=split,
                x=[html.escape(name) for name in classes],
                y=[counts.get(name, 0) for name in classes],
                text=[counts.get(name, 0) for name in classes],
                textposition="outside",
            )
            for split, counts in balance.items()
        ]
    )
    figure.update_layout(
        barmode="group",
        title="Class balance (photos per class and split)",
        yaxis_title="photos",
        height=250,
        margin=dict(t=40, b=10, l=10, r=10),
        legend_title_text="split",
        xaxis=dict(type="category"),
    )
    return figure


# --- Grids ----------------------------------------------------------------------------------


def _page(items: list, per_page: int, key: str) -> list:
    """This page's items; a pager when there is more than one page."""
    pages = max(1, -(-len(items) // per_page))
    page = st.pagination(pages, key=key) if pages > 1 else 1
    page = page if 1 <= page <= pages else 1
    return items[(page - 1) * per_page : page * per_page]


def _photo_key(prefix: str, file: str) -> str:
    return f"{prefix}_{hashlib.sha1(file.encode(), usedforsecurity=False).hexdigest()[:12]}"


def _photo(file: str) -> None:
    image = thumbnail(file)
    if image is None:
        st.warning(f"{md(Path(file).name)} can no longer be read.")
    else:
        st.image(image, width="stretch")


def label_issue_grid(root: Path, issues: list[LabelIssue], classes: list[str], mapping: dict) -> None:
    if not issues:
        st.success("No photo looks mislabelled: every class folder agrees with the model.")
        return
    st.caption(
        f"{len(issues)} photo{'s' if len(issues) != 1 else ''} whose folder disagrees with a model that never saw them, "
        "most likely mislabelled first. Move each one, exclude it, or leave it."
    )
    with st.grid(COLUMNS, min_column_width=CARD_WIDTH, gap="small"):
        for issue in _page(issues, PHOTOS_PER_PAGE, "review_page_labels"):
            key = _photo_key("labels", issue.file)
            with st.container(border=True, key=f"card_{key}"):
                _photo(issue.file)
                st.markdown(f"**{md(issue.given)}** → {md(issue.suggested)}?")
                photo_fixes(root, issue.file, classes, mapping, key=key, suggested=issue.suggested)
                st.caption(f"{md(Path(issue.file).name)} · {issue.split} · label quality {issue.score:.2f}")


def outlier_grid(root: Path, outliers: list[Outlier], classes: list[str], mapping: dict) -> None:
    if not outliers:
        st.success("No photo stands out.")
        return
    st.caption(
        "The photos least like the rest of the dataset, most unusual first: look for photos "
        "of something else, blank or broken pictures. Most of the list is usually fine."
    )
    with st.grid(COLUMNS, min_column_width=CARD_WIDTH, gap="small"):
        for outlier in _page(outliers, PHOTOS_PER_PAGE, "review_page_outliers"):
            key = _photo_key("outliers", outlier.file)
            with st.container(border=True, key=f"card_{key}"):
                _photo(outlier.file)
                st.markdown(f"**{md(Path(outlier.file).parent.name)}** · {outlier.split}")
                photo_fixes(root, outlier.file, classes, mapping, key=key)
                st.caption(f"{md(Path(outlier.file).name)} · outlier score {outlier.score:.2f}")


def group_list(root: Path, groups: list[DuplicateGroup], classes: list[str], mapping: dict, *, tab: str) -> None:
    if not groups:
        st.success(
            "No photo appears in more than one split." if tab == "leaks" else "No duplicates: every photo is different."
        )
        return
    st.caption(
        LEAK_WHY
        if tab == "leaks"
        else "Copies of one photo count twice in training. PawLab keeps each group in one split, "
        "except across split folders you made: there they leak."
    )
    for index, group in enumerate(_page(groups, GROUPS_PER_PAGE, f"review_page_{tab}")):
        with st.container(border=True, key=f"review_group_{tab}_{index}"):
            kind = "Identical files" if group.exact else f"Near duplicates (similarity {group.score:.2f})"
            splits = " + ".join(sorted(group.splits))
            leak = " · :red[**leak**]" if len(group.splits) > 1 else ""
            st.markdown(f"**{kind}** · {len(group.files)} photos in {splits}{leak}")
            columns = st.columns(COLUMNS)
            for position, member in enumerate(group.files[:MEMBERS_SHOWN]):
                with columns[position]:
                    _photo(member.file)
                    st.markdown(f"**{member.split}** · {md(Path(member.file).parent.name)}")
                    st.caption(md(Path(member.file).name))
                    photo_fixes(root, member.file, classes, mapping, key=_photo_key(tab, member.file))
            if len(group.files) > MEMBERS_SHOWN:
                st.caption(f"and {len(group.files) - MEMBERS_SHOWN} more copies")
