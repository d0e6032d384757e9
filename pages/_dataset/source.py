"""Dataset page, part 1: choosing the dataset (available, new, download, zip, zip + labels, folder).

Which dataset this browser session uses is decided in one place,
pages/_common/session.py: the select box shows exactly that dataset, a new session
starts on the most recently used one, and a value the browser sends is checked
on the server before it is used.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from core.config import get_settings
from core.data import acquire  # by module: tests replace its functions
from core.data.acquire import ACQUIRE_ERRORS
from pages._common.errors import cannot
from pages._common.session import CHOICE_ERRORS, choose_dataset, dataset_options, session_dataset
from pages._common.text import md
from pages._dataset.labelled_zip import labelled_zip_form
from pages._dataset.making import new_dataset_form

CHOICE_KEY = "dataset_choice"  # the select box
PROBLEM_KEY = "dataset_choice_problem"  # why the last choice was refused, shown once


def dataset_picker() -> Path | None:
    """The select box of known datasets and the ways to add one; returns this session's dataset."""
    current = session_dataset()
    _available_datasets(current)
    # With no dataset the ways to add one are the page, not behind an expander: a
    # browser keeps an expander's open/closed state across reruns, so one first
    # drawn closed would stay closed for a newcomer.
    if current is None:
        adder = st.container(border=True)
        adder.markdown(":material/add_circle: **Add a dataset**")
    else:
        adder = st.expander("Add a dataset", expanded=False, icon=":material/add_circle:")
    with adder:
        # Download first: the tutorial's readers start there (and a first tab is the one open).
        download, new, upload, labelled, folder = st.tabs(
            ["Download", "New dataset", "Upload a zip", "Zip + labels", "Folder on the server"]
        )
        with new:
            new_dataset_form(_acquire)
        with download:
            _download_official()
        with upload:
            _upload_zip()
        with labelled:
            labelled_zip_form(_acquire)
        with folder:
            _local_folder()
    return current


def _available_datasets(current: Path | None) -> None:
    problem = st.session_state.pop(PROBLEM_KEY, None)
    if problem:
        st.error(md(problem), icon=":material/block:")
    options = dataset_options(current)
    if not options:
        st.info("No dataset yet. Make one from your own photos, download cats vs dogs, or upload a zip.")
        return
    # The select box shows what the session uses, also when nothing was chosen in it yet
    # (a new session) and after a refused value.
    if current is not None and st.session_state.get(CHOICE_KEY) != str(current):
        st.session_state[CHOICE_KEY] = str(current)
    st.selectbox(
        "Dataset",
        options,
        key=CHOICE_KEY,
        format_func=_describe_root,
        on_change=_on_choice,
        help="Datasets downloaded or uploaded on this server, and folders opened here.",
    )


def _on_choice() -> None:
    # The value comes from the browser: choose_dataset checks it before it becomes a path.
    try:
        choose_dataset(st.session_state[CHOICE_KEY])
    except CHOICE_ERRORS as error:
        st.session_state[PROBLEM_KEY] = str(error)


def _describe_root(root: str) -> str:
    path = Path(root)
    if path.parent == get_settings().datasets_dir.resolve():
        return path.name
    return f"{path.name}  ({path})"


def _acquire(action, *args, **kwargs) -> None:
    """Run an acquisition; on success switch to the new dataset, else explain."""
    try:
        root = action(*args, **kwargs)
        root = choose_dataset(root)
    except (*ACQUIRE_ERRORS, *CHOICE_ERRORS) as error:
        # An OSError (a read-only or full PAWLAB_HOME) is put in words; the others are sentences.
        message = cannot("add the dataset", error) if isinstance(error, OSError) else md(error)
        st.error(message, icon=":material/error:")
        return
    st.rerun()


def _download_official() -> None:
    settings = get_settings()
    st.markdown(
        "Google's **cats_and_dogs_filtered**: 2,000 training and 1,000 validation "
        "photos of cats and dogs, the dataset of the Keras image classification tutorial."
    )
    if st.button("Download cats vs dogs (~65 MB)", icon=":material/download:", key="download_official"):
        bar = ProgressBar(st.progress(0.0, text="Connecting…"))
        _acquire(acquire.fetch_official_dataset, settings, progress=bar)
    st.caption(f"From `{settings.dataset_url}`. A finished download is reused.")


def _upload_zip() -> None:
    uploaded = st.file_uploader(
        "A zip with one folder of photos per class",
        type=["zip"],
        key="dataset_zip",
        help="For example cats/*.jpg and dogs/*.jpg, optionally inside train/ and validation/.",
    )
    name = st.text_input(
        "Name",
        key="dataset_zip_name",
        placeholder="my_pets",
        help="The folder name for this dataset; the zip's name when empty.",
    )
    overwrite = st.checkbox("Replace a dataset with the same name", key="dataset_zip_overwrite")
    if st.button("Import zip", disabled=uploaded is None, key="dataset_zip_import"):
        bar = ProgressBar(st.progress(0.0, text="Extracting…"))
        name = name.strip() or Path(uploaded.name).stem
        _acquire(acquire.import_zip, uploaded, name, overwrite=overwrite, progress=bar)


def _local_folder() -> None:
    if not get_settings().allow_local_paths:
        st.info(
            "Opening folders on the server's disk is switched off: on a shared "
            "server it would let every visitor read the server's files. On your "
            "own machine, start PawLab with `PAWLAB_ALLOW_LOCAL_PATHS=1 streamlit run app.py` "
            "to enable it.",
            icon=":material/lock:",
        )
        return
    path = st.text_input(
        "Folder path",
        key="local_path",
        placeholder="/home/me/photos/pets",
        help="A folder with one sub-folder of photos per class. Photos stay where they are.",
    )
    if st.button("Open folder", disabled=not path.strip(), key="local_path_open"):
        _acquire(acquire.use_local_folder, path.strip())


class ProgressBar:
    """An acquisition progress callback that updates an ``st.progress`` bar.

    Extraction reports every file; redrawing the bar that often would slow
    the extraction down, so the bar is redrawn at most every 0.2 s.
    """

    def __init__(self, bar, min_interval: float = 0.2):
        self.bar = bar
        self.min_interval = min_interval
        self._last_draw = 0.0
        self._last_stage = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = bool(total) and done >= total
        if stage == self._last_stage and not finished and now - self._last_draw < self.min_interval:
            return
        self._last_stage, self._last_draw = stage, now
        verb = "Downloading" if stage == "download" else "Extracting"
        if total:
            fraction = min(1.0, done / total)
            text = f"{verb}… {done / 1e6:.1f} of {total / 1e6:.1f} MB"
        else:
            fraction = 0.0
            text = f"{verb}… {done / 1e6:.1f} MB"
        self.bar.progress(fraction, text=text)
