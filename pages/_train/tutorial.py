"""Train page: reproducing the Keras tutorial, and how our recipes compare.

The "Reproduce the tutorial" tab queues its four models with its settings
(core.runs.tutorial); the comparison below the runs shows each one's curves
against the accuracy the tutorial reported, then offers our recipes.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import defaults
from core.data.augment import list_configs
from core.models.zoo import ARCHITECTURES
from core.runs import jobs, tutorial
from core.runs.recipes import TUTORIAL_EPOCHS, make_config, recipe_for
from core.runs.store import (
    RunFileError,
    RunState,
    RunSummary,
    best_val_accuracy,
    read_evaluation,
    read_metrics,
    read_status,
)
from pages._common.errors import cannot
from pages._common.text import code, md
from pages._train import figures, views

PERCENT_COLUMNS = ("Tutorial reported", "Tutorial code, re-run", "PawLab best validation", "PawLab test")


def tutorial_tab(data_root: Path, summaries: list[RunSummary]) -> None:
    st.markdown(
        f"The tutorial trains four models on {defaults.IMAGE_SIZE} px photos, batch "
        f"{defaults.BATCH_SIZE}, {TUTORIAL_EPOCHS} epochs each. One button queues all four on "
        "this dataset with the same settings; they train one after another in the background "
        "(you can close the browser), and a comparison appears below as they finish."
    )
    presets = list_configs()
    st.markdown(
        "\n".join(
            f"- **{ARCHITECTURES[m.arch].title}**: "
            f"{md(presets[recipe_for(m.arch).augment].describe())}; reported {m.reported:.0%}"
            for m in tutorial.TUTORIAL_MODELS
        )
    )
    found = tutorial.find_tutorial_runs(data_root)
    active = {s.id for s in summaries if s.active}
    busy = [arch for arch, run_dir in found.items() if run_dir.name in active]
    if busy:
        st.info(f"The tutorial's runs are under way ({len(busy)} still queued or running).")
    if st.button("Reproduce the tutorial", icon="🧪", disabled=bool(busy), key="train_tutorial"):
        try:
            for config in tutorial.tutorial_configs(data_root):
                jobs.submit(config)
        except OSError as error:
            st.error(cannot("queue the tutorial's runs", error))
            return
        st.toast("Queued the tutorial's four models.", icon="🧪")
        st.rerun()
    st.caption(tutorial.LEAK_NOTE)


def comparison_row(model: tutorial.TutorialModel, run_dir: Path | None, metrics: list[dict]) -> dict:
    """The table row of one of the tutorial's models: its numbers and ours."""
    try:
        state = read_status(run_dir).state if run_dir else "not run"
    except (RunFileError, OSError):
        state = "damaged"
    return {
        "Model": ARCHITECTURES[model.arch].title,
        "Tutorial reported": views.in_percent(model.reported),
        "Tutorial code, re-run": views.in_percent(model.rerun_accuracy),
        "PawLab best validation": views.in_percent(best_val_accuracy(metrics)),
        "PawLab test": views.in_percent(_test_accuracy(run_dir)),
        "Status": views.STATE_LABELS.get(state, state)
        + (f" ({len(metrics)}/{TUTORIAL_EPOCHS})" if state == RunState.RUNNING else ""),
    }


def _test_accuracy(run_dir: Path | None) -> float | None:
    try:
        evaluation = read_evaluation(run_dir) if run_dir else None
    except (RunFileError, OSError):
        return None  # the runs table says what is damaged
    return evaluation.accuracy if evaluation else None


def tutorial_comparison(data_root: Path) -> None:
    found = tutorial.find_tutorial_runs(data_root)
    if not found:
        return
    st.header("The tutorial, reproduced")
    panels, rows = [], []
    for model in tutorial.TUTORIAL_MODELS:
        run_dir = found.get(model.arch)
        metrics = read_metrics(run_dir) if run_dir else []
        panels.append((model.label, metrics, model.reported))
        rows.append(comparison_row(model, run_dir, metrics))
    st.plotly_chart(
        figures.comparison(panels, TUTORIAL_EPOCHS), key="tutorial_comparison", config={"displayModeBar": False}
    )
    percent = st.column_config.NumberColumn(format="%.1f%%")
    st.dataframe(rows, hide_index=True, placeholder="–", column_config=dict.fromkeys(PERCENT_COLUMNS, percent))
    st.caption(tutorial.LEAK_NOTE)
    with st.expander("Where the re-run figures come from"):
        st.markdown(
            "\n".join(
                f"- {ARCHITECTURES[m.arch].title}: " + (m.rerun.describe() if m.rerun else "not re-run yet")
                for m in tutorial.TUTORIAL_MODELS
            )
        )
    next_steps(data_root)


def next_steps(data_root: Path) -> None:
    st.markdown("**Next step: our recipes.**")
    for column, arch in zip(st.columns(len(tutorial.NEXT_STEPS)), tutorial.NEXT_STEPS):
        spec = ARCHITECTURES[arch]
        with column:
            st.markdown(f"**{spec.title}**: {spec.description}")
            st.caption(tutorial.describe_recipe(arch))
            if st.button(f"Train {spec.title}", key=f"train_recipe_{arch}", icon="🚀"):
                try:
                    run_dir = jobs.submit(make_config(data_root, arch))
                except OSError as error:
                    st.error(cannot("start the run", error))
                    return
                st.toast(f"Run {code(run_dir.name)} {read_status(run_dir).state}.", icon="🚀")
                st.rerun(scope="app")
