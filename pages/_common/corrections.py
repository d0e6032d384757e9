"""Fixing photos from the pages: relabel or exclude, undo, count, export.

Nothing here touches the user's files. core.data.corrections keeps one
corrections file per dataset and checks every value on the server (a path
inside the dataset, one of its classes): a file name or class that comes
from the browser or a saved report may be forged, and a refused one is
explained under the photo, never used. The Dataset and Train pages show the
dataset with its corrections applied; a run snapshots them when submitted.

The file is shared by every visitor of the dataset, so each change carries
this session's id (``session_author``) and Undo takes back only this
session's own. A damaged file is one warning sentence, never a crash.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import streamlit as st

from core.config import get_settings
from core.data import corrections as store  # by module: a test may replace a function
from core.data.dataset import DatasetError
from pages._common.errors import cannot
from pages._common.text import md

MESSAGE_KEY = "corrections_message"  # {photo key: why its last correction was refused}
EXPORT_KEY = "corrections_prepared_zip"  # this session's prepared zip: (root, path, corrections revision)
AUTHOR_KEY = "corrections_author"  # this session's id, recorded with each of its changes
EXPORTS_FOLDER = "exports"
EXPORT_MAX_AGE = 24 * 3600  # seconds a prepared zip is kept


def corrections_line(mapping: dict[str, str | None]) -> str | None:
    """'3 corrections: 2 relabelled, 1 excluded', or None when there are none."""
    if not mapping:
        return None
    excluded = sum(label is None for label in mapping.values())
    count = len(mapping)
    return f"{count} correction{'s' if count != 1 else ''}: {count - excluded} relabelled, {excluded} excluded"


def session_author() -> str:
    """This browser session's id: made once, kept in its session state like its dataset."""
    return st.session_state.setdefault(AUTHOR_KEY, uuid.uuid4().hex)


def damage_warning(corrections: store.Corrections, *, kept_aside: bool = False) -> None:
    """The sentence saying the corrections file is damaged, when it is; with ``kept_aside``,
    a caption naming the damaged file kept before (shown where corrections are managed)."""
    if corrections.damage:
        st.warning(md(corrections.damage), icon=":material/warning:")
    elif kept_aside and corrections.notice:
        st.caption(md(corrections.notice))


def corrections_mapping(root: str | Path) -> dict[str, str | None]:
    return store.load_corrections(root).mapping


def corrections_note(root: str | Path, *, link: bool = True) -> None:
    """The count of this dataset's corrections (nothing when there are none), with a link to Review."""
    corrections = store.load_corrections(root)
    damage_warning(corrections)
    line = corrections_line(corrections.mapping)
    if line is None:
        return
    with st.container(horizontal=True, vertical_alignment="center", key="corrections_note"):
        st.markdown(f":material/edit_note: **{line}**. Training uses them; the photos on disk are untouched.")
        if link:
            st.page_link("pages/review.py", label="Review", icon=":material/fact_check:")


def relative_path(root: str | Path, file: str | Path) -> str | None:
    """``file`` relative to the dataset root, "/"-separated; None when it is outside it."""
    try:
        return Path(file).resolve().relative_to(Path(root).resolve()).as_posix()
    except (ValueError, OSError):
        return None


def class_now(mapping: dict[str, str | None], root: str | Path, file: str | Path) -> str | None:
    """The class a photo trains as: its correction, else its folder (None: excluded)."""
    relative = relative_path(root, file)
    return mapping[relative] if relative in mapping else Path(file).parent.name


def _correct(root: str, file: str, label: str | None, classes: list[str], key: str) -> None:
    messages = st.session_state.setdefault(MESSAGE_KEY, {})
    messages.pop(key, None)
    try:
        store.add_correction(root, file, label, classes=classes, author=session_author())
    except DatasetError as error:
        messages[key] = md(error)
        return
    except OSError as error:
        messages[key] = cannot("save the correction", error)
        return
    name = md(Path(file).name)
    st.toast(f"{name} excluded." if label is None else f"{name} moved to {md(label)}.", icon=":material/check:")


def _correct_from_select(root: str, file: str, classes: list[str], key: str, select_key: str) -> None:
    label = st.session_state.get(select_key)
    if label is not None:
        _correct(root, file, label, classes, key)


