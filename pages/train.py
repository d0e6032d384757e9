"""Train: start runs, watch them learn, compare them, inspect the results.

Training never happens in this script. Start only writes a run folder and
asks core.runs.jobs to start a worker process; everything shown here is read
back from the run folders (core.runs.store), so a browser reload, a second
tab or a server restart shows the same runs, at the same point. TensorFlow
is never imported here, except on demand for a Keras layer summary.

    form ──submit──> core.runs.jobs.submit ──> worker process writes PAWLAB_HOME/runs/<id>/
    live panel (st.fragment, polls the files) <── status.json, metrics.jsonl
    runs table, results, tutorial comparison  <── + evaluation.json, model.keras

Top to bottom: the dataset and the form (left), the live panel (right), the
runs table, the focused run's results, the tutorial comparison. The pieces
live in pages/_train_*.py.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import get_settings
from core.data.dataset import DatasetError
from core.runs import jobs, tutorial
from core.runs.store import list_runs
from pages._common.corrections import corrections_note
from pages._common.photos import load_dataset
from pages._common.session import session_dataset
from pages._common.shell import ensure_app_shell
from pages._common.text import md
from pages._train.form import new_run_form
from pages._train.live import show_live_panel
from pages._train.results import has_results, results
from pages._train.runs import focused_run, runs_table
from pages._train.sweep import sweep_tab
from pages._train.tutorial import tutorial_comparison, tutorial_tab


@st.cache_resource(show_spinner=False)
def recover_runs_at_start(runs_dir: str) -> list[Path]:
    """Runs whose worker died while no server was up are marked interrupted, and
    queued runs get started (recover dispatches), once per server process (and runs folder)."""
    return jobs.recover(runs_dir)


def dataset_summary(root: Path, classes: list[str], counts: dict[str, dict[str, int]]) -> None:
    st.markdown(
        f"Dataset **{md(root.name)}**: {len(classes)} classes ({', '.join(map(md, classes))}), "
        + ", ".join(f"{sum(c.values())} {split}" for split, c in counts.items())
        + " photos."
    )


ensure_app_shell()
st.title(":material/monitoring: Train")
recover_runs_at_start(str(get_settings().runs_dir))

data_root, info = session_dataset(), None
if data_root is not None:
    try:
        info, splits = load_dataset(data_root)
    except DatasetError as error:
        st.error(f"The chosen dataset cannot be used: {md(error)}")

left, right = st.columns([2, 3], gap="large")
with left:
    if info is None:
        st.info(
            "Choose a dataset first: download cats vs dogs, upload a zip of photos, "
            "or pick a folder on the Dataset page."
        )
        st.page_link("pages/dataset.py", label="Go to the Dataset page", icon="🖼️")
    else:
        dataset_summary(data_root, info.classes, splits.counts())
        corrections_note(data_root)
        new_tab, sweep_tab_, tutorial_tab_ = st.tabs(["New run", "Sweep", "Reproduce the tutorial"])
        with new_tab:
            new_run_form(data_root, info.classes)
        with sweep_tab_:
            sweep_tab(data_root, info.classes)

# Read after the form, so a run just started is part of everything below.
summaries = list_runs()
if info is not None:
    with tutorial_tab_:
        tutorial_tab(data_root, summaries)
with right:
    show_live_panel(summaries)

if summaries:
    st.header("Runs")
    runs_table(summaries)
    run = focused_run(summaries)
    if has_results(run):
        with st.container(key="train_results"):
            results(run)
if info is not None:
    tutorial_running = any(s.active and s.arch in tutorial.TUTORIAL_ARCHS for s in summaries)
    st.fragment(tutorial_comparison, run_every=5.0 if tutorial_running else None)(data_root)
