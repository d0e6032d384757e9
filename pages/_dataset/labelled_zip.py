"""Dataset page, part 4: a zip of photos with a labels file (Kaggle's labels.csv, Hugging Face's metadata.csv).

The columns are guessed from the zip's headers and the CSV (nothing is
extracted yet) and shown for confirmation with what the import would make:
classes, counts, photos left unlabelled, rows without a photo. Only the
Import button copies anything (core.data.importing).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.acquire import ACQUIRE_ERRORS
from core.data.importing import decode_text, import_labelled, preview_zip
from core.data.label_file import LabelColumns, LabelPlan
from pages._common.text import code, md


def _decoded(upload) -> str | None:
    return None if upload is None else decode_text(upload.getvalue())


def _plan(archive, labels, columns: LabelColumns | None) -> LabelPlan | None:
    try:
        return preview_zip(archive, _decoded(labels), columns)
    except ACQUIRE_ERRORS as error:
        st.error(md(error), icon=":material/error:")
        return None


def _column_choice(plan: LabelPlan) -> LabelColumns:
    left, right = st.columns(2)
    file_column = left.selectbox(
        "Column naming the photo",
        plan.header,
        index=plan.header.index(plan.columns.file),
        key="labelled_file_column",
        format_func=md,
    )
    label_column = right.selectbox(
        "Column holding the class",
        plan.header,
        index=plan.header.index(plan.columns.label),
        key="labelled_label_column",
        format_func=md,
    )
    return LabelColumns(file_column, label_column)


def _describe(plan: LabelPlan) -> None:
    counts = plan.counts()
    st.markdown(
        f"**{len(counts)} classes**, {sum(counts.values()):,} labelled photos; "
        f"{len(plan.unlabeled):,} left unlabelled (label them here later); "
        f"{plan.rows_without_file:,} rows name no photo in the zip."
    )
    if counts:
        table = pd.DataFrame({"class": list(counts), "photos": list(counts.values())})
        st.dataframe(table, hide_index=True, key="labelled_counts")
    for note in plan.notes():
        st.warning(md(note), icon=":material/info:")


def labelled_zip_form(create) -> None:
    """The "Zip + labels" tab; ``create(action, *args, **kwargs)`` imports and switches to the result."""
    archive = st.file_uploader("A zip of photos", type=["zip"], key="labelled_zip")
    labels = st.file_uploader(
        "Its labels file, if the zip has no labels.csv or metadata.csv",
        type=["csv"],
        key="labelled_csv",
    )
    if archive is None:
        st.caption("Kaggle's `train/` plus `labels.csv`, or Hugging Face's `metadata.csv` with `file_name,label`.")
        return
    guessed = _plan(archive, labels, None)
    if guessed is None:
        return
    columns = _column_choice(guessed)
    plan = guessed if columns == guessed.columns else _plan(archive, labels, columns)
    if plan is None:
        return
    _describe(plan)
    name = st.text_input("Name", key="labelled_name", placeholder=Path(archive.name).stem)
    if st.button("Import", key="labelled_import", icon=":material/upload:"):
        csv_path = _saved_csv(labels)
        create(import_with_labels, archive, name.strip() or Path(archive.name).stem, csv_path, plan.columns)
    st.caption(f"From {code(archive.name)}. Photos keep their names, so the CSV's ids still name them.")


def _saved_csv(labels) -> str | None:
    """The uploaded CSV on the server's disk for the import (None: the one inside the zip)."""
    if labels is None:
        return None
    with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as file:
        file.write(labels.getvalue())
    return file.name


def import_with_labels(archive, name: str, csv_path: str | None, columns: LabelColumns) -> str:
    """Import, then return the new dataset's root (what the picker switches to)."""
    try:
        return import_labelled(archive, name, labels=csv_path, columns=columns).dataset
    finally:
        if csv_path:
            Path(csv_path).unlink(missing_ok=True)
