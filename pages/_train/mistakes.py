"""Train page: the test photos behind a run's mistakes, and fixing their labels.

Every off-diagonal cell of the confusion matrix is a set of test photos the
model got wrong (evaluation.json's "misclassified"). Two select boxes pick a
cell, true class and predicted class; "any" on both lists the run's top
losses: every mistake, the most confidently wrong first. Some mistakes are
the dataset's: a photo filed under the wrong class. Those can be moved or
excluded right here, as on the Review page (pages/_common/corrections.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.runs.store import Evaluation, Mistake, RunFileError, RunSummary, read_config
from pages._common.corrections import corrections_mapping, photo_fixes
from pages._common.photos import thumbnail
from pages._common.text import md

PER_PAGE = 12
ANY = ""  # the select boxes' "any class"


def top_losses(misclassified: list[Mistake]) -> list[Mistake]:
    """Mistakes, the most confident first (the probability given to the wrong class)."""
    return sorted(misclassified, key=lambda item: -item.probabilities.get(item.predicted, 0.0))


def _cell(run: RunSummary, classes: list[str]) -> tuple[str, str]:
    left, right = st.columns(2)
    options = [ANY, *classes]
    name = lambda value: value or "any class"  # noqa: E731  (options are plain text)
    true = left.selectbox("True class", options, format_func=name, key=f"mistakes_true_{run.id}")
    predicted = right.selectbox("Predicted as", options, format_func=name, key=f"mistakes_predicted_{run.id}")
    return true, predicted


def _data_root(run: RunSummary) -> str | None:
    try:
        return read_config(run.path).data_root
    except (RunFileError, OSError):
        return None


def mistakes_section(run: RunSummary, evaluation: Evaluation, classes: list[str]) -> None:
    """Pick a confusion-matrix cell (or all mistakes) and see its photos, with fixes."""
    misclassified = evaluation.misclassified
    if not misclassified:
        st.success("No test photo was misclassified.")
        return
    st.markdown(
        f"**Mistakes** · {len(misclassified)} test photos the model got wrong. "
        "Pick a true and a predicted class (a cell of the matrix above), or see them all."
    )
    true, predicted = _cell(run, classes)
    if true != ANY and true == predicted:
        st.info("The diagonal holds the photos the model got right; pick two different classes.")
        return
    chosen = [
        item for item in top_losses(misclassified) if true in (ANY, item.true) and predicted in (ANY, item.predicted)
    ]
    if not chosen:
        st.caption("No test photo fell in this cell.")
        return
    pages = max(1, -(-len(chosen) // PER_PAGE))
    page = st.pagination(pages, key=f"mistakes_page_{run.id}_{true}_{predicted}") if pages > 1 else 1
    page = page if 1 <= page <= pages else 1
    root = _data_root(run)
    mapping = corrections_mapping(root) if root else {}
    with st.grid(6, min_column_width=170, gap="small"):
        for item in chosen[(page - 1) * PER_PAGE : page * PER_PAGE]:
            _mistake_card(run, item, root, classes, mapping)
    st.caption(
        f"{len(chosen)} photo{'s' if len(chosen) != 1 else ''}, the most confidently wrong first. "
        "A confident mistake is often a photo in the wrong class folder."
    )


def _mistake_card(run: RunSummary, item: Mistake, root: str | None, classes: list[str], mapping: dict) -> None:
    key = f"mistake_{run.id}_{hashlib.sha1(item.file.encode(), usedforsecurity=False).hexdigest()[:12]}"
    with st.container(border=True, key=f"card_{key}"):
        image = thumbnail(item.file)
        if image is None:
            st.caption(f"({md(Path(item.file).name)} is no longer readable)")
        else:
            st.image(image, width="stretch")
        probabilities = sorted(item.probabilities.items(), key=lambda kv: -kv[1])
        st.caption(
            f"{md(item.true)} → **{md(item.predicted)}**  \n"
            + " · ".join(f"{md(name)} {p:.0%}" for name, p in probabilities[:3])
        )
        if root is not None:
            photo_fixes(root, item.file, classes, mapping, key=key, suggested=item.predicted, emphasis=False)
