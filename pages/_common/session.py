"""This browser session's dataset: the one answer every page uses.

A chosen dataset belongs to the session that chose it (``st.session_state``);
another visitor's choice never changes it. A new session opens the most
recently used of the datasets it may open (core.data.workspace keeps that
list in PAWLAB_HOME/workspace.json). Every value is checked on the server
before it becomes a path (core.data.workspace.resolve_choice): a select box
value or a typed path comes from the browser and may be forged.

    root = session_dataset()    # Path or None, on every page
    root = choose_dataset(value)  # raises CHOICE_ERRORS with a sentence for the person
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data import workspace
from core.data.dataset import DatasetError

# What choosing a dataset raises for a value that is not one (each with a sentence).
CHOICE_ERRORS = (DatasetError, PermissionError, OSError)


def session_dataset() -> Path | None:
    """This session's dataset, checked again; a new session's is the most recently used one."""
    return workspace.session_dataset(st.session_state)


def choose_dataset(value: str | Path) -> Path:
    """Make ``value`` (from the browser, or an acquisition) this session's dataset.

    Checked first; also becomes the dataset that new sessions open.
    """
    return workspace.choose_dataset(st.session_state, value)


def dataset_options(current: Path | None) -> list[str]:
    """What the session may choose from, as select box options (paths as strings)."""
    options = [str(path) for path in workspace.list_datasets()]
    if current is not None and str(current) not in options:
        options.insert(0, str(current))
    return options
