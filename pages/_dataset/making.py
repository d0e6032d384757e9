"""Dataset page, part 3: a dataset made here, filled from drops and the camera.

Teachable Machine's flow: name the classes, then add photos to one class
after another. A drop is added the moment it arrives and a camera snapshot
the moment it is taken; each widget then comes back empty (a new key), so
the next drop or snapshot follows at once and the counts above update.
Everything is checked and stored by core.data.maker; this module only
draws. Every name shown comes from a visitor and is escaped.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data import maker
from core.data.dataset import DatasetError, DatasetInfo
from core.data.maker import AddReport
from pages._common.photos import thumbnail
from pages._common.text import code, md

UNLABELED_CHOICE = "(no class yet: label later)"
TARGET_KEY = "maker_target"
ROUND_KEY = "maker_round"  # bumped after each drop or snapshot: the widgets come back empty
REPORT_KEY = "maker_report"  # the last drop's report, shown once
ADDED_KEY = "maker_added"  # what this session added, newest first (for "remove")
RECENT_SHOWN = 12
MAKER_ERRORS = (DatasetError, OSError)


def new_dataset_form(create) -> None:
    """The "New dataset" tab of the picker; ``create(action, *args)`` switches to the result."""
    st.markdown("Name the classes now; add photos to each from your files or the camera next.")
    name = st.text_input("Name", key="new_dataset_name", placeholder="garden_birds")
    classes = st.text_input(
        "Classes, comma-separated", key="new_dataset_classes", placeholder="robin, blue tit, sparrow"
    )
    names = [part for part in classes.split(",") if part.strip()]
    if st.button("Create dataset", key="new_dataset_create", disabled=not (name.strip() and names)):
        create(maker.new_dataset, name, names)


def _round() -> int:
    return st.session_state.setdefault(ROUND_KEY, 0)


def _store(root: str, photos: list[tuple[str, bytes]], what: str) -> None:
    """Add ``photos`` to the chosen class; the report is kept for the next run to show."""
    target = st.session_state.get(TARGET_KEY)
    class_name = None if target in (None, UNLABELED_CHOICE) else target
    try:
        report = maker.add_photos(root, class_name, photos)
    except MAKER_ERRORS as error:
        report = AddReport()
        st.session_state[REPORT_KEY] = (what, report, str(error))
    else:
        st.session_state[REPORT_KEY] = (what, report, None)
        added = st.session_state.setdefault(ADDED_KEY, [])
        added[:0] = list(reversed(report.added))
    st.session_state[ROUND_KEY] = _round() + 1


def _on_drop(root: str, key: str) -> None:
    files = st.session_state.get(key) or []
    _store(root, [(file.name, file.getvalue()) for file in files], "drop")


def _on_snapshot(root: str, key: str) -> None:
    snapshot = st.session_state.get(key)
    if snapshot is not None:
        _store(root, [("snapshot.jpg", snapshot.getvalue())], "snapshot")


def show_adder(root: Path, info: DatasetInfo) -> None:
    """The "Add photos" tab of a dataset made here."""
    counts = _class_counts(info)
    choices = [*info.classes, UNLABELED_CHOICE]
    if st.session_state.get(TARGET_KEY) not in choices:
        st.session_state[TARGET_KEY] = choices[0]
    columns = st.columns(min(6, len(choices)))
    for index, choice in enumerate(choices):
        label = "Unlabelled" if choice == UNLABELED_CHOICE else choice
        columns[index % len(columns)].metric(md(label), counts.get(choice, len(info.unlabeled)))
    st.radio("Add to", choices, key=TARGET_KEY, horizontal=True, format_func=md)
    _show_report()

    drop_key, camera_key = f"maker_drop_{_round()}", f"maker_camera_{_round()}"
    drop, camera = st.columns(2)
    with drop:
        st.file_uploader(
            "Drop photos",
            accept_multiple_files=True,
            type=["jpg", "jpeg", "png", "webp", "bmp", "gif"],
            key=drop_key,
            on_change=_on_drop,
            args=(str(root), drop_key),
            help="Added as soon as they arrive; a photo already in the dataset is not added twice.",
        )
    with camera:
        st.camera_input(
            "Camera: each snapshot is added",
            key=camera_key,
            on_change=_on_snapshot,
            args=(str(root), camera_key),
        )
    _recently_added(root)
    _manage_classes(root, info)


def _class_counts(info: DatasetInfo) -> dict[str, int]:
    counts = dict.fromkeys(info.classes, 0)
    for per_class in info.counts().values():
        for name, count in per_class.items():
            counts[name] += count
    return counts


def _show_report() -> None:
    shown = st.session_state.pop(REPORT_KEY, None)
    if shown is None:
        return
    what, report, problem = shown
    if problem:
        st.error(md(problem), icon=":material/block:")
        return
    if report.added:
        noun = "snapshot" if what == "snapshot" else f"{len(report.added)} photo(s)"
        st.success(f"Added {noun}.", icon=":material/check_circle:")
    for skipped in report.skipped:
        st.warning(f"{code(skipped.name)} was not added: {md(skipped.reason)}.", icon=":material/info:")


def _recently_added(root: Path) -> None:
    added = [path for path in st.session_state.get(ADDED_KEY, []) if (root / path).is_file()][:RECENT_SHOWN]
    if not added:
        return
    st.markdown("**Added in this session** (newest first)")
    columns = st.columns(6)
    for index, relative in enumerate(added):
        with columns[index % 6]:
            image = thumbnail(root / relative)
            if image is not None:
                st.image(image, caption=md(relative.split("/")[0]))
            st.button(
                "Remove",
                key=f"maker_remove_{relative}",
                icon=":material/delete:",
                on_click=_remove_photo,
                args=(str(root), relative),
            )


def _remove_photo(root: str, relative: str) -> None:
    try:
        maker.remove_photo(root, relative)
    except MAKER_ERRORS as error:
        st.session_state[REPORT_KEY] = ("remove", AddReport(), str(error))


def _manage_classes(root: Path, info: DatasetInfo) -> None:
    with st.expander("Classes: add, rename, remove", icon=":material/edit:"):
        new = st.text_input("New class", key="maker_new_class")
        if st.button("Add class", key="maker_add_class", disabled=not new.strip()):
            _change(maker.add_class, root, new)
        if not info.classes:
            return
        old = st.selectbox("Class", info.classes, key="maker_class", format_func=md)
        renamed = st.text_input("New name", key="maker_rename_to")
        rename, remove = st.columns(2)
        if rename.button("Rename", key="maker_rename", disabled=not renamed.strip()):
            _change(maker.rename_class, root, old, renamed)
        if remove.button("Remove class", key="maker_remove_class", help="Its photos become unlabelled: none is lost."):
            _change(maker.remove_class, root, old)


def _change(action, *args) -> None:
    try:
        action(*args)
    except MAKER_ERRORS as error:
        st.error(md(error), icon=":material/block:")
        return
    st.rerun()