def photo_fixes(
    root: str | Path,
    file: str,
    classes: list[str],
    mapping: dict[str, str | None],
    *,
    key: str,
    suggested: str | None = None,
    emphasis: bool = True,
) -> None:
    """Under a photo: its state once corrected, then Move to <suggested> (the primary button
    when ``emphasis``), Move to the other class or a select of the others, and Exclude."""
    folder_class, now = Path(file).parent.name, class_now(mapping, root, file)
    if now is None:
        st.badge("Excluded", icon=":material/block:", color="orange")
    elif now != folder_class:
        st.badge(f"Moved to {md(now)}", icon=":material/check:", color="green")
    args = (str(root), str(file))
    with st.container(horizontal=True, gap="small"):
        if suggested is not None and suggested != now:
            st.button(
                f"Move to {md(suggested)}",
                key=f"{key}_move",
                type="primary" if emphasis else "secondary",
                on_click=_correct,
                args=(*args, suggested, classes, key),
            )
        others = [name for name in classes if name not in (now, suggested)]
        if len(others) == 1:  # two classes: no need for a select box
            st.button(
                f"Move to {md(others[0])}",
                key=f"{key}_move_other",
                on_click=_correct,
                args=(*args, others[0], classes, key),
            )
        if now is not None:
            st.button(
                "Exclude",
                key=f"{key}_exclude",
                icon=":material/block:",
                on_click=_correct,
                args=(*args, None, classes, key),
            )
    if len(others) > 1:
        select_key = f"{key}_other_{now}"  # a new widget once the class changed
        st.selectbox(
            "Move to another class",
            others,
            index=None,
            placeholder="Move to another class…",
            key=select_key,
            label_visibility="collapsed",
            on_change=_correct_from_select,
            args=(*args, classes, key, select_key),
        )
    message = st.session_state.get(MESSAGE_KEY, {}).get(key)
    if message:
        st.error(message, icon=":material/block:")


def _undo(root: str) -> None:
    try:
        undone = store.undo_last(root, author=session_author())
    except OSError as error:
        st.session_state.setdefault(MESSAGE_KEY, {})["undo"] = cannot("undo the correction", error)
        return
    if undone is None:  # its changes left the kept history meanwhile
        st.toast("This session has no correction left to undo.", icon=":material/info:")
        return
    st.toast(f"Your correction of {md(Path(undone.file).name)} was undone.", icon=":material/undo:")


def corrections_bar(root: Path) -> dict[str, str | None]:
    """The count, Undo and the export of the corrected dataset; returns the corrections."""
    corrections = store.load_corrections(root)
    mapping = corrections.mapping
    damage_warning(corrections, kept_aside=True)
    with st.container(horizontal=True, vertical_alignment="center", key="corrections_bar"):
        st.markdown(
            f":material/edit_note: **{corrections_line(mapping) or 'No corrections yet'}**",
            help="Corrections never move or delete your files: the Dataset page, the next "
            "training run and the export apply them.",
            width="content",
        )
        last = corrections.last_by(session_author())  # never another visitor's
        st.button(
            "Undo the last correction",
            icon=":material/undo:",
            key="corrections_undo",
            disabled=last is None,
            on_click=_undo,
            args=(str(root),),
            help=f"Your last correction, {md(last.file)}: back to what it was before; other visitors' corrections stay."
            if last
            else "This session has made no correction to undo.",
        )
        export_buttons(root, corrections.revision)
    message = st.session_state.get(MESSAGE_KEY, {}).pop("undo", None)
    if message:
        st.error(message)
    return mapping


def export_buttons(root: Path, version: int) -> None:
    """'Export the corrected dataset' zips it (a temp file under PAWLAB_HOME), then offers it."""
    if st.button("Export the corrected dataset", icon=":material/archive:", key="corrections_export"):
        bar = st.progress(0.0, text="Zipping the corrected dataset…")
        try:
            path = _export(
                root, lambda done, total: bar.progress(done / total, text=f"Zipping… {done} of {total} photos")
            )
        except (DatasetError, OSError) as error:
            st.error(cannot("export the corrected dataset", error) if isinstance(error, OSError) else md(error))
            return
        finally:
            bar.empty()
        previous = st.session_state.get(EXPORT_KEY)
        if previous:  # this session's older zip
            shutil.rmtree(Path(previous[1]).parent, ignore_errors=True)
        st.session_state[EXPORT_KEY] = (str(root), str(path), version)
    prepared = st.session_state.get(EXPORT_KEY)
    if prepared and prepared[0] == str(root) and prepared[2] == version and Path(prepared[1]).is_file():
        path = Path(prepared[1])
        st.download_button(
            f"Download {md(path.name)} ({path.stat().st_size / 1e6:.1f} MB)",
            data=partial(path.read_bytes),
            file_name=path.name,
            mime="application/zip",
            on_click="ignore",
            icon=":material/download:",
            key="corrections_download",
        )


def _export(root: Path, progress) -> Path:
    folder = get_settings().home / EXPORTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():  # zips prepared long ago, by any session
        if old.is_dir() and time.time() - old.stat().st_mtime > EXPORT_MAX_AGE:
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="corrected-", dir=folder))
    return store.export_corrected_zip(root, work / f"{root.name}-corrected.zip", progress)
