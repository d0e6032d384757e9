"""Train page: the results of one finished run.

Test accuracy, the confusion matrix, per-class scores, the photos behind
its mistakes (pages/_train/mistakes.py), how far to trust its answers
(calibration, pages/_train/trust.py), and the model itself (recipe, Keras
summary, download).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from core.config import get_settings
from core.data.layout import Split
from core.runs.recipes import IMBALANCE_RATIO, ClassBalance, TrainConfig
from core.runs.store import (
    MODEL_FILE,
    Evaluation,
    RunFacts,
    RunFileError,
    RunState,
    RunSummary,
    read_config,
    read_evaluation,
    read_facts,
)
from pages._common.text import code, md
from pages._train import figures, views
from pages._train.form import param_count
from pages._train.mistakes import mistakes_section
from pages._train.trust import trust_section

PERCENT = st.column_config.NumberColumn(format="%.1f%%")
BALANCED_HELP = (
    "The mean of the per-class recalls: every class counts the same, however few test photos it has. "
    "Far below the test accuracy, it means the model misses the photos of a small class."
)


def has_results(run: RunSummary | None) -> bool:
    """A finished run that got as far as an evaluation (or completed without one)."""
    if run is None or run.problem or run.state is None or run.state.active:
        return False
    return run.state == RunState.COMPLETED or read_evaluation(run.path) is not None


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def keras_summary(model_file: str, modified: float) -> str:
    """Keras' layer-by-layer summary of a saved model (imports TensorFlow)."""
    from core.serving.inference import load_run_model

    model = load_run_model(Path(model_file).parent)
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines)


def results(run: RunSummary) -> None:
    run_dir = Path(run.path)
    evaluation = read_evaluation(run_dir)
    st.header(f"Results · {views.arch_title(run.arch)}")
    st.caption(f"Run {code(run.id)}")
    headline_metrics(run, evaluation)
    if evaluation and evaluation.balanced_accuracy is not None:
        st.caption(f"Recall per class: {recall_line(evaluation)}")
    if evaluation:
        evaluation_section(evaluation, run)
    else:
        st.info("This run has no test evaluation (it did not get that far).")
    trust_section(run)
    with st.expander("Model", expanded=False):
        try:
            config, facts = read_config(run_dir), read_facts(run_dir)
        except (RunFileError, OSError) as error:
            st.error(md(error))
        else:
            model_section(run, config, facts)


def headline_metrics(run: RunSummary, evaluation: Evaluation | None) -> None:
    """Test accuracy; balanced accuracy beside it (evaluations older than it have none); the rest."""
    metrics = [
        (
            "Test accuracy",
            views.percent(run.test_accuracy),
            "On test photos the model never saw, neither for training nor for choosing its best epoch.",
        )
    ]
    if evaluation and evaluation.balanced_accuracy is not None:
        metrics.append(("Balanced accuracy", views.percent(evaluation.balanced_accuracy), BALANCED_HELP))
    metrics += [
        ("Best validation accuracy", views.percent(run.best_val_accuracy), None),
        ("Test photos", str(evaluation.count) if evaluation else "–", None),
        ("Training time", views.format_duration(run.duration), None),
    ]
    for column, (label, value, help_text) in zip(st.columns(len(metrics)), metrics, strict=True):
        column.metric(label, value, help=help_text)


def recall_line(evaluation: Evaluation) -> str:
    """ "cats 98.0% · dogs 61.0%": the share of each class's test photos the model got right."""
    return " · ".join(f"{md(name)} {views.percent(scores.recall)}" for name, scores in evaluation.per_class.items())


def evaluation_section(evaluation: Evaluation, run: RunSummary) -> None:
    classes = evaluation.classes or run.classes
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Confusion matrix** (test photos)")
        st.plotly_chart(
            figures.confusion(classes, evaluation.confusion_matrix),
            key=f"confusion_{run.id}",
            config={"displayModeBar": False},
        )
    with right:
        st.markdown("**Per class**")
        st.dataframe(
            views.per_class_frame(evaluation),
            hide_index=True,
            column_config=dict.fromkeys(("Precision", "Recall", "F1"), PERCENT),
        )
    mistakes_section(run, evaluation, classes)


def class_weights_lines(config: TrainConfig, facts: RunFacts) -> list[str]:
    """How the run weighted its training classes (core.runs.recipes.ClassBalance); nothing
    for a run whose facts do not count its training photos."""
    counts = facts.split_counts.get(Split.TRAIN)
    if not counts:
        return []
    return [f"Class weights: {class_weights(ClassBalance(counts, config.balance_classes))}"]


def class_weights(balance: ClassBalance) -> str:
    if balance.weighted:
        return f"inverse class frequency ({balance.boosts()})"
    if balance.imbalanced:
        return "none (balance classes was off)"
    return f"none (classes within {IMBALANCE_RATIO:g}x of each other)"


def model_section(run: RunSummary, config: TrainConfig, facts: RunFacts) -> None:
    """The recipe and facts, the Keras summary on demand, the download, TensorBoard."""
    count = param_count(run.arch, len(facts.classes), config.image_size)[1] if facts.classes else None
    lines = views.config_lines(config, facts) + ([f"Parameters: {count:,}"] if count else [])
    st.code("\n".join(lines + class_weights_lines(config, facts)), language=None)
    model_file = Path(run.path) / MODEL_FILE
    if model_file.exists():
        summary_key = f"train_show_summary_{run.id}"
        if st.button(
            "Show the Keras layer summary",
            key=f"summary_button_{run.id}",
            help="Loads the model with TensorFlow: takes a few seconds the first time.",
        ):
            st.session_state[summary_key] = True
        if st.session_state.get(summary_key):
            st.code(keras_summary(str(model_file), model_file.stat().st_mtime), language=None)
        st.download_button(
            f"Download model.keras ({model_file.stat().st_size / 1e6:.1f} MB)",
            data=partial(model_file.read_bytes),
            file_name=f"{run.id}.keras",
            mime="application/octet-stream",
            on_click="ignore",
            icon="⬇️",
            key=f"download_{run.id}",
        )
    st.markdown("Training curves in TensorBoard:")
    st.code(f"tensorboard --logdir {get_settings().runs_dir}", language="bash")
