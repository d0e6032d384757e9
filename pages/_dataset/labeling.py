"""Dataset page, part 5: the Label view, unlabelled photos labelled with the model's help.

Each photo comes with the class PawLab suggests and how sure it is
(core.labeling: frozen embeddings and a linear model on the photos labelled
so far, refitted after every change, so the next suggestions are better).
Photos come in the order core.labeling chooses; one click accepts a
suggestion, a select box picks another class, and "accept all above" takes
every confident one at once. A photo that looks like none of the classes is
offered as "not any of these: exclude".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from core.data.dataset import DatasetError, DatasetInfo
from pages._common.corrections import session_author
from pages._common.photos import folder_signature, thumbnail
from pages._common.text import md

if TYPE_CHECKING:  # core.labeling is imported when the Label tab is drawn, not with the page
    from core.labeling.suggest import Suggestion

PHOTOS_PER_ROUND = 20
EXCLUDE = "not any of these: exclude"
NOTE_KEY = "label_note"  # what the last action did, shown once
LABEL_ERRORS = (DatasetError, OSError, ValueError)


@st.cache_data(show_spinner=False, max_entries=8)
def _suggestions(root: str, signature: tuple, corrections_version: str, count: int) -> list[Suggestion]:
    # Keyed by the folders' times and the corrections: a label given anywhere refreshes it.
    from core.labeling.suggest import suggest_next

    return suggest_next(root, count)


def _corrections_version(root: Path) -> str:
    from core.data.corrections import corrections_file

    path = corrections_file(root)
    return str(path.stat().st_mtime_ns) if path.exists() else ""


def show_labeling(root: Path, info: DatasetInfo) -> None:
    _show_note()
    if not info.unlabeled:
        st.success("Every photo has a class.", icon=":material/check_circle:")
        return
    st.markdown(
        f"**{len(info.unlabeled):,} photos have no class yet.** They are never trained on. "
        "PawLab suggests a class for each from what it learned of the labelled ones; "
        "photos that teach it most come first."
    )
    try:
        with st.spinner("Looking at every photo once (cached afterwards)…"):
            suggestions = _suggestions(
                str(root), folder_signature(str(root)), _corrections_version(root), len(info.unlabeled)
            )
    except LABEL_ERRORS as error:
        st.error(md(error), icon=":material/error:")
        return
    if not suggestions:
        st.success("Every photo has a class.", icon=":material/check_circle:")
        return
    _accept_above(root, suggestions)
    shown = suggestions[:PHOTOS_PER_ROUND]
    columns = st.columns(4)
    for index, suggestion in enumerate(shown):
        with columns[index % 4], st.container(border=True):
            _photo_card(root, info.classes, suggestion)


def _photo_card(root: Path, classes: list[str], suggestion: Suggestion) -> None:
    image = thumbnail(root / suggestion.file)
    if image is not None:
        st.image(image)
    if suggestion.suggested is None:  # nothing labelled yet: nothing to suggest from
        st.caption("Give it a class below.")
        accept_label, accept_value = "", None
    elif suggestion.unknown:
        st.caption(f":orange[Looks like none of the classes] (closest: {md(suggestion.suggested)})")
        accept_label, accept_value = "Exclude", None
    else:
        st.caption(f"{md(suggestion.suggested)} · {suggestion.confidence:.0%} sure")
        accept_label, accept_value = f"Accept {suggestion.suggested}", suggestion.suggested
    key = suggestion.file
    if accept_label:
        _accept_button(root, suggestion.file, accept_label, accept_value)
    # Every other answer: the other classes, and "exclude" unless the button already is it.
    others = [name for name in classes if name != accept_value] + ([] if accept_label == "Exclude" else [EXCLUDE])
    st.selectbox(
        "or",
        others,
        index=None,
        placeholder="another class…",
        key=f"label_other_{key}",
        format_func=md,
        on_change=_record_choice,
        args=(str(root), suggestion.file, f"label_other_{key}"),
        label_visibility="collapsed",
    )


def _accept_button(root: Path, file: str, label: str, value: str | None) -> None:
    st.button(
        md(label),
        key=f"label_accept_{file}",
        icon=":material/check:",
        on_click=_record,
        args=(str(root), {file: value}),
        width="stretch",
    )


def _accept_above(root: Path, suggestions: list[Suggestion]) -> None:
    left, right = st.columns([3, 1])
    threshold = left.slider("Accept every suggestion at least this sure", 50, 100, 95, 1, format="%d%%")
    sure = {
        s.file: s.suggested
        for s in suggestions
        if s.suggested is not None and not s.unknown and s.confidence * 100 >= threshold
    }
    right.button(
        f"Accept {len(sure)}",
        key="label_accept_all",
        disabled=not sure,
        on_click=_record,
        args=(str(root), sure),
        help="Accepts these suggestions at once; the rest are suggested again, better.",
    )


def _record_choice(root: str, file: str, key: str) -> None:
    choice = st.session_state.get(key)
    if choice is not None:
        _record(root, {file: None if choice == EXCLUDE else choice})


def _record(root: str, labels: dict[str, str | None]) -> None:
    # The values come from widgets the browser can forge: record_labels checks each file and class.
    from core.labeling.suggest import record_labels

    try:
        record_labels(root, labels, author=session_author())
    except LABEL_ERRORS as error:
        st.session_state[NOTE_KEY] = ("error", str(error))
        return
    excluded = sum(1 for label in labels.values() if label is None)
    st.session_state[NOTE_KEY] = ("done", f"Labelled {len(labels) - excluded} photo(s), excluded {excluded}.")


def _show_note() -> None:
    note = st.session_state.pop(NOTE_KEY, None)
    if note is None:
        return
    kind, text = note
    if kind == "error":
        st.error(md(text), icon=":material/block:")
    else:
        st.success(md(text), icon=":material/check_circle:")
